"""Tiled inference, tensor in and tensor out: any image size in bounded memory, seams blended away.

`upscale_tiled(network, image, ...)` takes a (3, H, W) float tensor in [0, 1] and returns the
(3, sH, sW) upscaling on the image's own device, in the dtype asked for (uint8 / uint16 rounded
over their full range, or float32). The network may run on another device: tiles go there and
come back.

The image is cut into the fewest equal tiles of at most `tile` pixels overlapping by at least
`overlap` (`plan_tiles`). Each tile's output is weighted by a ramp that falls to ~0 at edges
shared with a neighbour, where reflection padding makes the network's output wrong, and the
weighted sum is normalised. Output rows are finalised one strip of tiles at a time, so memory is
bounded by one strip of float32 output plus the output itself. Out-of-memory errors are retried
with fewer tiles at once, then smaller tiles. Networks with InstanceNorm see per-tile statistics,
so for them tiled output only approximates untiled output.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from tqdm.auto import tqdm

from perceptual_sr.utils.pixels import quantize_tensor
from perceptual_sr.utils.runtime import autocast

DEFAULT_TILE_OVERLAP = 16  # input pixels; > the receptive-field radius of the default 4-block net
MIN_TILE_SIZE = 32
MIN_NETWORK_SIDE = 8  # input pixels; smaller images are edge-padded to this, then cropped
AUTO_TILE_SIZE = {"cpu": 320, "cuda": 512, "mps": 256}
_TILE_MEMORY_BUDGET = {"cpu": 1 << 30, "mps": 1 << 30}  # bytes of activations per batch of tiles
_LIVE_ACTIVATIONS = 6  # rough count of full-resolution feature maps alive at once in forward


def upscale_tiled(
    network: nn.Module,
    image: torch.Tensor,
    *,
    out_dtype: torch.dtype = torch.float32,
    tile_size: int | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    tile_batch: int | None = None,
    device: torch.device,
    precision: torch.dtype | None = None,
    channels_last: bool = True,
    progress: bool = False,
    alignment: int = 1,
) -> torch.Tensor:
    """(3, H, W) float in [0, 1] -> (3, sH, sW) of `out_dtype` on `image.device` (s = network.scale).

    network: in eval mode on `device`. precision: the autocast dtype of each forward (None: fp32).
    tile_size None picks one for the device; tile_batch None, as many tiles at once as fit.
    alignment: tiles start at multiples of this many input pixels, and the image is extended by its
    edge pixels to a multiple of it; a network that is not shift-invariant by one pixel (the cleanup
    network's pixel-unshuffle) then computes in every tile what it computes on the whole image.
    """
    if tile_size is not None and (not isinstance(tile_size, int) or tile_size < MIN_TILE_SIZE):
        raise ValueError(f"tile_size must be an integer >= {MIN_TILE_SIZE} or None, got {tile_size!r}")
    if not isinstance(tile_overlap, int) or tile_overlap < 0:
        raise ValueError(f"tile_overlap must be a non-negative integer, got {tile_overlap!r}")
    if tile_size is not None and 2 * tile_overlap >= tile_size:
        raise ValueError(f"tile_overlap ({tile_overlap}) must be less than half of tile_size ({tile_size})")
    if tile_batch is not None and (not isinstance(tile_batch, int) or isinstance(tile_batch, bool) or tile_batch < 1):
        raise ValueError(f"tile_batch must be a positive integer or None, got {tile_batch!r}")
    if image.ndim != 3 or image.shape[0] != 3 or image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"expected a non-empty (3, H, W) tensor, got shape {tuple(image.shape)}")
    scale = network.scale
    height, width = image.shape[1:]
    # The first layer's 9x9 reflection padding needs 5 pixels a side: smaller images (icons, 1-pixel
    # strips) are extended by repeating their edge pixels, and the output cropped back.
    pad_bottom, pad_right = (max(MIN_NETWORK_SIDE, -(-side // alignment) * alignment) - side
                             for side in (height, width))
    if pad_bottom or pad_right:
        image = torch.nn.functional.pad(image[None], (0, pad_right, 0, pad_bottom), mode="replicate")[0]
    tile = tile_size or AUTO_TILE_SIZE.get(device.type, 256)
    overlap = min(tile_overlap, (tile - 1) // 2)
    channels = getattr(getattr(network, "config", None), "channels", 64)
    batch = tile_batch or _auto_tile_batch(device, tile, scale, channels, precision is not None)
    plan = _TilePlan(network, device, precision, channels_last, out_dtype, progress, alignment)
    while True:
        try:
            out = plan.run(image, tile, overlap, batch)
            return out[:, :height * scale, :width * scale]
        except (RuntimeError, MemoryError) as error:
            if not is_out_of_memory(error):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if batch > 1:
                batch //= 2  # fewer tiles at once before smaller tiles: small tiles waste overlap
            elif tile // 2 >= MIN_TILE_SIZE:
                tile //= 2
                overlap = min(overlap, tile // 4)
            else:
                raise MemoryError(
                    f"out of memory on {device} even with {tile}-pixel tiles; free memory or use device='cpu'"
                ) from error


def work_pixels(width: int, height: int) -> int:
    """The pixels the network runs on for a `width` x `height` input: sides below
    MIN_NETWORK_SIDE are padded up, so a 1 x 5000 strip costs as much as 8 x 5000."""
    return max(width, MIN_NETWORK_SIDE) * max(height, MIN_NETWORK_SIDE)


def plan_tiles(length: int, tile: int, overlap: int, alignment: int = 1) -> tuple[int, list[int]]:
    """(tile size, start positions) covering `length` pixels with the fewest equal tiles of at
    most `tile` pixels overlapping by at least `overlap`: no tile computes more than it must (with
    320-px tiles, a 512-px side takes two 264-px tiles instead of two 320-px ones). With an
    `alignment` (dividing `length`), sizes and starts are multiples of it, and the overlap may be
    up to `alignment` - 1 pixels short."""
    if length <= tile:
        return length, [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    size = overlap + math.ceil((length - overlap) / count)
    size = min(length, -(-size // alignment) * alignment)
    step = (length - size) / (count - 1)
    return size, [round(k * step / alignment) * alignment for k in range(count)]


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    message = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


def _auto_tile_batch(device: torch.device, tile: int, scale: int, channels: int, half_precision: bool) -> int:
    bytes_per_value = 2 if half_precision else 4
    per_tile = channels * (tile * scale) ** 2 * bytes_per_value * _LIVE_ACTIVATIONS
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = free // 4
    else:
        budget = _TILE_MEMORY_BUDGET.get(device.type, 1 << 30)
    return int(max(1, min(8, budget // per_tile)))


def _edge_ramp(length: int, ramp: int, lead: bool, trail: bool, device: torch.device) -> torch.Tensor:
    """1-D blend weights: rising over `ramp` pixels on edges shared with a neighbour tile."""
    weights = torch.ones(length, device=device)
    if ramp > 0:
        # Strictly positive, so every output pixel has a non-zero total weight.
        rise = (torch.arange(ramp, dtype=torch.float32, device=device) + 0.5) / ramp
        if lead:
            weights[:ramp] = torch.minimum(weights[:ramp], rise)
        if trail:
            weights[-ramp:] = torch.minimum(weights[-ramp:], rise.flip(0))
    return weights


class _TilePlan:
    """One pass over the tiles at a given tile size and batch (a fresh pass after an OOM)."""

    def __init__(self, network: nn.Module, device: torch.device, precision: torch.dtype | None,
                 channels_last: bool, out_dtype: torch.dtype, progress: bool, alignment: int = 1) -> None:
        self.network, self.device, self.precision, self.alignment = network, device, precision, alignment
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.out_dtype, self.progress = out_dtype, progress

    def run(self, image: torch.Tensor, tile: int, overlap: int, batch: int) -> torch.Tensor:
        scale, home = self.network.scale, image.device
        height, width = image.shape[1:]
        (tile_h, ys), (tile_w, xs) = (plan_tiles(side, tile, overlap, self.alignment) for side in (height, width))
        ramp = overlap * scale
        weight_y = [_edge_ramp(tile_h * scale, ramp, i > 0, i < len(ys) - 1, home) for i in range(len(ys))]
        weight_x = [_edge_ramp(tile_w * scale, ramp, j > 0, j < len(xs) - 1, home) for j in range(len(xs))]
        out = torch.empty(height * scale, width * scale, 3, dtype=self.out_dtype, device=home)
        # One strip of tile rows, accumulated in float32 and finalised as soon as no later tile touches it.
        strip = torch.zeros(tile_h * scale, width * scale, 3, device=home)
        strip_weight = torch.zeros(tile_h * scale, width * scale, 1, device=home)
        bar = tqdm(total=len(ys) * len(xs), desc="tiles", unit="tile", disable=not self.progress, leave=False)
        for i, y in enumerate(ys):
            for first in range(0, len(xs), batch):
                columns = list(range(first, min(first + batch, len(xs))))
                tiles = torch.stack([image[:, y:y + tile_h, xs[j]:xs[j] + tile_w] for j in columns])
                tiles = tiles.to(self.device).contiguous(memory_format=self.memory_format)  # (B, 3, th, tw)
                with autocast(self.device, self.precision):
                    result = self.network(tiles)  # (B, 3, s*th, s*tw)
                if not torch.isfinite(result).all():  # damaged weights: a black or grey image would pass silently
                    raise ValueError("the network's output holds NaN or infinite values: its weights are damaged; "
                                     "reload or retrain the model")
                result = result.float().clamp_(0, 1).permute(0, 2, 3, 1).to(home)  # (B, s*th, s*tw, 3)
                for k, j in enumerate(columns):
                    weight = (weight_y[i][:, None] * weight_x[j][None, :])[..., None]
                    x0 = xs[j] * scale
                    strip[:, x0:x0 + tile_w * scale].addcmul_(result[k], weight)
                    strip_weight[:, x0:x0 + tile_w * scale] += weight
                bar.update(len(columns))
            done = ((ys[i + 1] if i + 1 < len(ys) else height) - y) * scale
            out[y * scale:y * scale + done] = quantize_tensor(strip[:done] / strip_weight[:done], self.out_dtype)
            keep = len(strip) - done  # rows the next tile row adds to: shift them to the top
            if keep > 0:
                strip[:keep] = strip[done:].clone()
                strip_weight[:keep] = strip_weight[done:].clone()
            strip[keep:] = 0
            strip_weight[keep:] = 0
        bar.close()
        return out.permute(2, 0, 1)  # (3, sH, sW), a view of the (sH, sW, 3) rows written above
