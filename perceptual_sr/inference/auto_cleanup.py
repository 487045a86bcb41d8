"""How much cleanup an input needs, read off the input itself: `cleanup="auto"`.

Two measurements, each mapped to a strength in [0, 1], and the larger one wins:

- JPEG quality, from the file's own quantization tables (Pillow's `image.quantization`). libjpeg
  scales the standard tables of the JPEG specification (Annex K) by one factor per quality
  setting, so the quality an encoder used is the setting whose scaled tables match best.
  Files from other encoders (phones, Photoshop) use their own tables; the best match still
  ranks them by how coarse their quantization is, which is what matters here.
- Noise level, by Immerkaer's fast estimator (J. Immerkaer, "Fast Noise Variance Estimation",
  CVIU 64(2), 1996): a 3x3 mask that cancels image structure up to second order leaves mostly
  noise, whose mean absolute value gives sigma. Texture leaks through the mask too, so the
  strength starts only above the level clean photos reach (`NOISE_CLEAN`).

A PNG that was never a JPEG and carries no noise gets 0: the clean benchmark protocol runs the
default weights, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from perceptual_sr.utils.color import rgb_to_grey

# The JPEG specification's example luminance quantization table (Annex K.1), in zigzag-free
# row-major order, as libjpeg and Pillow use it.
_STANDARD_LUMA_TABLE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64)

# Strength mapping. JPEG: quality 95 and above gets no cleanup, quality 75 and below the full
# real-photo weights, linear in between. Measured with the bundled weights on Set5 and the 50
# held-out training crops, LPIPS-alex as a multiple of bicubic's at cleanup 0 / 0.25 / 0.5 / 0.75 / 1:
# q50 0.763 / 0.726 / 0.696 / 0.681 / 0.675; q75 0.692 / 0.665 / 0.651 / 0.645 / 0.644;
# q90 0.609 / 0.601 / 0.603 / 0.608 / 0.615; q95 0.562 / 0.566 / 0.576 / 0.589 / 0.600 (docs/training.md).
# Noise (sigma in 8-bit levels): the estimate on the bicubic x1/4 LR of the first 12 images of
# Set5, Set14 and BSD68 read 0.1-7.4 and on full-size ImageNet JPEGs up to 11 (stingray skin), so
# the ramp starts above that (a clean PNG must get 0); sigma NOISE_FULL and above gets the full
# weights. A photo textured all over (sand) can still read as noise: the estimate has no flat
# block to look at there.
JPEG_CLEAN_QUALITY = 95
JPEG_FULL_QUALITY = 75
NOISE_CLEAN = 12.0
NOISE_FULL = 30.0


@dataclass(frozen=True)
class InputQuality:
    """What `assess` read off an image: JPEG quality (None: not a JPEG), noise sigma in 8-bit
    levels, and the cleanup strength they map to."""

    jpeg_quality: int | None
    noise_sigma: float
    cleanup: float

    def describe(self) -> str:
        jpeg = f"JPEG quality ~{self.jpeg_quality}" if self.jpeg_quality is not None else "not a JPEG"
        return f"cleanup {self.cleanup:.2f} (auto: {jpeg}, noise ~{self.noise_sigma:.1f}/255)"


def assess(image: Image.Image | np.ndarray | torch.Tensor) -> InputQuality:
    """Measure `image`: a PIL image as opened from its file (so a JPEG still carries its tables),
    or an array / tensor as `upscale` takes them (noise only: pixels carry no JPEG tables)."""
    quality = jpeg_quality(image) if isinstance(image, Image.Image) else None
    grey, visible = _grey_levels(image)
    sigma = noise_sigma(grey, visible)
    return InputQuality(quality, sigma, cleanup_strength(quality, sigma))


def _grey_levels(image: Image.Image | np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W) float64 grey in 8-bit levels (0-255), whatever the input's kind and depth, and where
    the image is visible (alpha above 0; None without alpha): colour under full transparency is
    whatever the encoder left there, often noise, and never shown."""
    if isinstance(image, Image.Image):
        visible = None
        if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
            visible = np.asarray(image.convert("RGBA"))[..., 3] > 0
        if image.mode in ("I;16", "I;16B", "I", "F"):
            return np.asarray(image, dtype=np.float64) * (255 / 65535 if image.mode.startswith("I") else 255), visible
        return np.asarray(image.convert("L"), dtype=np.float64), visible
    if isinstance(image, torch.Tensor):
        batch = image if image.ndim == 3 else image[0]  # the first of a batch speaks for it
        image = batch.detach().float().cpu().permute(1, 2, 0).numpy()
    values = np.asarray(image)
    if np.issubdtype(values.dtype, np.floating) and values.size:
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        if not (np.isfinite(low) and np.isfinite(high)) or low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(f"float images must hold finite values in [0, 1], got range [{low}, {high}]")
    levels = values.astype(np.float64) * (255 / 65535 if values.dtype == np.uint16 else
                                          1.0 if values.dtype == np.uint8 else 255.0)
    visible = None
    if levels.ndim == 3:
        if levels.shape[2] in (2, 4):
            visible = levels[..., -1] > 0
        levels = rgb_to_grey(levels[..., :3]) if levels.shape[2] >= 3 else levels[..., 0]
    return levels, visible


