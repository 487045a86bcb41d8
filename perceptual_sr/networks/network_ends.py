"""What every form of the network shares at its two ends: the input check and the output head.

`PerceptualSR` (trained and saved) and `inference_network.PhaseNetwork` (its rewrite for speed)
compute the same function; their middles differ, their ends are these, so they cannot drift apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_rgb_batch(lr: torch.Tensor) -> None:
    if lr.ndim != 4 or lr.shape[1] != 3:
        raise ValueError(f"expected a (B, 3, H, W) RGB batch, got shape {tuple(lr.shape)}")


def output_head(global_skip: str, scale: int, lr: torch.Tensor, residual: torch.Tensor, clamp: bool) -> torch.Tensor:
    """The image from the network's last layer: bicubic upscaling of `lr` plus the residual
    (global_skip "bicubic"; clamped to [0, 1] when `clamp`), or the paper's scaled tanh."""
    if global_skip == "bicubic":
        # torch's bicubic (a = -0.75), on the device and differentiable: part of the trained
        # function, so it stays what the weights were trained with. The bicubic *baseline* of
        # tables and colour fix is Pillow's (a = -0.5, as MATLAB's): image_io.resize_bicubic.
        base = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
        # A linear residual, clamped only outside training: a tanh or clamp in the training
        # graph saturates after the first large Adam steps and then passes no gradient
        # (measured: a pilot collapsed to a flat image within 70 steps).
        out = base + residual
        return out.clamp(0.0, 1.0) if clamp else out
    # The paper's scaled tanh, mapped from [-1, 1] to our [0, 1] pixel range.
    return (torch.tanh(residual) + 1.0) / 2.0
