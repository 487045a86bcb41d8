"""The phase maths of a x2 resize-conv stage, shared by the inference rewrite, training through it
and the ONNX export: which input pixels each output phase reads, kernels rewritten per phase, and
the moves between a (2H, 2W) map and its phase stack (B, 4C, H, W), phase-major in `PHASES` order.

Nearest x2 upsampling repeats every input pixel 2x2 times, so each of the four output phases (row
parity, column parity) of a 3x3 convolution sees only a 2x2 window of the input (`phase_kernel`);
a full-resolution kernel applied to a phase stack is a gather of its taps (`phase_stacked_kernel`).
Reflection keeps a pixel's parity, so a reflection pad of the map is a per-phase copy (`reflected`).
"""

from __future__ import annotations

import functools

import torch

# Rows of the 3x3 kernel that land on each of the two input pixels a phase sees: phase 0 of an
# upsampled row 2i sees input rows i-1 (tap 0) and i (taps 1, 2); phase 1 (row 2i+1) sees input
# rows i (taps 0, 1) and i+1 (tap 2).
PHASE_TAPS = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]],
                            [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))  # (row, column) parity; phase-stacked channels are phase-major


def phase_kernel(weight: torch.Tensor) -> torch.Tensor:
    """(Co, Ci, 3, 3) resize-conv weights -> (4 Co, Ci, 2, 2): one 2x2 kernel per output phase."""
    taps = PHASE_TAPS.to(weight)
    return torch.cat([torch.einsum("ak,oikl,bl->oiab", taps[row], weight, taps[column])
                      for row, column in PHASES])


def phase_stacked_kernel(weight: torch.Tensor, pad: int) -> torch.Tensor:
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
    for out_phase, (r_row, r_col) in enumerate(PHASES):
        for ky in range(size):
            shift_y = r_row + ky - radius
            for kx in range(size):
                shift_x = r_col + kx - radius
                in_phase = (shift_y % 2) * 2 + shift_x % 2
                assert index[out_phase, in_phase, shift_y // 2 + pad, shift_x // 2 + pad] == size * size
                index[out_phase, in_phase, shift_y // 2 + pad, shift_x // 2 + pad] = ky * size + kx
    return index


def stack_phases(parts: list[torch.Tensor], pad: int, like: torch.Tensor) -> torch.Tensor:
    """The four (B, C, H, W) phases of a (2H, 2W) map, in `PHASES` order -> its phase stack
    (B, 4C, H + 2 pad, W + 2 pad) in `like`'s memory format, padded by `pad` phase-stacked pixels
    that hold the map's reflection padding (`phase_training` differentiates this with
    `stack_phases_adjoint`)."""
    channels, height, width = parts[0].shape[1:]
    out = empty_like(like, 4 * channels, height + 2 * pad, width + 2 * pad)
    for index, ((row, column), part) in enumerate(zip(PHASES, parts)):
        group = slice(index * channels, (index + 1) * channels)
        out[:, group, pad:pad + height, pad:pad + width] = part
        rows_to, rows_from = reflected(height, pad, row)
        out[:, group, rows_to, pad:pad + width] = out[:, group, rows_from, pad:pad + width]
        columns_to, columns_from = reflected(width, pad, column)
        out[:, group, :, columns_to] = out[:, group, :, columns_from]
    return out


def stack_phases_adjoint(grad: torch.Tensor, pad: int) -> torch.Tensor:
    """The adjoint of `stack_phases`: a phase stack's gradient (B, 4C, H + 2 pad, W + 2 pad) ->
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
    return full[..., border:border + inner_height, border:border + inner_width].contiguous(
        memory_format=memory_layout(grad))


def reflected(length: int, pad: int, parity: int) -> tuple[list[int], list[int]]:
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


def interleave(phases: torch.Tensor, border: int) -> torch.Tensor:
    """2x2-conv output (B, 4C, H+1, W+1) -> the (B, C, 2H, 2W) map it encodes, replicate-padded by
    `border` (0 or 1: the next resize-conv stage reads a 1-pixel replicate pad). Phase (r, c) of
    output pixel (i, j) sits at (i + r, j + c)."""
    _, stacked, height, width = phases.shape
    channels, height, width = stacked // 4, height - 1, width - 1
    out = empty_like(phases, channels, 2 * height + 2 * border, 2 * width + 2 * border)
    for index, (row, column) in enumerate(PHASES):
        out[:, :, border + row:border + 2 * height:2, border + column:border + 2 * width:2] = \
            phases[:, index * channels:(index + 1) * channels, row:row + height, column:column + width]
    if border:
        out[:, :, 0], out[:, :, -1] = out[:, :, 1], out[:, :, -2]
        out[:, :, :, 0], out[:, :, :, -1] = out[:, :, :, 1], out[:, :, :, -2]
    return out


def memory_layout(like: torch.Tensor) -> torch.memory_format:
    """The memory format a new tensor built from `like` takes: channels_last when `like` is in it
    (and not also plainly contiguous, as a 1x1 map is), so oneDNN keeps its fast layout throughout."""
    if like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def empty_like(like: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """An empty (B, channels, height, width) tensor with `like`'s dtype, device and memory layout."""
    return torch.empty(like.shape[0], channels, height, width, dtype=like.dtype, device=like.device,
                       memory_format=memory_layout(like))
