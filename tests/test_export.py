"""ONNX export and the ONNX Runtime backend: same function as the PyTorch network, dynamic sizes."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import onnxruntime  # noqa: E402

from perceptual_sr import PerceptualSR, SRConfig  # noqa: E402
from perceptual_sr.commands.cli import main  # noqa: E402
from perceptual_sr.inference.onnx_export import (  # noqa: E402
    CONFIG_KEY,
    DEFAULT_OPSET,
    OnnxSR,
    _bicubic_kernel,
    _resolve_provider,
    _write_onnx,
    export_onnx,
)
from perceptual_sr.inference.upscale import upscale  # noqa: E402
from perceptual_sr.utils import runtime


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = PerceptualSR(SRConfig(channels=8, residual_blocks=1, upsampler="resize-conv", global_skip="bicubic"))
    torch.nn.init.normal_(model.tail.weight, std=0.01)  # the zero-initialised tail would hide the body
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx")
    return model.eval(), path


@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (2, 3, 24, 40), (1, 3, 37, 9)])
def test_onnx_runtime_matches_pytorch_at_any_batch_and_size(exported, shape):
    model, path = exported
    x = torch.rand(*shape)
    with torch.no_grad():
        expected = model(x)
    actual = OnnxSR(path)(x)
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max() < 1e-4


def test_upscale_with_the_onnx_backend_equals_pytorch(exported):
    model, path = exported
    image = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    onnx_model = OnnxSR(path)
    assert onnx_model.scale == 4 and onnx_model.config == model.config
    out = upscale(onnx_model, image, device="cpu", fast=False)
    ref = upscale(model, image, device="cpu", fast=False)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_export_and_upscale_from_the_command_line(exported, tmp_path, capsys):
    model, _ = exported
    model.save_pretrained(tmp_path / "weights")
    assert main(["export", str(tmp_path / "cli.onnx"), "--model", str(tmp_path / "weights")]) == 0
    Image.fromarray(np.full((12, 10, 3), 90, np.uint8)).save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model",
                 str(tmp_path / "cli.onnx"), "--device", "cpu"]) == 0
    assert Image.open(tmp_path / "out" / "a_x4.png").size == (40, 48)


def test_bad_exports_and_foreign_onnx_files_are_clear_errors(exported, tmp_path):
    model, _ = exported
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model, tmp_path / "m.onnx", opset=7)
    with pytest.raises(ValueError, match=".onnx"):
        export_onnx(model, tmp_path / "m.bin")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="ONNX Runtime"):
        OnnxSR(tmp_path / "junk.onnx")
    with pytest.raises(FileNotFoundError):
        OnnxSR(tmp_path / "missing.onnx")


@pytest.mark.parametrize("config", [
    dict(upsampler="resize-conv", global_skip="none"),  # the phase network with the tanh head
    dict(upsampler="pixelshuffle", global_skip="bicubic"),  # no phase form: the folded module
    dict(upsampler="resize-conv", global_skip="bicubic", scale=2),
])
@pytest.mark.slow
def test_every_exported_form_matches_pytorch(config, tmp_path):
    torch.manual_seed(1)
    model = PerceptualSR(SRConfig(channels=8, residual_blocks=1, **config))
    torch.nn.init.normal_(model.tail.weight, std=0.01)
    onnx_model = OnnxSR(export_onnx(model, tmp_path / "m.onnx"))
    assert onnx_model.form == ("phase-network" if config["upsampler"] == "resize-conv" else "folded")
    x = torch.rand(2, 3, 19, 26)
    with torch.no_grad():
        assert (onnx_model(x) - model.eval()(x)).abs().max() < 1e-4


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_the_bicubic_convolution_is_torch_bicubic(scale):
    x = torch.rand(1, 3, 11, 7)
    conv = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate"),
                                      _bicubic_kernel(scale))
    expected = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    assert (torch.nn.functional.pixel_shuffle(conv, scale) - expected).abs().max() < 1e-5


def test_files_exported_before_the_inference_form_still_load(exported, tmp_path):
    model, _ = exported
    # As export_onnx wrote them before: the plain module, the config as the only metadata.
    old = _write_onnx(model, tmp_path / "old.onnx", DEFAULT_OPSET,
                      {CONFIG_KEY: json.dumps(dataclasses.asdict(model.config))})
    onnx_model = OnnxSR(old)
    assert onnx_model.form == "module" and onnx_model.config == model.config
    x = torch.rand(1, 3, 20, 17)
    with torch.no_grad():
        assert (onnx_model(x) - model(x)).abs().max() < 1e-4


def _rewrite(source, target, props=None, input_name=None):
    graph = onnx.load(str(source))
    if props is not None:
        onnx.helper.set_model_props(graph, props)
    if input_name is not None:
        old = graph.graph.input[0].name
        graph.graph.input[0].name = input_name
        for node in graph.graph.node:
            node.input[:] = [input_name if name == old else name for name in node.input]
    onnx.save(graph, str(target))
    return target


def test_a_file_that_disagrees_with_its_metadata_is_one_error_at_load(exported, tmp_path):
    model, path = exported
    wrong_scale = json.dumps(dataclasses.asdict(SRConfig(**{**dataclasses.asdict(model.config), "scale": 2})))
    with pytest.raises(ValueError, match="metadata says scale 2"):
        OnnxSR(_rewrite(path, tmp_path / "scale.onnx", props={CONFIG_KEY: wrong_scale}))
    with pytest.raises(ValueError, match="takes inputs \\['image'\\]"):
        OnnxSR(_rewrite(path, tmp_path / "name.onnx", input_name="image"))
    with pytest.raises(ValueError, match="invalid"):
        OnnxSR(_rewrite(path, tmp_path / "config.onnx", props={CONFIG_KEY: json.dumps({"channels": True})}))
    with pytest.raises(ValueError, match="threads"):
        OnnxSR(path, threads=0)


def test_the_command_line_refuses_a_bad_onnx_file_once_before_any_image(exported, tmp_path, capsys):
    _, path = exported
    _rewrite(path, tmp_path / "bad.onnx", input_name="image")
    for name in ("a", "b"):
        Image.fromarray(np.full((12, 10, 3), 90, np.uint8)).save(tmp_path / f"{name}.png")
    assert main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "out"),
                 "--model", str(tmp_path / "bad.onnx"), "--device", "cpu"]) != 0
    err = capsys.readouterr().err
    assert err.count("takes inputs") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_provider_is_openvino_where_installed_and_bf16_only_where_the_cpu_has_amx(monkeypatch):
    both, cpu_only = ["OpenVINOExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]
    assert _resolve_provider(cpu_only, "auto", "auto") == ("cpu", "fp32")
    assert _resolve_provider(both, "auto", "auto") == ("openvino", "fp32")  # conftest: a CPU without AMX
    assert _resolve_provider(both, "cpu", "auto") == ("cpu", "fp32")
    monkeypatch.setattr(runtime, "cpu_has_amx_bf16", lambda: True)
    assert _resolve_provider(both, "auto", "auto") == ("openvino", "bf16")
    assert _resolve_provider(both, "openvino", "fp32") == ("openvino", "fp32")
    assert _resolve_provider(cpu_only, "auto", "auto") == ("cpu", "fp32")
    with pytest.raises(ValueError, match="pip install onnxruntime-openvino"):
        _resolve_provider(cpu_only, "openvino", "auto")
    with pytest.raises(ValueError, match="no bf16"):
        _resolve_provider(cpu_only, "auto", "bf16")
    with pytest.raises(ValueError, match="provider must be one of"):
        _resolve_provider(both, "cuda", "auto")
    with pytest.raises(ValueError, match="precision must be one of"):
        _resolve_provider(both, "auto", "int8")


@pytest.mark.skipif("OpenVINOExecutionProvider" not in onnxruntime.get_available_providers(),
                    reason="ONNX Runtime's OpenVINO build (onnxruntime-openvino) is not installed")
@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-4), ("bf16", 6 / 255)])
def test_the_openvino_provider_computes_the_same_function(exported, precision, tolerance):
    model, path = exported
    onnx_model = OnnxSR(path, provider="openvino", precision=precision)
    assert onnx_model.describe() == f"ONNX Runtime, OpenVINO provider, {precision}"
    for shape in [(1, 3, 16, 16), (2, 3, 24, 40), (1, 3, 37, 9)]:  # one session, several sizes
        x = torch.rand(*shape)
        with torch.no_grad():
            expected = model(x)
        actual = onnx_model(x)
        assert actual.shape == expected.shape
        assert (actual - expected).abs().max() < tolerance
