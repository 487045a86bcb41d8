"""The image-transformation network of Johnson et al. (2016) for super-resolution.

Johnson, Alahi & Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and
Super-Resolution", ECCV 2016, supplementary material, Table 2 (x4 / x8 SR nets):
9x9 conv -> residual blocks -> log2(scale) x2 upsampling stages -> 9x9 conv -> scaled tanh.

`PerceptualSR` is an `nn.Module` with the Hugging Face Hub mixin, so `save_pretrained`,
`from_pretrained` and `push_to_hub` write and read `config.json` + `model.safetensors`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import constants
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError
from safetensors import SafetensorError
from torch import nn

from perceptual_sr.hub import model_card, weights
from perceptual_sr.networks.hub_module import SafeHubModule
from perceptual_sr.networks.network_ends import check_rgb_batch, output_head
from perceptual_sr.utils.config_flags import config_from_dict, is_whole_number, setting

MODEL_TYPE = "perceptual-sr"
SCALES = (2, 4, 8)
NORMS = ("batch", "instance")
UPSAMPLERS = ("deconv", "pixelshuffle", "resize-conv")
GLOBAL_SKIPS = ("none", "bicubic")
# 125x the default network's 0.4M parameters: 200 MB of fp32 weights, before inference copies.
MAX_PARAMETERS = 50_000_000



@dataclass(frozen=True)
class SRConfig:
    """Architecture of the network; serialised to `config.json` by `save_pretrained`.

    scale: upscaling factor (2, 4 or 8; one x2 stage per factor of two).
    channels: feature channels of the body (64 in the paper).
    residual_blocks: number of residual blocks (4 in the paper's SR nets).
    norm: "batch" (the paper) or "instance".
    upsampler: "deconv" (the paper's fractionally strided conv), "pixelshuffle"
        (sub-pixel conv, Shi et al. 2016) or "resize-conv" (nearest x2 then conv,
        which avoids checkerboard artifacts: Odena et al., Distill 2016).
    full_res_channels: channels of the last x2 stage, which runs at output resolution, and of the
        tail's input; None: `channels`. Each channel there costs scale**2 times one at input
        resolution, so a leaner last stage pays for more residual blocks at the same speed.
    global_skip: "none" (the paper: the net paints the whole image, through a scaled tanh) or
        "bicubic" (the net adds a residual to bicubic upscaling, which anchors colour; the
        output is clamped to [0, 1] in eval mode only).
    """

    model_type: str = setting(MODEL_TYPE, "written to config.json, so a saved folder says what it holds", flag=False)
    scale: int = setting(4, "upscaling factor", choices=SCALES)
    channels: int = setting(64, "feature channels of the body")
    residual_blocks: int = setting(4, "residual blocks at input resolution")
    norm: str = setting("batch", "normalisation", choices=NORMS)
    upsampler: str = setting("deconv", "x2 stage", choices=UPSAMPLERS)
    global_skip: str = setting("none", "none: paint the image through a tanh; bicubic: add a residual to bicubic",
                               choices=GLOBAL_SKIPS)
    full_res_channels: int | None = setting(None, "channels of the last x2 stage and the tail (none: --channels)")

    def __post_init__(self) -> None:
        if self.model_type != MODEL_TYPE:
            raise ValueError(f"config.json describes a {self.model_type!r} model, not a {MODEL_TYPE!r} one; "
                             "load it with the library that wrote it")
        if self.scale not in SCALES or isinstance(self.scale, bool):
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")
        if not is_whole_number(self.channels) or self.channels < 1:
            raise ValueError(f"channels must be a positive integer, got {self.channels!r}")
        if not is_whole_number(self.residual_blocks) or self.residual_blocks < 0:
            raise ValueError(f"residual_blocks must be a non-negative integer, got {self.residual_blocks!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler must be one of {UPSAMPLERS}, got {self.upsampler!r}")
        if self.full_res_channels is not None and (not is_whole_number(self.full_res_channels) or self.full_res_channels < 1):
            raise ValueError(f"full_res_channels must be a positive integer or None, got {self.full_res_channels!r}")
        if self.global_skip not in GLOBAL_SKIPS:
            raise ValueError(f"global_skip must be one of {GLOBAL_SKIPS}, got {self.global_skip!r}")
        if self.parameter_count() > MAX_PARAMETERS:
            # Checked before anything is allocated: a damaged config.json (channels: 4096) would
            # otherwise grow for tens of seconds into an allocator error.
            raise ValueError(f"this configuration describes a network of {self.parameter_count():,} parameters "
                             f"(channels={self.channels}, residual_blocks={self.residual_blocks}); at most "
                             f"{MAX_PARAMETERS:,} are accepted. Is config.json damaged?")

    def parameter_count(self) -> int:
        """The network's parameters and BatchNorm statistics, counted from the configuration alone."""
        c, last, stages = self.channels, self.full_res_channels or self.channels, int(math.log2(self.scale))
        norm = 4 if self.norm == "batch" else 2  # weight, bias (+ running mean, variance)
        head = 3 * c * 81 + c + norm * c
        body = self.residual_blocks * 2 * (c * c * 9 + c + norm * c)
        widths = [c] * stages + [last]
        factor = 4 if self.upsampler == "pixelshuffle" else 1
        upsample = sum(widths[k] * widths[k + 1] * factor * 9 + widths[k + 1] * (factor + norm) for k in range(stages))
        return head + body + upsample + last * 3 * 81 + 3

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SRConfig":
        """Build from a dict (e.g. a parsed config.json); unknown keys are an error."""
        return config_from_dict(cls, values)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    raise ValueError(f"unknown norm {kind!r}")


def _conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    # Reflection padding, as the paper, to keep borders free of zero-padding artifacts.
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, padding_mode="reflect")


class ResidualBlock(nn.Module):
    """3x3 conv - norm - ReLU - 3x3 conv - norm, plus the identity (Gross & Wilber 2016)."""

    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(channels, channels, 3), _norm(norm, channels), nn.ReLU(),
            _conv(channels, channels, 3), _norm(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _upsample_x2(kind: str, in_channels: int, out_channels: int, norm: str) -> nn.Sequential:
    """One x2 upsampling stage followed by norm and ReLU."""
    if kind == "deconv":
        # The paper's "fractionally strided convolution" (stride 1/2).
        layer: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1)
    elif kind == "pixelshuffle":
        layer = nn.Sequential(_conv(in_channels, 4 * out_channels, 3), nn.PixelShuffle(2))
    elif kind == "resize-conv":
        layer = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _conv(in_channels, out_channels, 3))
    else:
        raise ValueError(f"unknown upsampler {kind!r}")
    return nn.Sequential(layer, _norm(norm, out_channels), nn.ReLU())


