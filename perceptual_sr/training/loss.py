"""Perceptual loss: a frozen ImageNet VGG-16 with features named as in the paper, plus TV and pixel terms.

Johnson et al. (2016), section 3: the feature reconstruction loss is the (normalised) squared
Euclidean distance between VGG-16 activations of output and target; for super-resolution they
use `relu2_2`. A total-variation regulariser encourages spatial smoothness.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torchvision.models import vgg16

from perceptual_sr.hub.weights import VGG16_WEIGHTS, loss_network_weights
from perceptual_sr.utils.color import luma_plane

# torchvision `vgg16().features` index of each ReLU, named as in the paper (block_conv).
VGG16_RELU_INDEX = {
    "relu1_1": 1, "relu1_2": 3,
    "relu2_1": 6, "relu2_2": 8,
    "relu3_1": 11, "relu3_2": 13, "relu3_3": 15,
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG16Features(nn.Module):
    """Frozen VGG-16 (torchvision architecture) returning named activations up to relu3_3.

    Input: float RGB NCHW in [0, 1]; ImageNet normalisation happens inside.
    weights: "imagenet" (the bundled converted ImageNet weights), or None (random init,
    for tests that must tell the two apart).
    """

    def __init__(self, layers: tuple[str, ...] = ("relu2_2",), weights: str | None = "imagenet") -> None:
        super().__init__()
        unknown = [name for name in layers if name not in VGG16_RELU_INDEX]
        if unknown or not layers:
            raise ValueError(f"unknown VGG-16 layers {unknown or layers}; choose from {list(VGG16_RELU_INDEX)}")
        self.layers = tuple(layers)
        depth = max(VGG16_RELU_INDEX[name] for name in layers) + 1
        features = vgg16(weights=None).features[:16]
        if weights == "imagenet":
            # Strict: every conv through relu3_3 must come from the file.
            state = load_file(str(loss_network_weights(VGG16_WEIGHTS)))
            features.load_state_dict(_strip_prefix(state, "features."), strict=True)
        elif weights is not None:
            raise ValueError(f"weights must be 'imagenet' or None, got {weights!r}")
        for module in features:
            if isinstance(module, nn.ReLU):
                module.inplace = False  # the activations we return must not be overwritten
        self.features = features[:depth]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGG16Features":
        # Always frozen in eval mode, whatever the enclosing module does.
        return super().train(False)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (image - self.mean) / self.std
        wanted = {VGG16_RELU_INDEX[name]: name for name in self.layers}
        out = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in wanted:
                out[wanted[index]] = x  # e.g. relu2_2: (B, 128, H/2, W/2)
        return out


def _strip_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key.removeprefix(prefix): value for key, value in tensors.items()}


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation: mean absolute difference of neighbouring pixels."""
    dy = (image[:, :, 1:, :] - image[:, :, :-1, :]).abs().mean()
    dx = (image[:, :, :, 1:] - image[:, :, :, :-1]).abs().mean()
    return dx + dy


