"""What the cleanup network costs: an input that engages it against a clean one, side by side.

For each input size, on the bundled model and the same photo, alternating runs in one process:
- clean: `pipeline.upscale(photo, cleanup=0.0)` (the cleanup network is skipped);
- cleaned: `pipeline.upscale(photo, cleanup=1.0)` (the cleanup network runs first);
- the cleanup alone: `pipeline.restore(photo, cleanup=1.0)`, i.e. its share of the cleaned run.
Prints seconds (median of --repeats), output MP/s and the ratio cleaned / clean (issue #34's bar: at
most 1.5x at 512x512), and the cleanup's multiply-accumulates per output pixel.

    python benchmarks/bench_cleanup.py [--sizes 256,512] [--repeats 5] [--model FOLDER]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image

from perceptual_sr import SRPipeline


def photo(size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC), np.float64)
    return np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", help="a model folder with a cleanup network (default: the bundled model)")
    args = parser.parse_args()
    pipeline = SRPipeline.from_pretrained(args.model)
    if not pipeline.has_cleanup_network():
        raise SystemExit("the bundled model has no cleanup network")
    config = pipeline.cleanup_config
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; cleanup network: "
          f"{config.macs_per_pixel():,} MAC per input pixel = {config.macs_per_pixel() / pipeline.scale ** 2:,.0f} "
          "per output pixel")
    runs = {"clean": lambda image: pipeline.upscale(image, cleanup=0.0),
            "cleaned": lambda image: pipeline.upscale(image, cleanup=1.0),
            "cleanup alone": lambda image: pipeline.restore(image, cleanup=1.0)}
    for size in map(int, args.sizes.split(",")):
        image = photo(size)
        for run in runs.values():
            run(image)  # warm-up: blends, inference networks, allocator
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run(image)
                times[name].append(time.perf_counter() - start)
        medians = {name: statistics.median(values) for name, values in times.items()}
        output_mp = (size * pipeline.scale) ** 2 / 1e6
        for name, seconds in medians.items():
            print(f"{size}x{size} {name:>13}: {seconds:.3f} s ({output_mp / seconds:.2f} output MP/s)")
        print(f"{size}x{size} cleaned / clean: {medians['cleaned'] / medians['clean']:.2f}x; the cleanup's share of "
              f"the cleaned run: {medians['cleanup alone'] / medians['cleaned']:.0%}")


if __name__ == "__main__":
    main()
