"""The model card (README.md) written next to saved weights and pushed to the Hub."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

PAPER = "https://arxiv.org/abs/1603.08155"


def build(config: Any, parameters: int, *, training: dict | None = None, evaluation: str | None = None,
          notes: str | None = None) -> ModelCard:
    """A model card for a model of architecture `config` (an SRConfig) with `parameters` weights.

    training: the run's settings (TrainConfig as a dict) and data summary, shown as JSON.
    evaluation: a Markdown table of measured metrics.
    notes: free Markdown appended at the end (e.g. provenance of bundled weights).
    """
    data = ModelCardData(
        library_name="perceptual-sr",
        license="mit",
        pipeline_tag="image-to-image",
        tags=["super-resolution", "image-to-image", "perceptual-loss", "pytorch", f"x{config.scale}"],
    )
    sections = [
        f"---\n{data.to_yaml()}\n---",
        f"# perceptual_sr x{config.scale}",
        "Feed-forward photo super-resolution trained with a perceptual (VGG-16 feature) loss, after "
        f"Johnson, Alahi & Fei-Fei, *Perceptual Losses for Real-Time Style Transfer and Super-Resolution* "
        f"(ECCV 2016, [{PAPER}]({PAPER})).",
        "## Usage\n\n```python\nfrom perceptual_sr import PerceptualSR\n"
        "model = PerceptualSR.from_pretrained(\"<this repo or folder>\")\n"
        "model.upscale(\"photo.jpg\").save(\"photo_x4.png\")\n```",
        f"## Architecture\n\n{parameters:,} parameters.\n\n```json\n"
        f"{json.dumps(dataclasses.asdict(config), indent=2)}\n```",
    ]
    if training:
        sections.append(f"## Training\n\n```json\n{json.dumps(training, indent=2, default=str)}\n```")
    if evaluation:
        sections.append(f"## Evaluation\n\n{evaluation}")
    if notes:
        sections.append(notes)
    return ModelCard("\n\n".join(sections) + "\n")
