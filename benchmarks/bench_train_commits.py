"""Whole `train.py` runs of two commits, side by side: samples/s with the same flags, and the ratio.

The base commit is checked out into a temporary git worktree; the runs alternate (base, this
checkout, base, ...) so that both see the same machine state. Each run trains `--steps` steps
into a temporary folder and reports the mean samples/s of its log rows after the first (the first
holds start-up). Flags after `--` go to both runs; the default is the shipped model's recipe.

    python benchmarks/bench_train_commits.py e5b417d --data data/x4 [--repeats 2] [--steps 60] \
        [-- --precision fp32]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ["--upsampler", "resize-conv", "--global-skip", "bicubic", "--crop-size", "96", "--batch-size", "16",
          "--feature-layers", "relu2_2", "--pixel-weight", "10", "--tv-weight", "1e-5", "--grid-weight", "15000",
          "--val-every", "100000", "--checkpoint-every", "100000", "--no-validate-at-start", "--workers", "1"]


def samples_per_second(tree: Path, flags: list[str], out: Path) -> float:
    command = [sys.executable, "train.py", *flags, "--output-dir", str(out)]
    finished = subprocess.run(command, cwd=tree, capture_output=True, text=True)
    if finished.returncode != 0:
        sys.exit(f"train.py in {tree} failed:\n{finished.stderr[-2000:]}")
    with open(out / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return statistics.mean(float(row["samples_per_s"]) for row in rows[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="the commit to compare against (e.g. e5b417d)")
    parser.add_argument("--data", required=True, help="a folder written by prepare_data.py")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("extra", nargs="*", help="flags for both runs, after --")
    args = parser.parse_args()
    flags = [*RECIPE, "--data", str(Path(args.data).resolve()), "--steps", str(args.steps),
             "--log-every", str(max(1, args.steps // 3)), *args.extra]
    with tempfile.TemporaryDirectory(prefix="bench_train_commits_") as scratch:
        base_tree = Path(scratch) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base_tree), args.base], cwd=ROOT, check=True)
        try:
            speeds = {args.base: [], "this checkout": []}
            for repeat in range(args.repeats):
                for name, tree in ((args.base, base_tree), ("this checkout", ROOT)):
                    out = Path(scratch) / f"run-{repeat}-{len(speeds[name])}-{name.replace(' ', '_')}"
                    speeds[name].append(samples_per_second(tree, flags, out))
                    print(f"{name:<14} run {repeat + 1}: {speeds[name][-1]:6.1f} samples/s", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, check=False)
    base, new = (statistics.mean(values) for values in speeds.values())
    print(f"\n{' '.join(args.extra) or 'default flags'}: {args.base} {base:.1f}, this checkout {new:.1f} "
          f"samples/s: {new / base:.2f}x")


if __name__ == "__main__":
    main()
