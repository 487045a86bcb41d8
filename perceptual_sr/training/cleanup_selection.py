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

import math
from pathlib import Path

from perceptual_sr.evaluation.evaluate import evaluate
from perceptual_sr.evaluation.metrics import LPIPSMetric
from perceptual_sr.inference.pipeline import SRPipeline
from perceptual_sr.networks.restorer import CleanupNet
from perceptual_sr.networks.upscaler import PerceptualSR

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
