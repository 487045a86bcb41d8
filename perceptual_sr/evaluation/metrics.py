"""Image-quality metrics as super-resolution papers report them: PSNR-Y, SSIM-Y and LPIPS.

PSNR and SSIM follow BasicSR (`calculate_psnr` / `calculate_ssim` with `test_y_channel=True`):
studio-range BT.601 Y in [16, 235] computed in float from uint8 RGB (`color.rgb_to_studio_y`),
`border` pixels cropped on every side, SSIM with an 11x11 Gaussian window (sigma 1.5) over the
valid region (Wang et al. 2004).
LPIPS (Zhang et al. 2018) uses the `lpips` package's AlexNet variant, built without downloading:
its linear heads ship in the wheel and the AlexNet trunk comes from our bundled ImageNet weights.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from scipy.ndimage import correlate1d, maximum_filter
from torch import nn

from perceptual_sr.hub.weights import ALEXNET_WEIGHTS, loss_network_weights
from perceptual_sr.utils.color import rgb_to_studio_y

# torchvision `alexnet().features` index -> the lpips package's `net.sliceN` holding it.
_ALEXNET_SLICE = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> float:
    """PSNR (dB) between the Y channels of two (H, W, 3) uint8 images, `border` pixels cropped."""
    sr_y, hr_y = _cropped_y(sr, hr, border)
    mse = float(np.mean((sr_y - hr_y) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> float:
    """SSIM between the Y channels of two (H, W, 3) uint8 images, `border` pixels cropped."""
    sr_y, hr_y = _cropped_y(sr, hr, border)
    if min(sr_y.shape) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after the border crop, got {sr_y.shape}")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    window = _gaussian_window(11, 1.5)

    def blur(values: np.ndarray) -> np.ndarray:
        # Separable 11x11 Gaussian, then keep only positions where the window fits ("valid").
        out = correlate1d(correlate1d(values, window, axis=0), window, axis=1)
        return out[5:-5, 5:-5]

    mu_x, mu_y = blur(sr_y), blur(hr_y)
    var_x = blur(sr_y * sr_y) - mu_x**2
    var_y = blur(hr_y * hr_y) - mu_y**2
    cov = blur(sr_y * hr_y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
    offsets = np.arange(size) - size // 2
    window = np.exp(-(offsets**2) / (2 * sigma**2))
    return window / window.sum()


def _cropped_y(sr: np.ndarray, hr: np.ndarray, border: int) -> tuple[np.ndarray, np.ndarray]:
    _check_uint8_rgb(sr, "sr")
    _check_uint8_rgb(hr, "hr")
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr must have the same shape, got {sr.shape} and {hr.shape}")
    if border < 0 or 2 * border >= min(sr.shape[:2]):
        raise ValueError(f"border {border} is invalid for a {sr.shape[1]}x{sr.shape[0]} image")
    crop = (slice(border, -border), slice(border, -border)) if border else (slice(None), slice(None))
    return rgb_to_studio_y(sr)[crop], rgb_to_studio_y(hr)[crop]


def _check_uint8_rgb(image: np.ndarray, name: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be an (H, W, 3) uint8 array, got "
                         f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")


class LPIPSMetric(nn.Module):
    """LPIPS-alex distance, built fully offline. Call on two (B, 3, H, W) float tensors in [0, 1] -> (B,).

    Build once and reuse (e.g. for validation every K steps): construction loads two weight files.
    alexnet_weights: safetensors file with torchvision AlexNet `features.{0,3,6,8,10}` tensors
        (None: the converted ImageNet weights in the repository).
    """

    def __init__(self, alexnet_weights: str | Path | None = None) -> None:
        super().__init__()
        import lpips  # imported here: it prints and warns on import-heavy paths not every user needs

        # pnet_rand=True: the package would otherwise fetch torchvision's AlexNet from the internet;
        # pretrained=False: we load its heads ourselves, safely and strictly, below.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torchvision's notice about lpips's old `pretrained=`
            self.lpips = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
        heads_file = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
        heads = torch.load(heads_file, map_location="cpu", weights_only=True)
        trunk = load_file(str(alexnet_weights or loss_network_weights(ALEXNET_WEIGHTS)))
        state = {name: value for name, value in self.lpips.state_dict().items() if name.startswith("scaling_layer.")}
        for name, value in trunk.items():
            _, index, kind = name.split(".")  # "features.3.weight"
            state[f"net.slice{_ALEXNET_SLICE[int(index)]}.{index}.{kind}"] = value
        for name, value in heads.items():
            state[name] = value  # "lin0.model.1.weight"
            state[name.replace("lin", "lins.", 1)] = value  # the same modules, listed again in `lins`
        # Strict: every trunk conv and every head must come from the files, none left random.
        self.lpips.load_state_dict(state, strict=True)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "LPIPSMetric":
        return super().train(False)  # a metric: always eval (no dropout)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected two (B, 3, H, W) tensors of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        with torch.no_grad():
            return self.lpips(x.float(), y.float(), normalize=True).reshape(x.shape[0])


# --- Grid texture ---------------------------------------------------------------------------
# A x4 network built from two x2 stages can paint a pattern that repeats every 2 or 4 output
# pixels (each output pixel's phase within the 4x4 cell is made by different weights). Such a
# pattern is a set of sharp peaks in the spectrum at multiples of 1/4 cycle per pixel. We measure,
# on luma, each of those 11 frequencies as a peak over its local spectrum: the power in that bin
# divided by the median power of the bins 3 to 8 bins away (far enough to miss the Hann window's
# main lobe, near enough to be the same texture). The image's score is the mean log10 of those
# ratios; `grid_score` reports it relative to the ground truth, so 0 means "as periodic as the
# real photo" and 1 means ten times the ground truth's peak energy.

GRID_PERIODS = (2, 4)
_GRID_NEAR, _GRID_FAR = 3, 8


def grid_peak_energy(image: np.ndarray) -> float:
    """Mean log10 peak-over-background ratio of an (H, W, 3) uint8 image at the periods-2/4 frequencies."""
    luma = rgb_to_studio_y(image)
    height, width = luma.shape
    if height < 4 * _GRID_FAR or width < 4 * _GRID_FAR:
        raise ValueError(f"the grid score needs at least {4 * _GRID_FAR}x{4 * _GRID_FAR} pixels, got {width}x{height}")
    window = np.outer(np.hanning(height), np.hanning(width))
    power = np.abs(np.fft.fft2((luma - luma.mean()) * window)) ** 2
    offsets = np.arange(-_GRID_FAR, _GRID_FAR + 1)
    ring = np.maximum(np.abs(offsets)[:, None], np.abs(offsets)[None, :]) >= _GRID_NEAR
    ratios = []
    for ky, kx in _grid_frequencies(height, width):
        rows = (ky + offsets) % height
        cols = (kx + offsets) % width
        background = np.median(power[np.ix_(rows, cols)][ring])
        ratios.append(np.log10((power[ky, kx] + 1e-12) / (background + 1e-12)))
    return float(np.mean(ratios))


def _grid_frequencies(height: int, width: int) -> list[tuple[int, int]]:
    """FFT bins (row, column) at multiples of 1/4 cycle per pixel, one of each +/- pair, without DC."""
    fractions = sorted({k / period for period in GRID_PERIODS for k in range(period)})  # 0, 1/4, 1/2, 3/4
    bins = set()
    for fy in fractions:
        for fx in fractions:
            if fy == fx == 0:
                continue
            ky, kx = round(fy * height) % height, round(fx * width) % width
            if (-ky % height, -kx % width) not in bins:  # a real image's spectrum is symmetric
                bins.add((ky, kx))
    return sorted(bins)


def grid_score(sr: np.ndarray, hr: np.ndarray) -> float:
    """Grid texture of `sr` relative to the ground truth `hr` (both (H, W, 3) uint8): log10 ratio; 0 = same."""
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr must have the same shape, got {sr.shape} and {hr.shape}")
    return grid_peak_energy(sr) - grid_peak_energy(hr)


# --- Cross-hatch: spectral peaks at any frequency ----------------------------------------------
# A perceptual network can paint a fine periodic texture (e.g. a diagonal cross-hatch near
# (0.40, +-0.40) cycles/px on rock, soil and feathers) at frequencies the grid score never looks
# at. In the spectrum it is a peak the real photo does not have: a few hundred times the photo's
# power there, while the output has no more (often less) power than the photo around it. The
# hatch's period drifts with the texture it sits on, so over a whole image the peak is a bump a
# few hundredths of a cycle wide: we look at a smooth spectrum, Welch's average over 64-px Hann
# tiles (Welch 1967; bins 1/64 cycle/px apart, tiles overlapping by half). A bin's "peakiness" is
# its power over the median power of the ring of bins 3 to 6 bins away (log10). The output's
# peakiness is compared with the ground truth's (the largest within +/-1 bin, never below
# HATCH_FLOOR, which aperiodic texture stays under), and the output's power must also exceed the
# photo's there: bicubic's faint images of the LR spectrum around multiples of 1/scale are peaked
# but weaker than the photo. A bin's excess is the smaller of the two log10 margins; the score is
# the largest excess over bins above HATCH_MIN_FREQUENCY (near DC every photo is peaked: 1/f).
# 0 = no peak the photo lacks; 1 = a peak ten times higher above its surroundings than the photo's.

HATCH_TILE = 64  # px; Welch segment, so bins are 1/64 cycle/px apart
HATCH_FLOOR = 0.5  # log10: a bin counts as a peak once it stands 3x above its ring
HATCH_MIN_FREQUENCY = 0.05  # cycles/px; below this the 1/f slope, not texture, makes peaks
_HATCH_NEAR, _HATCH_FAR = 3, 6  # the ring of bins that is a peak's surroundings


def welch_spectrum(image: np.ndarray, tile: int = HATCH_TILE) -> np.ndarray:
    """Mean power spectrum (tile, tile) of the luma of an (H, W, 3) uint8 image over Hann-windowed
    tiles overlapping by half; bins in numpy's FFT order (row k is k/tile cycles per pixel)."""
    _check_uint8_rgb(image, "image")
    luma = rgb_to_studio_y(image)
    height, width = luma.shape
    if min(height, width) < 2 * tile:  # 3x3 tiles at least: a single periodogram is too noisy to judge
        raise ValueError(f"the hatch score needs at least {2 * tile}x{2 * tile} pixels, got {width}x{height}")
    tiles = np.lib.stride_tricks.sliding_window_view(luma, (tile, tile))[::tile // 2, ::tile // 2]
    tiles = tiles.reshape(-1, tile, tile)
    window = np.outer(np.hanning(tile), np.hanning(tile))
    spectra = np.abs(np.fft.fft2((tiles - tiles.mean(axis=(1, 2), keepdims=True)) * window)) ** 2
    return spectra.mean(axis=0) + 1e-6  # + a floor far below uint8 quantization: no log of 0


def spectral_peakiness(power: np.ndarray) -> np.ndarray:
    """log10 of each bin's power over the median of its ring (bins 3 to 6 away, wrapping around)."""
    offsets = np.arange(-_HATCH_FAR, _HATCH_FAR + 1)
    ring = np.maximum(np.abs(offsets)[:, None], np.abs(offsets)[None, :]) >= _HATCH_NEAR
    padded = np.pad(power, _HATCH_FAR, mode="wrap")
    windows = np.lib.stride_tricks.sliding_window_view(padded, ring.shape)  # (H, W, 13, 13)
    return np.log10(power / np.median(windows[:, :, ring], axis=-1))


def hatch_peak(sr: np.ndarray, hr: np.ndarray) -> tuple[float, tuple[float, float]]:
    """The largest spectral peak of `sr` that the ground truth `hr` lacks (both (H, W, 3) uint8):
    (excess in log10 units, 0 when none; its frequency (fy, fx) in cycles/px with fy >= 0)."""
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr must have the same shape, got {sr.shape} and {hr.shape}")
    sr_power, hr_power = welch_spectrum(sr), welch_spectrum(hr)
    reference = np.maximum(maximum_filter(spectral_peakiness(hr_power), size=3, mode="wrap"), HATCH_FLOOR)
    excess = np.minimum(spectral_peakiness(sr_power) - reference, np.log10(sr_power / hr_power))
    frequencies = np.fft.fftfreq(HATCH_TILE)
    excess[np.hypot(frequencies[:, None], frequencies[None, :]) < HATCH_MIN_FREQUENCY] = 0.0
    row, col = np.unravel_index(np.argmax(excess), excess.shape)
    fy, fx = float(frequencies[row]), float(frequencies[col])
    if fy < 0 or (fy == 0 and fx < 0):  # a real image's spectrum is symmetric: f and -f are one peak
        fy, fx = -fy, -fx
    return max(0.0, float(excess[row, col])), (fy + 0.0, fx + 0.0)


def hatch_score(sr: np.ndarray, hr: np.ndarray) -> float:
    """Cross-hatch of `sr` relative to the ground truth `hr` (both (H, W, 3) uint8): log10 excess of
    its largest spectral peak, at any frequency, that the photo lacks; 0 = none (see `hatch_peak`)."""
    return hatch_peak(sr, hr)[0]
