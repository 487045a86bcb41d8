"""Turn a folder of photos (ImageNet's `train/` or any folder) into memory-mapped LR/HR training arrays.

Output folder layout (what `perceptual_sr.data.SRPairDataset` reads):

    OUT/train_hr.npy  (N, hr_size, hr_size, 3) uint8      OUT/val_hr.npy  likewise
    OUT/train_lr.npy  (N, hr_size/scale, hr_size/scale, 3) uint8  OUT/val_lr.npy
    OUT/manifest.json settings, counts, the source of every row, skipped files, package versions

Choices, written down once:
- Images are found recursively (JPEG/PNG/WebP/BMP/TIFF; hidden files such as macOS `._x.jpg` are
  ignored), sorted, and shuffled with `seed`; the first usable ones form the validation split, the
  next `num_images` usable ones the training split, so the two are disjoint.
- Validation holds `val_images` images but never more than 10% of the images found.
- Images whose shorter side is below `hr_size` are skipped (listed in the manifest), and the next
  candidate takes their place: an upscaled "high-resolution" target would teach the network to
  reproduce bicubic blur.
- Training rows are `crops_per_image` random crops per image; validation rows are one centre crop
  per image, so validation scores are comparable between runs. Every LR is `degrade(HR)`.
- Crop positions come from `(seed, split, image index)` only, so the arrays do not depend on the
  number of workers or on interruptions.
- Resumable: rows are written straight into `*.npy.partial` files (so memory stays at a few MB for
  any N); every few seconds the files are fsync'ed and only then `progress.json` records the
  finished images. A re-run after a kill redoes at most the unrecorded images, which give the same
  bytes. The finished arrays are renamed into place and `manifest.json` is written last.
- Files that cannot be decoded (truncated, corrupt) are skipped and listed; their rows are dropped
  when the arrays are finalised.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from perceptual_sr.config_flags import add_flags, from_flags
from perceptual_sr.data import DATASET_FORMAT_VERSION, DEGRADATIONS, SPLITS, degrade
from perceptual_sr.image_io import IMAGE_SUFFIXES, UNREADABLE_ERRORS, load_rgb8

MAX_VAL_FRACTION = 0.1
SPLIT_CODES = {"val": 0, "train": 1}  # part of the crop seed; never change
DISK_MARGIN_BYTES = 64 * 2**20  # room for the manifest and progress files
PROGRESS_FILE, PLAN_FILE, MANIFEST_FILE = "progress.json", "plan.json", "manifest.json"


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


@dataclass
class PrepareConfig:
    """Settings of one data preparation run; all but `workers` determine the output bytes."""

    source: Path = field(metadata={"help": "folder of images, searched recursively"})
    out: Path = field(metadata={"help": "output folder (created; re-run the same command to resume)"})
    num_images: int = field(default=80000, metadata={"help": "training images (all usable ones if fewer)"})
    val_images: int = field(default=50, metadata={"help": "validation images, at most 10%% of those found"})
    crops_per_image: int = field(default=1, metadata={"help": "random training crops per image"})
    hr_size: int = field(default=288, metadata={"help": "side of the square high-resolution crops"})
    scale: int = field(default=4, metadata={"help": "downscaling factor; LR side = hr_size / scale"})
    degradation: str = field(default="blur",
                             metadata={"help": "blur (the paper's) or bicubic", "choices": DEGRADATIONS})
    seed: int = field(default=0, metadata={"help": "picks the images and crop positions"})
    workers: int = field(default_factory=_default_workers, metadata={"help": "worker processes"})

    def __post_init__(self) -> None:
        self.source, self.out = Path(self.source), Path(self.out)
        for name in ("num_images", "crops_per_image", "hr_size", "scale", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.val_images < 0:
            raise ValueError(f"val_images must be 0 or more, got {self.val_images}")
        if self.seed < 0:
            raise ValueError(f"seed must be 0 or more, got {self.seed}")
        if self.hr_size % self.scale:
            raise ValueError(f"hr_size {self.hr_size} is not a multiple of scale {self.scale}")
        if self.degradation not in DEGRADATIONS:
            raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {self.degradation!r}")

    @property
    def lr_size(self) -> int:
        return self.hr_size // self.scale

    def settings(self) -> dict:
        """The settings that determine the output (everything but `out` and `workers`), JSON-ready."""
        settings = asdict(self)
        del settings["out"], settings["workers"]
        settings["source"] = str(self.source.resolve())
        return settings


# ----------------------------------------------------------------------------- choosing images


def find_images(source: Path) -> list[str]:
    """Relative POSIX paths of the image files under `source`, sorted (the order the seed shuffles)."""
    if not source.is_dir():
        raise FileNotFoundError(f"source folder not found: {source}")
    found = []
    for folder, subfolders, files in os.walk(source):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                found.append((Path(folder) / name).relative_to(source).as_posix())
    return sorted(found)


def probe_image(path: Path, hr_size: int) -> str | None:
    """Why the image at `path` cannot give an `hr_size` crop (from its header alone), or None if it can."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (*UNREADABLE_ERRORS, ValueError, Image.DecompressionBombError) as error:
        return f"unreadable: {error}"
    if min(width, height) < hr_size:
        return f"smaller than hr_size {hr_size} ({width}x{height})"
    return None


