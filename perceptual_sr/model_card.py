"""The model card (README.md) written next to saved weights and pushed to the Hub.

One source of truth: the metadata (`ModelCardData`, with the measured metrics as `EvalResult`s, so
the Hub shows a `model-index`) and the Markdown are built here from the architecture, the recipe
and the measurements; nothing is copied from elsewhere.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

PAPER = "https://arxiv.org/abs/1603.08155"
LIBRARY = "perceptual-sr"
TAGS = ["image-super-resolution", "super-resolution", "image-to-image", "perceptual-loss", "pytorch",
        "pytorch_model_hub_mixin", "model_hub_mixin"]
METRIC_NAMES = {"psnr": "PSNR-Y", "ssim": "SSIM-Y", "lpips": "LPIPS-alex", "grid": "grid texture (log10 vs ground truth)"}


def eval_results(scores: list[dict[str, Any]]) -> list[EvalResult]:
    """`EvalResult`s from rows {"dataset": name, "metric": psnr|ssim|lpips|grid, "value": float}."""
    return [EvalResult(task_type="image-to-image", task_name="Image super-resolution x4", dataset_type=row["dataset"],
                       dataset_name=row["dataset"], metric_type=row["metric"],
                       metric_name=METRIC_NAMES.get(row["metric"], row["metric"]), metric_value=round(row["value"], 4))
            for row in scores]


def build(config: Any, parameters: int, *, training: dict | None = None, evaluation: str | None = None,
          notes: str | None = None, scores: list[dict[str, Any]] | None = None, repo_id: str | None = None) -> ModelCard:
    """A model card for a model of architecture `config` (an SRConfig) with `parameters` weights.

    training: the run's settings (TrainConfig as a dict) and data summary, shown as JSON.
    evaluation: a Markdown table of measured metrics; scores: the same numbers for the metadata.
    notes: free Markdown appended at the end (e.g. provenance of bundled weights).
    repo_id: filled into the usage snippet (else the bundled default's call).
    """
    results = eval_results(scores or [])
    data = ModelCardData(
        model_name=f"perceptual_sr x{config.scale}",
        library_name=LIBRARY,
        license="mit",
        pipeline_tag="image-to-image",
        tags=[*TAGS, f"x{config.scale}"],
        datasets=["imagenet-1k"],
        metrics=["psnr", "ssim", "lpips"],
        eval_results=results or None,
    )
    load = f'PerceptualSR.from_pretrained("{repo_id}")' if repo_id else "PerceptualSR.from_pretrained()"
    sections = [
        f"---\n{data.to_yaml()}\n---",
        f"# perceptual_sr x{config.scale}",
        "Feed-forward photo super-resolution trained with a perceptual (VGG-16 feature) loss, after Johnson, "
        f"Alahi & Fei-Fei, *Perceptual Losses for Real-Time Style Transfer and Super-Resolution* (ECCV 2016, "
        f"[{PAPER}]({PAPER})).",
        "## Usage\n\nInstall the `perceptual_sr` package (in a checkout of its repository: `pip install .`), "
        "then:\n\n```python\nfrom perceptual_sr import PerceptualSR\n"
        f"model = {load}\nmodel.upscale(\"photo.jpg\").save(\"photo_x{config.scale}.png\")\n```",
        f"## Architecture\n\n{parameters:,} parameters.\n\n```json\n"
        f"{json.dumps(dataclasses.asdict(config), indent=2)}\n```",
        "## Limitations\n\nTrained for clean inputs degraded by bicubic downscaling: camera noise, JPEG artifacts "
        "or blur in the input are not what it learned to undo, and it invents plausible texture rather than "
        "recovering the true one (use a lower `detail`, where available, when fidelity matters).",
    ]
    if training:
        sections.append(f"## Training\n\n```json\n{json.dumps(training, indent=2, default=str)}\n```")
    if evaluation:
        sections.append(f"## Evaluation\n\n{evaluation}")
    if notes:
        sections.append(notes)
    return ModelCard("\n\n".join(sections) + "\n")
