"""Upscaling real images: the front door. Any input kind in, the same kind out.

`upscale(model, image)` accepts a Pillow image, a file path (-> Pillow image), a numpy array
(H, W[, C], uint8 / uint16 / float in [0, 1]) or a torch tensor ((C, H, W) or (B, C, H, W) float
in [0, 1]) and returns the same kind. C may be 1 (grey), 3 (RGB) or 4 (RGBA). The pixels are
read and written by `image_io`, upscaled in tiles by `tiling`, on the network `inference_network`
builds, and colour-fixed by `color_fix`. Integer images stay integer all the way: an 8-bit
photo is upscaled to 16-bit integers, colour-fixed, and rounded to 8 bits, with no full-size
float copy of the colour image (a greyscale result's luma is computed in float).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
from PIL import Image
from torch import nn

from perceptual_sr.inference.color_fix import COLOR_FIXES, DEFAULT_COLOR_FIX, apply_color_fix
from perceptual_sr.inference.tiling import DEFAULT_TILE_OVERLAP, MIN_NETWORK_SIDE, upscale_tiled, work_pixels
from perceptual_sr.networks import inference_network
from perceptual_sr.utils.config_flags import is_whole_number
from perceptual_sr.utils.image_io import (
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    ImageTooLargeError,
    check_loaded,
    check_pixel_count,
    decode_pil,
    encode_pil,
    open_image,
    resize_bicubic,
    resize_to_outscale,
    rgb_to_grey,
)
from perceptual_sr.utils.pixels import quantize
from perceptual_sr.utils.runtime import choose_device, resolve_precision

__all__ = ["upscale", "upscale_with", "upscale_array", "UpscaleOptions", "apply_color_fix", "choose_device", "COLOR_FIXES",
           "DEFAULT_COLOR_FIX", "ImageTooLargeError", "DEFAULT_MAX_PIXELS"]

_TORCH_DTYPES = {np.uint8: torch.uint8, np.uint16: torch.uint16, np.float32: torch.float32}


@dataclass(frozen=True)
class UpscaleOptions:
    """How to upscale, checked once at the front door and passed down whole.

    color_fix: "histogram", "luma" or None (see `apply_color_fix`).
    tile_size / tile_overlap: tile side and overlap in input pixels; tile_size None picks one
        for the device. Out-of-memory errors are retried with smaller batches and tiles.
    max_pixels: largest accepted input (width x height); above it ImageTooLargeError. None: no limit.
    device: None picks CUDA, then MPS, then CPU. The model itself is never moved: a copy runs there.
    fast: the rewritten network (`inference_network`), channels_last, bf16 autocast on CPUs where
        it is measured faster, fp16/bf16 autocast on CUDA; False runs a plain fp32 copy of the model.
    tile_batch: tiles per forward pass; None: what fits the device.
    progress: a tqdm bar over the tiles.
    """

    color_fix: str | None = DEFAULT_COLOR_FIX
    tile_size: int | None = None
    tile_overlap: int = DEFAULT_TILE_OVERLAP
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    device: str | torch.device | None = None
    fast: bool = True
    tile_batch: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.color_fix not in COLOR_FIXES:
            raise ValueError(f"color_fix must be one of {COLOR_FIXES}, got {self.color_fix!r}")
        for name in ("tile_size", "tile_batch", "max_pixels"):
            value = getattr(self, name)
            if value is not None and (not is_whole_number(value) or value < 1):
                raise ValueError(f"{name} must be a positive whole number or None (automatic), got {value!r}")
        if not is_whole_number(self.tile_overlap) or self.tile_overlap < 0:
            raise ValueError(f"tile_overlap must be a whole number of pixels >= 0, got {self.tile_overlap!r}")
        # numpy integers (np.int64 from a shape, say) count as whole numbers: store them as ints.
        for name in ("tile_size", "tile_batch", "max_pixels", "tile_overlap"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, int(getattr(self, name)))


@overload
def upscale(model: nn.Module, image: Image.Image | str | Path, **options: Any) -> Image.Image: ...
@overload
def upscale(model: nn.Module, image: np.ndarray, **options: Any) -> np.ndarray: ...
@overload
def upscale(model: nn.Module, image: torch.Tensor, **options: Any) -> torch.Tensor: ...


def upscale(model: nn.Module, image: Any, **options: Any) -> Image.Image | np.ndarray | torch.Tensor:
    """Upscale `image` by `model.scale`; returns the same kind as the input (a path gives PIL).

    model: a `PerceptualSR` (run as `inference_network.prepare` makes it, never moved or changed)
        or a ready network such as `export.OnnxSR`. `options`: the fields of `UpscaleOptions`.
    Tensors stay on their device; without a colour fix they are upscaled there end to end.
    Raises ValueError (or FileNotFoundError for a missing path) with a user-facing message.
    """
    settings = UpscaleOptions(**options)
    device = choose_device(settings.device)
    return upscale_with(inference_network.prepare(model, device, settings.fast), image, settings, device)


def check_input(image: Any, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
    """Raise ValueError (ImageTooLargeError above `max_pixels`) for anything `upscale` would refuse,
    from its kind, shape, dtype and size alone: cheap, so it runs before anything reads the pixels."""
    if isinstance(image, Image.Image):
        check_pixel_count(image.width, image.height, max_pixels)  # from the header: before decoding
        check_loaded(image)
    elif isinstance(image, np.ndarray):
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))):
            raise ValueError(f"expected a numpy image of shape (H, W) or (H, W, 1|3|4), got {image.shape}")
        if not (image.dtype in (np.uint8, np.uint16) or np.issubdtype(image.dtype, np.floating)):
            raise ValueError(f"unsupported image dtype {image.dtype}; use uint8, uint16 or float in [0, 1]")
        check_pixel_count(image.shape[1], image.shape[0], max_pixels)
    elif isinstance(image, torch.Tensor):
        if image.is_meta or image.layout != torch.strided:
            raise ValueError(f"expected a dense tensor holding pixels, got a {image.layout} tensor on "
                             f"{image.device}; pass tensor.to_dense() or one that holds data")
        if image.ndim not in (3, 4) or image.shape[-3] not in (1, 3, 4):
            raise ValueError(f"expected a tensor of shape (C, H, W) or (B, C, H, W) with C in 1, 3, 4, "
                             f"got {tuple(image.shape)}")
        if not image.is_floating_point():
            raise ValueError(f"expected a float tensor in [0, 1], got dtype {image.dtype}")
        if image.ndim == 4 and image.shape[0] == 0:
            raise ValueError(f"the batch is empty (shape {tuple(image.shape)}); pass at least one image")
        check_pixel_count(image.shape[-1], image.shape[-2], max_pixels)
    elif not isinstance(image, (str, Path)):
        raise ValueError(f"cannot upscale a {type(image).__name__}; pass a PIL image, a path, a numpy array "
                         "or a tensor")
    if isinstance(image, (Image.Image, np.ndarray, torch.Tensor)):
        check_work_pixels(*((image.width, image.height) if isinstance(image, Image.Image) else
                            (image.shape[-2], image.shape[-3]) if isinstance(image, torch.Tensor) else
                            (image.shape[1], image.shape[0])), max_pixels)


def check_work_pixels(width: int, height: int, max_pixels: int | None) -> None:
    """ImageTooLargeError when what the network would run on exceeds `max_pixels`: a thin strip is
    padded to MIN_NETWORK_SIDE, so a 1 x 1,048,576 image costs as much as 8 x 1,048,576 pixels."""
    work = work_pixels(width, height)
    if max_pixels is not None and work > max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} pixels; the network needs {MIN_NETWORK_SIDE} pixels a side, so it would "
            f"process {work:,} pixels, more than max_pixels={max_pixels:,}; crop or pad it to a wider shape first")


def upscale_with(network: nn.Module, image: Any, options: UpscaleOptions, device: torch.device,
                 cleanup: nn.Module | None = None) -> Any:
    """`upscale` with a network already prepared for `device` (the pipeline keeps one per blend).
    cleanup: an LR -> LR module (`restorer.CleanupAt`) run on the input first; the colour fix
    then takes its colour from the cleaned input, not from the damaged one."""
    if isinstance(image, (str, Path)):
        image = open_image(image, max_pixels=options.max_pixels)
    check_input(image, options.max_pixels)
    if isinstance(image, Image.Image):
        decoded = decode_pil(image, max_pixels=options.max_pixels)
        return encode_pil(*_upscale_decoded(network, decoded, options, device, cleanup), like=decoded)
    if isinstance(image, np.ndarray):
        return _upscale_numpy(network, image, options, device, cleanup)
    return _upscale_tensor(network, image, options, device, cleanup)  # check_input let nothing else through


def apply_outscale(result: Any, scale: int, outscale: float) -> Any:
    """An x`scale` result (PIL or numpy) resized with Lanczos to `outscale` times its input's size.
    The size comes from the result, not the input: an EXIF-rotated photo is upright only after
    decoding, so its file's width is the result's height."""
    if outscale == scale:
        return result
    size = result.size if isinstance(result, Image.Image) else (result.shape[1], result.shape[0])
    return resize_to_outscale(result, (size[0] // scale, size[1] // scale), outscale)


def _upscale_decoded(network: nn.Module, decoded: DecodedImage, options: UpscaleOptions,
                     device: torch.device, cleanup: nn.Module | None) -> tuple[np.ndarray, np.ndarray | None]:
    """DecodedImage -> (upscaled uint16 RGB, upscaled float alpha or None)."""
    scale = network.scale
    # 16-bit integers: exact for 8-bit and 16-bit output, and memory-light for huge images.
    rgb = _upscale_rgb(network, decoded.rgb, np.uint16, options, device, cleanup)
    alpha = None
    if decoded.alpha is not None:
        # Alpha is not a colour: the network never saw one, so it is upscaled bicubically.
        alpha = np.clip(resize_bicubic(decoded.alpha[..., None], scale)[..., 0], 0.0, 1.0)
    return rgb, alpha


def _upscale_numpy(network: nn.Module, array: np.ndarray, options: UpscaleOptions, device: torch.device,
                   cleanup: nn.Module | None = None) -> np.ndarray:
    """An array `check_input` passed -> its upscaling, of the same kind."""
    channels = 1 if array.ndim == 2 else array.shape[2]
    values = _to_unit_float(array)
    planes = values.reshape(array.shape[0], array.shape[1], channels)
    rgb = np.repeat(planes, 3, axis=2) if channels == 1 else planes[..., :3]
    alpha = planes[..., 3] if channels == 4 else None
    # Integers work in 16 bits (as Pillow images do) and are rounded to the caller's depth at the end.
    out_dtype = np.uint16 if array.dtype in (np.uint8, np.uint16) else np.float32
    upscaled = _upscale_rgb(network, np.ascontiguousarray(rgb), out_dtype, options, device, cleanup)
    if channels == 1:
        upscaled = quantize(rgb_to_grey(quantize(upscaled, np.float32)), array.dtype.type)[..., None]
    else:
        upscaled = quantize(upscaled, array.dtype.type)  # uint16 -> uint8 exactly; float32 -> the caller's float
    if alpha is not None:
        alpha_up = resize_bicubic(alpha[..., None], network.scale)
        upscaled = np.concatenate([upscaled, quantize(alpha_up, array.dtype.type)], axis=2)
    return upscaled.reshape(upscaled.shape[0], upscaled.shape[1]) if array.ndim == 2 else upscaled


def _upscale_tensor(network: nn.Module, tensor: torch.Tensor, options: UpscaleOptions,
                    device: torch.device, cleanup: nn.Module | None) -> torch.Tensor:
    """A tensor `check_input` passed -> its upscaling, on its device and in its dtype."""
    batch = tensor.unsqueeze(0) if tensor.ndim == 3 else tensor
    if options.color_fix is not None or batch.shape[1] != 3:
        # The colour fix, grey and alpha live in numpy: round-trip through the array path.
        outputs = [torch.from_numpy(_upscale_numpy(network, item.detach().float().permute(1, 2, 0).cpu().numpy(),
                                                   options, device, cleanup)).permute(2, 0, 1) for item in batch]
    else:  # RGB without a colour fix: tensor in, tensor out, on the tensor's device
        _check_unit_range(float(batch.min()), float(batch.max()))
        outputs = [_upscale_planes(network, _cleaned(cleanup, item.detach().float(), options, device),
                                   torch.float32, options, device) for item in batch]
    result = torch.stack(outputs).to(device=tensor.device, dtype=tensor.dtype)
    return result[0] if tensor.ndim == 3 else result


def _check_unit_range(low: float, high: float) -> None:
    if not (math.isfinite(low) and math.isfinite(high)) or low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(f"float images must hold finite values in [0, 1], got range [{low}, {high}]")


def _to_unit_float(array: np.ndarray) -> np.ndarray:
    if array.size == 0:
        raise ValueError(f"image is empty (shape {array.shape})")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        _check_unit_range(float(values.min()), float(values.max()))
        return np.clip(values, 0.0, 1.0)
    raise ValueError(f"unsupported image dtype {array.dtype}; use uint8, uint16 or float in [0, 1]")


# --- device, network and tiles ---------------------------------------------------------------


def upscale_array(model: nn.Module, rgb: np.ndarray, *, out_dtype: type = np.uint8, cleanup: nn.Module | None = None,
                  **options: Any) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1] -> (sH, sW, 3) array of `out_dtype` (uint8, uint16 or float32).
    `model` and `options` as for `upscale`; `cleanup` as for `upscale_with` (moved to the device)."""
    settings = UpscaleOptions(**options)
    device = choose_device(settings.device)
    if cleanup is not None and any(p.device != device for p in cleanup.parameters()):
        cleanup = copy.deepcopy(cleanup).to(device)  # a copy: the caller's module may be a pipeline's cached one
    return _upscale_rgb(inference_network.prepare(model, device, settings.fast), rgb, out_dtype, settings, device,
                        cleanup)