def periodic_error(output: torch.Tensor, target: torch.Tensor, period: int = 4, window: int = 8) -> torch.Tensor:
    """Energy of the error's component that repeats every `period` pixels, measured locally.

    A x4 network made of two x2 stages can paint a texture that repeats every 2 or 4 output pixels
    (a "grid"), which the VGG feature loss barely sees: relu2_2 comes after a stride-2 pooling. In
    each `window` x `window` block of `period`-pixel cells we average the error over the cells,
    phase by phase; what survives the averaging is exactly the error at multiples of 1/period
    cycles per pixel (the spectral peaks `metrics.grid_score` measures), while aperiodic texture
    averages out. Its mean square, after removing each block's mean, is the loss: a pixel loss
    restricted to the grid frequencies, leaving the rest of the spectrum to the feature loss.
    """
    block = period * window
    height, width = (output.shape[-2] // block) * block, (output.shape[-1] // block) * block
    if height == 0 or width == 0:
        raise ValueError(f"periodic_error needs images of at least {block}x{block} pixels, got {tuple(output.shape)}")
    error = (output - target)[..., :height, :width].float()
    batch, channels = error.shape[:2]
    cells = error.reshape(batch, channels, height // block, window, period, width // block, window, period)
    phases = cells.mean(dim=(3, 6))  # (B, C, blocks_y, period, blocks_x, period)
    phases = phases - phases.mean(dim=(3, 5), keepdim=True)  # a block's mean error is not a grid
    return phases.pow(2).mean()


# Power of uint8 quantization noise per pixel, (1/255)^2 / 12: a floor below which no spectrum
# counts, so flat regions (a sky, a crop's dark corner) never divide by ~0.
_QUANTIZATION_POWER = (1 / 255) ** 2 / 12


def spectral_excess(output: torch.Tensor, target: torch.Tensor, margin: float = 2.0, tile: int = 32,
                    min_frequency: float = 0.05) -> torch.Tensor:
    """Power the output has at some spatial frequency that its target lacks: a penalty on painted
    periodic texture at any frequency, such as the cross-hatch near (0.40, +-0.40) cycles/px that
    `metrics.hatch_score` measures and `periodic_error` (2- and 4-px periods only) cannot see.

    Each image's luma power spectrum is Welch's average over `tile`-px Hann-windowed tiles
    overlapping by half (as the metric's, on smaller tiles: a 96 px crop gives 25 of them, enough
    to compare bin by bin); each image is compared with its own target, so a hatch on one crop is
    not averaged away by the rest of the batch. A bin's excess is how far the output's amplitude
    stands above sqrt(`margin`) times the target's, in units of the target's (margin 2: twice the
    power, beyond the spread of the estimate). The loss is the mean square of the excess over
    images and over bins above `min_frequency` cycles/px (below it every photo is dominated by its
    1/f slope, and the feature loss governs). Texture at the photo's power costs nothing; a peak
    ten times the photo's power costs (sqrt(10) - sqrt(2))^2 = 3 in its bins. Noise above the
    photo's power counts too, spread over many bins: a painted texture of any kind, not only a
    hatch. Amplitudes, not log power: the square of an amplitude ratio pulls a peak down the
    harder the higher it stands, where a log's pull weakens as a peak grows and explodes in bins
    that hold almost no power.
    """
    if output.shape != target.shape or output.dim() != 4 or output.shape[1] != 3:
        raise ValueError(f"spectral_excess needs two (B, 3, H, W) batches of one shape, got "
                         f"{tuple(output.shape)} and {tuple(target.shape)}")
    tile = min(tile, *output.shape[-2:])
    if tile < 16:
        raise ValueError(f"spectral_excess needs images of at least 16x16 pixels, got {tuple(output.shape)}")
    hann = torch.hann_window(tile, periodic=False, device=output.device)
    window = torch.outer(hann, hann)
    floor = window.pow(2).sum() * _QUANTIZATION_POWER

    def power(image: torch.Tensor) -> torch.Tensor:  # (B, tile, tile // 2 + 1)
        y = luma_plane(image.float())[:, 0]
        tiles = y.unfold(1, tile, tile // 2).unfold(2, tile, tile // 2)  # (B, rows, cols, tile, tile)
        tiles = (tiles - tiles.mean(dim=(-2, -1), keepdim=True)) * window
        spectrum = torch.view_as_real(torch.fft.rfft2(tiles))  # |.|^2 as re^2 + im^2: abs() has no gradient at 0
        return spectrum.pow(2).sum(dim=-1).mean(dim=(1, 2)) + floor

    with torch.no_grad():
        target_power = power(target)
    excess = F.relu(torch.sqrt(power(output) / target_power) - margin ** 0.5)
    fy = torch.fft.fftfreq(tile, device=output.device)
    fx = torch.fft.rfftfreq(tile, device=output.device)
    above = torch.hypot(fy[:, None], fx[None, :]) >= min_frequency
    return excess[:, above].pow(2).mean()


def parse_feature_weights(spec: str) -> dict[str, float]:
    """Parse "relu2_2" or "relu2_2:1,relu3_3:0.5" into {layer: weight}; "none" gives {} (no VGG term)."""
    if spec.strip().lower() == "none":
        return {}
    weights = {}
    for part in spec.split(","):
        name, _, weight = part.strip().partition(":")
        if name not in VGG16_RELU_INDEX:
            raise ValueError(f"unknown VGG-16 layer {name!r} in {spec!r}; choose from {list(VGG16_RELU_INDEX)}")
        try:
            weights[name] = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"bad weight {weight!r} for layer {name!r} in {spec!r}") from None
    return weights


class PerceptualLoss(nn.Module):
    """feature_weights * MSE(VGG features) + tv_weight * TV(output) + pixel_weight * MSE(pixels)
    + grid_weight * periodic_error(output, target) + hatch_weight * spectral_excess(output, target).

    `forward` returns the total and a dict of the weighted terms (for logging).
    The target's features are computed without gradient.
    """

    def __init__(self, feature_weights: Mapping[str, float] | str = "relu2_2", tv_weight: float = 0.0,
                 pixel_weight: float = 0.0, vgg_weights: str | None = "imagenet", grid_weight: float = 0.0,
                 grid_period: int = 4, hatch_weight: float = 0.0) -> None:
        super().__init__()
        if isinstance(feature_weights, str):
            feature_weights = parse_feature_weights(feature_weights)
        if (min(tv_weight, pixel_weight, grid_weight, hatch_weight) < 0
                or any(w < 0 for w in feature_weights.values())):
            raise ValueError(f"loss weights must be >= 0, got features={dict(feature_weights)}, "
                             f"tv={tv_weight}, pixel={pixel_weight}, grid={grid_weight}, hatch={hatch_weight}")
        self.grid_weight, self.grid_period = grid_weight, grid_period
        self.hatch_weight = hatch_weight
        self.feature_weights = dict(feature_weights)
        self.tv_weight = tv_weight
        self.pixel_weight = pixel_weight
        self.vgg = VGG16Features(tuple(self.feature_weights), weights=vgg_weights) if self.feature_weights else None

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms: dict[str, torch.Tensor] = {}
        if self.vgg is not None:
            with torch.no_grad():
                target_features = self.vgg(target)
            output_features = self.vgg(output)
            for name, weight in self.feature_weights.items():
                terms[name] = weight * F.mse_loss(output_features[name].float(), target_features[name].float())
        if self.tv_weight:
            terms["tv"] = self.tv_weight * total_variation(output.float())
        if self.grid_weight:
            terms["grid"] = self.grid_weight * periodic_error(output, target, self.grid_period)
        if self.hatch_weight:
            terms["hatch"] = self.hatch_weight * spectral_excess(output, target)
        if self.pixel_weight:
            terms["pixel"] = self.pixel_weight * F.mse_loss(output.float(), target.float())
        total = sum(terms.values(), torch.zeros((), device=output.device))
        return total, terms
