"""The network's pixel convention and the dataset of prepared LR/HR pairs (the degradations that
make an LR from an HR are `degradations.py`'s).

Convention: the network sees float32 RGB tensors, (B, 3, H, W) in [0, 1] (a single image is
(3, H, W) here and gains its batch axis at the call). Files are read and written by
`perceptual_sr.utils.image_io`, which hands over (H, W, 3) arrays; its `uint8_to_tensor` and
`tensor_to_uint8` cross between the two.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from perceptual_sr.utils.pixels import uint8_to_tensor

SPLITS = ("val", "train")
DATASET_FORMAT_VERSION = 1  # written by prepare.py into manifest.json; bump when the arrays change meaning


def crop_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Crop the bottom/right edges so height and width are multiples of `multiple`."""
    height, width = image.shape[:2]
    return image[: height - height % multiple, : width - width % multiple]


class SRPairDataset(Dataset):
    """The (LR, HR) pairs that `prepare_data.py` wrote to `root`, as float32 (3, h, w) tensors in [0, 1].

    Augmentation (crops, flips) is the training loop's, seeded per step for exact resume. The arrays
    are memory-mapped lazily in each process, so the dataset pickles cheaply into DataLoader workers
    and works with DistributedSampler. `manifest` is the parsed manifest.json.
    """

    def __init__(self, root: str | Path, split: str = "train"):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root, self.split = Path(root), split
        manifest_path = self.root / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path} not found: {self.root} is not a finished dataset; "
                                    f"run prepare_data.py SRC {self.root} (again, to finish an interrupted run)")
        try:
            self.manifest = json.loads(manifest_path.read_text())
            count, hr_size, scale = (int(self.manifest["counts"][split]), int(self.manifest["hr_size"]),
                                     int(self.manifest["scale"]))
            version = self.manifest.get("format_version")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"{manifest_path} is not a valid dataset manifest ({error!r})") from error
        if version != DATASET_FORMAT_VERSION:
            raise ValueError(f"{manifest_path} has dataset format {version!r}; this version of perceptual_sr reads "
                             f"format {DATASET_FORMAT_VERSION}: re-run prepare_data.py into a new folder")
        self.hr_path, self.lr_path = self.root / f"{split}_hr.npy", self.root / f"{split}_lr.npy"
        lr_size = hr_size // scale
        for path, side in ((self.hr_path, hr_size), (self.lr_path, lr_size)):
            array = self._open(path)  # validates the header only; the data is not read
            if array.dtype != np.uint8 or array.shape != (count, side, side, 3):
                raise ValueError(f"{path} holds {array.dtype} {array.shape}, but the manifest says "
                                 f"uint8 {(count, side, side, 3)}; re-run prepare_data.py into a new folder")
        self._length = count
        self._hr: np.ndarray | None = None
        self._lr: np.ndarray | None = None

    @staticmethod
    def _open(path: Path) -> np.ndarray:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; re-run prepare_data.py to finish the dataset")
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ValueError(f"{path} is not a readable .npy array ({error})") from error

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -self._length <= index < self._length:
            raise IndexError(f"index {index} out of range for {self._length} pairs")
        if self._hr is None or self._lr is None:
            self._hr, self._lr = self._open(self.hr_path), self._open(self.lr_path)
        hr, lr = self._hr[index], self._lr[index]  # (h, w, 3) uint8 views of the memory map
        return uint8_to_tensor(lr), uint8_to_tensor(hr)  # copies out of the read-only memory map

    def __getstate__(self) -> dict:
        # Pickling a memmap would copy the whole array into each DataLoader worker.
        state = self.__dict__.copy()
        state["_hr"] = state["_lr"] = None
        return state