def _upscale_rgb(network: nn.Module, rgb: np.ndarray, out_dtype: type, options: UpscaleOptions,
                 device: torch.device, cleanup: nn.Module | None = None) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"expected a non-empty (H, W, 3) array, got shape {rgb.shape}")
    out_dtype = np.dtype(out_dtype).type  # np.uint8 and np.dtype("uint8") alike
    if out_dtype not in _TORCH_DTYPES:
        raise ValueError(f"out_dtype must be one of uint8, uint16, float32, got {out_dtype!r}")
    planes = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)  # a view
    if cleanup is not None:
        planes = _cleaned(cleanup, planes, options, device)
        rgb = planes.permute(1, 2, 0).numpy()  # the colour fix takes its colour from the cleaned input
    out = _upscale_planes(network, planes, _TORCH_DTYPES[out_dtype], options, device).permute(1, 2, 0).numpy()
    if options.color_fix is not None:
        out = apply_color_fix(out, rgb, network.scale, options.color_fix)
    return out


def _upscale_planes(network: nn.Module, planes: torch.Tensor, out_dtype: torch.dtype, options: UpscaleOptions,
                    device: torch.device) -> torch.Tensor:
    """(3, H, W) float in [0, 1] -> (3, sH, sW) of `out_dtype`, on the planes' device."""
    fast = options.fast and device.type != "mps"
    precision = resolve_precision(device, "auto") if fast else None
    with torch.inference_mode():
        return upscale_tiled(network, planes, out_dtype=out_dtype, tile_size=options.tile_size,
                             tile_overlap=options.tile_overlap, tile_batch=options.tile_batch, device=device,
                             precision=precision, channels_last=fast, progress=options.progress)


# The cleanup network sees 50-58 input pixels around each output pixel (`CleanupConfig.receptive_field`):
# its tiles overlap by more than half that, so a tiled cleanup equals an untiled one up to float rounding.
CLEANUP_TILE_OVERLAP = 32


def _cleaned(cleanup: nn.Module | None, planes: torch.Tensor, options: UpscaleOptions,
             device: torch.device) -> torch.Tensor:
    """(3, H, W) float in [0, 1] -> the same, cleaned by `cleanup` (an LR -> LR module of scale 1)."""
    if cleanup is None:
        return planes
    tile_size = None if options.tile_size is None else max(options.tile_size, 2 * CLEANUP_TILE_OVERLAP + 2)
    with torch.inference_mode():
        # Tiles start at even pixels: the network groups pixels in 2x2 blocks (pixel-unshuffle).
        return upscale_tiled(cleanup, planes, out_dtype=torch.float32, tile_size=tile_size,
                             tile_overlap=CLEANUP_TILE_OVERLAP, tile_batch=options.tile_batch, device=device,
                             precision=None, channels_last=False, alignment=2)
