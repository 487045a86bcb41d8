"""ONNX export, and an ONNX Runtime model that `upscale` runs like the PyTorch one.

`export_onnx(model, "model.onnx")` writes the network with dynamic batch, height and width, and
its architecture in the file's metadata; `OnnxSR("model.onnx")` loads it with ONNX Runtime (CPU)
as a module with the same `scale` and `config`, so tiling, colour fix and every input kind work
unchanged: `upscale(OnnxSR("model.onnx"), "photo.jpg")`, or `perceptual-sr upscale --model model.onnx`.
Needs the `export` extra (onnx, onnxruntime).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from perceptual_sr.atomic_write import atomic_file
from perceptual_sr.model import PerceptualSR, SRConfig

DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "low_res", "high_res"
CONFIG_KEY = "perceptual_sr_config"  # metadata entry holding SRConfig as JSON


def export_onnx(model: PerceptualSR, path: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """Write `model` (eval mode: output clamped to [0, 1]) as ONNX; returns the path. Atomic."""
    import onnx

    if not isinstance(opset, int) or not 13 <= opset <= 23:
        raise ValueError(f"opset must be an integer from 13 to 23, got {opset!r}")
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"the output file should end in .onnx, got {str(path)!r}")
    was_training = model.training
    model.eval()
    try:
        with atomic_file(path) as staging:
            example = torch.rand(1, 3, 32, 32, device=next(model.parameters()).device)
            # The TorchScript-based exporter: dynamic height and width through reflection padding,
            # nearest and bicubic resizing export cleanly (max abs difference ~1e-6 against PyTorch).
            with warnings.catch_warnings():
                # Tracing notes on the input-shape check and on constant folding: harmless here.
                warnings.simplefilter("ignore")
                options = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset,
                               dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                                             OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}})
                try:
                    torch.onnx.export(model, (example,), str(staging), dynamo=False, **options)
                except TypeError:  # torch before 2.5 has no `dynamo` switch: its exporter is this one
                    torch.onnx.export(model, (example,), str(staging), **options)
            graph = onnx.load(str(staging))
            onnx.checker.check_model(graph)
            onnx.helper.set_model_props(graph, {CONFIG_KEY: json.dumps(dataclasses.asdict(model.config))})
            onnx.save(graph, str(staging))
    finally:
        model.train(was_training)
    return path


class OnnxSR(nn.Module):
    """An exported network run by ONNX Runtime on the CPU, usable wherever a PerceptualSR is upscaled."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX file {str(path)!r} does not exist")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            metadata = self.session.get_modelmeta().custom_metadata_map
            self.config = SRConfig.from_dict(json.loads(metadata[CONFIG_KEY]))
        except (KeyError, json.JSONDecodeError) as error:
            raise ValueError(f"{str(path)!r} was not written by perceptual-sr export (no {CONFIG_KEY})") from error
        except Exception as error:  # onnxruntime raises its own exception types for unreadable files
            raise ValueError(f"cannot load {str(path)!r} with ONNX Runtime: {error}") from error

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, low_res: torch.Tensor) -> torch.Tensor:
        batch = np.ascontiguousarray(low_res.detach().float().cpu().numpy())
        (high_res,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        return torch.from_numpy(high_res).to(low_res.device)
