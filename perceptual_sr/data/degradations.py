"""Real-photo degradations: a seeded random chain that turns an HR crop into the LR a user uploads.

Follows Real-ESRGAN's "high-order" degradation model (Wang et al. 2021, "Real-ESRGAN: Training
Real-World Blind Super-Resolution with Pure Synthetic Data", section 3), with the parameter ranges
of its released `options/train_realesrnet_x4plus.yml` as defaults (tuned there for x4):

    stage 1: blur -> random resize -> noise -> JPEG                           (section 3.1)
    stage 2, with probability `second_order_prob`: blur (prob 0.8) -> resize -> noise   (3.2)
    final:   [resize to 1/scale + sinc filter (prob 0.8)] and [JPEG], in random order   (3.3)

A share `clean_prob` of samples is instead exactly `degrade(hr, scale, "bicubic")` (Pillow
bicubic x1/scale of the 8-bit HR), so that the clean inputs of the benchmarks do not get worse.
A share `upload_prob` of the others is made the way most web and messenger images are: that clean
LR, Gaussian noise (sigma from `noise_sigma_2`) on some, then one JPEG (`jpeg_quality_2`).

Everything random comes from one `torch.Generator`: the same seed gives the same bytes, and the
global torch / numpy / random state is never touched (the training loader seeds each sample by its
step, so `--resume` stays exact). Tensors are (3, H, W) float32 in [0, 1], and the work is done on
the CPU (the LR comes back there); arguments are never modified. The HR is cropped at the
bottom/right to a multiple of `scale`, as `dataset.crop_to_multiple` does.
Deviations from Real-ESRGAN, each for CPU speed or realism: Poisson noise is drawn as its Gaussian
approximation; bilinear/bicubic downscales are antialiased; negligible outer rings of a blur kernel
are trimmed; JPEG is libjpeg through Pillow (integer quality, 4:2:0) instead of DiffJPEG.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from perceptual_sr.data.kernels import blur, gaussian_kernel, sinc_kernel
from perceptual_sr.utils.color import luma_plane
from perceptual_sr.utils.pixels import dequantize_tensor, quantize_tensor, tensor_to_uint8, uint8_to_tensor

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
RESIZE_DIRECTIONS = ("up", "down", "keep")
MAX_RESIZE = 4.0  # the largest random upscale in the chain; Real-ESRGAN's is 1.5
POISSON_LEVELS = 256  # Real-ESRGAN scales by 2**ceil(log2(distinct values)): 256 for 8-bit photos


@dataclass(frozen=True)
class DegradationConfig:
    """The ranges of the chain; `_2` fields are the second stage's. Ranges are (low, high), drawn
    uniformly; weights (`kernel_probs` in KERNEL_TYPES order, `resize_probs` up/down/keep) need not
    sum to 1. Noise sigmas are in 8-bit levels (of 255). Defaults: Real-ESRGAN x4plus."""

    clean_prob: float = 0.2
    upload_prob: float = 0.0  # of the rest: the clean LR, Gaussian noise (upload_noise_prob), one JPEG
    upload_noise_prob: float = 0.5
    second_order_prob: float = 1.0  # Real-ESRGAN always runs stage 2 (only its blur is optional)
    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    blur_sigma_2: tuple[float, float] = (0.2, 1.5)
    betag_range: tuple[float, float] = (0.5, 4.0)  # generalized Gaussian shape
    betap_range: tuple[float, float] = (1.0, 2.0)  # plateau shape
    sinc_prob: float = 0.1
    sinc_prob_2: float = 0.1
    second_blur_prob: float = 0.8
    final_sinc_prob: float = 0.8
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    resize_probs_2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range_2: tuple[float, float] = (0.3, 1.2)  # relative to the final LR size
    gaussian_noise_prob: float = 0.5  # else Poisson
    gaussian_noise_prob_2: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 30.0)
    noise_sigma_2: tuple[float, float] = (1.0, 25.0)
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    poisson_scale_2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob: float = 0.4
    gray_noise_prob_2: float = 0.4
    jpeg_quality: tuple[int, int] = (30, 95)
    jpeg_quality_2: tuple[int, int] = (30, 95)  # the last JPEG

    def __post_init__(self):
        for spec in fields(self):
            name, value = spec.name, getattr(self, spec.name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, name, value)
            numbers = value if isinstance(value, tuple) else (value,)
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
                raise ValueError(f"{name} must hold finite numbers, got {value!r}")
            pair = isinstance(value, tuple) and len(value) == 2
            if name.endswith("_prob") or "_prob_" in name:
                valid, need = 0.0 <= value <= 1.0, "a probability in [0, 1]"
            elif "_probs" in name:
                count = len(KERNEL_TYPES) if name == "kernel_probs" else len(RESIZE_DIRECTIONS)
                valid = len(value) == count and min(value) >= 0 and sum(value) > 0
                need = f"{count} non-negative weights, not all 0"
            elif name == "kernel_sizes":
                valid, need = bool(value) and all(k == int(k) and k >= 1 and k % 2 for k in value), "odd sizes >= 1"
            elif name.startswith("jpeg_quality"):
                valid = pair and all(q == int(q) for q in value) and 1 <= value[0] <= value[1] <= 100
                need = "whole qualities (low, high), 1 <= low <= high <= 100"
            elif name.startswith("resize_range"):  # down draws from [low, 1], up from [1, high]
                # Above MAX_RESIZE an HR crop would be resized to gigapixels (1e6: 765 TB).
                valid = pair and 0 < value[0] <= 1 <= value[1] <= MAX_RESIZE
                need = f"(low, high) with 0 < low <= 1 <= high <= {MAX_RESIZE}"
            elif name.startswith(("noise_sigma", "poisson_scale")):
                valid, need = pair and 0 <= value[0] <= value[1], "(low, high) with 0 <= low <= high"
            else:
                valid, need = pair and 0 < value[0] <= value[1], "(low, high) with 0 < low <= high"
            if not valid:
                raise ValueError(f"{name} must be {need}, got {value!r}")


# Named settings of the chain, for `train.py --degradation NAME`. "realesrgan" is the paper's
# (its median LR is 24 dB from the clean bicubic LR: far harsher than a phone photo or a
# messenger JPEG, and the network then smooths real texture away); "photo" keeps its structure
# with the ranges of what people upload: milder blur and noise, JPEG 40-95, the second pass on
# half the samples.
PRESETS = {
    "realesrgan": DegradationConfig(),
    "photo": DegradationConfig(
        second_order_prob=0.5, blur_sigma=(0.2, 2.0), blur_sigma_2=(0.2, 1.2), final_sinc_prob=0.5,
        resize_probs=(0.2, 0.6, 0.2), resize_range=(0.5, 1.5), resize_range_2=(0.6, 1.2),
        noise_sigma=(1.0, 15.0), noise_sigma_2=(1.0, 10.0), poisson_scale=(0.05, 1.5), poisson_scale_2=(0.05, 1.0),
        jpeg_quality=(40, 95), jpeg_quality_2=(40, 95)),
    # "photo" plus, in half of the degraded samples, the commonest upload on its own: a downscaled
    # image saved as JPEG (30-95), half of them with sensor noise (1-10 levels). The chain alone
    # always blurs and adds noise, so it never shows the network a JPEG of a sharp, clean image.
    "upload": DegradationConfig(
        clean_prob=0.15, upload_prob=0.5, upload_noise_prob=0.5,
        second_order_prob=0.5, blur_sigma=(0.2, 2.0), blur_sigma_2=(0.2, 1.2), final_sinc_prob=0.5,
        resize_probs=(0.2, 0.6, 0.2), resize_range=(0.5, 1.5), resize_range_2=(0.6, 1.2),
        noise_sigma=(1.0, 15.0), noise_sigma_2=(1.0, 10.0), poisson_scale=(0.05, 1.5), poisson_scale_2=(0.05, 1.0),
        jpeg_quality=(40, 95), jpeg_quality_2=(30, 95)),
}


# ----------------------------------------------------------------------------- the operations


def resize(image: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, *size) with torch's area, bilinear or bicubic. Downscales are
    antialiased: the resizers of cameras, browsers and Pillow prefilter, so aliasing is rare."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    if mode == "area":
        return F.interpolate(image, size=size, mode="area")
    if mode not in RESIZE_MODES:
        raise ValueError(f"mode must be one of {RESIZE_MODES}, got {mode!r}")
    shrinks = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    return F.interpolate(image, size=size, mode=mode, align_corners=False, antialias=shrinks)


def add_gaussian_noise(image: torch.Tensor, sigma: float, gray: bool, generator: torch.Generator) -> torch.Tensor:
    """Additive white noise of standard deviation `sigma` (in [0, 1] units), one plane shared by
    the channels when `gray` (luminance noise), else per channel; clipped to [0, 1]."""
    b, c, h, w = image.shape
    noise = torch.randn((b, 1 if gray else c, h, w), generator=generator, dtype=image.dtype) * sigma
    return (image + noise).clamp(0, 1)


def add_poisson_noise(image: torch.Tensor, scale: float, gray: bool, generator: torch.Generator) -> torch.Tensor:
    """Shot noise as Real-ESRGAN adds it: scale * (Poisson(256 v) / 256 - v), std scale * sqrt(v / 256),
    computed on BT.601 luma when `gray`. Drawn as the Gaussian with the same variance: 10x faster than
    torch.poisson on the CPU, and after the scaling the noise is not Poisson distributed anyway."""
    base = image
    if gray:
        base = luma_plane(image)
    std = base.clamp_min(0).div(POISSON_LEVELS).sqrt()
    noise = torch.randn(base.shape, generator=generator, dtype=image.dtype) * std
    return (image + scale * noise).clamp(0, 1)


def jpeg_compress(image: torch.Tensor, quality: int) -> torch.Tensor:
    """(3, H, W) or (B, 3, H, W) in [0, 1] through libjpeg (Pillow, 4:2:0 chroma) at `quality`:
    the 8x8 blocks and ringing of a real JPEG file, decoded back to [0, 1] floats."""
    if image.ndim == 4:
        return torch.stack([jpeg_compress(single, quality) for single in image])
    decoded = as_jpeg_file(Image.fromarray(tensor_to_uint8(image)), int(quality))
    return uint8_to_tensor(np.asarray(decoded))  # RGB in, so RGB out


# ----------------------------------------------------------------------------- the random chain


def _uniform(generator: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * torch.rand((), generator=generator, dtype=torch.float64).item()


def _pick(generator: torch.Generator, weights: Sequence[float]) -> int:
    return int(torch.multinomial(torch.tensor(weights, dtype=torch.float64), 1, generator=generator))


def _choice(generator: torch.Generator, options: Sequence):
    return options[int(torch.randint(len(options), (), generator=generator))]


def _random_kernel(generator, config: DegradationConfig, suffix: str, record: list[str]) -> torch.Tensor:
    size = _choice(generator, config.kernel_sizes)
    if _uniform(generator) < getattr(config, "sinc_prob" + suffix):
        # Real-ESRGAN: small windows cannot hold a low cutoff's lobes, so they start at pi/3.
        cutoff = _uniform(generator, math.pi / 3 if size < 13 else math.pi / 5, math.pi)
        record.append(f"sinc k{size} cut {cutoff:.2f}")
        return sinc_kernel(size, cutoff)
    kind = KERNEL_TYPES[_pick(generator, config.kernel_probs)]
    sigma_range = getattr(config, "blur_sigma" + suffix)
    sigma_x = sigma_y = _uniform(generator, *sigma_range)
    angle, shape, beta = 0.0, "gaussian", 1.0
    text = f"blur {kind} k{size} s{sigma_x:.1f}"
    if kind.endswith("aniso"):
        sigma_y, angle = _uniform(generator, *sigma_range), _uniform(generator, -math.pi, math.pi)
        text += f"/{sigma_y:.1f} {math.degrees(angle):.0f}deg"
    if kind.startswith(("generalized", "plateau")):
        shape = kind.split("_")[0]
        low, high = config.betag_range if shape == "generalized" else config.betap_range
        # Half below 1 (sharp peak, heavy tails), half above (flat top), as Real-ESRGAN draws.
        below = _uniform(generator) < 0.5
        beta = _uniform(generator, low, min(1.0, high)) if below else _uniform(generator, max(1.0, low), high)
        text += f" b{beta:.1f}"
    record.append(text)
    return gaussian_kernel(size, sigma_x, sigma_y, angle, shape, beta)


def _random_resize_and_noise(image, generator, config: DegradationConfig, suffix: str,
                             base: tuple[float, float], record: list[str]) -> torch.Tensor:
    """One order's resize and noise (section 3.1); `base` is the size the resize factor scales."""
    direction = RESIZE_DIRECTIONS[_pick(generator, getattr(config, "resize_probs" + suffix))]
    low, high = getattr(config, "resize_range" + suffix)
    factor = {"up": (1.0, high), "down": (low, 1.0), "keep": (1.0, 1.0)}[direction]
    factor = _uniform(generator, *factor)
    mode = _choice(generator, RESIZE_MODES)
    size = (max(1, int(base[0] * factor)), max(1, int(base[1] * factor)))
    record.append(f"resize x{factor:.2f} {mode} -> {size[1]}x{size[0]}")
    image = resize(image, size, mode)
    gray = _uniform(generator) < getattr(config, "gray_noise_prob" + suffix)
    colour = "grey" if gray else "colour"
    if _uniform(generator) < getattr(config, "gaussian_noise_prob" + suffix):
        sigma = _uniform(generator, *getattr(config, "noise_sigma" + suffix))
        record.append(f"gauss noise {sigma:.1f}/255 {colour}")
        return add_gaussian_noise(image, sigma / 255.0, gray, generator)
    scale = _uniform(generator, *getattr(config, "poisson_scale" + suffix))
    record.append(f"poisson noise x{scale:.2f} {colour}")
    return add_poisson_noise(image, scale, gray, generator)


