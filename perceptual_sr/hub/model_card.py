"""The model card (README.md) written next to saved weights, and the upload of a finished run to the Hub.

One source of truth: the metadata (`ModelCardData`, with the measured metrics as `EvalResult`s, so
the Hub shows a `model-index`) and the Markdown are built here from the architecture, the recipe,
the dataset's manifest and the measurements; nothing is copied from elsewhere.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

PAPER = "https://arxiv.org/abs/1603.08155"
LIBRARY = "perceptual-sr"
TAGS = ["image-super-resolution", "super-resolution", "image-to-image", "perceptual-loss", "pytorch",
        "pytorch_model_hub_mixin", "model_hub_mixin"]
METRIC_NAMES = {"psnr": "PSNR-Y", "ssim": "SSIM-Y", "lpips": "LPIPS-alex", "grid": "grid texture (log10 vs ground truth)"}
# How each degradation of `degradations.degrade` (the manifest's "degradation") reads in the card.
DEGRADATION_TEXT = {"bicubic": "bicubic downscaling", "blur": "a Gaussian blur then bicubic downscaling"}
# The files of a finished run folder that `push` uploads.
UPLOADED_FILES = ["config.json", "model.safetensors", "README.md", "train_config.json", "log.csv", "val.csv",
                  "loss.png"]


def eval_results(scores: list[dict[str, Any]], scale: int) -> list[EvalResult]:
    """`EvalResult`s from rows {"dataset": name, "metric": psnr|ssim|lpips|grid, "value": float}."""
    return [EvalResult(task_type="image-to-image", task_name=f"Image super-resolution x{scale}", dataset_type=row["dataset"],
                       dataset_name=row["dataset"], metric_type=row["metric"],
                       metric_name=METRIC_NAMES.get(row["metric"], row["metric"]), metric_value=round(row["value"], 4))
            for row in scores]


# What each weight set of a model folder is for and where it falls short, for the card's
# Limitations: written per set present (keys as the pipeline's WEIGHT_SETS).
WEIGHT_SET_LIMITATIONS = {
    "": "**Default weights** (`detail` 1, `cleanup` 0): trained for clean inputs degraded by {made_by}. They "
        "invent plausible texture rather than recover the true one, so fine detail (hair, foliage, text) can "
        "differ from the real scene; JPEG blocks and camera noise are sharpened, not removed.",
    "pixel-twin": "**`pixel-twin/`** (`detail` 0): trained on pixel error alone, so it is faithful but smooth; "
                  "blend toward it (lower `detail`) for documents, screenshots and faces.",
    "real-photo": "**`real-photo/`** (`cleanup` 1): fine-tuned on photos degraded by blur, noise and JPEG. It "
                  "removes those at the cost of some fine texture, so on a clean input it is softer than the "
                  "default: leave `cleanup=\"auto\"`, which reads the file's JPEG tables and noise.",
    "real-photo-pixel-twin": "**`real-photo-pixel-twin/`** (`detail` 0, `cleanup` 1): the real-photo weights' "
                             "pixel-loss end, the smoothest of the four.",
    "cleanup": "**`cleanup/`**: a small network that removes JPEG blocks and noise from the input before it is "
               "upscaled, as strongly as `cleanup` says (0 skips it). Trained on synthetic damage (JPEG 30-95, "
               "Gaussian and Poisson noise, blur, resizing): unusual damage (heavy chroma subsampling, film grain, "
               "screenshots of text) may be left or taken for detail. A clean photo forced to a high `cleanup` "
               "loses some fine texture.",
    # The same folder holding a network that corrects colour only (`CleanupConfig.corrects`).
    "cleanup-chroma": "**`cleanup/`**: a small network that cleans the colour of the input before it is upscaled "
                      "(a JPEG keeps a quarter of it, coarsely quantized), as strongly as `cleanup` says (0 skips "
                      "it); the luma reaches the upscaler unchanged, and a black-and-white photo stays so. Blocks "
                      "and noise in the luma are left to the weights above. Trained on synthetic damage (JPEG "
                      "30-95, Gaussian and Poisson noise, blur, resizing): other colour damage (a screenshot's "
                      "coloured text, heavy colour noise) may be left.",
}
# The card's hand-written or measured parts, kept when a loaded model is saved again (`carried_from`).
CARRIED_SECTIONS = ("Training", "Evaluation")


def build(config: Any, parameters: int, *, training: dict | str | None = None, evaluation: str | None = None,
          notes: str | None = None, scores: list[dict[str, Any]] | None = None, repo_id: str | None = None,
          degradation: str | None = None, code_url: str | None = None,
          weight_sets: tuple[str, ...] = ("",)) -> ModelCard:
    """A model card for a model of architecture `config` (an SRConfig) with `parameters` weights.

    training: the run's settings (TrainConfig as a dict) and data summary, shown as JSON; or the
    section's Markdown as an earlier card had it.
    evaluation: a Markdown table of measured metrics; scores: the same numbers for the metadata.
    notes: free Markdown appended at the end (e.g. provenance of bundled weights).
    repo_id: filled into the usage snippet (else the bundled default's call).
    degradation: how the training inputs were made from the originals (a dataset manifest's
    "degradation": "blur" or "bicubic"); None where it is not known.
    code_url: where the code lives, as the publisher sets it (never guessed).
    weight_sets: the weight sets of the folder ("" the default, "pixel-twin", ...) and "cleanup" where
    it has the cleanup network ("cleanup-chroma" for one that corrects colour only): the usage and
    the limitations speak of these only.
    """
    results = eval_results(scores or [], config.scale)
    made_by = DEGRADATION_TEXT.get(degradation, degradation) if degradation else f"x{config.scale} downscaling"
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
    load = f'SRPipeline.from_pretrained("{repo_id}")' if repo_id else "SRPipeline.from_pretrained()"
    install = (f"Install the `perceptual_sr` package: `pip install \"perceptual-sr @ git+{code_url}\"`" if code_url else
               "Install the `perceptual_sr` package. It is not on PyPI: from a copy of its source repository, "
               "run `pip install .` in that folder (PyTorch first; a CPU-only machine can take it from "
               "`--index-url https://download.pytorch.org/whl/cpu`)")
    axes = ["`detail` (0 faithful ... 1 sharp)"] if "pixel-twin" in weight_sets else []
    if "cleanup" in weight_sets or "cleanup-chroma" in weight_sets:
        axes.append("`cleanup` (0 ... 1, or \"auto\": the strength of the cleanup network)")
    elif "real-photo" in weight_sets:
        axes.append("`cleanup` (0 ... 1, or \"auto\")")
    sections = [
        f"---\n{data.to_yaml()}\n---",
        f"# perceptual_sr x{config.scale}",
        "Feed-forward photo super-resolution trained with a perceptual (VGG-16 feature) loss, after Johnson, "
        f"Alahi & Fei-Fei, *Perceptual Losses for Real-Time Style Transfer and Super-Resolution* (ECCV 2016, "
        f"[{PAPER}]({PAPER})).",
        f"## Usage\n\n{install}, then:\n\n"
        "```python\nfrom perceptual_sr import SRPipeline\n"
        f"pipeline = {load}\npipeline.upscale(\"photo.jpg\").save(\"photo_x{config.scale}.png\")\n```"
        + (f"\n\n`pipeline.upscale(image, ...)` blends the weight sets this folder holds along {' and '.join(axes)}."
           if axes else ""),
        f"## Architecture\n\n{parameters:,} parameters.\n\n```json\n"
        f"{json.dumps(dataclasses.asdict(config), indent=2)}\n```",
        "## Limitations\n\n" + "\n\n".join(f"- {WEIGHT_SET_LIMITATIONS[name].format(made_by=made_by)}"
                                           for name in WEIGHT_SET_LIMITATIONS if name in weight_sets),
    ]
    sections.append(
        "## Licence\n\nThe code is MIT-licensed. The weights were trained on ImageNet photos, whose terms allow "
        "non-commercial research use only (the real-photo weights also on BSDS500 photos, released for research); "
        "check those terms before any other use.")
    if isinstance(training, str):
        sections.append(f"## Training\n\n{training}")
    elif training:
        sections.append(f"## Training\n\n```json\n{json.dumps(training, indent=2, default=str)}\n```")
    if evaluation:
        sections.append(f"## Evaluation\n\n{evaluation}")
    if notes:
        sections.append(notes)
    return ModelCard("\n\n".join(sections) + "\n")


def training_card_kwargs(train_config: dict[str, Any], manifest: dict[str, Any], rows: list[dict[str, Any]],
                         repo_id: str | None = None) -> dict[str, Any]:
    """`build`'s keyword arguments for a model a training run saves.

    train_config: the run's TrainConfig as a dict; manifest: its dataset's manifest.json (the real
    scale and degradation); rows: the final validation rows (training's val.csv columns).
    """
    degradation = manifest.get("degradation", "blur")  # manifests from before the choice existed: blur
    data_summary = {key: manifest.get(key) for key in ("scale", "hr_size", "degradation", "counts", "seed")}
    evaluation, scores = None, []
    if rows:
        lines = [f"Validation at the end of training ({degradation} degradation; "
                 "`held-out` is the dataset's held-out split):", "",
                 "| set | method | PSNR-Y | SSIM-Y | LPIPS-alex | grid |", "| --- | --- | --- | --- | --- | --- |"]
        for row in rows:
            for method, prefix in (("bicubic", "bicubic_"), ("model", "")):
                lines.append(f"| {row['set']} | {method} | {row[prefix + 'psnr_y']:.2f} | {row[prefix + 'ssim_y']:.4f} "
                             f"| {row[prefix + 'lpips']:.4f} | {row[prefix + 'grid']:.2f} |")
            scores += [{"dataset": row["set"], "metric": metric, "value": float(row[column])}
                       for metric, column in (("psnr", "psnr_y"), ("ssim", "ssim_y"), ("lpips", "lpips"), ("grid", "grid"))]
        evaluation = "\n".join(lines)
    return {"training": {"train_config": train_config, "data": data_summary}, "evaluation": evaluation,
            "scores": scores, "repo_id": repo_id, "degradation": degradation}


def push(out_dir: Path, repo_id: str) -> str:
    """Upload a finished run folder to the Hub: the weights with the card training wrote, the logs
    and the settings (UPLOADED_FILES); returns the repo's URL. (`model.push_to_hub` would save a
    fresh folder with a bare card instead.) RuntimeError, saying what to do, if the upload fails."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    try:
        api = HfApi()
        url = api.create_repo(repo_id, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(out_dir), allow_patterns=UPLOADED_FILES,
                          commit_message="Upload model and training logs from perceptual_sr train.py")
        return str(url)
    except (HfHubHTTPError, LocalTokenNotFoundError, OSError) as error:
        raise RuntimeError(f"could not push to the Hub repo {repo_id!r} ({type(error).__name__}: "
                           f"{error}); log in with `hf auth login` or set HF_TOKEN, and check your connection. "
                           f"The model is saved in {out_dir}") from error


def carried_from(card_path: Path) -> dict[str, Any]:
    """`build`'s keyword arguments that keep what an existing card records: the measured scores
    (its `model-index`), its Training and Evaluation sections and the sections after them (as
    notes). Empty when there is no readable card: a model saved again keeps its record."""
    try:
        card = ModelCard.load(card_path)
    except Exception:  # no card, or not one we can read: nothing to carry, never a failed save
        return {}
    carried: dict[str, Any] = {}
    results = card.data.eval_results or []
    if results:
        carried["scores"] = [{"dataset": result.dataset_name, "metric": result.metric_type,
                              "value": float(result.metric_value)} for result in results]
    sections = _sections(card.text)
    for title in CARRIED_SECTIONS:
        if title in sections:
            carried[title.lower()] = sections[title]
    titles = list(sections)
    after = titles[max((titles.index(t) for t in CARRIED_SECTIONS if t in sections), default=len(titles) - 1) + 1:]
    if after and any(t in sections for t in CARRIED_SECTIONS):
        carried["notes"] = "\n\n".join(f"## {title}\n\n{sections[title]}" for title in after)
    return carried


def _sections(markdown: str) -> dict[str, str]:
    """A card's body split at its `## ` headings: {title: Markdown under it}."""
    sections: dict[str, str] = {}
    title, lines = None, []
    for line in markdown.splitlines():
        if line.startswith("## "):
            if title is not None:
                sections[title] = "\n".join(lines).strip()
            title, lines = line[3:].strip(), []
        elif title is not None:
            lines.append(line)
    if title is not None:
        sections[title] = "\n".join(lines).strip()
    return sections


def build_component(name: str, config: Any, parameters: int) -> ModelCard:
    """A short card for one component saved on its own (e.g. the cleanup network's folder): a
    pipeline's folder carries one card at the top, written by `build`."""
    data = ModelCardData(library_name=LIBRARY, license="mit", pipeline_tag="image-to-image", tags=[*TAGS, name])
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n# perceptual_sr {name} network\n\n"
                     "A component of a perceptual_sr model folder (load the folder with "
                     f"`SRPipeline.from_pretrained`). {parameters:,} parameters.\n\n"
                     f"```json\n{json.dumps(dataclasses.asdict(config), indent=2)}\n```\n")
