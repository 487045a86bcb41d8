"""Colour fix: pull the network's colours towards the bicubic upscaling of its input.

The network (especially one trained briefly, or on a feature loss) can shift colours; the input's
own colours, upscaled by bicubic, are the reference. Works on float RGB in [0, 1] or on unsigned
integer arrays, row chunk by row chunk, so a 256-megapixel output needs no float64 copy.
"""

from __future__ import annotations

import numpy as np

from perceptual_sr.image_io import quantize, resize_bicubic

COLOR_FIXES = ("histogram", "luma", None)
# Chosen by measurement (README "Colour fix"): "luma" removes by construction the local chroma
# errors a network can paint; "histogram" (the paper's post-process) cannot fix local colour.
DEFAULT_COLOR_FIX = "luma"


def apply_color_fix(upscaled: np.ndarray, low_res: np.ndarray, scale: int, method: str | None) -> np.ndarray:
    """Pull the colours of `upscaled` towards the bicubic upscaling of `low_res` (float RGB [0, 1]).

    "histogram": per channel, match the histogram of the bicubic upscaling (Johnson et al. 2016,
        section 4.2 post-process; the algorithm of skimage.exposure.match_histograms, applied as a
        lookup table so a 256 MP image needs no float64 copy).
    "luma": keep the network's luma (BT.601 Y) and take chroma from bicubic.
    None: unchanged. Returns a new array of the same dtype.
    """
    if method is None:
        return upscaled
    if method not in COLOR_FIXES:
        raise ValueError(f"color_fix must be one of {COLOR_FIXES}, got {method!r}")
    reference = quantize(resize_bicubic(low_res, scale), upscaled.dtype.type
                          if np.issubdtype(upscaled.dtype, np.integer) else np.uint16)
    if method == "histogram":
        work = upscaled if np.issubdtype(upscaled.dtype, np.integer) else quantize(upscaled, np.uint16)
        fixed = np.stack([match_histogram(work[..., c], reference[..., c]) for c in range(3)], axis=2)
        return fixed if fixed.dtype == upscaled.dtype else (fixed / 65535.0).astype(upscaled.dtype)
    return _luma_fix(upscaled, reference)


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


_RGB_TO_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
                         dtype=np.float32)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR).astype(np.float32)


def _luma_fix(upscaled: np.ndarray, reference: np.ndarray, rows: int = 512) -> np.ndarray:
    # Row chunks keep the float32 temporaries small on huge outputs.
    is_int = np.issubdtype(upscaled.dtype, np.integer)
    peak = float(np.iinfo(upscaled.dtype).max) if is_int else 1.0
    ref_peak = float(np.iinfo(reference.dtype).max)
    out = np.empty_like(upscaled)
    for top in range(0, upscaled.shape[0], rows):
        sr = upscaled[top:top + rows].astype(np.float32) / peak
        ref = reference[top:top + rows].astype(np.float32) / ref_peak
        ycc = ref @ _RGB_TO_YCBCR.T
        ycc[..., 0] = sr @ _RGB_TO_YCBCR[0]
        out[top:top + rows] = quantize(ycc @ _YCBCR_TO_RGB.T, upscaled.dtype.type)
    return out
