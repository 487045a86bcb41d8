"""Training through the phase rewrite computes the plain module's function, gradients and BN updates."""

import copy

import pytest
import torch
import torch.nn.functional as F

from perceptual_sr import PerceptualLoss, PerceptualSR, SRConfig
from perceptual_sr.networks.phase_training import PhaseTrainingNetwork, phase_forward, supports_phase_training

RESIZE_CONV = dict(channels=8, residual_blocks=1, upsampler="resize-conv")


@pytest.fixture(autouse=True)
def _one_thread():
    # Tensors this small gain nothing from a second thread, and on busy shared cores OpenMP's
    # threads wait on each other: the 50-step run took 21 s with 2 threads, 0.7 s with 1.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pair(config: SRConfig, layout=torch.contiguous_format) -> tuple[PerceptualSR, PerceptualSR]:
    """Two identical networks in train mode, with a non-zero tail (the bicubic-skip init is zero)."""
    torch.manual_seed(0)
    net = PerceptualSR(config).train()
    with torch.no_grad():
        torch.nn.init.normal_(net.tail.weight, std=0.05)
        torch.nn.init.normal_(net.tail.bias, std=0.05)
    net = net.to(memory_format=layout)
    return net, copy.deepcopy(net)


def _assert_gradients_match(plain: PerceptualSR, phase: PerceptualSR) -> None:
    total = torch.cat([p.grad.flatten() for p in plain.parameters()]).norm()
    for (name, expected), got in zip(plain.named_parameters(), phase.parameters()):
        # Convolution biases just before a training-mode BatchNorm have a zero gradient in exact
        # arithmetic (the batch mean removes them): compare those against the overall scale.
        scale = max(expected.grad.norm().item(), 1e-3 * total.item())
        assert (got.grad - expected.grad).norm().item() <= 1e-4 * scale, name


def _assert_buffers_match(plain: PerceptualSR, phase: PerceptualSR) -> None:
    for (name, expected), got in zip(plain.named_buffers(), phase.buffers()):
        if expected.is_floating_point():
            assert torch.allclose(got, expected, rtol=1e-5, atol=1e-7), name
        else:
            assert torch.equal(got, expected), name  # num_batches_tracked


@pytest.mark.parametrize("config, shape, layout", [
    (SRConfig(**RESIZE_CONV, global_skip="bicubic"), (2, 3, 8, 8), torch.contiguous_format),
    (SRConfig(**RESIZE_CONV, global_skip="none", scale=2), (2, 3, 7, 9), torch.channels_last),
    (SRConfig(**RESIZE_CONV, global_skip="bicubic", scale=8, full_res_channels=4), (2, 3, 5, 6),
     torch.channels_last),
    (SRConfig(**RESIZE_CONV, global_skip="bicubic", norm="instance"), (2, 3, 6, 5), torch.contiguous_format),
], ids=["x4", "x2-tanh-odd", "x8-lean-last-stage", "instance-norm"])
def test_loss_gradients_and_running_stats_match_the_module(config, shape, layout):
    plain, phase = _pair(config, layout)
    generator = torch.Generator().manual_seed(1)
    low_res = torch.rand(shape, generator=generator).contiguous(memory_format=layout)
    target = torch.rand(shape[0], 3, shape[2] * config.scale, shape[3] * config.scale, generator=generator)
    expected, got = plain(low_res), phase_forward(phase, low_res)
    assert got.shape == expected.shape
    loss_plain, loss_phase = F.mse_loss(expected, target), F.mse_loss(got, target)
    assert abs(loss_phase.item() - loss_plain.item()) <= 1e-4 * loss_plain.item()
    loss_plain.backward()
    loss_phase.backward()
    _assert_gradients_match(plain, phase)
    _assert_buffers_match(plain, phase)
    plain.eval(), phase.eval()  # eval mode: running statistics, clamped output
    with torch.no_grad():
        assert (phase_forward(phase, low_res) - plain(low_res)).abs().max().item() <= 1e-5


def test_perceptual_loss_and_the_wrapper_module():
    config = SRConfig(**RESIZE_CONV, global_skip="bicubic")
    plain, phase = _pair(config)
    network = PhaseTrainingNetwork(phase)
    assert {id(p) for p in network.parameters()} == {id(p) for p in phase.parameters()}
    # The loss of the shipped recipe without its VGG term (building VGG-16 takes 2 s); the VGG
    # term sees only the output, which the other tests compare.
    loss_fn = PerceptualLoss("none", tv_weight=1e-5, pixel_weight=10.0, grid_weight=15_000.0, vgg_weights=None)
    generator = torch.Generator().manual_seed(2)
    low_res, high_res = torch.rand(2, 3, 8, 8, generator=generator), torch.rand(2, 3, 32, 32, generator=generator)
    loss_plain, loss_phase = loss_fn(plain(low_res), high_res)[0], loss_fn(network(low_res), high_res)[0]
    assert abs(loss_phase.item() - loss_plain.item()) <= 1e-4 * loss_plain.item()
    loss_plain.backward()
    loss_phase.backward()
    _assert_gradients_match(plain, phase)


