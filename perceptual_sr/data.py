"""Pixel convention and the degradation that turns a high-resolution image into its low-resolution input.

Convention: inside the package, images are float32 RGB tensors, (3, H, W) or (B, 3, H, W),
in [0, 1]. Conversion from and to uint8 arrays / PIL happens here, at the edges.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

DEGRADATIONS = ("blur", "bicubic")
BLUR_SIGMA = 1.0  # Johnson et al. 2016, section 4.2: Gaussian blur sigma 1.0 before downsampling
BLUR_TRUNCATE = 3.0  # kernel radius = 3 sigma -> 7x7 kernel for sigma 1


def uint8_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {image.dtype} {image.shape}")
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255.0)


def tensor_to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounded to nearest."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got shape {tuple(image.shape)}")
    return image.detach().float().clamp(0, 1).mul(255.0).round().byte().permute(1, 2, 0).cpu().numpy()


def crop_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Crop the bottom/right edges so height and width are multiples of `multiple`."""
    height, width = image.shape[:2]
    return image[: height - height % multiple, : width - width % multiple]


def degrade(hr: np.ndarray, scale: int, kind: str = "blur") -> np.ndarray:
    """The low-resolution version of an (H, W, 3) uint8 image; H and W must be multiples of `scale`.

    "blur": Gaussian blur (sigma 1.0, 7x7 kernel, reflected borders) on the uint8 values,
    rounded back to uint8, then bicubic downscaling; the paper's training degradation.
    "bicubic": bicubic downscaling only; the common benchmark protocol.
    Bicubic downscaling is PIL's antialiased BICUBIC resize (a = -0.5, like MATLAB's imresize).
    Deterministic: the same input always gives the same bytes.
    """
    if kind not in DEGRADATIONS:
        raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {kind!r}")
    if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {hr.dtype} {hr.shape}")
    height, width = hr.shape[:2]
    if height % scale or width % scale:
        raise ValueError(f"image size {width}x{height} is not a multiple of scale {scale}; use crop_to_multiple")
    if kind == "blur":
        blurred = gaussian_filter(hr.astype(np.float32), sigma=(BLUR_SIGMA, BLUR_SIGMA, 0),
                                  mode="reflect", truncate=BLUR_TRUNCATE)
        hr = np.clip(np.rint(blurred), 0, 255).astype(np.uint8)
    lr = Image.fromarray(hr).resize((width // scale, height // scale), Image.Resampling.BICUBIC)
    return np.asarray(lr)


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """PIL bicubic upscaling of an (H, W, C) uint8 image: the baseline every table compares with."""
    height, width = lr.shape[:2]
    return np.asarray(Image.fromarray(lr).resize((width * scale, height * scale), Image.Resampling.BICUBIC))
