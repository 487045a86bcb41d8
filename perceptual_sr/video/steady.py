"""Steady detail: the texture the network invents holds still where the scene does.

A feed-forward network invents its texture anew in every frame, from pixels that differ by sensor
noise alone: on a still noisy scene the output at `detail` 1 flickers 1.83x as much from frame to
frame as bicubic upscaling of the same frames (issue #35's scene; 1.47x on the photos of
`tools/video_steadiness.py`), and walls, skin and sky boil.

The fix is the simplest of the video SR literature's recurrent ideas (e.g. FRVSR, Sajjadi et al.
2018, which feeds the previous output forward), without flow: split each output into its own
low band (area-downscaled to the input's size, then bicubic-upscaled back) and the detail above it,
and where the input did not change since the last frame, keep most of the last detail instead of
the new one:

    residual_t = keep * residual_(t-1) + (1 - keep) * (output_t - lowband(output_t))
    keep = hold * max(0, 1 - change / threshold),  change = |box5(input_t - input_(t-1))|

The 5x5 box average before the absolute value lets sensor noise cancel while an edge that moves
does not: motion leaves `keep` at 0 and the frame as the image path makes it. The low band follows
every frame, so nothing lags but invented texture, and only where nothing moved. It is taken from
the output, not the input, so noise the cleanup network removed does not come back through it.

The threshold follows the clip's noise: 0.75 x its noise sigma estimate (in 8-bit levels), at
least 1.5. Measured on 3 BSDS500 test photos (`tools/video_steadiness.py`: a still camera for
flicker, a slow pan of 0.375 LR pixels a frame for LPIPS against the true frames), hold 0.8. With
the low band taken from the input (an earlier version), threshold 4 at noise sigma 2 gave flicker
1.07x bicubic but up to +0.034 LPIPS on the pan (texture carried past a motion too slow to see).
As shipped: sigma 2, threshold 1.5: flicker 0.99-1.00x, pan LPIPS -0.006 to +0.008 against the
image path; sigma 5, threshold 3.75: flicker 0.95-0.97x, pan LPIPS 0.016-0.058 *lower* (the
carried detail averages the noise the network would sharpen).
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
    local change of the input (in 8-bit levels, after the 5x5 average) at which nothing is kept;
    None: from the clip's noise (`threshold_for`)."""

    hold: float = 0.8
    threshold: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.hold < 1.0:
            raise ValueError(f"hold must be in [0, 1), got {self.hold!r}")
        if self.threshold is not None and not self.threshold > 0:
            raise ValueError(f"threshold must be > 0 (8-bit levels) or None, got {self.threshold!r}")

    def threshold_for(self, noise_sigma: float) -> float:
        """The threshold for a clip whose noise sigma (8-bit levels) is `noise_sigma`."""
        return self.threshold if self.threshold is not None else max(1.5, 0.75 * noise_sigma)


class SteadyDetail:
    """Feed it frames in order: `(input uint8 (h, w, 3), output uint8 (H, W, 3)) -> steadied output`.
    `noise_sigma`: the clip's noise in 8-bit levels (`auto_cleanup.noise_sigma`; sets the threshold).
    Holds one input and one residual between calls; a new size starts afresh (a new scene)."""

    def __init__(self, settings: SteadySettings = SteadySettings(), noise_sigma: float = 2.0) -> None:
        self.settings = settings
        self.threshold = settings.threshold_for(noise_sigma)
        self._last_input: torch.Tensor | None = None
        self._last_residual: torch.Tensor | None = None

    def __call__(self, low_res: np.ndarray, output: np.ndarray) -> np.ndarray:
        if self.settings.hold == 0:
            return output
        source = torch.from_numpy(low_res).permute(2, 0, 1)[None].float()  # (1, 3, h, w), 8-bit levels
        result = torch.from_numpy(output).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
        low_band = F.interpolate(result, size=source.shape[-2:], mode="area")
        base = F.interpolate(low_band, size=result.shape[-2:], mode="bicubic", align_corners=False)
        residual = result - base
        if self._last_input is not None and self._last_input.shape == source.shape and \
                self._last_residual.shape == residual.shape:
            change = F.avg_pool2d(source - self._last_input, 5, stride=1, padding=2, count_include_pad=False)
            change = change.abs().mean(dim=1, keepdim=True)  # (1, 1, h, w)
            keep = self.settings.hold * (1 - change / self.threshold).clamp(min=0)
            keep = F.interpolate(keep, size=result.shape[-2:], mode="bilinear", align_corners=False)
            residual = keep * self._last_residual + (1 - keep) * residual
        self._last_input, self._last_residual = source, residual
        steadied = (base + residual)[0].permute(1, 2, 0).numpy() / 255.0
        return quantize(steadied, np.uint8)