def _cancelled_by_batch_norm(net: PerceptualSR) -> list[str]:
    """Parameters that only add a per-channel constant in front of a training-mode BatchNorm, which
    removes it: the bias of every conv but the tail, and each residual block's last BatchNorm shift
    (the residual stream only feeds convs followed by BatchNorm). Their gradient is zero in exact
    arithmetic, so Adam, which divides by the gradient's size, turns rounding noise into steps of
    the learning rate: any two float implementations (even two memory layouts of the plain module)
    walk them apart, without changing the training-mode function."""
    names = [name for name, _ in net.named_parameters() if name.endswith(".bias") and not name.startswith("tail")]
    conv_biases = [name for name in names if isinstance(net.get_submodule(name.rsplit(".", 1)[0]), torch.nn.Conv2d)]
    block_shifts = [f"body.{index}.body.4.bias" for index in range(len(net.body))]
    return conv_biases + block_shifts


@pytest.mark.slow
def test_fifty_adam_steps_end_where_the_plain_path_ends():
    config = SRConfig(channels=4, residual_blocks=1, upsampler="resize-conv", global_skip="bicubic")
    plain, phase = _pair(config)
    for net in (plain, phase):
        for name in _cancelled_by_batch_norm(net):
            net.get_parameter(name).requires_grad_(False)
    start = plain.tail.weight.detach().clone()
    optimizers = [torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
                  for net in (plain, phase)]
    generator = torch.Generator().manual_seed(3)
    for _ in range(50):
        low_res = torch.rand(2, 3, 6, 6, generator=generator)
        target = F.interpolate(low_res, scale_factor=4, mode="nearest")
        for forward, optimizer in zip((plain, lambda x: phase_forward(phase, x)), optimizers):
            optimizer.zero_grad(set_to_none=True)
            F.mse_loss(forward(low_res), target).backward()
            optimizer.step()
    for (name, expected), got in zip(plain.state_dict().items(), phase.state_dict().values()):
        if expected.is_floating_point():
            assert (got - expected).abs().max().item() <= 1e-3, name
        else:
            assert torch.equal(got, expected), name
    assert (plain.tail.weight - start).abs().max().item() > 1e-2  # it did train


@pytest.mark.parametrize("upsampler", ["deconv", "pixelshuffle"])
def test_other_upsamplers_run_their_own_forward(upsampler):
    net = PerceptualSR(SRConfig(channels=8, residual_blocks=1, upsampler=upsampler)).train()
    assert not supports_phase_training(net)
    low_res = torch.rand(2, 3, 6, 6)
    torch.manual_seed(4)
    got = phase_forward(net, low_res)
    assert got.shape == (2, 3, 24, 24)
    got.mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_bf16_autocast_stays_close():
    config = SRConfig(**RESIZE_CONV, global_skip="bicubic")
    plain, phase = _pair(config)
    low_res = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = phase_forward(phase, low_res).float()
    assert (got - plain(low_res)).abs().max().item() <= 0.05  # bf16's 8-bit mantissa through the layers


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("height, width, pad", [(12, 10, 2), (7, 9, 2), (6, 6, 1), (5, 8, 3)])
def test_the_phase_stacks_backward_is_its_exact_adjoint(layout, height, width, pad):
    """<stack(x), g> == <x, adjoint(g)> for every x and g: the backward of the tail's phase stack."""
    from perceptual_sr.networks.phases import PHASES, stack_phases, stack_phases_adjoint

    generator = torch.Generator().manual_seed(height * width + pad)
    full = torch.randn(2, 3, 2 * height, 2 * width, dtype=torch.float64, generator=generator)
    full = full.contiguous(memory_format=layout)
    stacked = stack_phases([full[:, :, row::2, column::2] for row, column in PHASES], pad, like=full)
    grad = torch.randn(stacked.shape, dtype=torch.float64, generator=generator).contiguous(memory_format=layout)
    kept = grad.clone()
    adjoint = stack_phases_adjoint(grad, pad)
    assert adjoint.shape == full.shape and adjoint.is_contiguous(memory_format=layout)
    torch.testing.assert_close((stacked * grad).sum(), (full * adjoint).sum(), rtol=1e-12, atol=1e-10)
    assert torch.equal(grad, kept)  # the incoming gradient is not written to
