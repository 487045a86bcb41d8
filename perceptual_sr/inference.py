"""Upscaling real images: any input kind, tiled with overlap and blending, fast path, colour fix.

`upscale(model, image)` accepts a Pillow image, a file path (-> Pillow image), a numpy array
(H, W[, C], uint8 / uint16 / float in [0, 1]) or a torch tensor ((C, H, W) or (B, C, H, W) float
in [0, 1]) and returns the same kind. C may be 1 (grey), 3 (RGB) or 4 (RGBA).

Tiling: the input is cut into `tile_size` x `tile_size` tiles overlapping by `tile_overlap` input
pixels. Each tile's output is weighted by a ramp that falls to ~0 at edges shared with a
neighbour, where reflection padding makes the network's output wrong, and the weighted sum is
normalised. Output rows are finalised one strip of tiles at a time, so memory is bounded by one
strip of float32 output plus the final output array. Networks with InstanceNorm see per-tile
statistics, so for them tiled output only approximates untiled output.
"""

from __future__ import annotations

import contextlib
import math
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from perceptual_sr import inference_network
from perceptual_sr.color_fix import COLOR_FIXES, DEFAULT_COLOR_FIX, apply_color_fix, match_histogram  # noqa: F401
from perceptual_sr.image_io import (
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    ImageTooLargeError,
    check_pixel_count,
    decode_pil,
    encode_pil,
    open_image,
    quantize,
    resize_bicubic,
    rgb_to_grey,
)
from perceptual_sr.runtime import autocast, choose_device, resolve_precision

__all__ = ["upscale", "upscale_array", "apply_color_fix", "choose_device", "COLOR_FIXES",
           "DEFAULT_COLOR_FIX", "ImageTooLargeError", "DEFAULT_MAX_PIXELS"]

DEFAULT_TILE_OVERLAP = 16  # input pixels; > the receptive-field radius of the default 4-block net
MIN_TILE_SIZE = 32
MIN_NETWORK_SIDE = 8  # input pixels; smaller images are edge-padded to this, then cropped
_AUTO_TILE_SIZE = {"cpu": 256, "cuda": 512, "mps": 256}
_TILE_MEMORY_BUDGET = {"cpu": 1 << 30, "mps": 1 << 30}  # bytes of activations per batch of tiles
_LIVE_ACTIVATIONS = 6  # rough count of full-resolution feature maps alive at once in forward


def upscale(
    model: nn.Module,
    image: Any,
    *,
    color_fix: str | None = DEFAULT_COLOR_FIX,
    tile_size: int | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    device: str | torch.device | None = None,
    fast: bool = True,
    tile_batch: int | None = None,
    progress: bool = False,
) -> Any:
    """Upscale `image` by `model.scale`; returns the same kind as the input (a path gives PIL).

    color_fix: "histogram", "luma" or None (see `apply_color_fix`).
    tile_size / tile_overlap: tile side and overlap in input pixels; tile_size None picks one
        for the device. Out-of-memory errors are retried with smaller batches and tiles.
    max_pixels: largest accepted input (width x height); above it ImageTooLargeError.
    device: None picks CUDA, then MPS, then CPU. The model is moved there for the call and back.
    fast: channels_last, plus bf16 autocast on CPUs with bf16 hardware, fp16/bf16 autocast on
        CUDA; False runs plain fp32 eager.
    Raises ValueError (or FileNotFoundError for a missing path) with a user-facing message.
    """
    if color_fix not in COLOR_FIXES:
        raise ValueError(f"color_fix must be one of {COLOR_FIXES}, got {color_fix!r}")
    options = dict(color_fix=color_fix, tile_size=tile_size, tile_overlap=tile_overlap,
                   device=device, fast=fast, tile_batch=tile_batch, progress=progress)
    if isinstance(image, (str, Path)):
        image = open_image(image, max_pixels=max_pixels)
    if isinstance(image, Image.Image):
        decoded = decode_pil(image, max_pixels=max_pixels)
        return encode_pil(*_upscale_decoded(model, decoded, **options), like=decoded)
    if isinstance(image, np.ndarray):
        return _upscale_numpy(model, image, max_pixels, options)
    if isinstance(image, torch.Tensor):
        return _upscale_tensor(model, image, max_pixels, options)
    raise ValueError(f"cannot upscale a {type(image).__name__}; pass a PIL image, a path, a numpy array or a tensor")


