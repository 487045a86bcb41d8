"""Pixel values between their kinds: unsigned integers (8 and 16 bit) and floats in [0, 1], as
numpy arrays and as torch tensors, rounded the same way everywhere."""

from __future__ import annotations

import numpy as np
import torch


def quantize(values: np.ndarray, dtype: type) -> np.ndarray:
    """Float values in [0, 1], or uint8 / uint16 over their full range -> `dtype`: integers are
    rounded to nearest over their full range (uint8 0..255, uint16 0..65535); float dtypes are
    clipped to [0, 1]. uint16 -> uint8 is integer arithmetic, with no float copy of the image."""
    if values.dtype == dtype and np.issubdtype(dtype, np.integer):
        return values
    if values.dtype == np.uint16 and dtype == np.uint8:
        return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)  # = rint(v / 65535 * 255)
    if values.dtype == np.uint8 and dtype == np.uint16:
        return values.astype(np.uint16) * 257
    if np.issubdtype(values.dtype, np.integer):
        values = dequantize(values)
    if np.issubdtype(dtype, np.integer):
        peak = np.iinfo(dtype).max
        return np.rint(np.clip(values, 0.0, 1.0) * peak).astype(dtype)
    return np.clip(values, 0.0, 1.0).astype(dtype)


def dequantize(values: np.ndarray) -> np.ndarray:
    """Unsigned integers over their full range (uint8 0..255, uint16 0..65535) -> float32 in [0, 1];
    float values -> float32, clipped to [0, 1]. The inverse of `quantize`, up to its rounding."""
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.float32) / np.iinfo(values.dtype).max
    if np.issubdtype(values.dtype, np.floating):
        return np.clip(values, 0.0, 1.0).astype(np.float32)
    raise ValueError(f"unsupported pixel dtype {values.dtype}; use uint8, uint16 or float in [0, 1]")


_TENSOR_PEAKS = {torch.uint8: 255.0, torch.uint16: 65535.0}


def quantize_tensor(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`quantize` for tensors, on any device: float values -> `dtype`, clipped to [0, 1]; uint8 /
    uint16 rounded to nearest over their full range. The argument is left unchanged."""
    values = values.clamp(0.0, 1.0)  # a new tensor: the in-place steps below never touch the argument
    if dtype.is_floating_point:
        return values.to(dtype)
    return values.mul_(_TENSOR_PEAKS[dtype]).round_().to(dtype)


def dequantize_tensor(values: torch.Tensor) -> torch.Tensor:
    """`dequantize` for tensors: uint8 / uint16 over their full range -> float32 in [0, 1]; float
    values -> float32, clipped to [0, 1]. On the input's device."""
    if values.dtype in _TENSOR_PEAKS:
        return values.to(torch.float32).div_(_TENSOR_PEAKS[values.dtype])
    if values.is_floating_point():
        return values.to(torch.float32).clamp(0.0, 1.0)
    raise ValueError(f"unsupported pixel dtype {values.dtype}; use uint8, uint16 or float in [0, 1]")


def uint8_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 array -> (3, H, W) float32 tensor in [0, 1] (a copy; the array is not aliased)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {image.dtype} {image.shape}")
    # torch must not alias a read-only buffer (a memory map, a PIL image's bytes): np.require
    # copies only when the array is not already contiguous and writable.
    image = np.require(image, requirements=["C_CONTIGUOUS", "WRITEABLE"])
    return dequantize_tensor(torch.from_numpy(image).permute(2, 0, 1))


def tensor_to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float tensor in [0, 1], on any device -> (H, W, 3) uint8 array, rounded to nearest."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got shape {tuple(image.shape)}")
    return quantize_tensor(image.detach().float(), torch.uint8).permute(1, 2, 0).cpu().numpy()
