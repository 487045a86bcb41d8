"""Colour conventions, written down once: ITU-R BT.601 luma in its two ranges, and greyscale.

After BasicSR's `basicsr/utils/color_util.py`. BT.601 weighs red, green and blue 0.299 / 0.587 /
0.114; the two ranges are two scalings of that one luma, used on purpose for different jobs:

- Studio range (`rgb_to_studio_y`): Y in [16, 235] for 8-bit RGB, as MATLAB's `rgb2ycbcr` and
  BasicSR compute it. Super-resolution papers report PSNR-Y and SSIM-Y on this Y, so the metrics
  use it, and their numbers compare with published tables.
- Full range (`rgb_to_grey`, `RGB_TO_YCBCR`): Y in [0, 1] for RGB in [0, 1], as JPEG/JFIF and
  Pillow's RGB -> "L" and RGB -> "YCbCr" conversions. Greyscale output and the luma colour fix
  use it: black stays black and white stays white.
"""

from __future__ import annotations

import numpy as np
import torch

# BT.601 luma weights of R, G and B.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

# Studio range: Y = 16 + (R, G, B) . STUDIO_Y_WEIGHTS for RGB in [0, 1] (= 219 * LUMA_WEIGHTS, as
# MATLAB and BasicSR write them), so 8-bit black -> 16 and white -> 235.
STUDIO_Y_OFFSET = 16.0
STUDIO_Y_WEIGHTS = (65.481, 128.553, 24.966)

# Full range (JFIF): rows give Y, Cb and Cr (Cb, Cr centred on 0, in [-0.5, 0.5]) for RGB in [0, 1].
RGB_TO_YCBCR = np.array([LUMA_WEIGHTS, (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312)], dtype=np.float32)
YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR).astype(np.float32)
RGB_TO_YCBCR.setflags(write=False)  # shared constants: no caller may change them
YCBCR_TO_RGB.setflags(write=False)


def rgb_to_studio_y(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) float64 studio-range BT.601 Y in [16, 235] (BasicSR's
    `rgb2ycbcr(y_only=True)` computed in float, unrounded): the Y of PSNR-Y and SSIM-Y."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {image.dtype} {image.shape}")
    rgb = image.astype(np.float64) / 255.0
    return STUDIO_Y_OFFSET + rgb @ np.array(STUDIO_Y_WEIGHTS)


def luma_plane(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) full-range BT.601 luma, in the input's dtype and device:
    `rgb_to_grey` for batches of channels-first tensors."""
    weights = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def rgb_to_grey(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) float RGB in [0, 1] -> (...) full-range BT.601 luma, as Pillow's RGB -> "L"
    conversion (unrounded, in the input's float dtype): how greyscale images are written."""
    red, green, blue = LUMA_WEIGHTS
    return rgb[..., 0] * red + rgb[..., 1] * green + rgb[..., 2] * blue
