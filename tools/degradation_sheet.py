"""Write a contact sheet of the real-photo degradation chain (`perceptual_sr.data.degradations`), to look at.

Each row is one photo (a centred square crop): the clean bicubic LR, then `--samples` random draws of
the chain (never the clean share), each labelled with the operations applied. LR images are shown
enlarged with nearest neighbour, so JPEG blocks, ringing and noise stay visible pixel for pixel.

    python tools/degradation_sheet.py ../shared/data/bsds500 docs/images/degradations.png
"""

import argparse
import sys
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from perceptual_sr.data.degradations import DegradationConfig, degrade, degrade_realistic_with_record
from perceptual_sr.utils.image_io import IMAGE_SUFFIXES, load_rgb8
from perceptual_sr.utils.pixels import tensor_to_uint8, uint8_to_tensor

LINE_HEIGHT = 12
MARGIN = 4


def find_images(folder: Path, count: int) -> list[Path]:
    """`count` image files spread evenly over the sorted files under `folder` (searched recursively)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {str(folder)!r} does not exist")
    paths = sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) < count:
        raise ValueError(f"{folder} holds {len(paths)} images, fewer than --images {count}")
    return [paths[i * len(paths) // count] for i in range(count)]


def centre_crop(path: Path, size: int, scale: int):
    """The centred size x size crop of an image (smaller if the image is), a multiple of `scale`."""
    pixels = load_rgb8(path)
    side = min(size, *pixels.shape[:2]) // scale * scale
    top, left = (pixels.shape[0] - side) // 2, (pixels.shape[1] - side) // 2
    return pixels[top:top + side, left:left + side]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="folder of photos (searched recursively)")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--images", type=int, default=4, help="rows (photos)")
    parser.add_argument("--samples", type=int, default=6, help="random degradations per photo")
    parser.add_argument("--crop", type=int, default=256, help="HR crop size in pixels")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--zoom", type=int, default=4, help="nearest-neighbour enlargement of the LR")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first draw; draws are seed, seed+1, ...")
    args = parser.parse_args()
    try:
        config = DegradationConfig(clean_prob=0.0)  # the clean share is column 0 already
        rows = []
        for row, path in enumerate(find_images(args.folder, args.images)):
            hr = centre_crop(path, args.crop, args.scale)
            clean = uint8_to_tensor(degrade(hr, args.scale, "bicubic"))
            cells = [(clean, [path.name, f"clean bicubic x1/{args.scale}"])]
            for column in range(args.samples):
                seed = args.seed + row * args.samples + column
                lr, record = degrade_realistic_with_record(uint8_to_tensor(hr), args.scale, seed, config)
                cells.append((lr, [f"seed {seed}", *record]))
            rows.append(cells)
    except (OSError, ValueError) as error:
        sys.exit(f"error: {error}")

    cell = args.crop // args.scale * args.zoom
    width_chars = max(10, cell // 6)  # Pillow's default font is about 6 px per character at size 10
    labels = [[sum((textwrap.wrap(line, width_chars) for line in text), []) for _, text in cells] for cells in rows]
    label_height = max(len(lines) for row in labels for lines in row) * LINE_HEIGHT + 2 * MARGIN
    columns = len(rows[0])
    sheet = Image.new("RGB", (columns * (cell + MARGIN), len(rows) * (cell + label_height)), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default(size=10)
    for r, (cells, row_labels) in enumerate(zip(rows, labels)):
        top = r * (cell + label_height)
        for c, ((lr, _), lines) in enumerate(zip(cells, row_labels)):
            left = c * (cell + MARGIN)
            image = Image.fromarray(tensor_to_uint8(lr))
            zoom = cell / max(image.size)
            size = (round(image.width * zoom), round(image.height * zoom))
            sheet.paste(image.resize(size, Image.Resampling.NEAREST), (left, top))
            for k, line in enumerate(lines):
                draw.text((left + 2, top + cell + MARGIN + k * LINE_HEIGHT), line, fill="black", font=font)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({sheet.width}x{sheet.height}, {args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
