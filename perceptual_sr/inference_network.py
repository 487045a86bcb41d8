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

import functools
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from perceptual_sr.model import PerceptualSR
from perceptual_sr.network_ends import check_rgb_batch, output_head

# Rows of the 3x3 kernel that land on each of the two input pixels a phase sees: phase 0 of an
# upsampled row 2i sees input rows i-1 (tap 0) and i (taps 1, 2); phase 1 (row 2i+1) sees input
# rows i (taps 0, 1) and i+1 (tap 2).
_PHASE_TAPS = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]],
                            [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
_PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))  # (row, column) parity; phase-stacked channels are phase-major


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
        self.stage_weights = nn.ParameterList([nn.Parameter(_phase_kernel(conv.weight), requires_grad=False)
                                               for conv in stage_convs])
        self.stage_biases = nn.ParameterList([nn.Parameter(conv.bias.repeat(4), requires_grad=False)
                                              for conv in stage_convs])
        tail = fused.tail
        self.tail_pad = (tail.kernel_size[0] // 2 + 1) // 2  # ceil(9 // 2 / 2) = 2 phase-stacked pixels
        self.tail_weight = nn.Parameter(_phase_stacked_kernel(tail.weight, self.tail_pad), requires_grad=False)
        self.tail_bias = nn.Parameter(tail.bias.repeat_interleave(4), requires_grad=False)
        self.eval()

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.run(lr, interleave=_interleave,
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


def _phase_kernel(weight: torch.Tensor) -> torch.Tensor:
    """(Co, Ci, 3, 3) resize-conv weights -> (4 Co, Ci, 2, 2): one 2x2 kernel per output phase."""
    taps = _PHASE_TAPS.to(weight)
    return torch.cat([torch.einsum("ak,oikl,bl->oiab", taps[row], weight, taps[column])
                      for row, column in _PHASES])


def _phase_stacked_kernel(weight: torch.Tensor, pad: int) -> torch.Tensor:
    """(Co, Ci, K, K) full-resolution weights -> (4 Co, 4 Ci, 2 pad + 1, 2 pad + 1) on phase stacks.

    Output channel c * 4 + phase (the order `pixel_shuffle` reads), input channel phase * Ci + c.
    Full-resolution output row 2i + r, tap offset k, reads input row 2i + r + k: phase (r + k) % 2,
    phase-stacked row i + (r + k) // 2. Each entry is one tap of `weight` or zero, so this is a
    gather: exact, and cheap to differentiate when training runs through it (phase_training.py).
    """
    out_channels, in_channels, size, _ = weight.shape
    taps = torch.cat([weight.reshape(out_channels, in_channels, size * size),
                      weight.new_zeros(out_channels, in_channels, 1)], dim=2)
    stacked = taps[:, :, _stacked_tap_index(size, pad).to(weight.device)]  # (Co, Ci, 4, 4, 2p+1, 2p+1)
    return stacked.permute(0, 2, 3, 1, 4, 5).reshape(out_channels * 4, 4 * in_channels, 2 * pad + 1, 2 * pad + 1)


@functools.lru_cache(maxsize=None)
def _stacked_tap_index(size: int, pad: int) -> torch.Tensor:
    """(out phase, in phase, row, column) of a phase-stacked kernel -> flat index of the K x K tap
    it holds, or K * K (a zero) where it holds none."""
    radius, width = size // 2, 2 * pad + 1
    index = torch.full((4, 4, width, width), size * size, dtype=torch.long)
    for out_phase, (r_row, r_col) in enumerate(_PHASES):
        for ky in range(size):
            shift_y = r_row + ky - radius
            for kx in range(size):
                shift_x = r_col + kx - radius
                in_phase = (shift_y % 2) * 2 + shift_x % 2
                assert index[out_phase, in_phase, shift_y // 2 + pad, shift_x // 2 + pad] == size * size
                index[out_phase, in_phase, shift_y // 2 + pad, shift_x // 2 + pad] = ky * size + kx
    return index


def _interleave(phases: torch.Tensor) -> torch.Tensor:
    """2x2-conv output (B, 4C, H+1, W+1) -> the (B, C, 2H, 2W) map it encodes, replicate-padded by 1
    for the next stage. Phase (r, c) of output pixel (i, j) sits at (i + r, j + c)."""
    _, stacked, height, width = phases.shape
    channels, height, width = stacked // 4, height - 1, width - 1
    out = _empty_like(phases, channels, 2 * height + 2, 2 * width + 2)
    for index, (row, column) in enumerate(_PHASES):
        out[:, :, 1 + row:1 + 2 * height:2, 1 + column:1 + 2 * width:2] = \
            phases[:, index * channels:(index + 1) * channels, row:row + height, column:column + width]
    out[:, :, 0], out[:, :, -1] = out[:, :, 1], out[:, :, -2]
    out[:, :, :, 0], out[:, :, :, -1] = out[:, :, :, 1], out[:, :, :, -2]
    return out


def _pad_phase_stack(phases: torch.Tensor, pad: int) -> torch.Tensor:
    """2x2-conv output (B, 4C, H+1, W+1) -> the aligned phase stack of the (2H, 2W) map, padded by
    `pad` phase-stacked pixels that hold the full-resolution map's reflection padding."""
    _, stacked, height, width = phases.shape
    channels, height, width = stacked // 4, height - 1, width - 1
    return _stack_phases([phases[:, index * channels:(index + 1) * channels, row:row + height, column:column + width]
                          for index, (row, column) in enumerate(_PHASES)], pad, like=phases)


def _stack_phases(parts: list[torch.Tensor], pad: int, like: torch.Tensor) -> torch.Tensor:
    """The four (B, C, H, W) phases of a (2H, 2W) map, in `_PHASES` order -> its phase stack
    (B, 4C, H + 2 pad, W + 2 pad) in `like`'s memory format, padded by `pad` phase-stacked pixels
    that hold the map's reflection padding (`phase_training` differentiates this with
    `_stack_phases_adjoint`)."""
    channels, height, width = parts[0].shape[1:]
    out = _empty_like(like, 4 * channels, height + 2 * pad, width + 2 * pad)
    for index, ((row, column), part) in enumerate(zip(_PHASES, parts)):
        group = slice(index * channels, (index + 1) * channels)
        out[:, group, pad:pad + height, pad:pad + width] = part
        rows_to, rows_from = _reflected(height, pad, row)
        out[:, group, rows_to, pad:pad + width] = out[:, group, rows_from, pad:pad + width]
        columns_to, columns_from = _reflected(width, pad, column)
        out[:, group, :, columns_to] = out[:, group, :, columns_from]
    return out


def _stack_phases_adjoint(grad: torch.Tensor, pad: int) -> torch.Tensor:
    """The adjoint of `_stack_phases`: a phase stack's gradient (B, 4C, H + 2 pad, W + 2 pad) ->
    the gradient of the (B, C, 2H, 2W) map, in `grad`'s memory format. The stack is the map,
    reflection-padded by 2 pad pixels and split into phases; so the phases are interleaved back
    (one copy, in channels-last order: runs of 2C contiguous values) and each padded pixel's
    gradient is added to the pixel it reflects (columns first, then rows: the copies in reverse)."""
    batch, stacked, height, width = grad.shape
    channels, border = stacked // 4, 2 * pad
    # Phase-major channels (row, column, c) at phase pixel (h, w) -> full-resolution pixel (2h + row, 2w + column).
    full = (grad.permute(0, 2, 3, 1).reshape(batch, height, width, 2, 2, channels)
            .permute(0, 1, 3, 2, 4, 5).reshape(batch, 2 * height, 2 * width, channels).permute(0, 3, 1, 2))
    if full.data_ptr() == grad.data_ptr():
        full = full.clone()  # reshape gave a view: never write into the caller's gradient
    inner_width, inner_height = 2 * width - 2 * border, 2 * height - 2 * border
    # Padded column j < border reflects interior column 2 border - j; column border + W + k reflects border + W - 2 - k.
    full[..., border + 1:2 * border + 1] += full[..., :border].flip(-1)
    full[..., inner_width - 1:inner_width + border - 1] += full[..., inner_width + border:].flip(-1)
    full[..., border + 1:2 * border + 1, :] += full[..., :border, :].flip(-2)
    full[..., inner_height - 1:inner_height + border - 1, :] += full[..., inner_height + border:, :].flip(-2)
    layout = torch.channels_last if grad.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    return full[..., border:border + inner_height, border:border + inner_width].contiguous(memory_format=layout)


def _reflected(length: int, pad: int, parity: int) -> tuple[list[int], list[int]]:
    """Padded positions of one phase along an axis of `length` phase-stacked pixels, and the
    interior positions they copy: full-resolution pixel 2h + parity reflects to one of the same parity."""
    full = 2 * length
    to, source = [], []
    for h in [*range(-pad, 0), *range(length, length + pad)]:
        f = 2 * h + parity
        f = -f if f < 0 else 2 * (full - 1) - f
        to.append(h + pad)
        source.append(f // 2 + pad)
    return to, source


def _empty_like(like: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """An empty (B, channels, height, width) tensor with `like`'s dtype, device and memory format."""
    layout = torch.channels_last if like.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    return torch.empty(like.shape[0], channels, height, width, dtype=like.dtype, device=like.device,
                       memory_format=layout)
