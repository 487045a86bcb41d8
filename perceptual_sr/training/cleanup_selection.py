"""Checkpoint selection of a cleanup run by LPIPS on the HR output (issue #34: "selection is by
LPIPS on the HR output, never by PSNR at LR").

Stage B improves and then goes back as it trains on (measured: Set5 JPEG 75 0.57x bicubic's after
1,600 samples, 0.63x after 7,200), so a run scores each checkpoint on held-out photos, as the
product runs: the cleanup network in front of the reference upscaler, `cleanup="auto"` read off
each degraded LR, the colour fix `luma`. The score is the mean over the degradations of LPIPS as
a multiple of bicubic upscaling's on the same LR (lower is better), as `tools/real_photo_table.py`
reports it. A checkpoint whose output carries more periodic texture than the upscaler alone paints
on the same damaged LR (`metrics.hatch_score`, by more than `HATCH_MARGIN` on either damage) is not
a candidate, whatever its LPIPS: LPIPS rewarded a grid that an adversarial cleanup painted (Set5
JPEG 75 0.585x -> 0.543x bicubic's, with hatch 0.14 -> 0.66), and people see it.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from perceptual_sr.evaluation.evaluate import evaluate
from perceptual_sr.evaluation.metrics import LPIPSMetric
from perceptual_sr.inference.pipeline import SRPipeline
from perceptual_sr.networks.restorer import CleanupNet
from perceptual_sr.networks.upscaler import PerceptualSR
from perceptual_sr.utils.atomic_write import atomic_folder, recover_folder, write_text

BEST_DIR = "best"
SELECTION_LOG = "selection.csv"

# The two damages of the bars: a JPEG 75 upload, and sensor noise saved as JPEG 90.
SELECTION_DEGRADATIONS = ("jpeg75", "noise")
# Hatch above the upscaler alone's that still counts as none: the spread of the score between
# checkpoints that show no texture (Set5: 0.14-0.18 on JPEG 75, 0.35 on noise), against the 0.66 of
# the one that did.
HATCH_MARGIN = 0.1


def selection_scores(cleanup: CleanupNet, upscaler: PerceptualSR, folder: str | Path, *, max_images: int,
                     lpips_metric: LPIPSMetric, strength: float | str = "auto") -> dict[str, float]:
    """LPIPS of `cleanup` + `upscaler` at `strength` (0: the upscaler alone) as a multiple of
    bicubic's, per degradation of `SELECTION_DEGRADATIONS` on the photos of `folder`, and the
    output's mean hatch score under "<degradation> hatch"."""
    pipeline = SRPipeline({"": upscaler}, cleanup=cleanup)  # copies of their weights, run in eval mode
    scores = {}
    for degradation in SELECTION_DEGRADATIONS:
        result, = evaluate(lambda image: pipeline.components_for(image, cleanup=strength), [folder],
                           scale=pipeline.scale, degradation=degradation, max_images=max_images,
                           color_fix="luma", fast=False, lpips_metric=lpips_metric)
        scores[degradation] = result.means["model"]["lpips"] / result.means["bicubic"]["lpips"]
        scores[f"{degradation} hatch"] = result.means["model"]["hatch"]
    return scores


def selection_score(scores: dict[str, float], upscaler_alone: dict[str, float]) -> float:
    """The mean LPIPS ratio of `scores` (lower is better), or infinity where the output's hatch is
    more than `HATCH_MARGIN` above the upscaler alone's (`upscaler_alone`, the scores at strength 0)."""
    if any(math.isnan(upscaler_alone[f"{d} hatch"]) for d in SELECTION_DEGRADATIONS):
        raise ValueError("the selection photos are too small for the hatch score's spectrum: choose a --select-on "
                         "folder with larger photos (Set5's are 256 to 512 pixels)")
    hatched = any(scores[f"{d} hatch"] > upscaler_alone[f"{d} hatch"] + HATCH_MARGIN for d in SELECTION_DEGRADATIONS)
    return math.inf if hatched else sum(scores[d] for d in SELECTION_DEGRADATIONS) / len(SELECTION_DEGRADATIONS)


class CheckpointSelection:
    """Scores a run's checkpoints on the photos of `select_on` and keeps the best in `out_dir/best`,
    with `score.json`, and one `selection.csv` row per score. A run resumed with other photos is
    refused: its scores would not compare."""

    def __init__(self, select_on: str, select_images: int, reference: PerceptualSR, out_dir: Path) -> None:
        self.select_on, self.select_images, self.reference, self.out_dir = select_on, select_images, reference, out_dir
        self.lpips_metric = LPIPSMetric()
        recover_folder(out_dir / BEST_DIR)
        score_file = out_dir / BEST_DIR / "score.json"
        self.best = math.inf
        if score_file.is_file():
            record = json.loads(score_file.read_text())
            if (record.get("select_on"), record.get("select_images")) != (select_on, select_images):
                raise ValueError(f"{out_dir / BEST_DIR} was scored on {record.get('select_on')!r} "
                                 f"({record.get('select_images')} photos): resume with the same --select-on and "
                                 "--select-images, or move best/ and selection.csv away to start a new selection")
            self.best = record["score"]
        self.upscaler_alone: dict[str, float] | None = None  # the hatch a checkpoint is held to; on first use

    def has_scored(self, step: int) -> bool:
        path = self.out_dir / SELECTION_LOG
        return path.is_file() and any(row.split(",", 1)[0] == str(step) for row in path.read_text().splitlines()[1:])

    def score(self, step: int, network: CleanupNet, save: Callable[[Path], None]) -> None:
        """Score `network` as step `step`; where it is the best so far, `save(folder)` writes what
        the run ships into `best/`."""
        options = dict(max_images=self.select_images, lpips_metric=self.lpips_metric)
        if self.upscaler_alone is None:
            self.upscaler_alone = selection_scores(network, self.reference, self.select_on, strength=0.0, **options)
        scores = selection_scores(network, self.reference, self.select_on, **options)
        scores["score"] = selection_score(scores, self.upscaler_alone)
        if scores["score"] < self.best:  # best/ first: a selection.csv row marks a finished score
            self.best = scores["score"]
            with atomic_folder(self.out_dir / BEST_DIR) as staging:
                save(staging)
                write_text(staging / "score.json", json.dumps({"step": step, **scores, "select_on": self.select_on,
                                                               "select_images": self.select_images}, indent=2))
        path = self.out_dir / SELECTION_LOG
        new_log = not path.exists()
        with path.open("a", newline="") as log_file:
            log = csv.writer(log_file)
            if new_log:
                log.writerow(("step", *SELECTION_DEGRADATIONS, *(f"{d} hatch" for d in SELECTION_DEGRADATIONS),
                              "score"))
            log.writerow([step, *(f"{scores[d]:.4f}" for d in SELECTION_DEGRADATIONS),
                          *(f"{scores[f'{d} hatch']:.3f}" for d in SELECTION_DEGRADATIONS), f"{scores['score']:.4f}"])
        tqdm.write(f"step {step}: selection " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
