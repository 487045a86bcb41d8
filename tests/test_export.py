"""ONNX export and the ONNX Runtime backend: same function as the PyTorch network, dynamic sizes."""

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from perceptual_sr import PerceptualSR, SRConfig  # noqa: E402
from perceptual_sr.cli import main  # noqa: E402
from perceptual_sr.export import OnnxSR, export_onnx  # noqa: E402
from perceptual_sr.inference import upscale  # noqa: E402


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
