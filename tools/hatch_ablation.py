"""Score model folders side by side on clean x4 inputs, for the cross-hatch ablation (docs/training.md).

    python tools/hatch_ablation.py RUN_A RUN_B ... --data ../shared/data/benchmarks/{Set5,Set14,BSD68} --max-images 10

Each argument is a folder written by save_pretrained (a train.py run folder) or "bundled" (the
default weight set as shipped). Per set: LPIPS-alex, PSNR-Y, the grid and hatch scores (`metrics`),
and a second, independent measure of the screen door: the output's power in the diagonal band
around (+-0.40, +-0.40) cycles/px, divided by the ground truth's there ("diag band"). Inputs are
PIL bicubic x1/4 of each HR crop; outputs use the default colour fix, in fp32.
"""

import argparse
from pathlib import Path

import numpy as np

from perceptual_sr import PerceptualSR
from perceptual_sr.data.dataset import crop_to_multiple
from perceptual_sr.data.degradations import degrade
from perceptual_sr.evaluation.evaluate import list_images
from perceptual_sr.evaluation.metrics import LPIPSMetric, grid_score, hatch_score, psnr_y
from perceptual_sr.inference.upscale import upscale_array
from perceptual_sr.utils.color import rgb_to_grey
from perceptual_sr.utils.image_io import load_rgb8


def diagonal_band_ratio(sr: np.ndarray, hr: np.ndarray, tile: int = 64) -> float:
    """Power of luma within 0.05 cycles/px of (+-0.40, +-0.40), over Hann-windowed tiles, output
    over ground truth: 1 = as in the photo."""
    def band_power(image: np.ndarray) -> float:
        grey = rgb_to_grey(image.astype(np.float64))
        window = np.outer(np.hanning(tile), np.hanning(tile))
        freqs = np.fft.fftfreq(tile)
        fy, fx = np.meshgrid(freqs, freqs, indexing="ij")
        band = (np.abs(np.abs(fy) - 0.40) <= 0.05) & (np.abs(np.abs(fx) - 0.40) <= 0.05)
        total = 0.0
        for y in range(0, grey.shape[0] - tile + 1, tile):
            for x in range(0, grey.shape[1] - tile + 1, tile):
                patch = grey[y:y + tile, x:x + tile]
                total += float((np.abs(np.fft.fft2((patch - patch.mean()) * window)) ** 2)[band].sum())
        return total
    return band_power(sr) / max(band_power(hr), 1e-9)


def _tensor(image: np.ndarray):
    import torch

    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model folders, or 'bundled'")
    parser.add_argument("--data", nargs="+", type=Path, required=True, help="folders of HR images")
    parser.add_argument("--max-images", type=int, default=10)
    args = parser.parse_args()
    lpips = LPIPSMetric()
    print("| model | set | LPIPS | PSNR-Y | grid | hatch | diag band |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        model = PerceptualSR.from_pretrained(None if name == "bundled" else name)
        for folder in args.data:
            rows = []
            for path in list_images(folder)[:args.max_images]:
                hr = crop_to_multiple(load_rgb8(path), 4)
                lr = degrade(hr, 4, "bicubic")
                sr = upscale_array(model, lr.astype(np.float32) / 255, fast=False)
                rows.append((float(lpips(_tensor(sr), _tensor(hr))[0]), psnr_y(sr, hr), grid_score(sr, hr), hatch_score(sr, hr),
                             diagonal_band_ratio(sr, hr)))
            means = np.nanmean(np.array(rows, dtype=np.float64), axis=0)
            print(f"| {name} | {folder.name} ({len(rows)}) | {means[0]:.4f} | {means[1]:.2f} | {means[2]:.2f} "
                  f"| {means[3]:.2f} | {means[4]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
