"""Training through the inference rewrite: `PerceptualSR.forward`'s function, in phase form.

`inference_network.PhaseNetwork` runs each resize-conv stage (nearest x2, reflection pad, 3x3
conv) as one 2x2 convolution with 4x the output channels on the *low*-resolution map (4/9 of
the multiply-adds, no upsampled copy), and the 9x9 tail as a 5x5 convolution on the phase stack.
This module does the same in training:

- The phase kernels are computed from the module's own 3x3 and 9x9 weights at every call. The
  map from weights to kernels is linear (sums and a gather), so autograd sends the gradients to
  the module's parameters: the optimizer, checkpoints and saved weights see the plain module.
- Each stage's norm (BatchNorm in training mode: batch statistics, running statistics updated)
  runs on the interleaved map, which holds exactly the pixels of the plain module's conv output:
  the same statistics, over the same 4 H W positions per image, and the same running-stat update.
- The tail reads the phase stack of the reflection-padded map (reflection keeps a pixel's
  parity), so the 9x9 conv becomes a 5x5 with 12 outputs instead of 3 (oneDNN runs a 3-output
  convolution at a quarter of its usual speed).

Same function up to float rounding (about 1e-6 relative in fp32). Networks with a deconv or
pixel-shuffle upsampler have nothing to rewrite: they run their own forward.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from perceptual_sr.networks.network_ends import check_rgb_batch, output_head
from perceptual_sr.networks.phases import (
    PHASES,
    interleave,
    memory_layout,
    phase_kernel,
    phase_stacked_kernel,
    stack_phases,
    stack_phases_adjoint,
)
from perceptual_sr.networks.upscaler import PerceptualSR


def supports_phase_training(model: PerceptualSR) -> bool:
    """Whether `phase_forward` rewrites this network (resize-conv upsampling), rather than
    falling back to its own forward."""
    return model.config.upsampler == "resize-conv"


def phase_forward(model: PerceptualSR, lr: torch.Tensor) -> torch.Tensor:
    """`model(lr)` computed through the phase rewrite, in the model's current mode (train: batch
    statistics, running stats updated; eval: running stats, output clamped), differentiable with
    respect to the model's parameters. lr: (B, 3, H, W) in [0, 1]; returns (B, 3, sH, sW)."""
    if not supports_phase_training(model):
        return model(lr)
    check_rgb_batch(lr)
    x = model.body(model.head(lr))  # (B, C, H, W)
    for resize_conv, norm, relu in model.upsample:  # Sequential(Upsample, conv), norm, ReLU
        conv = resize_conv[1]
        # The reflection pad of the upsampled map is a replicate pad of the low-resolution one.
        padded = F.pad(x, (1, 1, 1, 1), mode="replicate")  # (B, C, H + 2, W + 2)
        weight, bias = _kernels(lambda: (phase_kernel(conv.weight), conv.bias.repeat(4)), lr)
        phases = F.conv2d(padded, weight, bias)  # (B, 4 Co, H + 1, W + 1), phase (r, c) at offset (r, c)
        x = relu(norm(_Interleave.apply(phases)))  # (B, Co, 2H, 2W): the plain stage's output
    tail = model.tail
    pad = (tail.kernel_size[0] // 2 + 1) // 2  # 2 phase-stacked pixels hold the 4-pixel reflection pad
    stacked = _PhaseStack.apply(x, pad)  # (B, 4 Co, H' + 2 pad, W' + 2 pad), phase-major channels
    weight, bias = _kernels(lambda: (phase_stacked_kernel(tail.weight, pad), tail.bias.repeat_interleave(4)), lr)
    x = F.pixel_shuffle(F.conv2d(stacked, weight, bias), 2)  # (B, 3, sH, sW)
    return output_head(model.config.global_skip, model.scale, lr, x, clamp=not model.training)


class PhaseTrainingNetwork(nn.Module):
    """`phase_forward` as a module: wraps (and shares every parameter and buffer of) `model`, so it
    can stand where the network is called (DDP, torch.compile). Save and load `model`, not this."""

    def __init__(self, model: PerceptualSR) -> None:
        super().__init__()
        self.model = model

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return phase_forward(self.model, lr)


def _kernels(make: Callable[[], tuple[torch.Tensor, torch.Tensor]],
             like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`make()`'s (weight, bias), computed from the module's parameters at this step."""
    # Sum the taps in float32 even under autocast (einsum would run in bf16); the convolution then
    # casts the kernel once, as it casts the plain module's weights.
    with torch.autocast(like.device.type, enabled=False):
        return make()


class _Interleave(torch.autograd.Function):
    """2x2-conv output (B, 4C, H+1, W+1), phase (r, c) of output pixel (i, j) at (i + r, j + c) ->
    the (B, C, 2H, 2W) map it encodes. Written as a Function so the backward is one gather of the
    gradient, not a zero-filled copy per slice."""

    @staticmethod
    def forward(ctx, phases: torch.Tensor) -> torch.Tensor:
        return interleave(phases, border=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = grad.shape
        height, width = height // 2, width // 2
        out = torch.empty(batch, 4 * channels, height + 1, width + 1, dtype=grad.dtype, device=grad.device,
                          memory_format=memory_layout(grad))
        for index, (row, column) in enumerate(PHASES):
            group = out[:, index * channels:(index + 1) * channels]
            group[:, :, row:row + height, column:column + width] = grad[:, :, row::2, column::2]
            group[:, :, height * (1 - row)].zero_()  # the row and column this phase does not use
            group[:, :, :, width * (1 - column)].zero_()
        return out


class _PhaseStack(torch.autograd.Function):
    """(B, C, 2H, 2W) map -> its reflection-padded phase stack (`phases.stack_phases`),
    with the exact adjoint as backward: one copy each way, where reflection_pad2d + pixel_unshuffle
    made two, and pixel_unshuffle's is slow in bf16 channels_last (15 ms for 8 x 64 x 104 x 104)."""

    @staticmethod
    def forward(ctx, full: torch.Tensor, pad: int) -> torch.Tensor:
        ctx.pad = pad
        return stack_phases([full[:, :, row::2, column::2] for row, column in PHASES], pad, like=full)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return stack_phases_adjoint(grad, ctx.pad), None
