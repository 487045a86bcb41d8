"""The network rewritten for inference: the same function up to float rounding, about 2x less work.

Three exact rewrites of a `PerceptualSR` in eval mode:

1. BatchNorm folded into the convolution before it (`fold_batchnorm`).
2. Each resize-conv stage (nearest x2, reflection pad 1, 3x3 conv) runs on its *low*-resolution
   input. Nearest upsampling repeats every input pixel 2x2 times, so each of the four output
   phases (row parity, column parity) sees only a 2x2 window of the input, with the 3x3 weights
   summed where they fall on the same input pixel, and the reflection pad of the upsampled map is
   a replicate pad of the input. One 2x2 convolution with 4x the output channels computes all
   four phases: 4/9 of the multiply-adds, and no upsampled copy of the input.
3. The last stage's output is never interleaved to full resolution. It stays "phase-stacked"
   (half the output resolution, 4x the channels), where the 9x9 tail is a 5x5 convolution with
   12 output channels instead of 3 (oneDNN runs a 3-output convolution at a quarter of its usual
   speed), followed by one pixel shuffle of the 3-channel result. The tail's reflection pad maps
   to a per-phase gather, since reflection keeps a pixel's parity.

Measured on a 2-core Xeon (AVX-512), 128x128 input tiles, fp32 channels_last: the 3x3 conv at
output resolution took 68 ms and the 9x9 tail 124 ms (66 GFLOPS); as a 2x2 and a 5x5 phase
convolution, 41 ms and about 40 ms.

Only resize-conv networks with BatchNorm are rewritten (the default); others get the folded copy.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from perceptual_sr.networks.network_ends import check_rgb_batch, output_head
from perceptual_sr.networks.phases import PHASES, interleave, phase_kernel, phase_stacked_kernel, stack_phases
from perceptual_sr.networks.upscaler import PerceptualSR


def prepare(model: nn.Module, device: torch.device, fast: bool = True) -> nn.Module:
    """The module to run `model` with on `device`, in eval mode; `model` is never moved or changed.

    fast: the rewritten network of `build` (channels_last except on MPS); otherwise a plain
    eval-mode copy, the reference. A module that is not a `PerceptualSR` (an ONNX Runtime model)
    is used as it is.
    """
    if not isinstance(model, PerceptualSR):
        return model
    network = build(model) if fast else _eval_copy(model)
    if fast and device.type != "mps":
        network = network.to(memory_format=torch.channels_last)
    return network.to(device).requires_grad_(False)


def build(model: nn.Module) -> nn.Module:
    """The fastest exact inference form of `model`, in eval mode on the model's device."""
    fused = fold_batchnorm(model)
    config = model.config
    if config.upsampler != "resize-conv" or config.norm != "batch":
        return fused
    return PhaseNetwork(fused)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy in eval mode with every BatchNorm folded into the convolution before it: the same
    function up to float rounding (about 1e-6), 9% faster on CPU (measured on a 192x192 tile,
    2-core Xeon), since each folded BatchNorm is one pass less over a full feature map."""
    fused = _eval_copy(model)
    if model.config.norm != "batch":
        return fused  # instance norm depends on the input: nothing to fold
    sequences = [fused.head, *(block.body for block in fused.body), *fused.upsample]
    for sequence in sequences:
        for index in range(len(sequence) - 1):
            layer, norm = sequence[index], sequence[index + 1]
            if not isinstance(norm, nn.BatchNorm2d):
                continue
            holder, position = (sequence, index) if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) \
                else (layer, len(layer) - 1)  # pixelshuffle / resize-conv: the conv is the stage's last layer
            conv = holder[position]
            if isinstance(conv, nn.ConvTranspose2d):
                holder[position] = fuse_conv_bn_eval(conv, norm, transpose=True)
            elif isinstance(conv, nn.Conv2d):
                holder[position] = fuse_conv_bn_eval(conv, norm)
            else:
                continue  # e.g. a PixelShuffle last: leave this norm as it is
            sequence[index + 1] = nn.Identity()
    return fused


def _eval_copy(model: nn.Module) -> nn.Module:
    """A plain copy of the network in eval mode, on the model's device, in the standard layout."""
    plain = type(model)(model.config)
    plain.load_state_dict(model.state_dict())
    return plain.to(next(model.parameters()).device).eval()


class PhaseNetwork(nn.Module):
    """A folded resize-conv `PerceptualSR` run with phase-stacked upsampling (see the module doc)."""

    def __init__(self, fused: nn.Module) -> None:
        super().__init__()
        self.config = fused.config
        self.head, self.body = fused.head, fused.body
        stage_convs = [stage[0][1] for stage in fused.upsample]  # Sequential(Upsample, conv), Identity, ReLU
        self.stage_weights = nn.ParameterList([nn.Parameter(phase_kernel(conv.weight), requires_grad=False)
                                               for conv in stage_convs])
        self.stage_biases = nn.ParameterList([nn.Parameter(conv.bias.repeat(4), requires_grad=False)
                                              for conv in stage_convs])
        tail = fused.tail
        self.tail_pad = (tail.kernel_size[0] // 2 + 1) // 2  # ceil(9 // 2 / 2) = 2 phase-stacked pixels
        self.tail_weight = nn.Parameter(phase_stacked_kernel(tail.weight, self.tail_pad), requires_grad=False)
        self.tail_bias = nn.Parameter(tail.bias.repeat_interleave(4), requires_grad=False)
        self.eval()

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.run(lr, interleave=lambda phases: interleave(phases, border=1),
                        phase_stack=lambda phases: _pad_phase_stack(phases, self.tail_pad),
                        output=lambda residual: output_head(self.config.global_skip, self.scale, lr, residual,
                                                            clamp=True))

    def run(self, lr: torch.Tensor, *, interleave: Callable[[torch.Tensor], torch.Tensor],
            phase_stack: Callable[[torch.Tensor], torch.Tensor],
            output: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The network, with its data movement given (`export` supplies forms that keep ONNX sizes
        dynamic): `interleave` turns a stage's phases (B, 4C, H+1, W+1) into the next stage's
        replicate-padded (B, C, 2H+2, 2W+2) input, `phase_stack` the last stage's into the tail's
        padded phase stack, and `output` the tail's (B, 3, sH, sW) residual into the image."""
        check_rgb_batch(lr)
        x = F.pad(self.body(self.head(lr)), (1, 1, 1, 1), mode="replicate")
        last = len(self.stage_weights) - 1
        for index, (weight, bias) in enumerate(zip(self.stage_weights, self.stage_biases)):
            phases = F.relu_(F.conv2d(x, weight, bias))
            x = interleave(phases) if index < last else phase_stack(phases)
        return output(F.pixel_shuffle(F.conv2d(x, self.tail_weight, self.tail_bias), 2))


def _pad_phase_stack(phases: torch.Tensor, pad: int) -> torch.Tensor:
    """2x2-conv output (B, 4C, H+1, W+1) -> the aligned phase stack of the (2H, 2W) map, padded by
    `pad` phase-stacked pixels that hold the full-resolution map's reflection padding."""
    _, stacked, height, width = phases.shape
    channels, height, width = stacked // 4, height - 1, width - 1
    return stack_phases([phases[:, index * channels:(index + 1) * channels, row:row + height, column:column + width]
                          for index, (row, column) in enumerate(PHASES)], pad, like=phases)


