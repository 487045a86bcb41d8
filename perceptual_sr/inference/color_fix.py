"""Colour fix: pull the network's colours towards the bicubic upscaling of its input.

The network (especially one trained briefly, or on a feature loss) can shift colours; the input's
own colours, upscaled by bicubic, are the reference. Works on float RGB in [0, 1] or on unsigned
integer arrays, row chunk by row chunk, so a 256-megapixel output needs no float64 copy.
"""

from __future__ import annotations

import numpy as np

from perceptual_sr.utils.color import RGB_TO_YCBCR, YCBCR_TO_RGB
from perceptual_sr.utils.image_io import resize_bicubic, resize_bicubic_planes
from perceptual_sr.utils.pixels import quantize

COLOR_FIXES = ("histogram", "luma", None)
# Chosen by measurement (README "Colour fix"): "luma" removes by construction the local chroma
# errors a network can paint; "histogram" (the paper's post-process) cannot fix local colour.
DEFAULT_COLOR_FIX = "luma"
_LEVEL = 0.5 / 255  # within half an 8-bit level of pure black or white


def apply_color_fix(upscaled: np.ndarray, low_res: np.ndarray, scale: int, method: str | None) -> np.ndarray:
    """Pull the colours of `upscaled` towards the bicubic upscaling of `low_res` (float RGB [0, 1]).

    "histogram": per channel, match the histogram of the bicubic upscaling (Johnson et al. 2016,
        section 4.2 post-process; the algorithm of skimage.exposure.match_histograms, applied as a
        lookup table so a 256 MP image needs no float64 copy).
    "luma": keep the network's luma (full-range BT.601 Y, `perceptual_sr.utils.color`) and take the
        chroma (Cb, Cr) from bicubic.
    None: unchanged. Returns a new array of the same dtype.
    """
    if method is None:
        return upscaled
    if method not in COLOR_FIXES:
        raise ValueError(f"color_fix must be one of {COLOR_FIXES}, got {method!r}")
    if method == "luma":
        return _luma_fix(upscaled, resize_bicubic_planes(low_res, scale))
    reference = quantize(resize_bicubic(low_res, scale), upscaled.dtype.type
                          if np.issubdtype(upscaled.dtype, np.integer) else np.uint16)
    work = upscaled if np.issubdtype(upscaled.dtype, np.integer) else quantize(upscaled, np.uint16)
    fixed = np.stack([match_histogram(work[..., c], reference[..., c]) for c in range(3)], axis=2)
    return quantize(fixed, upscaled.dtype.type)


def match_histogram(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Unsigned-integer `source` remapped so its histogram matches `reference`'s; same dtype."""
    levels = np.iinfo(source.dtype).max + 1
    source_counts = np.bincount(source.ravel(), minlength=levels)
    reference_counts = np.bincount(reference.ravel(), minlength=levels)
    source_values = np.nonzero(source_counts)[0]
    reference_values = np.nonzero(reference_counts)[0]
    source_quantiles = np.cumsum(source_counts[source_values]) / source.size
    reference_quantiles = np.cumsum(reference_counts[reference_values]) / reference.size
    lookup = np.zeros(levels, dtype=np.float64)
    lookup[source_values] = np.interp(source_quantiles, reference_quantiles, reference_values)
    return np.rint(lookup).astype(source.dtype)[source]


def _luma_fix(upscaled: np.ndarray, reference: list[np.ndarray], rows: int = 256) -> np.ndarray:
    """The network's luma with the chroma of the bicubic `reference` planes (R, G, B; clipped to
    [0, 1], as a displayed bicubic image is). Row chunks keep the float32 temporaries small on huge
    outputs, and the planes are read one by one, never interleaved at full size."""
    peak = float(np.iinfo(upscaled.dtype).max) if np.issubdtype(upscaled.dtype, np.integer) else 1.0
    to_luma, to_cb, to_cr = (RGB_TO_YCBCR[k] / scale for k, scale in enumerate((peak, 1.0, 1.0)))
    out = np.empty_like(upscaled)
    for top in range(0, upscaled.shape[0], rows):
        luma = upscaled[top:top + rows] @ to_luma  # float32, from any dtype
        red, green, blue = (np.clip(plane[top:top + rows], 0.0, 1.0) for plane in reference)
        # Where the input is pure white (or black) all around, so is the output: the network's small
        # offset there (255 -> 252, 0 -> 3) would turn the page of a scan or a screenshot grey.
        luma[(red >= 1.0 - _LEVEL) & (green >= 1.0 - _LEVEL) & (blue >= 1.0 - _LEVEL)] = 1.0
        luma[(red <= _LEVEL) & (green <= _LEVEL) & (blue <= _LEVEL)] = 0.0
        cb = to_cb[0] * red + to_cb[1] * green + to_cb[2] * blue
        cr = to_cr[0] * red + to_cr[1] * green + to_cr[2] * blue
        rgb = np.stack([luma + YCBCR_TO_RGB[c, 1] * cb + YCBCR_TO_RGB[c, 2] * cr for c in range(3)], axis=2)
        out[top:top + rows] = quantize(rgb, upscaled.dtype.type)
    return out
