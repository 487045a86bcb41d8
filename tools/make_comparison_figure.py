"""Build the README's comparison figure from `perceptual-sr eval` comparison images.

Each comparison image is [bicubic | model | HR] side by side; this crops the same window from the
three panels of a few images and stacks them as rows, labelled.

    python tools/make_comparison_figure.py eval_results/comparisons docs/images/comparison.png \
        Set5/butterfly:40,60,128 Set14/zebra:250,150,128 Set5/baby:280,180,128 BSD68/108005:200,150,128
"""

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw


def crop_panels(path: Path, left: int, top: int, size: int) -> list[Image.Image]:
    image = Image.open(path).convert("RGB")
    width = image.width // 3
    if left + size > width or top + size > image.height:
        raise ValueError(f"window {left},{top},{size} does not fit {path} ({width}x{image.height} per panel)")
    return [image.crop((k * width + left, top, k * width + left + size, top + size)) for k in range(3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("comparisons", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("windows", nargs="+", help="SET/IMAGE:LEFT,TOP,SIZE (HR pixels)")
    parser.add_argument("--zoom", type=int, default=2)
    args = parser.parse_args()
    try:
        rows = []
        for window in args.windows:
            name, _, numbers = window.partition(":")
            left, top, size = (int(n) for n in numbers.split(","))
            rows.append(crop_panels(args.comparisons / f"{name}.png", left, top, size))
    except (OSError, ValueError) as error:
        sys.exit(f"error: {error}")
    cell = rows[0][0].width * args.zoom
    header = 28
    figure = Image.new("RGB", (3 * cell, header + len(rows) * cell), "white")
    draw = ImageDraw.Draw(figure)
    for k, label in enumerate(("bicubic", "perceptual_sr", "ground truth")):
        draw.text((k * cell + 8, 8), label, fill="black")
    for r, panels in enumerate(rows):
        for k, panel in enumerate(panels):
            figure.paste(panel.resize((cell, cell), Image.Resampling.NEAREST), (k * cell, header + r * cell))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out)
    print(f"wrote {args.out} ({figure.width}x{figure.height})")


if __name__ == "__main__":
    main()
