"""What a training run records in its folder: log.csv, val.csv (the validation scores) and loss.png.

The CSV files are appended to as the run goes and keep their header across resumes; a resumed run
first drops the rows past its checkpoint (`truncate_log`), since it is about to redo those steps.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import torch

from perceptual_sr.data.dataset import SRPairDataset
from perceptual_sr.networks.upscaler import PerceptualSR
from perceptual_sr.utils.atomic_write import atomic_file, write_text
from perceptual_sr.utils.pixels import tensor_to_uint8

# The loss terms other than the VGG features (summed into "feature"), each a column named as the
# loss returns it (PerceptualLoss and the adversarial terms of train_step); absent terms log 0.
LOSS_TERMS = ("tv", "pixel", "grid", "adversarial", "discriminator", "hatch")
# New columns go last: the log of a run resumed by a newer version gains them (CsvLog).
TRAIN_LOG_FIELDS = ["step", "epoch", "loss", "feature", "tv", "pixel", "grid", "lr", "samples_per_s", "adversarial",
                    "discriminator", "hatch"]
assert set(LOSS_TERMS) <= set(TRAIN_LOG_FIELDS)
# evaluate's metrics as validation columns, for the model and for bicubic.
VAL_METRICS = {"psnr": "psnr_y", "ssim": "ssim_y", "lpips": "lpips", "grid": "grid", "hatch": "hatch"}
VAL_FIELDS = ["step", "set", "psnr_y", "ssim_y", "lpips", "grid", "bicubic_psnr_y", "bicubic_ssim_y", "bicubic_lpips",
              "bicubic_grid", "hatch", "bicubic_hatch"]
assert {*VAL_METRICS.values(), *(f"bicubic_{column}" for column in VAL_METRICS.values())} == set(VAL_FIELDS) - {"step", "set"}


def _csv_text(rows: list[list[Any]]) -> str:
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return text.getvalue()


class CsvLog:
    """Append-only CSV with a fixed header (kept across resumes)."""

    def __init__(self, path: Path, fields: list[str]) -> None:
        self.path, self.fields = path, fields
        if not path.exists():
            write_text(path, _csv_text([fields]))
            return
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        header = rows[0] if rows else []
        if header != fields:
            # A run resumed by a newer version that logs more columns: they were added last, so
            # the old rows gain empty cells and every row keeps lining up with the header.
            if fields[:len(header)] != header:
                raise ValueError(f"{path} has columns {header}, not the {fields} this version logs; "
                                 "move it aside to start a new log")
            padded = [row + [""] * (len(fields) - len(row)) for row in rows[1:]]
            write_text(path, _csv_text([fields] + padded))  # atomically, as truncate_log

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow([row.get(field, "") for field in self.fields])


def truncate_log(path: Path, after_step: int) -> None:
    """Drop rows logged after `after_step` (they are re-done when a run resumes)."""
    if not path.exists():
        return
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    kept = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) <= after_step]
    write_text(path, _csv_text(kept))  # atomically: a kill here must not lose the log


def validate(model: PerceptualSR, *, dataset_root: Path, val_dir: str | None, val_images: int, scale: int,
             degradation: str, step: int, out_dir: Path, lpips_metric: Any,
             device: torch.device) -> list[dict[str, Any]]:
    """Scores on the dataset's held-out split and on `val_dir`, each a row of VAL_FIELDS.

    val_images: the first N images of each set (0: all). Comparison PNGs of `val_dir` go to
    `out_dir/val/step<step>`.
    """
    from perceptual_sr.evaluation.evaluate import evaluate_folder, evaluate_pairs

    results = []
    held_out = SRPairDataset(dataset_root, split="val")
    if len(held_out):
        count = min(len(held_out), val_images or len(held_out))
        pairs = ((f"val{k:03d}", *(tensor_to_uint8(image) for image in held_out[k])) for k in range(count))
        results.append(evaluate_pairs(model, pairs, "held-out", scale=scale, lpips_metric=lpips_metric,
                                      device=device))
    if val_dir:
        results.append(evaluate_folder(model, Path(val_dir), scale=scale, degradation=degradation,
                                       lpips_metric=lpips_metric, max_images=val_images or None,
                                       device=device, comparison_dir=out_dir / "val" / f"step{step:07d}"))
    rows = []
    for result in results:
        means = result.means
        row = {"step": step, "set": result.name}
        for metric, column in VAL_METRICS.items():
            row[column] = means["model"][metric]
            row[f"bicubic_{column}"] = means["bicubic"][metric]
        rows.append(row)
    return rows


def plot_losses(log_path: Path, val_path: Path, out_path: Path) -> None:
    """Loss curve (and validation LPIPS per set where logged) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with log_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    val_rows = []
    if val_path.exists():
        with val_path.open(newline="") as handle:
            val_rows = list(csv.DictReader(handle))
    panels = 2 if val_rows else 1
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    steps = [int(row["step"]) for row in rows]
    axes[0][0].plot(steps, [float(row["loss"]) for row in rows], label="training loss")
    axes[0][0].set_xlabel("step")
    axes[0][0].set_yscale("log")
    axes[0][0].legend()
    if val_rows:
        for name in dict.fromkeys(row["set"] for row in val_rows):
            mine = [row for row in val_rows if row["set"] == name]
            line, = axes[0][1].plot([int(row["step"]) for row in mine], [float(row["lpips"]) for row in mine], "o-",
                                    label=f"LPIPS {name}")
            axes[0][1].axhline(float(mine[0]["bicubic_lpips"]), color=line.get_color(), ls="--",
                               label=f"bicubic {name}")
        axes[0][1].set_xlabel("step")
        axes[0][1].legend()
    figure.tight_layout()
    with atomic_file(out_path) as staging:
        figure.savefig(staging, dpi=100, format="png")
    plt.close(figure)
