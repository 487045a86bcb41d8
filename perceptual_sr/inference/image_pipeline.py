"""What every pipeline does with images, whatever holds its networks: settings in, image out.

`ImagePipeline` owns the front door of an upscale or a restore: it checks the settings and the
input once, measures the input for `cleanup="auto"`, runs the cleanup network and the upscaler
its subclass provides (`inference_network`, `cleanup_at`), and says what it chose
(`UpscaleResult`). `SRPipeline` provides them from blended PyTorch weight sets,
`OnnxPipeline` from exported ONNX files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from perceptual_sr.inference import auto_cleanup
from perceptual_sr.inference import upscale as inference
from perceptual_sr.inference.auto_cleanup import InputQuality
from perceptual_sr.utils.image_io import open_image
from perceptual_sr.utils.runtime import choose_device

# Axes of the settings and the value each takes when a caller does not say.
AXES = {"detail": 1.0, "cleanup": 0.0}


class ImagePipeline:
    """The image side of a pipeline. Subclasses provide `scale`, `axes`, `check_settings`,
    `inference_network`, `cleanup_at` and `has_cleanup_network`."""

    axes: tuple[str, ...] = ()

    @property
    def scale(self) -> int:
        raise NotImplementedError

    def has_axis(self, axis: str) -> bool:
        """Whether this model can vary `axis` (e.g. "detail" needs the pixel-loss twin)."""
        return axis in self.axes

    def has_cleanup_network(self) -> bool:
        raise NotImplementedError

    def check_settings(self, detail: Any = None, cleanup: Any = "auto",
                       outscale: Any = None) -> tuple[float, float | str, float]:
        raise NotImplementedError

    def inference_network(self, device: torch.device, fast: bool = True, **point: float) -> nn.Module:
        raise NotImplementedError

    def cleanup_at(self, strength: float, device: torch.device | str = "cpu") -> nn.Module | None:
        raise NotImplementedError

    def upscale(self, image: Any, *, detail: float | None = None, cleanup: float | str | None = "auto",
                outscale: float | None = None, **options: Any) -> Any:
        """Upscale a PIL image, path, numpy array or tensor by `scale`; returns the same kind.

        detail: 0.0 (the pixel-loss twin: faithful, smoother) ... 1.0 (the feature-loss model:
        sharper, invented texture; the default).
        cleanup: 0.0 (the weights for clean inputs) ... 1.0 (the weights fine-tuned on JPEG
        blocks, noise and blur); "auto" (the default) measures the input (`assess`); a model
        without the real-photo weights always runs at 0.
        outscale: the final size as a multiple of the input's (e.g. 2 or 3 from this x4 model: the
        result resized with Lanczos); None: `scale`. For PIL images, paths and numpy arrays.
        Other options: the fields of `inference.UpscaleOptions`.
        `run` takes the same arguments and also says what it chose.
        """
        return self.run(image, detail=detail, cleanup=cleanup, outscale=outscale, **options).image

    def run(self, image: Any, *, detail: float | None = None, cleanup: float | str | None = "auto",
            outscale: float | None = None, **options: Any) -> "UpscaleResult":
        """`upscale`, returning the image with the settings it ran at (`UpscaleResult`): the
        detail, the cleanup `auto` chose and what it read, and the output scale. Every setting is
        checked before the input is read, and the input before it is measured."""
        settings = inference.UpscaleOptions(**options)
        detail, cleanup, outscale = self.check_settings(detail, cleanup, outscale)
        if isinstance(image, torch.Tensor) and outscale != self.scale:
            raise ValueError("outscale works on PIL images, paths and numpy arrays; resize a tensor result "
                             "with torch.nn.functional.interpolate")
        image, cleanup, quality = self._read_and_measure(image, cleanup, settings.max_pixels)
        device = choose_device(settings.device)
        network = self.inference_network(device, settings.fast, detail=detail, cleanup=cleanup)
        result = inference.upscale_with(network, image, settings, device, self.cleanup_at(cleanup, device))
        return UpscaleResult(inference.apply_outscale(result, self.scale, outscale), detail, cleanup, quality, outscale)

    def restore(self, image: Any, *, cleanup: float | str | None = "auto", **options: Any) -> Any:
        """The cleaned input at its own size, without upscaling: a JPEG block and noise remover.
        Takes and returns what `upscale` does; `cleanup` as there ("auto" reads the input). Needs
        a model with a cleanup network. `run_restore` also says what it chose."""
        return self.run_restore(image, cleanup=cleanup, **options).image

    def run_restore(self, image: Any, *, cleanup: float | str | None = "auto", **options: Any) -> "UpscaleResult":
        """`restore`, returning the image with the strength it ran at (`UpscaleResult`, outscale 1)."""
        if not self.has_cleanup_network():
            raise ValueError("this model has no cleanup network (a cleanup/ folder), so it cannot restore without "
                             "upscaling; load the bundled default or a folder that has one")
        settings = inference.UpscaleOptions(**{"color_fix": None, **options})
        _, cleanup, _ = self.check_settings(None, cleanup, None)
        image, cleanup, quality = self._read_and_measure(image, cleanup, settings.max_pixels)
        device = choose_device(settings.device)
        # No upscaler, the cleanup as in `upscale` (its tiles and overlap); at strength 0 nothing runs,
        # and the input comes back through the same decode and encode as any other.
        result = inference.upscale_with(_NoUpscale(), image, settings, device, self.cleanup_at(cleanup, device))
        return UpscaleResult(result, AXES["detail"], cleanup, quality, 1.0)

    def components_for(self, image: Any, *, detail: float | None = None, cleanup: float | str | None = "auto"
                       ) -> tuple[nn.Module, nn.Module | None]:
        """(upscaler, cleanup) that `upscale` would run for `image` on the CPU, the cleanup None
        where nothing is cleaned ("auto" measured on `image`): what evaluation scores per image."""
        detail, cleanup, _ = self.check_settings(detail, cleanup)
        strength = self.assess(image).cleanup if cleanup == "auto" else cleanup
        return self.scored_network(detail, strength), self.cleanup_at(strength)

    def scored_network(self, detail: float, cleanup: float) -> nn.Module:
        """The upscaler evaluation scores at (`detail`, `cleanup`), on the CPU: the inference form
        here; `SRPipeline` gives its plain blend, which evaluation prepares as it is told."""
        return self.inference_network(torch.device("cpu"), detail=detail, cleanup=cleanup)

    def _read_and_measure(self, image: Any, cleanup: float | str,
                          max_pixels: int | None) -> tuple[Any, float, InputQuality | None]:
        """(the input, opened if a path and checked as `upscale` checks it; the cleanup strength, "auto"
        measured on it; what auto read, or None)."""
        if isinstance(image, (str, Path)):
            image = open_image(image, max_pixels=max_pixels)
        inference.check_input(image, max_pixels)  # before anything measures it
        quality = self._measure(image) if cleanup == "auto" else None
        return image, quality.cleanup if quality is not None else cleanup, quality

    def assess(self, image: Any, max_pixels: int | None = inference.DEFAULT_MAX_PIXELS) -> InputQuality:
        """What `cleanup="auto"` chooses for `image`, and why: a path, a PIL image as opened (so a
        JPEG keeps its quantization tables), or an array or tensor as `upscale` takes them (noise
        only: pixels carry no tables). Always 0 when this model has no real-photo weights. The
        input is checked as `upscale` checks it, so what it refuses is refused here too."""
        if isinstance(image, (str, Path)):
            image = open_image(image, max_pixels=max_pixels)
        inference.check_input(image, max_pixels)
        return self._measure(image)

    def _measure(self, image: Any) -> InputQuality:
        """`assess` of an input already checked."""
        if not self.has_axis("cleanup"):
            return InputQuality(None, 0.0, 0.0)
        return auto_cleanup.assess(image)




@dataclass(frozen=True)
class UpscaleResult:
    """What `SRPipeline.run` made and the settings it ran at. `quality` is what `cleanup="auto"`
    read off the input (None when the cleanup was given)."""

    image: Any
    detail: float
    cleanup: float
    quality: InputQuality | None
    outscale: float

    def describe(self) -> str:
        """One line for people: "cleanup 0.75 (auto: JPEG quality ~80, noise ~2.1/255)"."""
        return self.quality.describe() if self.quality is not None else f"cleanup {self.cleanup:.2f}"


class _NoUpscale(nn.Module):
    """An "upscaler" of scale 1 that returns its input: `restore` is `upscale` with it."""

    scale = 1

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return lr


def check_cleanup_setting(cleanup: Any) -> float | str:
    """`cleanup` as a caller may pass it: "auto", a number in [0, 1] (numpy numbers too) or None
    (the default, 0); ValueError otherwise."""
    if cleanup is None:
        return AXES["cleanup"]
    if isinstance(cleanup, str):
        if cleanup == "auto":
            return cleanup
        raise ValueError(f"cleanup must be \"auto\" or a number from 0.0 to 1.0, got {cleanup!r}")
    return check_axis_value("cleanup", cleanup)


def check_axis_value(axis: str, value: Any) -> float:
    """A blend-axis value as a float in [0, 1] (numpy numbers included); ValueError otherwise."""
    if (not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_))
            or not 0.0 <= value <= 1.0):
        raise ValueError(f"{axis} must be a number from 0.0 to 1.0, got {value!r}")
    return float(value)


