"""Checkpoint selection of a cleanup run by LPIPS on the HR output (issue #34: "selection is by
LPIPS on the HR output, never by PSNR at LR").

Stage B improves and then goes back as it trains on (measured: Set5 JPEG 75 0.57x bicubic's after
1,600 samples, 0.63x after 7,200), so a run scores each checkpoint on held-out photos, as the
product runs: the cleanup network in front of the reference upscaler, `cleanup="auto"` read off
each degraded LR, the colour fix `luma`. The score is the mean over the degradations of LPIPS as
a multiple of bicubic upscaling's on the same LR (lower is better), as `tools/real_photo_table.py`
reports it.
"""

from __future__ import annotations

import copy
from pathlib import Path

from perceptual_sr.evaluation.evaluate import evaluate
from perceptual_sr.evaluation.metrics import LPIPSMetric
from perceptual_sr.inference.pipeline import SRPipeline
from perceptual_sr.networks.restorer import CleanupNet
from perceptual_sr.networks.upscaler import PerceptualSR

# The two damages of the bars: a JPEG 75 upload, and sensor noise saved as JPEG 90.
SELECTION_DEGRADATIONS = ("jpeg75", "noise")


def selection_scores(cleanup: CleanupNet, upscaler: PerceptualSR, folder: str | Path, *, max_images: int,
                     lpips_metric: LPIPSMetric) -> dict[str, float]:
    """LPIPS of `cleanup` + `upscaler` at auto as a multiple of bicubic's, per degradation of
    `SELECTION_DEGRADATIONS` on the photos of `folder`, and their mean under "score"."""
    pipeline = SRPipeline({"": upscaler}, cleanup=copy.deepcopy(cleanup).eval())
    scores = {}
    for degradation in SELECTION_DEGRADATIONS:
        result, = evaluate(lambda image: pipeline.components_for(image, cleanup="auto"), [folder],
                           scale=pipeline.scale, degradation=degradation, max_images=max_images,
                           color_fix="luma", fast=False, lpips_metric=lpips_metric)
        scores[degradation] = result.means["model"]["lpips"] / result.means["bicubic"]["lpips"]
    scores["score"] = sum(scores[d] for d in SELECTION_DEGRADATIONS) / len(SELECTION_DEGRADATIONS)
    return scores
