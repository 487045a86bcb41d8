"""The rewritten inference network computes the module's function, up to float rounding."""

import numpy as np
import pytest
import torch

from perceptual_sr import PerceptualSR, SRConfig
from perceptual_sr.inference import upscale as inference
from perceptual_sr.inference.upscale import upscale
from perceptual_sr.networks import inference_network


def _trained_looking(config: SRConfig) -> PerceptualSR:
    """A network with non-trivial BatchNorm statistics and tail (the bicubic-skip init is zero)."""
    torch.manual_seed(0)
    net = PerceptualSR(config).train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(4, 3, 16, 16))
        torch.nn.init.normal_(net.tail.weight, std=0.05)
        torch.nn.init.normal_(net.tail.bias, std=0.05)
    return net.eval()


@pytest.mark.parametrize("config", [
    SRConfig(channels=8, residual_blocks=1, upsampler="resize-conv", global_skip="bicubic"),
    SRConfig(channels=8, residual_blocks=2, upsampler="resize-conv", global_skip="bicubic", scale=2),
    SRConfig(channels=8, residual_blocks=1, upsampler="resize-conv", global_skip="bicubic", scale=8,
             full_res_channels=4),
    SRConfig(channels=8, residual_blocks=1, upsampler="resize-conv", global_skip="none"),
], ids=["x4", "x2", "x8-lean-last-stage", "tanh"])
@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (2, 3, 13, 21), (1, 3, 30, 9)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_phase_network_matches_the_module(config, shape, layout):
    net = _trained_looking(config)
    fast = inference_network.build(net).to(memory_format=layout)
    assert isinstance(fast, inference_network.PhaseNetwork)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1)).contiguous(memory_format=layout)
    with torch.no_grad():
        expected, got = net(x), fast(x)
    assert got.shape == expected.shape == (shape[0], 3, shape[2] * config.scale, shape[3] * config.scale)
    assert (got - expected).abs().max().item() <= 1e-4  # measured about 1e-6


@pytest.mark.slow
def test_bundled_model_parity_in_fp32_and_bf16():
    net = PerceptualSR.from_pretrained().eval()
    fast = inference_network.build(net).to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 37, 52, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = net(x)
        assert (fast(x) - expected).abs().max().item() <= 1 / 255  # the parity bar; measured ~1e-6
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rounded = fast(x.contiguous(memory_format=torch.channels_last)).float()
    # The stated bf16 bound: 8-bit mantissas through 13 layers; measured about 0.008 (2/255).
    assert (rounded - expected).abs().max().item() <= 6 / 255


@pytest.mark.parametrize("config", [SRConfig(channels=8, residual_blocks=1, upsampler="deconv"),
                                    SRConfig(channels=8, residual_blocks=1, upsampler="pixelshuffle"),
                                    SRConfig(channels=8, residual_blocks=1, upsampler="resize-conv", norm="instance")],
                         ids=["deconv", "pixelshuffle", "instance-norm"])
def test_other_architectures_get_the_folded_module(config):
    net = _trained_looking(config)
    fast = inference_network.build(net)
    assert isinstance(fast, PerceptualSR) and not fast.training
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        assert (fast(x) - net(x)).abs().max().item() <= 1e-4


def test_upscale_fast_path_follows_weight_changes(monkeypatch):
    monkeypatch.setattr(inference, "resolve_precision", lambda device, precision="auto": None)  # fp32 here
    net = _trained_looking(SRConfig(channels=8, residual_blocks=2, upsampler="resize-conv",
                                           global_skip="bicubic"))
    image = np.random.default_rng(0).random((40, 36, 3), dtype=np.float32)
    with torch.no_grad():
        plain = net(torch.from_numpy(image).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    fast = upscale(net, image, color_fix=None, fast=True, device="cpu")
    assert np.abs(fast - plain).max() <= 1 / 255
    with torch.no_grad():
        net.tail.bias.add_(0.1)  # an in-place weight change must not be served from a stale copy
    shifted = upscale(net, image, color_fix=None, fast=True, device="cpu")
    inside = (fast > 0.01) & (fast < 0.89)  # away from the clamp at 0 and 1
    assert inside.mean() > 0.5 and np.abs(shifted - fast - 0.1)[inside].max() < 1e-3
