"""Steady detail: the texture the network invents holds still where the scene does.

A feed-forward network invents its texture anew in every frame, from pixels that differ by sensor
noise alone: on a still noisy scene the output at `detail` 1 flickers 1.83x as much from frame to
frame as bicubic upscaling of the same frames (issue #35), and walls, skin and sky boil.

The fix is the simplest of the video SR literature's recurrent ideas (e.g. FRVSR, Sajjadi et al.
2018, which feeds the previous output forward), without flow: split each output into a bicubic
base of the frame and the network's residual over it, and where the input did not change since the
last frame, keep most of the last residual instead of the new one:

    residual_t = keep * residual_(t-1) + (1 - keep) * (output_t - bicubic(input_t))
    keep = hold * max(0, 1 - change / threshold),  change = |box5(input_t - input_(t-1))|

The 5x5 box average before the absolute value lets sensor noise cancel while an edge that moves
does not: motion leaves `keep` at 0 and the frame as the image path makes it. The base follows
every frame, so nothing lags but invented texture, and only where nothing moved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from perceptual_sr.utils.pixels import quantize


@dataclass(frozen=True)
class SteadySettings:
    """hold: the largest share of the last residual kept (0 turns steadying off); threshold: the
    local change of the input (in 8-bit levels, after the 5x5 average) at which nothing is kept."""

    hold: float = 0.8
    threshold: float = 4.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.hold < 1.0:
            raise ValueError(f"hold must be in [0, 1), got {self.hold!r}")
        if not self.threshold > 0:
            raise ValueError(f"threshold must be > 0 (8-bit levels), got {self.threshold!r}")


class SteadyDetail:
    """Feed it frames in order: `(input uint8 (h, w, 3), output uint8 (H, W, 3)) -> steadied output`.
    Holds one input and one residual between calls; a new size starts afresh (a new scene)."""

    def __init__(self, settings: SteadySettings = SteadySettings()) -> None:
        self.settings = settings
        self._last_input: torch.Tensor | None = None
        self._last_residual: torch.Tensor | None = None

    def __call__(self, low_res: np.ndarray, output: np.ndarray) -> np.ndarray:
        if self.settings.hold == 0:
            return output
        source = torch.from_numpy(low_res).permute(2, 0, 1)[None].float()  # (1, 3, h, w), 8-bit levels
        result = torch.from_numpy(output).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
        base = F.interpolate(source, size=result.shape[-2:], mode="bicubic", align_corners=False)
        residual = result - base
        if self._last_input is not None and self._last_input.shape == source.shape and \
                self._last_residual.shape == residual.shape:
            change = F.avg_pool2d(source - self._last_input, 5, stride=1, padding=2, count_include_pad=False)
            change = change.abs().mean(dim=1, keepdim=True)  # (1, 1, h, w)
            keep = self.settings.hold * (1 - change / self.settings.threshold).clamp(min=0)
            keep = F.interpolate(keep, size=result.shape[-2:], mode="bilinear", align_corners=False)
            residual = keep * self._last_residual + (1 - keep) * residual
        self._last_input, self._last_residual = source, residual
        steadied = (base + residual)[0].permute(1, 2, 0).numpy() / 255.0
        return quantize(steadied, np.uint8)
