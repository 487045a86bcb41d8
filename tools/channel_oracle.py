"""What a damage costs, by channel: the upscaler on LRs that take their luma and their colour from
the damaged LR or from the clean one (and, optionally, from a cleanup network's output).

    python tools/channel_oracle.py --data ../shared/data/benchmarks/Set5 ../runs/val192png \
        [--cleanup NAME=FOLDER ...] [--degradation jpeg75]

Prints, per folder, LPIPS-alex as a multiple of bicubic's on the damaged LR (ratio of the means,
as `tools/real_photo_table.py`), for the default upscaler (cleanup 0, colour fix luma) fed:
the damaged LR; the clean luma with the damaged colour; the damaged luma with the clean colour;
the clean LR (a perfect cleanup); and for each cleanup network its output, its luma alone and its
colour alone (on the damaged rest). Luma and colour are BT.601 Y and CbCr, as JPEG stores them.
This table is why the bundled cleanup network corrects colour only (`docs/training.md`, stage 7).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from perceptual_sr.data.dataset import crop_to_multiple
from perceptual_sr.data.degradations import DEGRADATIONS, degrade_to_image
from perceptual_sr.evaluation.metrics import LPIPSMetric
from perceptual_sr.inference.pipeline import SRPipeline
from perceptual_sr.inference.upscale import upscale_array
from perceptual_sr.networks.restorer import CleanupNet
from perceptual_sr.utils.image_io import load_rgb8, resize_bicubic
from perceptual_sr.utils.pixels import dequantize


def mixed(luma_from: np.ndarray, colour_from: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 RGB image with the Y of `luma_from` and the CbCr of `colour_from`."""
    luma = np.asarray(Image.fromarray(luma_from).convert("YCbCr"))[..., :1]
    colour = np.asarray(Image.fromarray(colour_from).convert("YCbCr"))[..., 1:]
    return np.asarray(Image.fromarray(np.concatenate([luma, colour], axis=2), "YCbCr").convert("RGB"))


def cleaned(network: CleanupNet, lr: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        out = network(torch.from_numpy(dequantize(lr)).permute(2, 0, 1)[None], 1.0).clamp(0, 1)
    return np.rint(out[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", type=Path, required=True, help="folders of HR images")
    parser.add_argument("--cleanup", nargs="*", default=[], help="NAME=FOLDER of a saved cleanup network")
    parser.add_argument("--degradation", default="jpeg75", choices=[d for d in DEGRADATIONS if d != "bicubic"])
    parser.add_argument("--max-images", type=int, default=40)
    args = parser.parse_args()
    upscaler = SRPipeline.from_pretrained().scored_network(1.0, 0.0)
    networks = {name: CleanupNet.from_pretrained(folder).eval()
                for name, folder in (spec.split("=", 1) for spec in args.cleanup)}
    lpips = LPIPSMetric()

    def score(image: np.ndarray, hr: np.ndarray) -> float:
        tensors = [torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].float() / 255 for a in (image, hr)]
        return float(lpips(*tensors))

    for folder in args.data:
        totals: dict[str, float] = {}
        photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".bmp", ".jpg"))
        for path in photos[:args.max_images]:
            hr = crop_to_multiple(load_rgb8(path), 4)
            clean = np.asarray(degrade_to_image(hr, 4, "bicubic"))
            damaged = np.asarray(degrade_to_image(hr, 4, args.degradation).convert("RGB"))
            inputs = {"damaged": damaged, "clean luma, damaged colour": mixed(clean, damaged),
                      "damaged luma, clean colour": mixed(damaged, clean), "clean": clean}
            for name, network in networks.items():
                output = cleaned(network, damaged)
                inputs |= {name: output, f"{name}: its luma only": mixed(output, damaged),
                           f"{name}: its colour only": mixed(damaged, output)}
            totals["bicubic"] = totals.get("bicubic", 0.0) + score(resize_bicubic(damaged, 4), hr)
            for name, lr in inputs.items():
                sr = upscale_array(upscaler, dequantize(lr), out_dtype=np.uint8, color_fix="luma")
                totals[name] = totals.get(name, 0.0) + score(sr, hr)
        print(f"{folder.name} ({args.degradation}):")
        for name, total in totals.items():
            if name != "bicubic":
                print(f"  {name}: {total / totals['bicubic']:.3f}")


if __name__ == "__main__":
    main()
