"""Copy trained weights into the package as the default x4 model, with its pixel-loss twin and card.

    python tools/bundle_default_model.py RUN_DIR --twin TWIN_DIR --evaluation docs/eval/bicubic_luma.md

RUN_DIR and TWIN_DIR are folders written by save_pretrained (a train.py --output-dir, or its
checkpoint/ema). Writes perceptual_sr/pretrained/perceptual-sr-x4/{config.json, model.safetensors,
README.md} and pixel-twin/{config.json, model.safetensors}, which `PerceptualSR.from_pretrained()`
loads offline. The card's training section lists each run's recorded settings (relative paths only).
"""

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

from perceptual_sr.model import PerceptualSR
from perceptual_sr.pipeline import TWIN_SUBFOLDER, SRPipeline
from perceptual_sr.weights import DEFAULT_WEIGHTS_DIR

NOTES = """## Provenance

Trained by `train.py` in this repository on 884 ImageNet photos (ILSVRC-2012, one per class, those at
least 288 px on the shorter side), on one GPU: a 255,200-sample run of the recipe chosen by the
ablation, then a fine-tune with the grid penalty (`--grid-weight 15000`). The pixel-loss twin in
`pixel-twin/` is that model fine-tuned on pixel MSE alone (8,000 samples, on CPU), so the two can be
blended (`detail`). `docs/training.md` in the repository lists every command, the ablation and the
measurements. ImageNet images are for non-commercial research use."""


# The GPU machine read copies of these folders under other names; the card names the originals.
RENAMED_PATHS = {".gpu/Set5": "../shared/data/benchmarks/Set5", ".gpu/init": "runs/x4"}


def _portable(value: str) -> str:
    """A recorded path as the card shows it: renamed copies restored, and absolute paths cut to
    their `runs/...` or `data/...` part, so no machine's folder layout reaches the Hub."""
    value = RENAMED_PATHS.get(value, value)
    parts = Path(value).parts
    if Path(value).is_absolute():
        anchors = [k for k, part in enumerate(parts) if part in ("runs", "data")]
        return "/".join(parts[anchors[0]:]) if anchors else Path(value).name
    return value


def _run_settings(folder: Path) -> dict | None:
    """The train_config.json of the run that wrote `folder` (the folder itself or two levels up)."""
    for candidate in (folder, folder.parent, folder.parent.parent):
        path = candidate / "train_config.json"
        if path.is_file():
            settings = json.loads(path.read_text())
            return {key: _portable(value) if isinstance(value, str) else value for key, value in settings.items()}
    return None


def _mean_scores(csv_path: Path) -> list[dict]:
    """The model's mean scores per set from a `perceptual-sr eval` results.csv, for the card's model-index."""
    if not csv_path.is_file():
        return []
    with csv_path.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["image"] == "mean"]
    return [{"dataset": row["dataset"], "metric": metric, "value": float(row[f"model_{metric}"])}
            for row in rows for metric in ("psnr", "ssim", "lpips", "grid")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="weights of the default (feature-loss) model")
    parser.add_argument("--twin", type=Path, required=True, help="weights of its pixel-loss twin")
    parser.add_argument("--evaluation", type=Path, nargs="*", default=[], help="Markdown files for the card")
    args = parser.parse_args()
    try:
        pipeline = SRPipeline({"": PerceptualSR.from_pretrained(args.run_dir),
                               TWIN_SUBFOLDER: PerceptualSR.from_pretrained(args.twin)})  # one architecture
        evaluation = "\n\n".join(path.read_text() for path in args.evaluation) or None
        scores = [score for path in args.evaluation for score in _mean_scores(path.with_suffix(".csv"))]
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    training = {"default": _run_settings(args.run_dir), "pixel_twin": _run_settings(args.twin)}
    shutil.rmtree(DEFAULT_WEIGHTS_DIR, ignore_errors=True)
    pipeline.save_pretrained(DEFAULT_WEIGHTS_DIR, training=training, evaluation=evaluation, notes=NOTES, scores=scores,
                             degradation="bicubic")  # the shipped data: prepare_data.py --degradation bicubic
    for path in sorted(DEFAULT_WEIGHTS_DIR.rglob("*")):
        if path.is_file():
            print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
