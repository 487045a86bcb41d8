"""Colour blocks: how much a JPEG's 4:2:0 colour squares survive the upscale, on scikit-image photos.

    python tools/colour_blocks.py [--model FOLDER ...] [--qualities 30 50]

Each photo is shrunk to a quarter (its sides to multiples of 16), saved as a JPEG and upscaled at
`cleanup="auto"`. The score is the mean step of Cb and Cr across the JPEG's colour block edges
(every 16 input pixels, so every 64 output pixels) over the mean step elsewhere: about 1 for the
photo itself, higher where the blocks show. "bundled" is the bundled model.
"""

from __future__ import annotations

import argparse
import io

import numpy as np
from PIL import Image
from skimage import data

from perceptual_sr.inference.pipeline import SRPipeline

PHOTOS = {"astronaut": data.astronaut, "coffee": data.coffee, "chelsea": data.chelsea, "rocket": data.rocket}
COLOUR_BLOCK = 16  # input pixels: an 8x8 DCT block of colour at half resolution (4:2:0)


def colour_block_score(rgb: np.ndarray, period: int) -> float:
    """Mean |step| of Cb and Cr across rows and columns `period - 1 | period`, over the mean step elsewhere."""
    colour = np.asarray(Image.fromarray(rgb).convert("YCbCr")).astype(np.float64)[..., 1:]
    ratios = []
    for axis in (0, 1):
        steps = np.abs(np.diff(colour, axis=axis)).mean(axis=(1 - axis, 2))
        edges = np.zeros(steps.shape, bool)
        edges[period - 1::period] = True
        ratios.append(steps[edges].mean() / steps[~edges].mean())
    return float(np.mean(ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", default=["bundled"], help="model folders (or 'bundled')")
    parser.add_argument("--qualities", nargs="+", type=int, default=[30, 50])
    args = parser.parse_args()
    pipelines = {model: SRPipeline.from_pretrained(None if model == "bundled" else model) for model in args.model}
    scale = next(iter(pipelines.values())).scale
    for name, load in PHOTOS.items():
        photo = Image.fromarray(load())
        small = photo.resize((photo.width // scale // COLOUR_BLOCK * COLOUR_BLOCK,
                              photo.height // scale // COLOUR_BLOCK * COLOUR_BLOCK), Image.Resampling.LANCZOS)
        reference = np.asarray(photo.resize((small.width * scale, small.height * scale), Image.Resampling.LANCZOS))
        for quality in args.qualities:
            buffer = io.BytesIO()
            small.save(buffer, "JPEG", quality=quality)
            jpeg = Image.open(io.BytesIO(buffer.getvalue()))
            period = COLOUR_BLOCK * scale
            cells = [f"photo {colour_block_score(reference, period):.2f}"] + [
                f"{model} {colour_block_score(np.asarray(pipeline.upscale(jpeg, cleanup='auto')), period):.2f}"
                for model, pipeline in pipelines.items()]
            print(f"{name}, JPEG {quality}: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