class PerceptualSR(
    SafeHubModule,
    # The card and its metadata come from model_card.build (generate_model_card below), one source.
    library_name=model_card.LIBRARY,
):
    """Feed-forward super-resolution network. Input and output: float RGB NCHW in [0, 1].

    `PerceptualSR()` builds the default x4 network with random weights;
    `PerceptualSR.from_pretrained()` loads the trained weights bundled in the package.
    """

    config_class = SRConfig

    def __init__(self, config: SRConfig | dict | None = None) -> None:
        super().__init__()
        self.config = config = self._check_config(config)
        # The mixin writes this to config.json; set it here so `PerceptualSR()` is saved too.
        self._hub_mixin_config = config
        c = config.channels
        self.head = nn.Sequential(_conv(3, c, 9), _norm(config.norm, c), nn.ReLU())
        self.body = nn.Sequential(*[ResidualBlock(c, config.norm) for _ in range(config.residual_blocks)])
        stages = int(math.log2(config.scale))
        last = config.full_res_channels or c
        widths = [c] * stages + [last]  # in and out channels of each stage
        self.upsample = nn.Sequential(*[_upsample_x2(config.upsampler, widths[k], widths[k + 1], config.norm)
                                        for k in range(stages)])
        self.tail = _conv(last, 3, 9)
        if config.global_skip == "bicubic":
            # Start as exactly bicubic upscaling; the net then learns only the residual detail.
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        check_rgb_batch(lr)
        x = self.head(lr)  # (B, C, H, W)
        x = self.body(x)  # (B, C, H, W)
        x = self.upsample(x)  # (B, C, scale*H, scale*W)
        x = self.tail(x)  # (B, 3, scale*H, scale*W)
        return output_head(self.config.global_skip, self.scale, lr, x, clamp=not self.training)

    # --- Hub format -------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path | None = None, **kwargs: Any) -> "PerceptualSR":
        """Load one weight set: a Hub repo id, a local folder, or (no argument) the bundled default.

        Keyword arguments (revision, cache_dir, token, force_download, local_files_only,
        map_location, ...) pass through to `huggingface_hub`. Loading is strict: a missing,
        extra or renamed tensor raises an error instead of leaving random weights. For the
        `detail` blend of a folder's weight sets, load an `SRPipeline`.
        """
        if "detail" in kwargs:
            raise ValueError("a PerceptualSR is one weight set; for `detail`, load "
                             "`perceptual_sr.SRPipeline.from_pretrained(...)` and pass detail to its upscale()")
        if pretrained_model_name_or_path is None:
            pretrained_model_name_or_path = weights.default_model_folder()
        path = Path(pretrained_model_name_or_path)
        if path.is_absolute() or str(pretrained_model_name_or_path).startswith(".") or path.exists():
            check_model_folder(path)
        try:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except (HFValidationError, LocalEntryNotFoundError, HfHubHTTPError) as error:
            raise FileNotFoundError(
                f"could not get model {str(pretrained_model_name_or_path)!r} from the Hugging Face Hub "
                f"({type(error).__name__}: {error}); check the repo id, your connection and token, "
                "or pass a local folder written by save_pretrained"
            ) from error
        except (RuntimeError, TypeError, AttributeError, SafetensorError, json.JSONDecodeError) as error:
            raise ValueError(f"could not load weights from {str(pretrained_model_name_or_path)!r}: {error}") from error

    def generate_model_card(self, *args: Any, **kwargs: Any):
        """Model card written next to the weights by `save_pretrained` and `push_to_hub`."""
        return model_card.build(self.config, sum(p.numel() for p in self.parameters()), **kwargs)