def _probe_job(job: tuple[str, int]) -> str | None:
    return probe_image(Path(job[0]), job[1])


def choose_images(config: PrepareConfig, pool: ProcessPoolExecutor | None) -> dict:
    """The plan: which files form each split, and which candidates were skipped on the way."""
    files = find_images(config.source)
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {config.source}")
    val_target = min(config.val_images, max(1, int(len(files) * MAX_VAL_FRACTION))) if len(files) > 1 else 0
    train_target = min(config.num_images, len(files) - val_target)
    order = np.random.default_rng(config.seed).permutation(len(files))
    chosen: dict[str, list[str]] = {"val": [], "train": []}
    skipped: list[dict] = []
    position = 0
    with tqdm(total=val_target + train_target, desc="checking image headers", unit="img") as bar:
        while position < len(files) and (len(chosen["val"]) < val_target or len(chosen["train"]) < train_target):
            missing = val_target - len(chosen["val"]) + train_target - len(chosen["train"])
            batch = [files[i] for i in order[position: position + max(64, missing + missing // 4)]]
            jobs = [(str(config.source / name), config.hr_size) for name in batch]
            reasons = pool.map(_probe_job, jobs, chunksize=16) if pool else map(_probe_job, jobs)
            # Candidates are taken strictly in shuffled order, so the plan does not depend on batching.
            for name, reason in zip(batch, reasons):
                position += 1
                if reason is not None:
                    skipped.append({"path": name, "reason": reason})
                    continue
                split = "val" if len(chosen["val"]) < val_target else "train"
                chosen[split].append(name)
                bar.update()
                if len(chosen["val"]) == val_target and len(chosen["train"]) == train_target:
                    break
    if not chosen["train"]:
        raise ValueError(f"no usable training images under {config.source}: {len(files)} found, "
                         f"{len(skipped)} unreadable or smaller than hr_size {config.hr_size}")
    return {"settings": config.settings(), "splits": chosen, "skipped": skipped}


# ----------------------------------------------------------------------------- making crops


def crop_positions(height: int, width: int, hr_size: int, count: int,
                   seed: tuple[int, ...] | None) -> list[tuple[int, int]]:
    """(top, left) of `count` crops: uniformly random from `seed`, or the centre when `seed` is None."""
    if seed is None:
        return [((height - hr_size) // 2, (width - hr_size) // 2)] * count
    rng = np.random.default_rng(seed)
    return [(int(rng.integers(0, height - hr_size + 1)), int(rng.integers(0, width - hr_size + 1)))
            for _ in range(count)]


@dataclass(frozen=True)
class CropJob:
    split: str
    index: int  # position of the image in its split
    path: str
    count: int
    hr_size: int
    scale: int
    degradation: str
    seed: tuple[int, ...] | None


def make_crops(job: CropJob) -> tuple[np.ndarray, np.ndarray]:
    """HR crops (count, hr, hr, 3) and their degradations (count, lr, lr, 3) for one image; ValueError if unusable."""
    image = load_rgb8(job.path)
    height, width = image.shape[:2]
    if min(height, width) < job.hr_size:
        raise ValueError(f"smaller than hr_size {job.hr_size} ({width}x{height})")
    positions = crop_positions(height, width, job.hr_size, job.count, job.seed)
    hr = np.stack([image[top: top + job.hr_size, left: left + job.hr_size] for top, left in positions])
    lr = np.stack([degrade(crop, job.scale, job.degradation) for crop in hr])
    return hr, lr


def _crop_job(job: CropJob) -> tuple[CropJob, np.ndarray | None, np.ndarray | None, str | None]:
    """Worker entry point: unusable files become a reason instead of an exception."""
    try:
        hr, lr = make_crops(job)
    except (ValueError, FileNotFoundError) as error:
        return job, None, None, str(error)
    return job, hr, lr, None


# ----------------------------------------------------------------------------- files on disk


def write_json_atomic(path: Path, data: dict, indent: int = 1) -> None:
    """Atomic write: a kill leaves either the old or the new file, never half of one."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w") as file:
        json.dump(data, file, indent=indent)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def _read_json(path: Path, required: dict[str, type]) -> dict | None:
    """A bookkeeping file of ours, or None if absent; ValueError if it is corrupt or someone else's."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is corrupt ({error}); delete it to start over") from error
    if not isinstance(data, dict) or any(not isinstance(data.get(key), kind) for key, kind in required.items()):
        raise ValueError(f"{path} was not written by prepare_data.py (expected an object with "
                         f"{', '.join(required)}); move it away or choose another OUT")
    for key in ("splits", "done", "failed"):  # per-split tables
        if key in required and any(not isinstance(data[key].get(split), (list, dict)) for split in SPLITS):
            raise ValueError(f"{path} was not written by prepare_data.py ({key} lacks a split); "
                             "move it away or choose another OUT")
    return data


def _create_npy(path: Path, shape: tuple[int, ...]) -> None:
    """An .npy header followed by a sparse, zero-filled body: disk is used as rows are written."""
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(
            file, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape})
        file.truncate(file.tell() + int(np.prod(shape)))


def _npy_offset(path: Path, shape: tuple[int, ...]) -> int | None:
    """Byte offset of the data in an existing uint8 .npy file of `shape`, or None if it is not one."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if array.dtype != np.uint8 or array.shape != shape:
        return None
    return int(array.offset) if isinstance(array, np.memmap) else None


def _shapes(config: PrepareConfig, plan: dict) -> dict[str, tuple[int, ...]]:
    """Shape of every partial array, keyed by file stem ("train_hr", ...)."""
    shapes = {}
    for split in SPLITS:
        rows = len(plan["splits"][split]) * _crops_per_image(config, split)
        shapes[f"{split}_hr"] = (rows, config.hr_size, config.hr_size, 3)
        shapes[f"{split}_lr"] = (rows, config.lr_size, config.lr_size, 3)
    return shapes


def _crops_per_image(config: PrepareConfig, split: str) -> int:
    return config.crops_per_image if split == "train" else 1


def _format_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1000
    raise AssertionError("unreachable")


def check_disk_space(folder: Path, needed: int, purpose: str = "the arrays") -> None:
    """Print what the run needs; raise OSError if the disk holding `folder` has less free space."""
    free = shutil.disk_usage(folder).free
    print(f"disk: {purpose} need {_format_bytes(needed)} more in {folder}; {_format_bytes(free)} free", file=sys.stderr)
    if needed + DISK_MARGIN_BYTES > free:
        raise OSError(f"not enough disk space in {folder}: the dataset needs {_format_bytes(needed)} more "
                      f"but only {_format_bytes(free)} is free; free some space or choose another OUT")


class _PartialArrays:
    """The four `*.npy.partial` files, written row by row with pwrite (no mapping, so RSS stays small)."""

    def __init__(self, out: Path, shapes: dict[str, tuple[int, ...]], create: bool):
        self.paths = {stem: out / f"{stem}.npy.partial" for stem in shapes}
        self.shapes = shapes
        self.offsets: dict[str, int] = {}
        for stem, path in self.paths.items():
            if create:
                _create_npy(path, shapes[stem])
            offset = _npy_offset(path, shapes[stem])
            assert offset is not None, f"{path} has an unexpected header"
            self.offsets[stem] = offset
        self.fds = {stem: os.open(path, os.O_RDWR) for stem, path in self.paths.items()}

    @staticmethod
    def usable(out: Path, shapes: dict[str, tuple[int, ...]]) -> bool:
        return all(_npy_offset(out / f"{stem}.npy.partial", shape) is not None for stem, shape in shapes.items())

    def write(self, stem: str, first_row: int, rows: np.ndarray) -> None:
        row_bytes = int(np.prod(self.shapes[stem][1:]))
        data = np.ascontiguousarray(rows, dtype=np.uint8).tobytes()
        assert len(data) == row_bytes * len(rows)
        written = os.pwrite(self.fds[stem], data, self.offsets[stem] + first_row * row_bytes)
        if written != len(data):
            raise OSError(f"short write to {self.paths[stem]} (disk full?)")

    def sync(self) -> None:
        for fd in self.fds.values():
            os.fsync(fd)

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}


def _finalise_array(partial: Path, final: Path, shape: tuple[int, ...], keep_rows: list[int]) -> None:
    """Move a finished partial array to its final name, dropping the rows of skipped images.

    Idempotent, so a kill during finalisation is repaired by re-running.
    """
    if not partial.exists():
        if _npy_offset(final, (len(keep_rows),) + shape[1:]) is None:
            raise ValueError(f"{partial} is missing and {final} is incomplete; delete {final.parent} and start over")
        return
    if len(keep_rows) == shape[0]:
        os.replace(partial, final)
        return
    temporary = final.with_name(final.name + ".tmp")
    source = np.load(partial, mmap_mode="r")
    _create_npy(temporary, (len(keep_rows),) + shape[1:])
    target = np.load(temporary, mmap_mode="r+")
    for start in range(0, len(keep_rows), 256):  # bounded memory: 256 rows at a time
        target[start: start + 256] = source[keep_rows[start: start + 256]]
    target.flush()
    del target, source
    os.replace(temporary, final)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("perceptual-sr", "numpy", "pillow", "scipy", "torch"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# ----------------------------------------------------------------------------- the run


def _settings_mismatch(expected: dict, found: dict) -> str:
    return ", ".join(f"{key} {found.get(key)!r} (this run: {expected[key]!r})"
                     for key in expected if found.get(key) != expected[key])


def _jobs(config: PrepareConfig, plan: dict, done: dict[str, set[int]]) -> Iterator[CropJob]:
    for split in SPLITS:
        for index, name in enumerate(plan["splits"][split]):
            if index not in done[split]:
                seed = (config.seed, SPLIT_CODES[split], index) if split == "train" else None
                yield CropJob(split, index, str(config.source / name), _crops_per_image(config, split),
                              config.hr_size, config.scale, config.degradation, seed)


def _results(jobs: Iterator[CropJob], pool: ProcessPoolExecutor | None, window: int) -> Iterator[tuple]:
    """Run the jobs, keeping at most `window` in flight so finished crops never pile up in memory."""
    if pool is None:
        yield from map(_crop_job, jobs)
        return
    pending = set()
    for job in jobs:
        pending.add(pool.submit(_crop_job, job))
        if len(pending) >= window:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in finished)
    while pending:
        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
        yield from (future.result() for future in finished)


def prepare(config: PrepareConfig, *, checkpoint_seconds: float = 10.0,
            on_image: Callable[[int], None] | None = None) -> dict:
    """Build (or finish building) the dataset in `config.out`; returns the manifest.

    `on_image(count)` is called after each image's rows are written (tests use it to interrupt a run).
    """
    out = config.out
    if out.exists() and not out.is_dir():
        raise ValueError(f"output path {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    settings = config.settings()

    manifest = _read_json(out / MANIFEST_FILE, {"settings": dict, "counts": dict})
    if manifest is not None:
        mismatch = _settings_mismatch(settings, manifest.get("settings", {}))
        if mismatch:
            raise ValueError(f"{out} already holds a dataset made with {mismatch}; choose another OUT")
        print(f"{out} is already complete", file=sys.stderr)
        return manifest

    pool = ProcessPoolExecutor(config.workers) if config.workers > 1 else None
    try:
        plan = _read_json(out / PLAN_FILE, {"settings": dict, "splits": dict})
        if plan is not None:
            mismatch = _settings_mismatch(settings, plan.get("settings", {}))
            if mismatch:
                raise ValueError(f"{out} holds an unfinished run made with {mismatch}; "
                                 "re-run with those settings to finish it, or choose another OUT")
        else:
            plan = choose_images(config, pool)
            write_json_atomic(out / PLAN_FILE, plan)
        shapes = _shapes(config, plan)

        progress = _read_json(out / PROGRESS_FILE, {"done": dict, "failed": dict})
        total = sum(len(plan["splits"][split]) for split in SPLITS)
        finished = progress is not None and sum(len(progress["done"][split]) for split in SPLITS) == total
        if not finished:
            resume = progress is not None and _PartialArrays.usable(out, shapes)
            if not resume:
                progress = {"done": {split: [] for split in SPLITS}, "failed": {split: {} for split in SPLITS}}
            existing = sum(os.stat(out / f"{stem}.npy.partial").st_blocks * 512 for stem in shapes) if resume else 0
            check_disk_space(out, sum(int(np.prod(shape)) for shape in shapes.values()) - existing)
            _write_crops(config, plan, shapes, progress, resume, pool, checkpoint_seconds, on_image)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return _finalise(config, plan, shapes, progress)


def _write_crops(config: PrepareConfig, plan: dict, shapes: dict, progress: dict, resume: bool,
                 pool: ProcessPoolExecutor | None, checkpoint_seconds: float,
                 on_image: Callable[[int], None] | None) -> None:
    """Fill the partial arrays with every image not yet recorded in `progress` (updated in place)."""
    out = config.out
    done = {split: set(progress["done"][split]) for split in SPLITS}
    arrays = _PartialArrays(out, shapes, create=not resume)
    total = sum(len(plan["splits"][split]) for split in SPLITS)
    last_checkpoint = time.monotonic()

    def checkpoint() -> None:
        arrays.sync()  # the rows must be on disk before progress.json claims them
        progress["done"] = {split: sorted(done[split]) for split in SPLITS}
        write_json_atomic(out / PROGRESS_FILE, progress)

    try:
        with tqdm(total=total, initial=sum(map(len, done.values())), desc="cropping", unit="img") as bar:
            for job, hr, lr, reason in _results(_jobs(config, plan, done), pool, window=4 * config.workers):
                if reason is None:
                    arrays.write(f"{job.split}_hr", job.index * job.count, hr)
                    arrays.write(f"{job.split}_lr", job.index * job.count, lr)
                else:
                    progress["failed"][job.split][str(job.index)] = reason
                    tqdm.write(f"skipped {plan['splits'][job.split][job.index]}: {reason}", file=sys.stderr)
                done[job.split].add(job.index)
                bar.update()
                if on_image is not None:
                    on_image(bar.n)
                if time.monotonic() - last_checkpoint >= checkpoint_seconds:
                    checkpoint()
                    last_checkpoint = time.monotonic()
    finally:
        # Also on Ctrl-C or an error: everything in `done` has been written, so recording it is safe.
        checkpoint()
        arrays.close()


def _finalise(config: PrepareConfig, plan: dict, shapes: dict, progress: dict) -> dict:
    out = config.out
    sources, counts, images = {}, {}, {}
    skipped = list(plan["skipped"])
    for split in SPLITS:
        failed = {int(index) for index in progress["failed"][split]}
        kept = [index for index in range(len(plan["splits"][split])) if index not in failed]
        skipped += [{"path": plan["splits"][split][int(index)], "reason": reason}
                    for index, reason in sorted(progress["failed"][split].items(), key=lambda item: int(item[0]))]
        count = _crops_per_image(config, split)
        rows = [index * count + crop for index in kept for crop in range(count)]
        if failed:
            check_disk_space(out, sum(len(rows) * int(np.prod(shapes[f"{split}_{kind}"][1:])) for kind in ("hr", "lr")),
                             f"{split} arrays without the rows of skipped files")
        for kind in ("hr", "lr"):
            stem = f"{split}_{kind}"
            _finalise_array(out / f"{stem}.npy.partial", out / f"{stem}.npy", shapes[stem], rows)
        sources[split] = [plan["splits"][split][index] for index in kept]
        counts[split], images[split] = len(rows), len(kept)
    manifest = {
        "format_version": DATASET_FORMAT_VERSION,
        "scale": config.scale,
        "hr_size": config.hr_size,
        "lr_size": config.lr_size,
        "degradation": config.degradation,
        "seed": config.seed,
        "counts": counts,  # rows in each array
        "images": images,
        "crops_per_image": {split: _crops_per_image(config, split) for split in SPLITS},
        "crops": {"train": "random", "val": "centre"},
        "source_root": config.settings()["source"],
        # Row r of split s was cropped from source_root / sources[s][r // crops_per_image[s]].
        "sources": sources,
        "skipped": skipped,
        "small_images": f"skipped when the shorter side is below hr_size {config.hr_size}",
        "settings": config.settings(),
        "versions": package_versions(),
    }
    write_json_atomic(out / MANIFEST_FILE, manifest)
    for name in [f"{stem}.npy.partial" for stem in shapes] + [PROGRESS_FILE, PLAN_FILE]:
        (out / name).unlink(missing_ok=True)
    return manifest


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from `PrepareConfig`'s fields (source and out are positional)."""
    parser = argparse.ArgumentParser(
        prog="prepare_data.py", description="Turn a folder of photos into memory-mapped LR/HR training arrays.")
    add_flags(parser, PrepareConfig, positional=("source", "out"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    try:
        config = from_flags(PrepareConfig, vars(args))
        already_complete = (config.out / MANIFEST_FILE).is_file()
        processed = []  # images cropped by this invocation (not by an earlier, interrupted one)
        manifest = prepare(config, on_image=processed.append)
    except (ValueError, OSError) as error:
        print(f"prepare_data.py: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("prepare_data.py: interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    seconds = time.monotonic() - started
    size = sum((config.out / f"{split}_{kind}.npy").stat().st_size for split in SPLITS for kind in ("hr", "lr"))
    images = sum(manifest["images"].values())
    rate = f"{len(processed) / seconds:.1f}/s"
    speed = "" if already_complete else f"; {seconds:.1f} s, {len(processed)} images cropped ({rate})"
    print(f"{config.out}: train {manifest['counts']['train']} rows, val {manifest['counts']['val']} rows "
          f"from {images} images, {len(manifest['skipped'])} skipped; {_format_bytes(size)}{speed}")
    return 0
