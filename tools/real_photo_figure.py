"""The README's real-photo figure: a messenger-style JPEG upscaled at cleanup 0 and at auto.

    python tools/real_photo_figure.py docs/images/real_photo.png

Top row: scikit-image's `chelsea` (CC0), shrunk to a quarter and saved as a JPEG at quality 50, as
a messenger app sends it. Bottom row: where colour blocks were: scikit-image's `astronaut` (NASA,
public domain) shrunk the same way and saved at quality 30, whose 4:2:0 chroma turns the flag's
stripes and the red patch into 16x16 colour squares. Shown at 1:1 output pixels, a crop of:
bicubic | perceptual_sr cleanup 0 | perceptual_sr cleanup auto, labelled.
"""

import argparse
import io
from pathlib import Path

from PIL import Image, ImageDraw
from skimage import data

from perceptual_sr.inference.pipeline import SRPipeline
from perceptual_sr.utils.atomic_write import atomic_file
from perceptual_sr.utils.image_io import resize_to

# (photo, JPEG quality, 256 x 256 output-pixel crop): the cat's eye and whiskers; the flag and the patch.
ROWS = [(data.chelsea, 50, (90, 40, 346, 296)), (data.astronaut, 30, (0, 0, 256, 256))]
LABEL_HEIGHT = 22


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    pipeline = SRPipeline.from_pretrained()
    figure = Image.new("RGB", (256 * 3, (256 + LABEL_HEIGHT) * len(ROWS)), "white")
    draw = ImageDraw.Draw(figure)
    for row, (load, quality, crop) in enumerate(ROWS):
        photo = Image.fromarray(load())
        small = photo.resize((photo.width // 4, photo.height // 4), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        small.save(buffer, "JPEG", quality=quality)
        jpeg = Image.open(io.BytesIO(buffer.getvalue()))
        measured = pipeline.assess(jpeg)
        bicubic = resize_to(jpeg.convert("RGB"), (jpeg.width * 4, jpeg.height * 4))
        panels = [(f"bicubic (JPEG quality {quality})", bicubic),
                  ("cleanup 0", pipeline.upscale(jpeg, cleanup=0.0, fast=False)),
                  (f"cleanup auto ({measured.cleanup:g})", pipeline.upscale(jpeg, fast=False))]
        top = row * (256 + LABEL_HEIGHT)
        for k, (label, image) in enumerate(panels):
            figure.paste(image.crop(crop), (256 * k, top + LABEL_HEIGHT))
            draw.text((256 * k + 6, top + 4), label, fill="black")
        print(f"row {row}: JPEG quality {measured.jpeg_quality}, {measured.describe()}")
    with atomic_file(args.out) as staging:
        figure.save(staging, format="PNG")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