def _upscale_decoded(model: nn.Module, decoded: DecodedImage, **options: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """DecodedImage -> (upscaled float32 RGB, upscaled alpha or None)."""
    scale = model.scale
    # Work in 16-bit integers: exact for 8-bit and 16-bit output, and memory-light for huge images.
    rgb = upscale_array(model, decoded.rgb, out_dtype=np.uint16, **options)
    rgb = rgb.astype(np.float32) / 65535.0
    alpha = None
    if decoded.alpha is not None:
        # Alpha is not a colour: the network never saw one, so it is upscaled bicubically.
        alpha = np.clip(resize_bicubic(decoded.alpha[..., None], scale)[..., 0], 0.0, 1.0)
    return rgb, alpha


def _upscale_numpy(model: nn.Module, array: np.ndarray, max_pixels: int | None, options: dict) -> np.ndarray:
    if array.ndim == 2:
        channels = 1
    elif array.ndim == 3 and array.shape[2] in (1, 3, 4):
        channels = array.shape[2]
    else:
        raise ValueError(f"expected a numpy image of shape (H, W) or (H, W, 1|3|4), got {array.shape}")
    check_pixel_count(array.shape[1], array.shape[0], max_pixels)
    values = _to_unit_float(array)
    planes = values.reshape(array.shape[0], array.shape[1], channels)
    rgb = np.repeat(planes, 3, axis=2) if channels == 1 else planes[..., :3]
    alpha = planes[..., 3] if channels == 4 else None
    out_dtype = array.dtype.type if array.dtype in (np.uint8, np.uint16) else np.uint16
    upscaled = upscale_array(model, np.ascontiguousarray(rgb), out_dtype=out_dtype, **options)
    if channels == 1:
        upscaled = _from_unit_float(rgb_to_grey(_to_unit_float(upscaled)), array.dtype)[..., None]
    elif array.dtype not in (np.uint8, np.uint16):
        upscaled = _from_unit_float(_to_unit_float(upscaled), array.dtype)
    if alpha is not None:
        alpha_up = np.clip(resize_bicubic(alpha[..., None], model.scale), 0.0, 1.0)
        upscaled = np.concatenate([upscaled, _from_unit_float(alpha_up, array.dtype)], axis=2)
    return upscaled.reshape(upscaled.shape[0], upscaled.shape[1]) if array.ndim == 2 else upscaled


def _upscale_tensor(model: nn.Module, tensor: torch.Tensor, max_pixels: int | None, options: dict) -> torch.Tensor:
    if tensor.ndim not in (3, 4) or tensor.shape[-3] not in (1, 3, 4):
        raise ValueError(f"expected a tensor of shape (C, H, W) or (B, C, H, W) with C in 1, 3, 4, got {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise ValueError(f"expected a float tensor in [0, 1], got dtype {tensor.dtype}")
    batch = tensor.unsqueeze(0) if tensor.ndim == 3 else tensor
    if batch.shape[0] == 0:
        raise ValueError(f"the batch is empty (shape {tuple(tensor.shape)}); pass at least one image")
    outputs = []
    for item in batch:
        hwc = item.detach().float().permute(1, 2, 0).cpu().numpy()
        out = _upscale_numpy(model, hwc, max_pixels, options)  # float32 in -> float32 out
        outputs.append(torch.from_numpy(out).permute(2, 0, 1))
    result = torch.stack(outputs).to(device=tensor.device, dtype=tensor.dtype)
    return result[0] if tensor.ndim == 3 else result


def _to_unit_float(array: np.ndarray) -> np.ndarray:
    if array.size == 0:
        raise ValueError(f"image is empty (shape {array.shape})")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        low, high = float(values.min()), float(values.max())
        if not (math.isfinite(low) and math.isfinite(high)) or low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(f"float images must hold finite values in [0, 1], got range [{low}, {high}]")
        return np.clip(values, 0.0, 1.0)
    raise ValueError(f"unsupported image dtype {array.dtype}; use uint8, uint16 or float in [0, 1]")


def _from_unit_float(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype in (np.uint8, np.uint16):
        peak = np.iinfo(dtype).max
        return np.rint(np.clip(values, 0.0, 1.0) * peak).astype(dtype)
    return np.clip(values, 0.0, 1.0).astype(dtype)


# --- device and fast path ------------------------------------------------------------------


def _autocast(device: torch.device, fast: bool) -> contextlib.AbstractContextManager:
    # MPS stays fp32: autocast support there varies by torch version.
    if not fast or device.type == "mps":
        return contextlib.nullcontext()
    return autocast(device, resolve_precision(device, "auto"))


@contextlib.contextmanager
def _inference_mode(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode on `device` for the call; the model's device and train/eval mode are restored."""
    parameter = next(model.parameters(), None)
    original_device = parameter.device if parameter is not None else device
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.to(original_device).train(was_training)


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return True
    message = str(error).lower()
    return isinstance(error, (RuntimeError, MemoryError)) and (
        "out of memory" in message or "can't allocate memory" in message or isinstance(error, MemoryError))


# --- tiling --------------------------------------------------------------------------------


def upscale_array(
    model: nn.Module,
    rgb: np.ndarray,
    *,
    out_dtype: type = np.uint8,
    color_fix: str | None = DEFAULT_COLOR_FIX,
    tile_size: int | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    device: str | torch.device | None = None,
    fast: bool = True,
    tile_batch: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1] -> (sH, sW, 3) array of `out_dtype` (uint8, uint16 or float32)."""
    if color_fix not in COLOR_FIXES:
        raise ValueError(f"color_fix must be one of {COLOR_FIXES}, got {color_fix!r}")
    if tile_size is not None and (not isinstance(tile_size, int) or tile_size < MIN_TILE_SIZE):
        raise ValueError(f"tile_size must be an integer >= {MIN_TILE_SIZE} or None, got {tile_size!r}")
    if not isinstance(tile_overlap, int) or tile_overlap < 0:
        raise ValueError(f"tile_overlap must be a non-negative integer, got {tile_overlap!r}")
    if tile_size is not None and 2 * tile_overlap >= tile_size:
        raise ValueError(f"tile_overlap ({tile_overlap}) must be less than half of tile_size ({tile_size})")
    if tile_batch is not None and (not isinstance(tile_batch, int) or isinstance(tile_batch, bool) or tile_batch < 1):
        raise ValueError(f"tile_batch must be a positive integer or None, got {tile_batch!r}")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"expected a non-empty (H, W, 3) array, got shape {rgb.shape}")
    device = choose_device(device)
    height, width = rgb.shape[:2]
    # The first layer's 9x9 reflection padding needs 5 pixels a side: smaller images (icons, 1-pixel
    # strips) are extended by repeating their edge pixels, and the output cropped back.
    network_input = np.pad(rgb, ((0, max(0, MIN_NETWORK_SIDE - height)), (0, max(0, MIN_NETWORK_SIDE - width)), (0, 0)),
                           mode="edge")
    tile = tile_size or _AUTO_TILE_SIZE.get(device.type, 256)
    overlap = min(tile_overlap, (tile - 1) // 2)
    channels = getattr(getattr(model, "config", None), "channels", 64)
    batch = tile_batch or _auto_tile_batch(device, tile, model.scale, channels, fast)
    network = _inference_network(model, device, fast)  # a copy: the shared model is never moved
    with _inference_mode(network, device):
        while True:
            try:
                out = _run_tiles(network, network_input, out_dtype, tile, overlap, batch, device, fast, progress)
                out = out[:height * model.scale, :width * model.scale]
                break
            except (RuntimeError, MemoryError) as error:
                if not _is_out_of_memory(error):
                    raise
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                if batch > 1:
                    batch //= 2  # fewer tiles at once before smaller tiles: small tiles waste overlap
                elif tile // 2 >= MIN_TILE_SIZE:
                    tile //= 2
                    overlap = min(overlap, tile // 4)
                else:
                    raise MemoryError(
                        f"out of memory on {device} even with {tile}-pixel tiles; free memory or use device='cpu'"
                    ) from error
    if color_fix is not None:
        out = apply_color_fix(out, rgb, model.scale, color_fix)
    return out


def _inference_network(model: nn.Module, device: torch.device, fast: bool) -> nn.Module:
    """For a PerceptualSR: a copy on `device` to run, built once per device and kept until the
    weights change, so concurrent callers never move or mutate the shared model. fast: the
    rewritten network of `inference_network.build` (same function up to float rounding, about
    2x less work); otherwise a plain eval-mode copy, the reference. Other modules (an ONNX
    Runtime model) are used as they are.
    """
    if not hasattr(model, "fused_for_inference"):
        return model
    with torch.no_grad():
        tensors = list(model.state_dict().values())
        # Versions catch in-place updates, pointers replaced tensors, the checksum edits through .data.
        key = (tuple(t._version for t in tensors), tuple(t.data_ptr() for t in tensors),
               float(sum(t.double().sum() for t in tensors if t.is_floating_point())))
    slot = (str(device), fast)
    with _NETWORK_CACHE_LOCK:
        cache = model.__dict__.setdefault("_inference_cache", {})
        if cache.get(slot, (None,))[0] != key:
            network = inference_network.build(model) if fast else model.eval_copy()
            if fast and device.type != "mps":
                network = network.to(memory_format=torch.channels_last)
            cache[slot] = (key, network.to(device))
        return cache[slot][1]


_NETWORK_CACHE_LOCK = threading.Lock()


def _auto_tile_batch(device: torch.device, tile: int, scale: int, channels: int, fast: bool) -> int:
    bytes_per_value = 2 if fast else 4
    per_tile = channels * (tile * scale) ** 2 * bytes_per_value * _LIVE_ACTIVATIONS
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = free // 4
    else:
        budget = _TILE_MEMORY_BUDGET.get(device.type, 1 << 30)
    return int(max(1, min(8, budget // per_tile)))


def plan_tiles(length: int, tile: int, overlap: int) -> tuple[int, list[int]]:
    """(tile size, start positions) covering `length` pixels with the fewest equal tiles of at
    most `tile` pixels overlapping by at least `overlap`: no tile computes more than it must (a
    256-px side takes two 136-px tiles instead of two 192-px ones)."""
    if length <= tile:
        return length, [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    size = overlap + math.ceil((length - overlap) / count)
    step = (length - size) / (count - 1)
    return size, [round(k * step) for k in range(count)]


def _edge_ramp(length: int, ramp: int, lead: bool, trail: bool) -> np.ndarray:
    """1-D blend weights: rising over `ramp` pixels on edges shared with a neighbour tile."""
    weights = np.ones(length, dtype=np.float32)
    if ramp > 0:
        # Strictly positive, so every output pixel has a non-zero total weight.
        rise = (np.arange(ramp, dtype=np.float32) + 0.5) / ramp
        if lead:
            weights[:ramp] = np.minimum(weights[:ramp], rise)
        if trail:
            weights[-ramp:] = np.minimum(weights[-ramp:], rise[::-1])
    return weights


def _run_tiles(model: nn.Module, rgb: np.ndarray, out_dtype: type, tile: int, overlap: int, batch: int,
               device: torch.device, fast: bool, progress: bool) -> np.ndarray:
    height, width = rgb.shape[:2]
    scale = model.scale
    (tile_h, ys), (tile_w, xs) = plan_tiles(height, tile, overlap), plan_tiles(width, tile, overlap)
    ramp = overlap * scale
    weight_y = [_edge_ramp(tile_h * scale, ramp, i > 0, i < len(ys) - 1) for i in range(len(ys))]
    weight_x = [_edge_ramp(tile_w * scale, ramp, j > 0, j < len(xs) - 1) for j in range(len(xs))]
    out = np.empty((height * scale, width * scale, 3), dtype=out_dtype)
    # One strip of tile rows, accumulated in float32 and finalised as soon as no later tile touches it.
    strip = np.zeros((tile_h * scale, width * scale, 3), dtype=np.float32)
    strip_weight = np.zeros((tile_h * scale, width * scale, 1), dtype=np.float32)
    source = torch.from_numpy(rgb).permute(2, 0, 1)  # (3, H, W)
    memory_format = torch.channels_last if fast and device.type != "mps" else torch.contiguous_format
    bar = tqdm(total=len(ys) * len(xs), desc="tiles", unit="tile", disable=not progress, leave=False)
    for i, y in enumerate(ys):
        for first in range(0, len(xs), batch):
            columns = list(range(first, min(first + batch, len(xs))))
            tiles = torch.stack([source[:, y:y + tile_h, xs[j]:xs[j] + tile_w] for j in columns])
            tiles = tiles.to(device).contiguous(memory_format=memory_format)  # (B, 3, th, tw)
            with _autocast(device, fast):
                result = model(tiles)  # (B, 3, s*th, s*tw)
            result = result.float().clamp_(0, 1).permute(0, 2, 3, 1).cpu().numpy()
            for k, j in enumerate(columns):
                weight = (weight_y[i][:, None] * weight_x[j][None, :])[..., None]
                x0 = xs[j] * scale
                strip[:, x0:x0 + tile_w * scale] += result[k] * weight
                strip_weight[:, x0:x0 + tile_w * scale] += weight
            bar.update(len(columns))
        done = ((ys[i + 1] if i + 1 < len(ys) else height) - y) * scale
        out[y * scale:y * scale + done] = quantize(strip[:done] / strip_weight[:done], out_dtype)
        keep = len(strip) - done  # rows the next tile row adds to: shift them to the top
        if keep > 0:
            strip[:keep] = strip[done:].copy()
            strip_weight[:keep] = strip_weight[done:].copy()
        strip[keep:] = 0
        strip_weight[keep:] = 0
    bar.close()
    return out
