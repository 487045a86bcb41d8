"""Data preparation speed and memory: images/s and peak RSS with 1 and 2 workers, side by side.

    python benchmarks/bench_prepare.py [--source ../shared/data/imagenet-sample] [--images 120]

Each configuration runs in a fresh Python process on the same subset (the first `--images` files
by name, linked into a temporary folder), so peak RSS is that run's own. Reported per run:
wall time of `prepare()` (image choice + cropping + finalising; imports excluded), images/s, the
main process's peak RSS, the RSS it already had after importing the package, and the largest
worker's peak RSS. Ratios are against the 1-worker run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"


def _child(source: str, out: str, workers: int, crops: int) -> None:
    """One measured run; prints a JSON line."""
    from perceptual_sr.data.prepare import PrepareConfig, prepare

    import_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    config = PrepareConfig(source=Path(source), out=Path(out), crops_per_image=crops, workers=workers)
    started = time.perf_counter()
    manifest = prepare(config)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "workers": workers, "seconds": seconds, "images": sum(manifest["images"].values()),
        "rows": sum(manifest["counts"].values()),
        "main_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "import_rss_mb": import_rss / 1024,
        # ru_maxrss of the children is the largest single worker, not their sum.
        "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if workers > 1 else 0.0,
    }))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--images", type=int, default=120, help="how many files of the source to use")
    parser.add_argument("--crops-per-image", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--child", nargs=2, metavar=("SUBSET", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.workers[0], args.crops_per_image)
        return 0
    if not args.source.is_dir():
        print(f"bench_prepare.py: error: source folder not found: {args.source}", file=sys.stderr)
        return 1

    results = []
    with tempfile.TemporaryDirectory() as temporary:
        subset = Path(temporary) / "subset"
        subset.mkdir()
        files = sorted(path for path in args.source.rglob("*") if path.is_file())[: args.images]
        for path in files:
            os.symlink(path.resolve(), subset / path.name)
        for workers in args.workers:
            out = Path(temporary) / f"out-{workers}"
            command = [sys.executable, __file__, "--child", str(subset), str(out), "--workers", str(workers),
                       "--crops-per-image", str(args.crops_per_image)]
            run = subprocess.run(command, capture_output=True, text=True)
            if run.returncode:
                print(f"bench_prepare.py: error: run with {workers} workers failed: {run.stderr.strip()[-500:]}",
                      file=sys.stderr)
                return 1
            results.append(json.loads(run.stdout.strip().splitlines()[-1]))

    baseline = results[0]
    print(f"{len(files)} files from {args.source}, {args.crops_per_image} crops/image, {os.cpu_count()} CPUs")
    print(f"{'workers':>7} {'images':>6} {'rows':>5} {'seconds':>8} {'images/s':>9} {'speed-up':>8} "
          f"{'main RSS MB':>11} {'(import)':>8} {'worker RSS MB':>13}")
    for result in results:
        speed = result["images"] / result["seconds"]
        print(f"{result['workers']:>7} {result['images']:>6} {result['rows']:>5} {result['seconds']:>8.1f} "
              f"{speed:>9.2f} {baseline['seconds'] / result['seconds']:>7.2f}x {result['main_rss_mb']:>11.0f} "
              f"{result['import_rss_mb']:>8.0f} {result['worker_rss_mb']:>13.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
