"""The cleanup network: cleans the low-resolution input (JPEG damage and noise, or its colour only)
before the upscaler.

Why a network of its own, at the input's resolution: given the *clean* LR, the upscaler beats
Real-ESRGAN on real-photo benchmarks; given a JPEG it does not, because one small set of weights
with about 14 LR pixels of receptive field is asked to undo 8x8 blocks and noise and to invent
4x detail at once. A cleanup at LR costs 16x less per output pixel than the same work at HR.

Architecture: a plain stack of 3x3 convolutions with PReLU, as Real-ESRGAN's SRVGGNetCompact
(Wang et al. 2021), run mostly at half the input's resolution (pixel-unshuffle, Shi et al. 2016)
so that a receptive field of several JPEG blocks costs little:

    [LR, strength] -> 2 convs at LR size -> unshuffle x2 -> `blocks` convs at LR/2 (residual)
                   -> back to LR size (`upsample`) -> 2 convs at LR size -> correction

The output is `lr + strength * correction`: strength 0 returns the input exactly and the change
grows with the strength. The strength is also an input channel, so the network knows how hard
to clean (FBCNN, Jiang et al. 2021, conditions on the JPEG quality the same way). With
`corrects="chroma"` (the bundled network) the correction is colour only, and only near colour in
the input: the luma reaches the upscaler exactly (`CORRECTIONS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from perceptual_sr.hub import model_card
from perceptual_sr.networks.hub_module import SafeHubModule
from perceptual_sr.networks.network_ends import check_rgb_batch
from perceptual_sr.utils.color import luma_plane
from perceptual_sr.utils.config_flags import config_from_dict, is_whole_number, setting

CLEANUP_MODEL_TYPE = "perceptual-sr-cleanup"
# A damaged config.json (channels: 4096) must fail before it allocates gigabytes.
MAX_PARAMETERS = 20_000_000
# How the body's features return to the input's size. "shuffle": a conv to 4x the channels, then
# pixel-shuffle (Shi et al. 2016). "resize": bilinear x2, then a conv (Odena et al. 2016,
# "Deconvolution and Checkerboard Artifacts"). Measured: with an adversarial term the shuffle
# network painted a 2-pixel grid (each of its 4 sub-pixel phases has its own weights), which the
# upscaler magnified; a resize has no per-phase weights to paint one with.
UPSAMPLINGS = ("shuffle", "resize")
# What the correction may change. "rgb": all three channels. "chroma": colour only, the input's
# luma kept exactly. Measured on Set5 and held-out training crops at JPEG 75 (the default behind):
# every trained RGB cleanup made LPIPS worse through its luma (the upscaler paints more on the
# JPEG's own luma than on a smoothed one) and better through its chroma, while a clean chroma alone
# (JPEG 4:2:0 keeps a quarter of it, coarsely quantized) took 0.585 -> 0.435 and 0.612 -> 0.501.
CORRECTIONS = ("rgb", "chroma")
# A colour-only network changes colour only where the input has some within CHROMA_REACH pixels,
# fully where R, G and B spread over CHROMA_FLOOR 8-bit levels or more. Measured: without it, the
# networks invented colour on black-and-white photos (Set14's grey images at JPEG 75: LPIPS 0.53 ->
# 0.66 on one), while the 4:2:0 bleeding it must remove lies beside colour by nature.
CHROMA_FLOOR = 4.0
CHROMA_REACH = 4


@dataclass(frozen=True)
class CleanupConfig:
    """Architecture of the cleanup network; serialised to its `config.json`.

    channels: feature channels of the half-resolution body.
    full_res_channels: feature channels at the input's resolution (head and tail).
    blocks: 3x3 convolutions of the body; each widens the receptive field by 4 LR pixels.
    upsample: how the body's features return to the input's size (`UPSAMPLINGS`).
    corrects: what the correction may change (`CORRECTIONS`).
    """

    model_type: str = setting(CLEANUP_MODEL_TYPE, "written to config.json, so a saved folder says what it holds",
                              flag=False)
    channels: int = setting(64, "feature channels of the half-resolution body")
    full_res_channels: int = setting(32, "feature channels at the input's resolution")
    blocks: int = setting(8, "3x3 convolutions of the body (each adds 4 LR pixels of receptive field)")
    # Saved folders from before the choice existed hold the shuffle network: it stays the default.
    upsample: str = setting("shuffle", "how the body's features return to the input's size: shuffle "
                                       "(conv + pixel-shuffle) or resize (bilinear + conv)", choices=UPSAMPLINGS)
    corrects: str = setting("rgb", "what the correction may change: rgb (all three channels) or chroma (colour only; "
                                   "the input's luma is kept)", choices=CORRECTIONS)

    def __post_init__(self) -> None:
        if self.model_type != CLEANUP_MODEL_TYPE:
            raise ValueError(f"config.json describes a {self.model_type!r} model, not a {CLEANUP_MODEL_TYPE!r} one")
        for name in ("channels", "full_res_channels", "blocks"):
            value = getattr(self, name)
            if not is_whole_number(value) or value < (0 if name == "blocks" else 1):
                raise ValueError(f"{name} must be a {'non-negative' if name == 'blocks' else 'positive'} integer, "
                                 f"got {value!r}")
        if self.upsample not in UPSAMPLINGS:
            raise ValueError(f"upsample must be one of {UPSAMPLINGS}, got {self.upsample!r}")
        if self.corrects not in CORRECTIONS:
            raise ValueError(f"corrects must be one of {CORRECTIONS}, got {self.corrects!r}")
        if self.parameter_count() > MAX_PARAMETERS:
            raise ValueError(f"this configuration describes a cleanup network of {self.parameter_count():,} "
                             f"parameters; at most {MAX_PARAMETERS:,} are accepted. Is config.json damaged?")

    def parameter_count(self) -> int:
        c, f = self.channels, self.full_res_channels
        up = (c, 4 * f) if self.upsample == "shuffle" else (c, f)
        convs = [(4, f), (f, f), (4 * f, c), *[(c, c)] * self.blocks, up, (f, f), (f, 3)]
        prelus = f + f + c + c * self.blocks + f
        return sum(i * o * 9 + o for i, o in convs) + prelus

    def macs_per_pixel(self) -> int:
        """Multiply-accumulates per input pixel (the body runs on a quarter of the pixels)."""
        c, f = self.channels, self.full_res_channels
        full = 4 * f + f * f + f * f + f * 3
        half = 4 * f * c + self.blocks * c * c
        # Either way back costs c * f per input pixel: shuffle's c -> 4f conv runs on a quarter of
        # the pixels, resize's c -> f conv on all of them.
        back = c * f
        return 9 * full + 9 * half // 4 + 9 * back

    def receptive_field(self) -> int:
        """Side of the input square one output pixel depends on, in input pixels: 2 a side for each
        full-size 3x3 conv, 4 for each half-size one, and 1 for the 2x2 grouping of the unshuffle;
        a colour-only network also looks `CHROMA_REACH` pixels a side for colour."""
        gate = 2 * CHROMA_REACH if self.corrects == "chroma" else 0
        return 1 + 1 + 2 * 2 + 4 * (self.blocks + 2) + 2 * 2 + gate

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "CleanupConfig":
        """Build from a dict (e.g. a parsed config.json); unknown keys are an error."""
        return config_from_dict(cls, values)


def _conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    # Reflection padding, as the upscaler: zero padding darkens the borders of a cleaned image.
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, padding_mode="reflect")


class CleanupNet(SafeHubModule, library_name=model_card.LIBRARY):
    """(B, 3, H, W) LR in [0, 1] and a strength in [0, 1] (a number or one per image) -> the
    cleaned LR, same shape. Any size from 1x1 works."""

    config_class = CleanupConfig

    def __init__(self, config: CleanupConfig | dict | None = None) -> None:
        super().__init__()
        self.config = self._check_config(config)
        self._hub_mixin_config = self.config
        c, f = self.config.channels, self.config.full_res_channels
        self.head = nn.Sequential(_conv(4, f), nn.PReLU(f), _conv(f, f), nn.PReLU(f))
        self.down = nn.Sequential(nn.PixelUnshuffle(2), _conv(4 * f, c), nn.PReLU(c))
        self.body = nn.Sequential(*[layer for _ in range(self.config.blocks) for layer in (_conv(c, c), nn.PReLU(c))])
        if self.config.upsample == "shuffle":
            self.up = nn.Sequential(_conv(c, 4 * f), nn.PixelShuffle(2))
        else:
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), _conv(c, f))
        self.tail = nn.Sequential(_conv(f, f), nn.PReLU(f), _conv(f, 3))
        # Start as the identity (zero correction): training begins from "change nothing".
        nn.init.zeros_(self.tail[-1].weight)
        nn.init.zeros_(self.tail[-1].bias)

    def forward(self, lr: torch.Tensor, strength: torch.Tensor | float) -> torch.Tensor:
        check_rgb_batch(lr)
        batch, _, height, width = lr.shape
        strength = torch.as_tensor(strength, dtype=lr.dtype, device=lr.device).reshape(-1, 1, 1, 1)
        if strength.shape[0] not in (1, batch):
            raise ValueError(f"expected one strength or one per image ({batch}), got {strength.shape[0]}")
        correction = self.correction(pad_for_cleanup(lr), strength)[:, :, :height, :width]  # (B, 3, H, W)
        return lr + strength * correction

    def correction(self, lr: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        """The correction of an LR whose sides are even and at least 4 (`pad_for_cleanup`), before
        it is scaled by the strength; `strength` is (B or 1, 1, 1, 1). Shape-free, so it exports to ONNX."""
        x = torch.cat([lr, torch.ones_like(lr[:, :1]) * strength], dim=1)  # (B, 4, H, W)
        skip = self.head(x)  # (B, f, H, W)
        features = self.down(skip)  # (B, c, H/2, W/2)
        features = features + self.body(features)
        x = self.up(features) + skip  # (B, f, H, W)
        correction = self.tail(x)  # (B, 3, H, W)
        if self.config.corrects == "chroma":  # less its luma, added to all three channels: Cb and Cr
            # weigh R, G and B to a sum of 0, so they keep the change, and the luma loses it
            correction = correction - luma_plane(correction)
            correction = correction * _colour_nearby(lr)
        return correction

    def generate_model_card(self, *args: Any, **kwargs: Any):
        return model_card.build_component("cleanup", self.config, sum(p.numel() for p in self.parameters()))


def _colour_nearby(lr: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) in [0, 1]: how much colour the input has within `CHROMA_REACH` pixels, 1 where
    R, G and B spread over `CHROMA_FLOOR` levels or more; 0 all over a grey image."""
    colour = (lr.amax(dim=1, keepdim=True) - lr.amin(dim=1, keepdim=True)) * 255  # 0 exactly where R = G = B
    nearby = F.max_pool2d(colour, 2 * CHROMA_REACH + 1, stride=1, padding=CHROMA_REACH)
    return (nearby / CHROMA_FLOOR).clamp(max=1.0)


def pad_for_cleanup(lr: torch.Tensor) -> torch.Tensor:
    """`lr` extended at the bottom and right by repeating its edge until both sides are even and at
    least 4: the body runs at half size, and its reflection padding needs 2 pixels a side there."""
    height, width = lr.shape[-2:]
    padded_height, padded_width = max(4, height + height % 2), max(4, width + width % 2)
    return F.pad(lr, (0, padded_width - width, 0, padded_height - height), mode="replicate")


class CleanupAt(nn.Module):
    """A cleanup network bound to one strength, as an LR -> LR module that tiling and ONNX
    Runtime run like an upscaler of `scale` 1. Output clamped to [0, 1], as the upscaler's."""

    scale = 1

    def __init__(self, network: nn.Module, strength: float) -> None:
        super().__init__()
        self.network, self.strength = network, float(strength)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.network(lr, self.strength).clamp(0.0, 1.0)
