"""Training samples: the order each process reads them in and their augmentation, both reproducible.

Everything random here is drawn from a generator seeded by (seed, epoch) or passed in by the caller
(training seeds one per step), never from the global RNG or in DataLoader workers, so a resumed run
sees exactly the samples, crops and flips the uninterrupted run would have seen.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """Seeded shuffle per epoch, split across ranks, able to start mid-epoch.

    The order depends only on (seed, epoch), so a resumed run sees exactly the samples the
    uninterrupted run would have seen.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        per_rank = self.size // self.world_size  # equal share per rank: DDP needs equal step counts
        mine = order[self.rank * per_rank:(self.rank + 1) * per_rank]
        return iter(mine[self.start:])

    def __len__(self) -> int:
        return self.size // self.world_size - self.start


# One crop window and one of the 8 flips/transposes per sample, drawn from a generator seeded by
# the step rather than in DataLoader workers, so a resumed run draws exactly the same augmentations.


def random_crops(low_res: torch.Tensor, high_res: torch.Tensor, scale: int, crop_size: int | None,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """An aligned random crop per sample of a (B, 3, h, w) / (B, 3, h*scale, w*scale) pair."""
    if crop_size is None or (crop_size >= high_res.shape[-1] and crop_size >= high_res.shape[-2]):
        return low_res, high_res
    batch, lr_crop = low_res.shape[0], crop_size // scale
    tops = torch.randint(0, low_res.shape[-2] - lr_crop + 1, (batch,), generator=generator).tolist()
    lefts = torch.randint(0, low_res.shape[-1] - lr_crop + 1, (batch,), generator=generator).tolist()
    low_crops = [low_res[i, :, t:t + lr_crop, l:l + lr_crop] for i, (t, l) in enumerate(zip(tops, lefts))]
    high_crops = [high_res[i, :, t * scale:(t + lr_crop) * scale, l * scale:(l + lr_crop) * scale]
                  for i, (t, l) in enumerate(zip(tops, lefts))]
    return torch.stack(low_crops), torch.stack(high_crops)


def random_dihedral(low_res: torch.Tensor, high_res: torch.Tensor,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random horizontal flip, vertical flip and (for square samples) transpose per sample."""
    draws = torch.randint(0, 2, (low_res.shape[0], 3), generator=generator).bool()

    def apply(images: torch.Tensor) -> torch.Tensor:
        masks = draws.to(images.device).view(-1, 3, 1, 1, 1).unbind(1)  # three (B, 1, 1, 1) masks
        images = torch.where(masks[0], images.flip(-1), images)
        images = torch.where(masks[1], images.flip(-2), images)
        if images.shape[-1] == images.shape[-2]:
            images = torch.where(masks[2], images.transpose(-1, -2), images)
        return images

    return apply(low_res), apply(high_res)
