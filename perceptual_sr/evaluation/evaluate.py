"""Benchmark evaluation: bicubic vs the model on folders of HR images, as the paper's Table 2.

Protocol (the common SR benchmark protocol, as BasicSR): each HR image (greyscale converted to
RGB) is cropped to a multiple of the scale, degraded with `perceptual_sr.data.degradations.degrade`, and
upscaled by bicubic (`perceptual_sr.utils.image_io.resize_bicubic`) and by the model; both are scored
against the HR image with PSNR-Y, SSIM-Y (4-pixel border), LPIPS-alex and the grid-texture score
(`perceptual_sr.evaluation.metrics.grid_score`: periodic energy at periods of 2 and 4 px relative to the HR
image, log10; 0 = as much as the real photo, 1 = ten times as much) and the cross-hatch score
(`perceptual_sr.evaluation.metrics.hatch_score`: the largest narrow spectral peak at any frequency that the HR
image lacks, log10 excess; 0 = none).
"""

from __future__ import annotations

import csv
import functools
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from perceptual_sr.data.dataset import crop_to_multiple
from perceptual_sr.data.degradations import DEGRADATIONS, degrade_to_image
from perceptual_sr.evaluation.metrics import LPIPSMetric, grid_score, hatch_score, psnr_y, ssim_y
from perceptual_sr.inference.upscale import upscale_array
from perceptual_sr.utils.atomic_write import atomic_file
from perceptual_sr.utils.image_io import IMAGE_SUFFIXES, load_rgb8, resize_bicubic, save_image
from perceptual_sr.utils.pixels import dequantize, uint8_to_tensor

if TYPE_CHECKING:
    from perceptual_sr.inference.pipeline import SRPipeline

METRICS = ("psnr", "ssim", "lpips", "grid", "hatch")
METHODS = ("bicubic", "model")
MIN_EVAL_SIDE = 2 * 4 + 11  # SSIM-Y's 11x11 window inside the 4-pixel border


@dataclass
class ImageScores:
    """Scores of one image: `scores[method][metric]`, method in METHODS, metric in METRICS."""

    name: str
    scores: dict[str, dict[str, float]]