def _random_jpeg(image, generator, quality_range: tuple[int, int], record: list[str]) -> torch.Tensor:
    quality = int(torch.randint(int(quality_range[0]), int(quality_range[1]) + 1, (), generator=generator))
    record.append(f"jpeg q{quality}")
    return jpeg_compress(image, quality)


def degrade_realistic(hr: torch.Tensor, scale: int, seed: int | torch.Generator,
                      config: DegradationConfig | None = None) -> torch.Tensor:
    """The LR of one HR image: (3, H, W) float in [0, 1] -> (3, H // scale, W // scale) float32 with
    8-bit values. The same `seed` (or a generator in the same state) gives the same output."""
    return degrade_realistic_with_record(hr, scale, seed, config)[0]


def degrade_realistic_with_record(hr: torch.Tensor, scale: int, seed: int | torch.Generator,
                                  config: DegradationConfig | None = None) -> tuple[torch.Tensor, list[str]]:
    """`degrade_realistic` plus a short description of each operation applied, in order."""
    if not isinstance(seed, torch.Generator) and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                                  or not 0 <= seed < 2 ** 63):
        raise ValueError(f"seed must be a whole number from 0 to 2**63 - 1 or a torch.Generator, got {seed!r}")
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    if config is not None and not isinstance(config, DegradationConfig):
        raise ValueError(f"config must be a DegradationConfig, got {type(config).__name__}")
    config, record = config or DegradationConfig(), []
    if hr.ndim != 3 or hr.shape[0] != 3 or not hr.is_floating_point():
        raise ValueError(f"expected a (3, H, W) float tensor in [0, 1], got {hr.dtype} {tuple(hr.shape)}")
    if hr.numel() and not (torch.isfinite(hr).all() and hr.min() >= -1e-3 and hr.max() <= 1 + 1e-3):
        raise ValueError(f"expected HR values in [0, 1] (an 8-bit image divided by 255), got the range "
                         f"[{hr.min().item():g}, {hr.max().item():g}]")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    height, width = (hr.shape[1] // scale) * scale, (hr.shape[2] // scale) * scale
    if height == 0 or width == 0:
        raise ValueError(f"HR image of {hr.shape[2]}x{hr.shape[1]} pixels is smaller than scale {scale}")
    hr = hr.detach().cpu()[:, :height, :width]
    lr_size = (height // scale, width // scale)
    if _uniform(generator) < config.clean_prob:
        return uint8_to_tensor(degrade(tensor_to_uint8(hr), scale, "bicubic")), ["clean bicubic"]
    if config.upload_prob and _uniform(generator) < config.upload_prob:  # no draw when 0: presets keep their bytes
        return _degrade_upload(hr, scale, generator, config)
    # First order (section 3.1): blur, resize, noise, JPEG, all at HR size.
    image = blur(hr.float().unsqueeze(0), _random_kernel(generator, config, "", record))  # (1, 3, H, W), new
    image = _random_resize_and_noise(image, generator, config, "", (height, width), record)
    image = _random_jpeg(image, generator, config.jpeg_quality, record)
    # Second order (section 3.2): the same again, milder, resized around the LR size; a photo is
    # blurred, resized and noised more than once on its way (camera, editor, messenger, re-upload).
    if _uniform(generator) < config.second_order_prob:
        if _uniform(generator) < config.second_blur_prob:
            image = blur(image, _random_kernel(generator, config, "_2", record))
        image = _random_resize_and_noise(image, generator, config, "_2", (height / scale, width / scale), record)
    # Final step (section 3.3): resize to the LR size then a sinc filter (ringing), and the last JPEG
    # before or after them, since real files are resized after compression as often as before.
    kernel, cutoff = None, 0.0
    if _uniform(generator) < config.final_sinc_prob:
        cutoff = _uniform(generator, math.pi / 3, math.pi)
        kernel = sinc_kernel(_choice(generator, config.kernel_sizes), cutoff)
    mode = _choice(generator, RESIZE_MODES)
    jpeg_first = _uniform(generator) < 0.5
    if jpeg_first:
        image = _random_jpeg(image, generator, config.jpeg_quality_2, record)
    image = resize(image, lr_size, mode)
    record.append(f"final resize {mode} -> {lr_size[1]}x{lr_size[0]}")
    if kernel is not None:
        image = blur(image, kernel)
        record.append(f"final sinc k{kernel.shape[-1]} cut {cutoff:.2f}")
    if not jpeg_first:
        image = _random_jpeg(image, generator, config.jpeg_quality_2, record)
    return dequantize_tensor(quantize_tensor(image[0], torch.uint8)), record  # 8-bit, as a decoded file


def _degrade_upload(hr: torch.Tensor, scale: int, generator: torch.Generator,
                    config: DegradationConfig) -> tuple[torch.Tensor, list[str]]:
    """A downscaled photo saved as JPEG, with sensor noise on a share: the commonest upload."""
    image, record = uint8_to_tensor(degrade(tensor_to_uint8(hr), scale, "bicubic")).unsqueeze(0), ["bicubic"]
    if _uniform(generator) < config.upload_noise_prob:
        sigma = _uniform(generator, *config.noise_sigma_2)
        gray = _uniform(generator) < config.gray_noise_prob_2
        record.append(f"gauss noise {sigma:.1f}/255 {'grey' if gray else 'colour'}")
        image = add_gaussian_noise(image, sigma / 255.0, gray, generator)
    image = _random_jpeg(image, generator, config.jpeg_quality_2, record)
    return dequantize_tensor(quantize_tensor(image[0], torch.uint8)), record


def degrade_realistic_batch(hr: torch.Tensor, scale: int, seeds: Sequence[int],
                            config: DegradationConfig | None = None) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, H // scale, W // scale), sample i degraded with `seeds[i]`."""
    if hr.ndim != 4 or len(seeds) != hr.shape[0]:
        raise ValueError(f"expected a (B, 3, H, W) batch and B seeds, got {tuple(hr.shape)} and {len(seeds)} seeds")
    return torch.stack([degrade_realistic(image, scale, seed, config) for image, seed in zip(hr, seeds)])


# ----------------------------------------------------------------------------- the fixed kinds of the benchmarks

DEGRADATIONS = ("blur", "bicubic", "jpeg75", "noise", "realistic")
NOISE_SIGMA = 5.0  # "noise": Gaussian, in 8-bit levels, then JPEG at quality NOISE_JPEG_QUALITY
NOISE_JPEG_QUALITY = 90
BLUR_SIGMA = 1.0  # Johnson et al. 2016, section 4.2: Gaussian blur sigma 1.0 before downsampling
BLUR_TRUNCATE = 3.0  # kernel radius = 3 sigma -> 7x7 kernel for sigma 1


def degrade(hr: np.ndarray, scale: int, kind: str = "blur") -> np.ndarray:
    """The low-resolution version of an (H, W, 3) uint8 image, as (H/scale, W/scale, 3) uint8; H and W
    must be multiples of `scale`. The kinds are `degrade_to_image`'s."""
    return np.asarray(degrade_to_image(hr, scale, kind))


def degrade_to_image(hr: np.ndarray, scale: int, kind: str = "blur") -> Image.Image:
    """The low-resolution version of an (H, W, 3) uint8 image as a Pillow image.

    "blur": Gaussian blur (sigma 1.0, 7x7 kernel, reflected borders) on the uint8 values,
    rounded back to uint8, then bicubic downscaling; the paper's training degradation.
    "bicubic": bicubic downscaling only; the common benchmark protocol.
    "jpeg75": bicubic, then a JPEG file at quality 75 (a web or messenger photo).
    "noise": bicubic, Gaussian noise of sigma 5/255 (seeded), then JPEG at quality 90 (a phone photo).
    "realistic": `degradations`' "photo" chain with seed 0.
    JPEG kinds return the decoded file, which keeps its quantization tables (what `cleanup="auto"`
    reads). Bicubic downscaling is PIL's antialiased BICUBIC resize (a = -0.5, like MATLAB's
    imresize). Deterministic: the same input always gives the same bytes.
    """
    if kind not in DEGRADATIONS:
        raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {kind!r}")
    if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {hr.dtype} {hr.shape}")
    height, width = hr.shape[:2]
    if height % scale or width % scale:
        raise ValueError(f"image size {width}x{height} is not a multiple of scale {scale}; use crop_to_multiple")
    if kind == "realistic":
        return Image.fromarray(tensor_to_uint8(degrade_realistic(uint8_to_tensor(hr), scale, 0, PRESETS["photo"])))
    if kind == "blur":
        from scipy.ndimage import gaussian_filter  # training and evaluation only: not a core dependency

        blurred = gaussian_filter(hr.astype(np.float32), sigma=(BLUR_SIGMA, BLUR_SIGMA, 0),
                                  mode="reflect", truncate=BLUR_TRUNCATE)
        hr = np.clip(np.rint(blurred), 0, 255).astype(np.uint8)
    lr = Image.fromarray(hr).resize((width // scale, height // scale), Image.Resampling.BICUBIC)
    if kind == "jpeg75":
        return as_jpeg_file(lr, 75)
    if kind == "noise":
        noise = np.random.default_rng(0).normal(0.0, NOISE_SIGMA, (lr.height, lr.width, 3))
        noisy = np.clip(np.rint(np.asarray(lr, np.float64) + noise), 0, 255).astype(np.uint8)
        return as_jpeg_file(Image.fromarray(noisy), NOISE_JPEG_QUALITY)
    return lr


def as_jpeg_file(image: Image.Image, quality: int) -> Image.Image:
    """`image` written as a JPEG file by libjpeg (Pillow) and read back."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    decoded = Image.open(io.BytesIO(buffer.getvalue()))
    decoded.load()
    return decoded
