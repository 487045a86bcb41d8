"""Settle a recipe's free choices with short training runs at equal budget, then size the long run.

    python tools/ablation.py --data DATA --val-dir ../shared/data/benchmarks/Set5 --out runs/ablation
    python tools/ablation.py ... --only base,ema    # a subset of the candidates

Every candidate trains from the same seed for the same number of updates on the same pixels
(a 192 px candidate takes a quarter of the batch of a 96 px one). Each is validated on the
dataset's held-out split and on `--val-dir` (Set5: never Set14/BSD68, which are for the final
report). `results.md`/`results.csv` list them; `chosen.json` names the one picked by `choose`.
With `--long-run-seconds`, the chosen recipe's speed is measured at 288 and 192 px crops and
`long_run.json` gets the largest crop and step count that reach `--min-samples` within the time.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from perceptual_sr.networks.upscaler import SRConfig
from perceptual_sr.training.config import TrainConfig
from perceptual_sr.training.loop import batches, setup_run, train, train_step

# Today's shipped recipe (run E in docs/training.md), the reference point of every candidate.
BASE_MODEL = dict(upsampler="resize-conv", global_skip="bicubic", residual_blocks=4, channels=64)
BASE_TRAIN = dict(feature_layers="relu2_2", pixel_weight=10.0, tv_weight=1e-5, learning_rate=1e-3)
HYGIENE = dict(ema_decay=0.999, lr_schedule="cosine")

# name -> (model overrides, training overrides); ordered by how much we expect to learn from each.
CANDIDATES: dict[str, tuple[dict, dict]] = {
    "base": ({}, {}),
    "ema": ({}, HYGIENE),
    "tv2": ({}, {**HYGIENE, "tv_weight": 2.0}),
    "deep-lean": ({"residual_blocks": 8, "full_res_channels": 32}, HYGIENE),
    "layers": ({}, {**HYGIENE, "feature_layers": "relu1_2:1,relu2_2:1,relu3_3:1"}),
    "tv10": ({}, {**HYGIENE, "tv_weight": 10.0}),
    "pixel30": ({}, {**HYGIENE, "pixel_weight": 30.0}),
    "pixelshuffle": ({"upsampler": "pixelshuffle"}, HYGIENE),
    "deconv": ({"upsampler": "deconv"}, HYGIENE),
    "crop192": ({}, {**HYGIENE, "crop_size": 192}),
}

# A candidate is "clean" when its grid texture is at most 2x the ground truth's (log10 0.3) and it
# stays within 1 dB PSNR-Y of bicubic; among clean ones the lowest LPIPS (relative to bicubic's)
# wins. If none is clean, LPIPS and grid are traded at 0.1 LPIPS-ratio per decade of grid energy.
MAX_CLEAN_GRID = 0.3
MAX_PSNR_DROP_DB = 1.0
GRID_PENALTY = 0.1


def candidate_configs(name: str, args: argparse.Namespace, out_dir: Path) -> tuple[SRConfig, TrainConfig]:
    model_overrides, train_overrides = CANDIDATES[name]
    settings = dict(BASE_TRAIN, data=args.data, output_dir=str(out_dir / name), val_dir=args.val_dir,
                    steps=args.steps, batch_size=args.batch_size, crop_size=args.crop_size, workers=args.workers,
                    seed=args.seed, log_every=50, checkpoint_every=args.steps, val_every=args.steps, device=args.device,
                    validate_at_start=False)
    settings.update(train_overrides)
    crop = settings["crop_size"]
    if crop != args.crop_size:  # equal pixels per update: shrink the batch by the area ratio
        settings["batch_size"] = max(1, round(args.batch_size * (args.crop_size / crop) ** 2))
    return SRConfig(**{**BASE_MODEL, **model_overrides}), TrainConfig(**settings)


def summarise(name: str, rows: list[dict], seconds: float) -> dict:
    """One table row: means over the validation sets of the final scores."""
    def mean(key):
        return sum(float(row[key]) for row in rows) / len(rows)

    return {"candidate": name, "lpips_ratio": mean("lpips") / mean("bicubic_lpips"),
            "psnr_gain_db": mean("psnr_y") - mean("bicubic_psnr_y"), "grid": mean("grid"),
            **{f"{row['set']}_{key}": float(row[key]) for row in rows for key in ("lpips", "psnr_y", "grid")},
            "seconds": seconds}


def choose(summaries: list[dict]) -> dict:
    if not summaries:
        raise SystemExit("no candidate ran (raise --max-seconds or pass --only)")
    clean = [s for s in summaries if s["grid"] <= MAX_CLEAN_GRID and s["psnr_gain_db"] >= -MAX_PSNR_DROP_DB]
    if clean:
        return min(clean, key=lambda s: s["lpips_ratio"])
    return min(summaries, key=lambda s: s["lpips_ratio"] + GRID_PENALTY * max(0.0, s["grid"]))


def final_rows(run_dir: Path) -> list[dict]:
    with (run_dir / "val.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    last = max(int(row["step"]) for row in rows)
    return [row for row in rows if int(row["step"]) == last]


def write_tables(summaries: list[dict], out_dir: Path) -> None:
    columns = list(dict.fromkeys(key for s in summaries for key in s))
    with (out_dir / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(summaries)
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for s in summaries:
        lines.append("| " + " | ".join(f"{s[c]:.4g}" if isinstance(s.get(c), float) else str(s.get(c, ""))
                                       for c in columns) + " |")
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")


def measure_samples_per_second(model_config: SRConfig, config: TrainConfig, warmup: int = 5, timed: int = 15) -> float:
    """Training throughput of a recipe (samples/s), on a throwaway run folder."""
    config = dataclasses.replace(config, steps=warmup + timed, ema_decay=config.ema_decay)
    run = setup_run(model_config, config)
    data = batches(run)
    for _ in range(warmup):
        train_step(run, *next(data))
    if run.runtime.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(timed):
        train_step(run, *next(data))
    if run.runtime.device.type == "cuda":
        torch.cuda.synchronize()
    return timed * config.batch_size / (time.perf_counter() - start)


def plan_long_run(model_config: SRConfig, config: TrainConfig, seconds: float, min_samples: int,
                  batch_size: int) -> dict:
    """The largest crop (288, else 192, else 96 px) whose `min_samples` fit in `seconds`, and its steps."""
    measured = {}
    for crop in (288, 192, 96):
        probe = dataclasses.replace(config, crop_size=crop, batch_size=batch_size, output_dir=config.output_dir + f"-probe{crop}")
        rate = measure_samples_per_second(model_config, probe)
        measured[crop] = rate
        if rate * seconds >= min_samples or crop == 96:
            steps = max(min_samples, int(rate * seconds)) // batch_size
            return {"crop_size": crop, "batch_size": batch_size, "steps": steps, "samples": steps * batch_size,
                    "samples_per_s": measured}
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a folder written by prepare_data.py")
    parser.add_argument("--val-dir", default=None, help="HR images for validation (Set5)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs and tables")
    parser.add_argument("--only", default=None, help="comma-separated candidate names (default: all)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--crop-size", type=int, default=96)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-seconds", type=float, default=float("inf"),
                        help="skip the remaining candidates once this much time has passed")
    parser.add_argument("--long-run-seconds", type=float, default=0.0, help="size the long run to this time")
    parser.add_argument("--long-run-batch-size", type=int, default=32)
    parser.add_argument("--min-samples", type=int, default=160_000)
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(CANDIDATES)
    unknown = [name for name in names if name not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidates {unknown}; choose from {list(CANDIDATES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    started, summaries = time.perf_counter(), []
    for name in names:
        if time.perf_counter() - started > args.max_seconds:
            print(f"time budget spent: skipping {name}", flush=True)
            continue
        model_config, train_config = candidate_configs(name, args, args.out)
        run_start = time.perf_counter()
        train(model_config, train_config)
        summaries.append(summarise(name, final_rows(Path(train_config.output_dir)), time.perf_counter() - run_start))
        write_tables(summaries, args.out)
        print(json.dumps(summaries[-1]), flush=True)
    chosen = choose(summaries)
    model_config, train_config = candidate_configs(chosen["candidate"], args, args.out)
    record = {"candidate": chosen["candidate"], "model": dataclasses.asdict(model_config),
              "train": {key: value for key, value in dataclasses.asdict(train_config).items()
                        if key in ("learning_rate", "lr_schedule", "warmup_steps", "ema_decay", "feature_layers", "tv_weight",
                                   "pixel_weight")}}
    if args.long_run_seconds > 0:
        record["long_run"] = plan_long_run(model_config, train_config, args.long_run_seconds, args.min_samples,
                                           args.long_run_batch_size)
    (args.out / "chosen.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
