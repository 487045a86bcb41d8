"""An exported model run by ONNX Runtime with its cleanup: `perceptual-sr upscale --model model.onnx`.

`export_pipeline_onnx(pipeline, "model.onnx")` writes the upscaler (`onnx_export.export_onnx`) and,
where the pipeline has a cleanup network, the cleanup beside it as `model.cleanup.onnx`: a graph
with a `strength` input, so `cleanup` and `cleanup="auto"` keep working. Two graphs, not one, so
that a clean input (strength 0) runs the upscaler alone and costs what it did before.
`OnnxPipeline("model.onnx")` loads both (the cleanup where its file is there) and upscales,
restores and measures like an `SRPipeline`, at the `detail` the file was exported with.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from perceptual_sr.inference.image_pipeline import ImagePipeline, check_axis_value, check_cleanup_setting
from perceptual_sr.inference.onnx_export import (
    DEFAULT_OPSET,
    INPUT_NAME,
    OUTPUT_NAME,
    OnnxSR,
    _write_onnx,
    config_in_metadata,
    export_onnx,
    open_exported,
)
from perceptual_sr.inference.pipeline import SRPipeline
from perceptual_sr.networks.restorer import CleanupAt, CleanupConfig, CleanupNet, pad_for_cleanup
from perceptual_sr.utils.image_io import check_image_file, check_outscale

STRENGTH_NAME = "strength"
CLEANUP_CONFIG_KEY = "perceptual_sr_cleanup_config"
CLEANUP_SUFFIX = ".cleanup.onnx"


def cleanup_onnx_path(path: str | Path) -> Path:
    """Where the cleanup of the exported upscaler `path` lives: model.onnx -> model.cleanup.onnx."""
    path = Path(path)
    stem = path.name[: -len(path.suffix)] if path.suffix.lower() == ".onnx" else path.name
    return path.with_name(stem + CLEANUP_SUFFIX)


def export_pipeline_onnx(pipeline: SRPipeline, path: str | Path, *, detail: float = 1.0,
                         opset: int = DEFAULT_OPSET) -> list[Path]:
    """Write the pipeline's upscaler at `detail` to `path` and its cleanup network (if it has one)
    to `cleanup_onnx_path(path)`; returns the files written. A pipeline whose upscaler blends
    toward real-photo weights along `cleanup` cannot be exported whole (the blend would need the
    strength in the upscaler's graph): ValueError. Without a cleanup network, a `.cleanup.onnx`
    left beside `path` by an earlier export is removed, so the pair on disk is always one model's."""
    path = Path(path)
    if pipeline.has_cleanup_network() and pipeline.blends_cleanup():
        raise ValueError("this model blends its upscaler toward real-photo weights along cleanup as well as running "
                         "a cleanup network; ONNX export covers the cleanup network with one upscaler")
    written = [export_onnx(pipeline.network_at(detail=detail), path, opset=opset, detail=detail)]
    if pipeline.has_cleanup_network():
        written.append(export_cleanup_onnx(pipeline.cleanup_network(), cleanup_onnx_path(path), opset=opset))
    else:
        cleanup_onnx_path(path).unlink(missing_ok=True)
    return written


class _ExportableCleanup(nn.Module):
    """The cleanup as ONNX runs it: an input already padded by `pad_for_cleanup`, a (1,) strength."""

    def __init__(self, network: CleanupNet) -> None:
        super().__init__()
        self.network = network

    def forward(self, low_res: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        strength = strength.reshape(1, 1, 1, 1)
        return (low_res + strength * self.network.correction(low_res, strength)).clamp(0.0, 1.0)


def export_cleanup_onnx(network: CleanupNet, path: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """Write `network` as ONNX with inputs `low_res` (B, 3, H, W; H, W even and >= 4) and
    `strength` (1,), output clamped to [0, 1]. Atomic."""
    path = Path(path)
    exportable = _ExportableCleanup(network).eval()
    return _write_onnx(exportable, path, opset, {CLEANUP_CONFIG_KEY: json.dumps(dataclasses.asdict(network.config))},
                       extra_inputs={STRENGTH_NAME: torch.ones(1)})


class OnnxCleanup(nn.Module):
    """An exported cleanup network run by ONNX Runtime: `(lr, strength) -> cleaned lr`, as `CleanupNet`.
    `threads`, `provider`, `precision`: as for `OnnxSR`."""

    def __init__(self, path: str | Path, threads: int | None = None, provider: str = "auto",
                 precision: str = "auto") -> None:
        super().__init__()
        path = check_image_file(path, what="ONNX file")
        self.session, self.provider, self.precision, metadata = open_exported(path, threads, provider, precision)
        self.config = config_in_metadata(path, metadata, CLEANUP_CONFIG_KEY, CleanupConfig)
        probe = np.full((1, 3, 8, 8), 0.5, np.float32)
        try:
            (cleaned,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: probe, STRENGTH_NAME: np.ones(1, np.float32)})
        except Exception as error:  # onnxruntime's own exception types
            raise ValueError(f"{str(path)!r} does not run as a cleanup network: {str(error).splitlines()[0][:200]}"
                             ) from error
        if cleaned.shape != probe.shape or not np.isfinite(cleaned).all():
            raise ValueError(f"{str(path)!r} turns an 8x8 grey probe into {cleaned.shape} with "
                             f"{'finite' if np.isfinite(cleaned).all() else 'NaN'} values; export it again")

    def forward(self, lr: torch.Tensor, strength: float) -> torch.Tensor:
        height, width = lr.shape[-2:]
        padded = np.ascontiguousarray(pad_for_cleanup(lr.detach().float().cpu()).numpy())
        (cleaned,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: padded,
                                                      STRENGTH_NAME: np.array([strength], np.float32)})
        return torch.from_numpy(cleaned[:, :, :height, :width]).to(lr.device)


class OnnxPipeline(ImagePipeline):
    """`OnnxPipeline("model.onnx")`: the exported upscaler and, where `model.cleanup.onnx` is
    beside it, its cleanup; `upscale`, `run`, `restore` and `assess` as `SRPipeline`'s. `detail`
    is the one the file was exported at; `cleanup` (and "auto") needs the cleanup file.
    `onnx_options`: `threads`, `provider`, `precision` of `OnnxSR`."""

    def __init__(self, path: str | Path, **onnx_options: Any) -> None:
        self.upscaler = OnnxSR(path, **onnx_options)
        self.detail = self.upscaler.detail
        cleanup_path = cleanup_onnx_path(path)
        self.cleanup = OnnxCleanup(cleanup_path, **onnx_options) if cleanup_path.is_file() else None
        self.axes = ("cleanup",) if self.cleanup is not None else ()

    @property
    def scale(self) -> int:
        return self.upscaler.scale

    def describe(self) -> str:
        return self.upscaler.describe() + (", with its cleanup network" if self.cleanup is not None else "")

    def has_cleanup_network(self) -> bool:
        return self.cleanup is not None

    def check_settings(self, detail: Any = None, cleanup: Any = "auto",
                       outscale: Any = None) -> tuple[float, float | str, float]:
        if detail is not None and check_axis_value("detail", detail) != self.detail:
            raise ValueError(f"this .onnx file runs the detail it was exported at, {self.detail:g}; export the blend "
                             "you want with `perceptual-sr export --detail D`, or use the PyTorch weights")
        cleanup = check_cleanup_setting(cleanup)
        if cleanup != "auto":
            if cleanup and self.cleanup is None:
                raise ValueError(f"cleanup {cleanup:g} needs the cleanup network, and there is no "
                                 f"{cleanup_onnx_path('model.onnx').name}-style file beside this .onnx file; "
                                 "export a model that has one with `perceptual-sr export`")
        outscale = float(self.scale) if outscale is None else check_outscale(outscale)
        return self.detail, cleanup, outscale

    def inference_network(self, device: torch.device, fast: bool = True, **point: float) -> nn.Module:
        return self.upscaler

    def cleanup_at(self, strength: float, device: torch.device | str = "cpu") -> CleanupAt | None:
        if self.cleanup is None or check_axis_value("cleanup", strength) == 0.0:
            return None
        return CleanupAt(self.cleanup, strength)