@dataclass
class FolderResult:
    """Per-image and mean scores for one folder (a benchmark set such as Set5)."""

    name: str
    images: list[ImageScores] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # file names too small for the protocol

    def mean(self, method: str, metric: str) -> float:
        values = [image.scores[method][metric] for image in self.images]
        values = [value for value in values if not math.isnan(value)]  # grid, hatch: NaN on images too small
        return float(np.mean(values)) if values else math.nan

    @property
    def means(self) -> dict[str, dict[str, float]]:
        return {method: {metric: self.mean(method, metric) for metric in METRICS} for method in METHODS}


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"evaluation folder {str(folder)!r} is a file; --data takes folders of HR images")
    if not folder.is_dir():
        raise FileNotFoundError(f"evaluation folder {str(folder)!r} does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"evaluation folder {str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return uint8_to_tensor(image)[None]  # (1, 3, H, W)


def evaluate_folder(
    model: nn.Module | Callable[[Image.Image], nn.Module],
    folder: str | Path,
    *,
    scale: int | None = None,
    degradation: str = "bicubic",
    lpips_metric: LPIPSMetric | None = None,
    color_fix: str | None = None,
    comparison_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    fast: bool = False,
    max_images: int | None = None,
    progress: bool = False,
) -> FolderResult:
    """Score bicubic and `model` on every HR image in `folder`.

    model: a network, or a function of the LR image that returns one (see `evaluate_pairs`).
    scale: defaults to `model.scale`. degradation: a kind of `degradations.degrade_to_image`: "bicubic"
    (benchmark protocol), "blur" (paper), "jpeg75", "noise" or "realistic" (real photos).
    lpips_metric: pass one built once when calling repeatedly (e.g. validation during training).
    color_fix: applied to the model output (None: the raw network, as papers report).
    comparison_dir: if set, writes `<name>.png` = [bicubic | model | HR] side by side per image.
    fast: False (default) evaluates in fp32 so scores do not depend on the CPU's bf16 support.
    """
    if isinstance(model, nn.Module):
        scale = scale or model.scale
        if scale != model.scale:
            raise ValueError(f"scale {scale} does not match the model's scale {model.scale}")
    elif scale is None:
        raise ValueError("pass scale along with a function that chooses the network per image")
    if degradation not in DEGRADATIONS:
        raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {degradation!r}")
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1):
        raise ValueError(f"max_images must be a whole number >= 1 or None (all), got {max_images!r}")
    files = list_images(folder)[:max_images]
    lpips_metric = lpips_metric or LPIPSMetric()
    if comparison_dir is not None:
        Path(comparison_dir).mkdir(parents=True, exist_ok=True)
    name = Path(folder).name
    skipped: list[str] = []

    def pairs():
        for path in tqdm(files, desc=f"eval {name}", unit="image", disable=not progress):
            # Greyscale HR (one in Set14) is evaluated as RGB, like every other image.
            hr = crop_to_multiple(load_rgb8(path), scale)
            if min(hr.shape[:2]) < MIN_EVAL_SIDE:  # SSIM's 11x11 window inside the 4-pixel border
                skipped.append(path.name)
                tqdm.write(f"eval: skipped {path.name}: {hr.shape[1]}x{hr.shape[0]} after cropping to a multiple "
                           f"of {scale}; the protocol needs at least {MIN_EVAL_SIDE}x{MIN_EVAL_SIDE}", file=sys.stderr)
                continue
            yield path.stem, degrade_to_image(hr, scale, degradation), hr

    result = evaluate_pairs(model, pairs(), name, scale=scale, lpips_metric=lpips_metric, color_fix=color_fix,
                            comparison_dir=comparison_dir, device=device, fast=fast)
    result.skipped = skipped
    if not result.images:
        raise ValueError(f"no image in {str(folder)!r} is large enough to evaluate (at least {MIN_EVAL_SIDE}x"
                         f"{MIN_EVAL_SIDE} pixels after cropping to a multiple of {scale}); skipped {skipped}")
    return result


def evaluate_pairs(model: nn.Module | Callable[[Image.Image], nn.Module], pairs: Iterable[tuple[str, np.ndarray, np.ndarray]], name: str, *,
                   scale: int, lpips_metric: LPIPSMetric, color_fix: str | None = None,
                   comparison_dir: str | Path | None = None, device: str | torch.device | None = None,
                   fast: bool = False) -> FolderResult:
    """Score bicubic and `model` on (name, LR, HR) pairs, LR = degrade(HR): uint8 (H, W, 3) arrays,
    or the LR as a Pillow image. `model` may also be a function of the LR image that returns the
    network to run (e.g. the pipeline's blend at the cleanup "auto" picks for that image), or the pair
    (network, cleanup) of `SRPipeline.components_for`."""
    result = FolderResult(name)
    for image_name, lr_image, hr in pairs:
        chosen = model if isinstance(model, nn.Module) else model(lr_image)
        network, cleanup = chosen if isinstance(chosen, tuple) else (chosen, None)
        lr = np.asarray(lr_image.convert("RGB")) if isinstance(lr_image, Image.Image) else lr_image
        bicubic = resize_bicubic(lr, scale)
        sr = upscale_array(network, dequantize(lr), out_dtype=np.uint8, cleanup=cleanup, color_fix=color_fix,
                           device=device, fast=fast)
        hr_tensor = _to_tensor(hr)
        lpips_values = lpips_metric(torch.cat([_to_tensor(bicubic), _to_tensor(sr)]).to(_device_of(lpips_metric)),
                                    hr_tensor.expand(2, -1, -1, -1).to(_device_of(lpips_metric)))
        scores = {
            method: {"psnr": psnr_y(image, hr), "ssim": ssim_y(image, hr), "lpips": float(lpips_values[k]),
                     "grid": _or_nan(grid_score, image, hr), "hatch": _or_nan(hatch_score, image, hr)}
            for k, (method, image) in enumerate((("bicubic", bicubic), ("model", sr)))
        }
        result.images.append(ImageScores(image_name, scores))
        if comparison_dir is not None:
            side_by_side = Image.fromarray(np.concatenate([bicubic, sr, hr], axis=1))
            save_image(side_by_side, Path(comparison_dir) / f"{image_name}.png")
    return result


def _device_of(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _or_nan(score: Callable[[np.ndarray, np.ndarray], float], image: np.ndarray, hr: np.ndarray) -> float:
    try:
        return score(image, hr)
    except ValueError:  # too small for a spectrum
        return math.nan


def evaluate(model: nn.Module, folders: list[str | Path], *, out_dir: str | Path | None = None,
             **options) -> list[FolderResult]:
    """`evaluate_folder` on each folder with one shared LPIPS; writes tables + comparisons to `out_dir`."""
    options.setdefault("lpips_metric", LPIPSMetric())
    results = []
    for folder in folders:
        comparison_dir = Path(out_dir) / "comparisons" / Path(folder).name if out_dir is not None else None
        results.append(evaluate_folder(model, folder, comparison_dir=comparison_dir, **options))
    if out_dir is not None:
        write_tables(results, out_dir)
    return results


def markdown_table(results: list[FolderResult]) -> str:
    """Mean scores per folder laid out as Johnson et al.'s Table 2: PSNR / SSIM per method, plus LPIPS,
    grid and hatch."""
    lines = [
        "| Dataset | Bicubic PSNR / SSIM | Model PSNR / SSIM | Bicubic LPIPS | Model LPIPS | Bicubic grid | Model grid "
        "| Bicubic hatch | Model hatch |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        m = result.means
        lines.append(
            f"| {result.name} ({len(result.images)}) | {m['bicubic']['psnr']:.2f} / {m['bicubic']['ssim']:.4f} "
            f"| {m['model']['psnr']:.2f} / {m['model']['ssim']:.4f} "
            f"| {m['bicubic']['lpips']:.4f} | {m['model']['lpips']:.4f} "
            f"| {m['bicubic']['grid']:.2f} | {m['model']['grid']:.2f} "
            f"| {m['bicubic']['hatch']:.2f} | {m['model']['hatch']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def write_tables(results: list[FolderResult], out_dir: str | Path) -> tuple[Path, Path]:
    """Write `results.md` (means) and `results.csv` (per image + a mean row per folder)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown_path, csv_path = out_dir / "results.md", out_dir / "results.csv"
    with atomic_file(markdown_path) as staging:
        staging.write_text(markdown_table(results), encoding="utf-8")
    columns = [f"{method}_{metric}" for method in METHODS for metric in METRICS]
    with atomic_file(csv_path) as staging, staging.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dataset", "image", *columns])
        for result in results:
            for image in result.images:
                writer.writerow([result.name, image.name,
                                 *(f"{image.scores[m][k]:.6f}" for m in METHODS for k in METRICS)])
            writer.writerow([result.name, "mean", *(f"{result.mean(m, k):.6f}" for m in METHODS for k in METRICS)])
    return markdown_path, csv_path


# --- Perception-distortion sweep over `detail` ----------------------------------------------

DETAIL_SWEEP = (0.0, 0.25, 0.5, 0.75, 1.0)


def sweep_detail(model: "SRPipeline", folders: list[str | Path], out_dir: str | Path,
                 details: tuple[float, ...] = DETAIL_SWEEP, cleanup: float | str = 0.0, **options) -> list[dict]:
    """Evaluate the pipeline's network at each detail d on every folder; writes sweep.csv and
    perception_distortion.png (PSNR-Y against LPIPS, one curve per set, bicubic as a point).
    cleanup: as for `upscale` ("auto": measured on each LR); `options`: `evaluate_folder`'s."""
    if not (hasattr(model, "has_axis") and model.has_axis("detail")):
        raise ValueError("a detail sweep needs a model with its pixel-loss twin (the bundled default has one)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    options.setdefault("lpips_metric", LPIPSMetric())
    rows = []
    for detail in details:
        network = functools.partial(model.components_for, detail=detail, cleanup=cleanup)
        for result in evaluate(network, folders, scale=model.scale, **options):
            means = result.means
            rows.append({"detail": detail, "set": result.name,
                         **{f"{method}_{metric}": means[method][metric] for method in METHODS for metric in METRICS}})
    with atomic_file(out_dir / "sweep.csv") as staging, staging.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_perception_distortion(rows, out_dir / "perception_distortion.png")
    return rows


def plot_perception_distortion(rows: list[dict], path: str | Path) -> None:
    """PSNR-Y (x) against LPIPS (y, lower is better) per set, each detail labelled; bicubic as a cross."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4.5))
    for name in dict.fromkeys(row["set"] for row in rows):
        mine = sorted((row for row in rows if row["set"] == name), key=lambda row: row["detail"])
        line, = axis.plot([row["model_psnr"] for row in mine], [row["model_lpips"] for row in mine], "o-", label=name)
        for row in mine:
            axis.annotate(f"{row['detail']:g}", (row["model_psnr"], row["model_lpips"]), textcoords="offset points",
                          xytext=(4, 4), fontsize=7, color=line.get_color())
        axis.plot(mine[0]["bicubic_psnr"], mine[0]["bicubic_lpips"], "x", color=line.get_color(), markersize=9,
                  label=f"{name} bicubic")
    axis.set_xlabel("PSNR-Y (dB, higher is better)")
    axis.set_ylabel("LPIPS-alex (lower is better)")
    axis.set_title("Fidelity <-> detail: numbers are the `detail` setting")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    with atomic_file(path) as staging:
        figure.savefig(staging, dpi=110, format="png")
    plt.close(figure)