def check_model_folder(path: Path) -> Path:
    """`path` if it is a folder holding a readable config.json and model.safetensors; otherwise
    FileNotFoundError / ValueError saying what is missing."""
    if path.is_file() and path.name in (constants.SAFETENSORS_SINGLE_FILE, constants.CONFIG_NAME):
        raise FileNotFoundError(f"{str(path)!r} is a file; pass the folder that holds it ({str(path.parent)!r})")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{str(path)!r} is a file, not a model folder: pass the folder save_pretrained wrote "
                         "(an exported .onnx file runs with `perceptual-sr upscale --model`, and cannot be trained on)")
    if not path.is_dir():
        raise FileNotFoundError(f"model folder {str(path)!r} does not exist")
    for name in (constants.CONFIG_NAME, constants.SAFETENSORS_SINGLE_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(f"model folder {str(path)!r} has no {name}; was it written by save_pretrained?")
    _read_config(path / constants.CONFIG_NAME)  # a clear error before the mixin trips on a bad one
    return path


def _read_config(path: Path) -> dict[str, Any]:
    """A config.json's object; ValueError naming the file if it is not JSON or not an object."""
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from error
    if not isinstance(config, dict):
        raise ValueError(f"{path} holds {config!r}, not a configuration object; was it written by save_pretrained?")
    return config
