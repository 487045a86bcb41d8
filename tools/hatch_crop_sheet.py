"""The cross-hatch crop sheet of the README: bicubic | before | after | ground truth, at 1:1 and 3x.

    python tools/hatch_crop_sheet.py BEFORE_FOLDER AFTER_FOLDER --data ../shared/data/benchmarks \
        --out docs/images/hatch_crops.png

BEFORE_FOLDER and AFTER_FOLDER are model folders (the default weight set of each is used, at detail
1, clean input). Each row is one crop of a test image's x4 upscale from its PIL bicubic x1/4: skin
(Set5 woman's cheek), fur (Set14 baboon) and a smooth, sky-like out-of-focus background (Set14
monarch; the flattest 96 x 96 window of these sets). Every 1:1 panel is 96 x 96 output pixels; the 3x panels are the centre
32 x 32 of each, magnified with nearest-neighbour so the pattern is not smoothed away.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from perceptual_sr import PerceptualSR
from perceptual_sr.data.dataset import crop_to_multiple
from perceptual_sr.data.degradations import degrade
from perceptual_sr.inference.upscale import upscale_array
from perceptual_sr.utils.image_io import load_rgb8, resize_bicubic
from perceptual_sr.utils.pixels import quantize

# (set, image, top, left) of a 96 x 96 output crop
CROPS = [("Set5", "woman.png", 104, 72, "skin"), ("Set14", "baboon.png", 300, 40, "fur"),
         ("Set14", "monarch.png", 0, 664, "smooth background")]
SIDE, ZOOM_SIDE, ZOOM = 96, 32, 3
LABELS = ("bicubic", "before", "after", "ground truth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="folder holding Set5/ and Set14/")
    parser.add_argument("--out", type=Path, default=Path("docs/images/hatch_crops.png"))
    args = parser.parse_args()
    models = [PerceptualSR.from_pretrained(args.before), PerceptualSR.from_pretrained(args.after)]
    gap, label_height = 6, 18
    panel = SIDE * ZOOM // ZOOM  # 1:1 panels are SIDE wide; 3x panels ZOOM_SIDE * ZOOM = 96
    width = 4 * (SIDE + gap) + 4 * (ZOOM_SIDE * ZOOM + gap) + gap
    height = label_height + len(CROPS) * (panel + gap) + gap
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for k, label in enumerate(LABELS):
        draw.text((gap + k * (SIDE + gap), 3), f"{label} 1:1", fill="black")
        draw.text((gap + 4 * (SIDE + gap) + k * (ZOOM_SIDE * ZOOM + gap), 3), f"{label} 3x", fill="black")
    for row, (folder, name, top, left, _) in enumerate(CROPS):
        hr = crop_to_multiple(load_rgb8(args.data / folder / name), 4)
        lr = degrade(hr, 4, "bicubic").astype(np.float32) / 255
        outputs = [quantize(np.clip(resize_bicubic(lr, 4), 0, 1), np.uint8),
                   *(upscale_array(model, lr, fast=False) for model in models), hr]
        y = label_height + row * (panel + gap)
        for k, image in enumerate(outputs):
            crop = Image.fromarray(np.ascontiguousarray(image[top:top + SIDE, left:left + SIDE]))
            sheet.paste(crop, (gap + k * (SIDE + gap), y))
            centre = (SIDE - ZOOM_SIDE) // 2
            zoom = crop.crop((centre, centre, centre + ZOOM_SIDE, centre + ZOOM_SIDE)).resize(
                (ZOOM_SIDE * ZOOM, ZOOM_SIDE * ZOOM), Image.Resampling.NEAREST)
            sheet.paste(zoom, (gap + 4 * (SIDE + gap) + k * (ZOOM_SIDE * ZOOM + gap), y))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
