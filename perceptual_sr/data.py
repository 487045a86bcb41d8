"""The network's pixel convention, the degradation that turns a high-resolution image into its
low-resolution input, and the dataset of prepared LR/HR pairs.

Convention: the network sees float32 RGB tensors, (B, 3, H, W) in [0, 1] (a single image is
(3, H, W) here and gains its batch axis at the call). Files are read and written by
`perceptual_sr.image_io`, which hands over (H, W, 3) arrays; its `uint8_to_tensor` and
`tensor_to_uint8` cross between the two.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

# tensor_to_uint8 is imported from here by train_logs.py until it imports it from image_io.
from perceptual_sr.image_io import tensor_to_uint8, uint8_to_tensor  # noqa: F401

DEGRADATIONS = ("blur", "bicubic", "jpeg75", "noise", "realistic")
NOISE_SIGMA = 5.0  # "noise": Gaussian, in 8-bit levels, then JPEG at quality NOISE_JPEG_QUALITY
NOISE_JPEG_QUALITY = 90
BLUR_SIGMA = 1.0  # Johnson et al. 2016, section 4.2: Gaussian blur sigma 1.0 before downsampling
BLUR_TRUNCATE = 3.0  # kernel radius = 3 sigma -> 7x7 kernel for sigma 1
SPLITS = ("val", "train")
DATASET_FORMAT_VERSION = 1  # written by prepare.py into manifest.json; bump when the arrays change meaning


def crop_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Crop the bottom/right edges so height and width are multiples of `multiple`."""
    height, width = image.shape[:2]
    return image[: height - height % multiple, : width - width % multiple]


def degrade(hr: np.ndarray, scale: int, kind: str = "blur") -> np.ndarray:
    """The low-resolution version of an (H, W, 3) uint8 image, as (H/scale, W/scale, 3) uint8; H and W
    must be multiples of `scale`. The kinds are `degrade_to_image`'s."""
    return np.asarray(degrade_to_image(hr, scale, kind))


def degrade_to_image(hr: np.ndarray, scale: int, kind: str = "blur") -> Image.Image:
    """The low-resolution version of an (H, W, 3) uint8 image as a Pillow image.

    "blur": Gaussian blur (sigma 1.0, 7x7 kernel, reflected borders) on the uint8 values,
    rounded back to uint8, then bicubic downscaling; the paper's training degradation.
    "bicubic": bicubic downscaling only; the common benchmark protocol.
    "jpeg75": bicubic, then a JPEG file at quality 75 (a web or messenger photo).
    "noise": bicubic, Gaussian noise of sigma 5/255 (seeded), then JPEG at quality 90 (a phone photo).
    "realistic": `degradations`' "photo" chain with seed 0.
    JPEG kinds return the decoded file, which keeps its quantization tables (what `cleanup="auto"`
    reads). Bicubic downscaling is PIL's antialiased BICUBIC resize (a = -0.5, like MATLAB's
    imresize). Deterministic: the same input always gives the same bytes.
    """
    if kind not in DEGRADATIONS:
        raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {kind!r}")
    if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {hr.dtype} {hr.shape}")
    height, width = hr.shape[:2]
    if height % scale or width % scale:
        raise ValueError(f"image size {width}x{height} is not a multiple of scale {scale}; use crop_to_multiple")
    if kind == "realistic":
        from perceptual_sr.degradations import PRESETS, degrade_realistic  # it imports this module

        return Image.fromarray(tensor_to_uint8(degrade_realistic(uint8_to_tensor(hr), scale, 0, PRESETS["photo"])))
    if kind == "blur":
        from scipy.ndimage import gaussian_filter  # training and evaluation only: not a core dependency

        blurred = gaussian_filter(hr.astype(np.float32), sigma=(BLUR_SIGMA, BLUR_SIGMA, 0),
                                  mode="reflect", truncate=BLUR_TRUNCATE)
        hr = np.clip(np.rint(blurred), 0, 255).astype(np.uint8)
    lr = Image.fromarray(hr).resize((width // scale, height // scale), Image.Resampling.BICUBIC)
    if kind == "jpeg75":
        return as_jpeg_file(lr, 75)
    if kind == "noise":
        noise = np.random.default_rng(0).normal(0.0, NOISE_SIGMA, (lr.height, lr.width, 3))
        noisy = np.clip(np.rint(np.asarray(lr, np.float64) + noise), 0, 255).astype(np.uint8)
        return as_jpeg_file(Image.fromarray(noisy), NOISE_JPEG_QUALITY)
    return lr


def as_jpeg_file(image: Image.Image, quality: int) -> Image.Image:
    """`image` written as a JPEG file by libjpeg (Pillow) and read back."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    decoded = Image.open(io.BytesIO(buffer.getvalue()))
    decoded.load()
    return decoded


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