def cleanup_strength(quality: int | None, sigma: float) -> float:
    """The rule: the larger of the JPEG and the noise strength, each linear between its clean
    and its full level."""
    jpeg = 0.0 if quality is None else _ramp(JPEG_CLEAN_QUALITY - quality, 0.0,
                                             JPEG_CLEAN_QUALITY - JPEG_FULL_QUALITY)
    noise = _ramp(sigma, NOISE_CLEAN, NOISE_FULL)
    return round(max(jpeg, noise), 2)


def jpeg_quality(image: Image.Image) -> int | None:
    """The libjpeg quality setting (1-100) whose luminance table best matches the file's; None
    for an image that did not come from a JPEG file."""
    tables = getattr(image, "quantization", None)
    if not tables or 0 not in tables or len(tables[0]) != 64:
        return None
    table = np.asarray(tables[0], dtype=np.float64)
    qualities = np.arange(1, 101)
    errors = [np.abs(_libjpeg_table(q) - table).sum() for q in qualities]
    return int(qualities[int(np.argmin(errors))])


def _libjpeg_table(quality: int) -> np.ndarray:
    # libjpeg's jpeg_quality_scaling and jpeg_add_quant_table (baseline: clamped to 1..255).
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((_STANDARD_LUMA_TABLE * scale + 50) / 100), 1, 255)


def noise_sigma(grey: np.ndarray, visible: np.ndarray | None = None) -> float:
    """Immerkaer's estimate of additive noise sigma of a (H, W) image in 8-bit levels, taken in
    the flattest blocks: the 10th percentile of the 8x8 block estimates, since texture and edges
    leak through the mask (measured on bicubic-downscaled Set5/Set14/BSD68: the whole-image
    estimate read 1.6-11.5 on clean images, this one 0.1-7.4). 0 under 3x3 pixels. `visible`: an
    (H, W) mask; blocks that touch an invisible pixel are left out (0 if no block is left)."""
    height, width = grey.shape
    if height < 3 or width < 3:
        return 0.0
    # The mask [[1, -2, 1], [-2, 4, -2], [1, -2, 1]] as shifted sums (no scipy at inference time).
    g = grey
    response = np.abs(g[:-2, :-2] - 2 * g[:-2, 1:-1] + g[:-2, 2:]
                      - 2 * g[1:-1, :-2] + 4 * g[1:-1, 1:-1] - 2 * g[1:-1, 2:]
                      + g[2:, :-2] - 2 * g[2:, 1:-1] + g[2:, 2:])
    block = 8
    rows, columns = response.shape[0] // block * block, response.shape[1] // block * block
    if visible is not None:
        # The mask response at (i, j) reads pixels (i..i+2, j..j+2): it counts where all nine are visible.
        v = visible
        seen = (v[:-2, :-2] & v[:-2, 1:-1] & v[:-2, 2:] & v[1:-1, :-2] & v[1:-1, 1:-1] & v[1:-1, 2:]
                & v[2:, :-2] & v[2:, 1:-1] & v[2:, 2:])
        if rows and columns:
            whole = seen[:rows, :columns].reshape(rows // block, block, columns // block, block).all(axis=(1, 3))
        if not (rows and columns and whole.any()):
            return float(np.sqrt(np.pi / 2) * response[seen].mean() / 6) if seen.any() else 0.0
    if rows and columns:
        blocks = response[:rows, :columns].reshape(rows // block, block, columns // block, block).mean(axis=(1, 3))
        level = float(np.percentile(blocks[whole] if visible is not None else blocks, 10))
    else:
        level = float(response.mean()) * _PERCENTILE_BIAS  # too small for blocks: the plain mean
    return float(np.sqrt(np.pi / 2) * level / 6 / _PERCENTILE_BIAS)


# The 10th percentile of 8x8 block means of pure Gaussian noise's response sits at 0.80 of its
# mean (measured on 64-512 px noise images, spread 0.04 at 64 px): divided out, the estimate
# reads a noise image's sigma.
_PERCENTILE_BIAS = 0.80


def _ramp(value: float, low: float, high: float) -> float:
    return float(np.clip((value - low) / (high - low), 0.0, 1.0))
