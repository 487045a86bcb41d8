"""Inference speed and memory: the fast path vs plain fp32 eager, and peak RSS for a 4096x4096 output.

Prints output megapixels per second of `upscale(..., fast=True)` (channels_last, plus bf16 autocast
on CPUs with bf16 hardware) and of `fast=False` (fp32 eager) side by side with their ratio, then
runs a 1024x1024 -> 4096x4096 upscale in a child process and prints its peak resident memory.
Uses the bundled model (its architecture is what users run; speed does not depend on the weights).

    python benchmarks/bench_infer.py [--size 96] [--repeats 2] [--rss-output 4096] [--device cpu]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from perceptual_sr import PerceptualSR
from perceptual_sr.inference import upscale
from perceptual_sr.runtime import choose_device, cpu_bf16_is_faster, cpu_has_fast_bf16


def megapixels_per_second(model: PerceptualSR, image: np.ndarray, fast: bool, repeats: int, device) -> float:
    upscale(model, image, fast=fast, color_fix=None, device=device)  # warm-up (kernel selection)
    start = time.perf_counter()
    for _ in range(repeats):
        out = upscale(model, image, fast=fast, color_fix=None, device=device)
    seconds = (time.perf_counter() - start) / repeats
    return out.shape[0] * out.shape[1] / 1e6 / seconds


def peak_rss_child(output_size: int, device: str) -> None:
    """Run in a child process: upscale to output_size^2 with the default settings, print peak RSS."""
    model = PerceptualSR.from_pretrained()
    image = np.random.default_rng(0).integers(0, 256, (output_size // 4, output_size // 4, 3), dtype=np.uint8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    out = upscale(model, image, device=device)  # default colour fix, tiling and fast path
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{out.shape[1]}x{out.shape[0]} output in {seconds:.1f} s: peak RSS {peak:.0f} MiB "
          f"({before:.0f} MiB of it before upscaling: Python, torch, model)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=96, help="input side for the speed test")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rss-output", type=int, default=4096, help="output side for the memory test (0: skip)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = str(choose_device(args.device))
    if args.child:
        peak_rss_child(args.rss_output, device)
        return
    model = PerceptualSR.from_pretrained()
    image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU bf16 hardware: {cpu_has_fast_bf16()}, bf16 measured faster: {cpu_bf16_is_faster()}, "
          f"input {args.size}x{args.size}")
    fp32 = megapixels_per_second(model, image, fast=False, repeats=args.repeats, device=device)
    fast = megapixels_per_second(model, image, fast=True, repeats=args.repeats, device=device)
    print(f"fp32 eager: {fp32:.3f} MP/s | fast path: {fast:.3f} MP/s | ratio {fast / fp32:.2f}x")
    if args.rss_output:
        subprocess.run([sys.executable, __file__, "--child", "--rss-output", str(args.rss_output),
                        "--device", device], check=True)


if __name__ == "__main__":
    main()
