"""ONNX export, and an ONNX Runtime model that `upscale` runs like the PyTorch one.

`export_onnx(model, "model.onnx")` writes the network's inference form (`inference_network.build`:
BatchNorm folded, resize-conv stages as phase convolutions) with dynamic batch, height and width,
and its architecture in the file's metadata; `OnnxSR("model.onnx")` loads it with ONNX Runtime
(CPU) as a module with the same `scale` and `config`, so tiling, colour fix and every input kind
work unchanged: `upscale(OnnxSR("model.onnx"), "photo.jpg")`, or `perceptual-sr upscale --model
model.onnx`. Files written before the inference form (the plain module) load the same way.
Needs the `export` extra (onnx, onnxruntime). Where ONNX Runtime is the OpenVINO build
(`onnxruntime-openvino`), `OnnxSR` runs on its OpenVINO provider, in bf16 on CPUs with AMX: ONNX
Runtime's own CPU provider has no bf16 convolutions (README "Speed" has the measurements).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perceptual_sr.networks import inference_network
from perceptual_sr.networks.inference_network import PhaseNetwork
from perceptual_sr.networks.network_ends import output_head
from perceptual_sr.networks.phases import PHASES, reflected
from perceptual_sr.networks.upscaler import PerceptualSR, SRConfig
from perceptual_sr.utils import runtime
from perceptual_sr.utils.atomic_write import atomic_file
from perceptual_sr.utils.image_io import check_image_file

DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "low_res", "high_res"
CONFIG_KEY = "perceptual_sr_config"  # metadata entry holding SRConfig as JSON
# Metadata entry naming the exported form: "phase-network" (the inference rewrite), "folded" (BatchNorm
# folded, other upsamplers); files without it hold the plain module. All compute the same function.
FORM_KEY = "perceptual_sr_form"
DETAIL_KEY = "perceptual_sr_detail"  # the `detail` blend a pipeline exported (files without it: 1.0)
_PROBE_SIZE = 16  # input side of the load-time check that the graph's output is `scale` x its input
PROVIDERS = ("auto", "openvino", "cpu")  # auto: openvino where the installed ONNX Runtime has it
ONNX_PRECISIONS = ("auto", "bf16", "fp32")  # auto: bf16 on the OpenVINO provider where the CPU has AMX
_OPENVINO = "OpenVINOExecutionProvider"


def export_onnx(model: PerceptualSR, path: str | Path, opset: int = DEFAULT_OPSET, detail: float = 1.0) -> Path:
    """Write `model`'s inference form (eval mode: output clamped to [0, 1]) as ONNX; returns the
    path. Atomic. The same function as `model` up to float rounding (about 1e-6). `detail`: the
    blend `model` is, recorded in the file for `OnnxPipeline`."""
    if not isinstance(opset, int) or not 13 <= opset <= 23:
        raise ValueError(f"opset must be an integer from 13 to 23, got {opset!r}")
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"the output file should end in .onnx, got {str(path)!r}")
    broken = [name for name, tensor in model.state_dict().items()
              if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if broken:
        raise ValueError(f"the model's weights hold NaN or infinite values (in {', '.join(broken[:3])}); "
                         "an export of them would give black or grey images: export good weights")
    network = inference_network.build(model)
    form = "phase-network" if isinstance(network, PhaseNetwork) else "folded"
    if isinstance(network, PhaseNetwork):
        network = ExportablePhaseNetwork(network)
    return _write_onnx(network, path, opset, {CONFIG_KEY: json.dumps(dataclasses.asdict(model.config)),
                                              FORM_KEY: form, DETAIL_KEY: repr(float(detail))})


def _write_onnx(network: nn.Module, path: Path, opset: int, metadata: dict[str, str],
                extra_inputs: dict[str, torch.Tensor] | None = None) -> Path:
    """Export `network` (eval mode) with dynamic batch and size and `metadata` as the model's props.
    extra_inputs: inputs after INPUT_NAME, by name, with an example value each (fixed shape)."""
    import onnx

    extra_inputs = extra_inputs or {}
    with atomic_file(path) as staging:
        example = torch.rand(1, 3, 32, 32, device=next(network.parameters()).device)
        # The TorchScript-based exporter: dynamic height and width through reflection padding,
        # nearest and bicubic resizing export cleanly (max abs difference ~1e-6 against PyTorch).
        with warnings.catch_warnings():
            # Tracing notes on the input-shape check and on constant folding: harmless here.
            warnings.simplefilter("ignore")
            options = dict(input_names=[INPUT_NAME, *extra_inputs], output_names=[OUTPUT_NAME], opset_version=opset,
                           dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                                         OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}})
            arguments = (example, *extra_inputs.values())
            try:
                torch.onnx.export(network, arguments, str(staging), dynamo=False, **options)
            except TypeError:  # torch before 2.5 has no `dynamo` switch: its exporter is this one
                torch.onnx.export(network, arguments, str(staging), **options)
        graph = onnx.load(str(staging))
        onnx.checker.check_model(graph)
        onnx.helper.set_model_props(graph, metadata)
        onnx.save(graph, str(staging))
    return path


class ExportablePhaseNetwork(nn.Module):
    """A `PhaseNetwork` written with operators that keep height and width dynamic in ONNX: the same
    function, and ONNX Runtime's fastest form of it (measured against exporting the plain module).

    `PhaseNetwork` aligns the phases and builds the tail's reflection-padded phase stack with
    index lists computed from the tile's size, which tracing would freeze; here every index is a
    slice from one end, so any size runs. The bicubic skip is a fixed convolution with one output
    channel per colour and phase, then a pixel shuffle: ONNX Runtime's cubic Resize took as long as
    six of the body's convolutions (2-core Xeon, 160x160 input)."""

    def __init__(self, network: PhaseNetwork) -> None:
        super().__init__()
        self.network = network
        self.config = network.config
        self.register_buffer("bicubic_weight", _bicubic_kernel(network.config.scale).to(network.tail_weight.device),
                             persistent=False)
        self.eval()

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.network.run(lr, interleave=_traceable_interleave, phase_stack=self._phase_stack,
                                output=lambda residual: self._output(lr, residual))

    def _phase_stack(self, phases: torch.Tensor) -> torch.Tensor:
        """The phase stack (B, 4C, H + 2 pad, W + 2 pad), phase-major, reflection-padded."""
        pad = self.network.tail_pad
        return torch.cat([_reflect_phase(_reflect_phase(phase, 2, pad, row), 3, pad, column)
                          for phase, (row, column) in zip(_aligned_phases(phases), PHASES)], 1)

    def _output(self, lr: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        if self.config.global_skip != "bicubic":
            return output_head(self.config.global_skip, self.network.scale, lr, residual, clamp=True)
        # torch's bicubic reads clamped (replicate) pixels past the border.
        base = F.pad(lr, (2, 2, 2, 2), mode="replicate")
        base = F.pixel_shuffle(F.conv2d(base, self.bicubic_weight), self.network.scale)
        return (base + residual).clamp(0.0, 1.0)


def _traceable_interleave(phases: torch.Tensor) -> torch.Tensor:
    """`phases.interleave(phases, border=1)` written with slices from the ends and a pixel shuffle, so
    tracing keeps height and width dynamic (`phases.interleave` sizes its output from the tile)."""
    return F.pad(F.pixel_shuffle(torch.stack(_aligned_phases(phases), 2).flatten(1, 2), 2), (1, 1, 1, 1),
                 mode="replicate")


def _aligned_phases(phases: torch.Tensor) -> list[torch.Tensor]:
    """2x2 phase-conv output (B, 4C, H+1, W+1) -> its four (B, C, H, W) phases, in `PHASES` order:
    phase (r, c) of output pixel (i, j) sits at (i + r, j + c)."""
    channels = phases.shape[1] // 4
    return [phases[:, index * channels:(index + 1) * channels, row:None if row else -1, column:None if column else -1]
            for index, (row, column) in enumerate(PHASES)]


def _reflect_phase(phase: torch.Tensor, dim: int, pad: int, parity: int) -> torch.Tensor:
    """Pad one phase of a full-resolution map by `pad` phase pixels along `dim`, holding the map's
    reflection padding (as `phases.stack_phases`). The pixels copied lie within 2 pad of
    an end, so they are slices counted from that end, valid at any size."""
    length = 4 * pad + 2  # any length > 2 pad gives the same positions counted from each end
    _, sources = reflected(length, pad, parity)
    pieces = []
    for source in (position - pad for position in sources):
        start = source if source < length // 2 else source - length  # from the start, or from the end
        stop = start + 1 if start != -1 else None
        pieces.append(phase[(slice(None),) * dim + (slice(start, stop),)])
    return torch.cat([*pieces[:pad], phase, *pieces[pad:]], dim)


def _bicubic_kernel(scale: int, a: float = -0.75) -> torch.Tensor:
    """torch's bicubic upscaling by `scale` (a = -0.75, align_corners=False) as (3 scale^2, 3, 5, 5)
    convolution weights on the input replicate-padded by 2: output channel c scale^2 + phase, the
    order `pixel_shuffle` reads. Output pixel s i + p samples input i + (p + 0.5) / scale - 0.5."""

    def cubic(t: float) -> float:
        t = abs(t)
        return ((a + 2) * t - (a + 3)) * t * t + 1 if t <= 1 else ((a * t - 5 * a) * t + 8 * a) * t - 4 * a

    taps = torch.zeros(scale, 5, dtype=torch.float64)  # phase -> weights of inputs i - 2 .. i + 2
    for phase in range(scale):
        source = (phase + 0.5) / scale - 0.5
        floor = int(np.floor(source))
        fraction = source - floor
        for offset, distance in zip(range(floor - 1, floor + 3), (1 + fraction, fraction, 1 - fraction, 2 - fraction)):
            taps[phase, offset + 2] += cubic(distance)
    per_phase = torch.einsum("pa,qb->pqab", taps, taps).reshape(scale * scale, 5, 5)
    weight = torch.zeros(3 * scale * scale, 3, 5, 5, dtype=torch.float64)
    for colour in range(3):
        weight[colour * scale * scale:(colour + 1) * scale * scale, colour] = per_phase
    return weight.float()


class OnnxSR(nn.Module):
    """An exported network run by ONNX Runtime on the CPU, usable wherever a PerceptualSR is upscaled.

    threads: ONNX Runtime's intra-op threads; None: as many as PyTorch uses (`torch.get_num_threads()`,
    the physical cores unless set otherwise), so both backends share one thread policy.
    provider: "openvino" (ONNX Runtime's OpenVINO provider, in the `onnxruntime-openvino` build),
    "cpu" (its own CPU provider), or "auto": openvino where installed, else cpu.
    precision: the OpenVINO provider's inference precision, "bf16", "fp32", or "auto": bf16 on CPUs
    with AMX (as `train.py` decides), else fp32. The CPU provider runs fp32 only.
    The file is checked on load (input name, output name, and an output `scale` x a small probe
    input, as its metadata says): a mismatched file is one ValueError here, before any image is read.
    """

    def __init__(self, path: str | Path, threads: int | None = None, provider: str = "auto",
                 precision: str = "auto") -> None:
        super().__init__()
        path = check_image_file(path, what="ONNX file")
        self.session, self.provider, self.precision, metadata = open_exported(path, threads, provider, precision)
        self.config = config_in_metadata(path, metadata, CONFIG_KEY, SRConfig)
        self.form = metadata.get(FORM_KEY, "module")  # files written before FORM_KEY hold the plain module
        try:
            self.detail = float(metadata.get(DETAIL_KEY, "1.0"))
        except ValueError as error:
            raise ValueError(f"{str(path)!r} has an invalid {DETAIL_KEY} in its metadata: {error}") from error
        self._check_graph(path)

    def _check_graph(self, path: Path) -> None:
        """Raise ValueError unless the graph takes (B, 3, H, W) as INPUT_NAME and returns
        (B, 3, scale H, scale W) as OUTPUT_NAME, `scale` from the metadata."""
        inputs = [(node.name, node.shape) for node in self.session.get_inputs()]
        outputs = [node.name for node in self.session.get_outputs()]
        if [name for name, _ in inputs] != [INPUT_NAME] or OUTPUT_NAME not in outputs:
            raise ValueError(f"{str(path)!r} takes inputs {[name for name, _ in inputs]} and gives outputs {outputs}; "
                             f"a perceptual-sr model takes {INPUT_NAME!r} and gives {OUTPUT_NAME!r}: "
                             "export it again with `perceptual-sr export`")
        # Two sizes and two batch sizes, since tiles vary: a graph frozen to one input shape, or
        # with an output of constant shape, fails here rather than on the first image.
        for batch, height, width in ((1, _PROBE_SIZE, _PROBE_SIZE), (2, _PROBE_SIZE + 4, _PROBE_SIZE + 8)):
            probe = np.full((batch, 3, height, width), 0.5, np.float32)
            expected = (batch, 3, height * self.scale, width * self.scale)
            try:
                (high_res,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: probe})
            except Exception as error:  # onnxruntime's own exception types: wrong rank, channels, shape...
                raise ValueError(f"{str(path)!r} does not run on a {probe.shape} RGB batch (a model must take any "
                                 f"batch, height and width): {str(error).splitlines()[0][:200]}") from error
            if tuple(high_res.shape) != expected:
                raise ValueError(f"{str(path)!r} turns a {probe.shape} batch into {tuple(high_res.shape)}, but its "
                                 f"metadata says scale {self.scale}, which gives {expected}: export it again with "
                                 "`perceptual-sr export`")
            if not np.isfinite(high_res).all():
                raise ValueError(f"{str(path)!r} gives NaN or infinite values on a grey probe: its weights are "
                                 "damaged; export it again from good weights")

    @property
    def scale(self) -> int:
        return self.config.scale

    def describe(self) -> str:
        """The backend in words, e.g. "ONNX Runtime, OpenVINO provider, bf16"."""
        return f"ONNX Runtime, {'OpenVINO' if self.provider == 'openvino' else 'CPU'} provider, {self.precision}"

    def forward(self, low_res: torch.Tensor) -> torch.Tensor:
        batch = np.ascontiguousarray(low_res.detach().float().cpu().numpy())
        (high_res,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        return torch.from_numpy(high_res).to(low_res.device)


def config_in_metadata(path: Path, metadata: dict[str, str], key: str, config_class: type) -> Any:
    """The configuration dataclass an exported file records under `key`; ValueError naming the file."""
    try:
        return config_class.from_dict(json.loads(metadata[key]))
    except (KeyError, json.JSONDecodeError) as error:
        raise ValueError(f"{str(path)!r} was not written by perceptual-sr export (no {key})") from error
    except (TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{str(path)!r} has an invalid {key} in its metadata: {error}") from error


def open_exported(path: Path, threads: int | None, provider: str, precision: str) -> tuple[Any, str, str, dict]:
    """(an ONNX Runtime session of `path`, the provider, the precision, the file's metadata);
    ValueError for a bad file."""
    import onnxruntime

    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    threads = threads or torch.get_num_threads()
    provider, precision = _resolve_provider(onnxruntime.get_available_providers(), provider, precision)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.enable_mem_pattern = True  # one arena plan per input shape: tiles repeat their shape
    # Idle worker threads sleep instead of spinning: on cores shared with other work, spinning
    # threads took the cores from the ones with work (README "Speed": 0.64 against 0.53 MP/s at 512x512).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=_providers(provider, precision, threads))
    except Exception as error:  # onnxruntime raises its own exception types for unreadable files
        raise ValueError(f"cannot load {str(path)!r} with ONNX Runtime: {error}") from error
    return session, provider, precision, session.get_modelmeta().custom_metadata_map


def _resolve_provider(available: list[str], provider: str, precision: str) -> tuple[str, str]:
    """("openvino" or "cpu", "bf16" or "fp32") for the requested provider and precision."""
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")
    if precision not in ONNX_PRECISIONS:
        raise ValueError(f"precision must be one of {ONNX_PRECISIONS}, got {precision!r}")
    if provider == "auto":
        provider = "openvino" if _OPENVINO in available else "cpu"
    if provider == "openvino" and _OPENVINO not in available:
        raise ValueError("the OpenVINO provider needs ONNX Runtime's OpenVINO build: pip install "
                         "onnxruntime-openvino (in place of onnxruntime), or use provider='cpu'")
    if provider == "cpu":
        if precision == "bf16":
            raise ValueError("ONNX Runtime's CPU provider has no bf16 convolutions; use precision='fp32' or "
                             "the OpenVINO provider (pip install onnxruntime-openvino)")
        return "cpu", "fp32"
    # bf16 where the CPU has AMX: measured 2.0x the OpenVINO provider's fp32 on a 2-core Xeon with AMX.
    # Elsewhere fp32, as PyTorch decides: there, without AMX, bf16 ran our network slower than fp32
    # (OpenVINO without AMX was not measured).
    if precision == "auto":
        precision = "bf16" if runtime.cpu_has_amx_bf16() else "fp32"
    return "openvino", precision


def _providers(provider: str, precision: str, threads: int) -> list:
    """The `providers` argument of an InferenceSession for a resolved provider and precision."""
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    hint = {"bf16": "bf16", "fp32": "f32"}[precision]  # OpenVINO's names for ov::hint::inference_precision
    options = {"device_type": "CPU", "num_of_threads": str(threads),
               "load_config": json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": hint}})}
    return [(_OPENVINO, options), "CPUExecutionProvider"]
