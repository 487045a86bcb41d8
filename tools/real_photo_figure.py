"""The README's real-photo figure: a messenger-style JPEG upscaled at cleanup 0 and at auto.

    python tools/real_photo_figure.py docs/images/real_photo.png

The photo is scikit-image's `chelsea` (CC0), shrunk to a quarter and saved as a JPEG at quality
50, as a messenger app sends it. Shown at 1:1 output pixels, a crop of: bicubic | perceptual_sr
cleanup 0 | perceptual_sr cleanup auto, labelled.
"""

import argparse
import io
from pathlib import Path

from PIL import Image, ImageDraw
from skimage import data

from perceptual_sr.inference.pipeline import SRPipeline
from perceptual_sr.utils.atomic_write import atomic_file
from perceptual_sr.utils.image_io import resize_to

QUALITY = 50
CROP = (90, 40, 346, 296)  # 256 x 256 output pixels around the cat's eye and whiskers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    photo = Image.fromarray(data.chelsea())
    small = photo.resize((photo.width // 4, photo.height // 4), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=QUALITY)
    jpeg = Image.open(io.BytesIO(buffer.getvalue()))
    pipeline = SRPipeline.from_pretrained()
    measured = pipeline.assess(jpeg)
    panels = [("bicubic", resize_to(jpeg.convert("RGB"), (jpeg.width * 4, jpeg.height * 4))),
              ("cleanup 0 (as before)", pipeline.upscale(jpeg, cleanup=0.0, fast=False)),
              (f"cleanup auto ({measured.cleanup:g})", pipeline.upscale(jpeg, fast=False))]
    label_height = 22
    figure = Image.new("RGB", (256 * len(panels), 256 + label_height), "white")
    draw = ImageDraw.Draw(figure)
    for k, (label, image) in enumerate(panels):
        figure.paste(image.crop(CROP), (256 * k, label_height))
        draw.text((256 * k + 6, 4), label, fill="black")
    with atomic_file(args.out) as staging:
        figure.save(staging, format="PNG")
    print(f"wrote {args.out}: JPEG quality {measured.jpeg_quality}, {measured.describe()}")


if __name__ == "__main__":
    main()
