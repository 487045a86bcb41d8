"""Turn folders of photos (ImageNet's `train/` or any folders) into memory-mapped LR/HR training arrays.

Output folder layout (what `perceptual_sr.data.dataset.SRPairDataset` reads):

    OUT/train_hr.npy  (N, hr_size, hr_size, 3) uint8      OUT/val_hr.npy  likewise
    OUT/train_lr.npy  (N, hr_size/scale, hr_size/scale, 3) uint8  OUT/val_lr.npy
    OUT/manifest.json settings, counts, the source of every row, skipped files, package versions

Choices, written down once:
- Images are found recursively in every source folder (JPEG/PNG/WebP/BMP/TIFF; hidden files such
  as macOS `._x.jpg` are ignored) and named by their path relative to the folders' common parent
  (`source_root` in the manifest; with one folder, the folder itself), so every row can be traced
  back and two folders' `1.jpg` stay apart. The names are sorted and shuffled with `seed`; the
  first usable ones form the validation split, the next `num_images` usable ones the training
  split, so the two are disjoint.
- Validation holds `val_images` images but no more than 10% of the images found (at least one when
  two or more are found, none when only one is).
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

import json
import os
import platform
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from perceptual_sr.data.dataset import DATASET_FORMAT_VERSION, SPLITS
from perceptual_sr.data.degradations import DEGRADATIONS, degrade
from perceptual_sr.data.prepare_arrays import PartialArrays, check_disk_space, finalise_array
from perceptual_sr.utils.atomic_write import write_json
from perceptual_sr.utils.config_flags import setting
from perceptual_sr.utils.image_io import IMAGE_SUFFIXES, UNREADABLE_ERRORS, load_rgb8

MAX_VAL_FRACTION = 0.1
SPLIT_CODES = {"val": 0, "train": 1}  # part of the crop seed; never change
PROGRESS_FILE, PLAN_FILE, MANIFEST_FILE = "progress.json", "plan.json", "manifest.json"


MIN_LR_SIZE = 5  # the 9x9 head's reflection pad needs at least 5 input pixels


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


@dataclass
class PrepareConfig:
    """Settings of one data preparation run; all but `workers` determine the output bytes."""

    source: tuple[Path, ...] = setting(help="one or more folders of images, each searched recursively")
    out: Path = setting(help="output folder (created; re-run the same command to resume)")
    num_images: int = setting(80000, "training images (all usable ones if fewer)")
    val_images: int = setting(50, "validation images, at most 10%% of those found")
    crops_per_image: int = setting(1, "random training crops per image")
    hr_size: int = setting(288, "side of the square high-resolution crops")
    scale: int = setting(4, "downscaling factor; LR side = hr_size / scale")
    degradation: str = setting("blur", "blur (the paper's) or bicubic", choices=DEGRADATIONS)
    seed: int = setting(0, "picks the images and crop positions")
    workers: int = setting(help="worker processes", default_factory=_default_workers)

    def __post_init__(self) -> None:
        folders = (self.source,) if isinstance(self.source, (str, os.PathLike)) else tuple(self.source)
        self.source, self.out = tuple(Path(folder) for folder in folders), Path(self.out)
        if not self.source:
            raise ValueError("source must name at least one folder of images")
        resolved = [folder.resolve() for folder in self.source]
        twice = [folder for index, folder in enumerate(resolved) if folder in resolved[:index]]
        if twice:
            raise ValueError(f"source folder {twice[0]} is given twice; name each folder once")
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
        if self.hr_size // self.scale < MIN_LR_SIZE:
            raise ValueError(f"hr_size {self.hr_size} gives {self.hr_size // self.scale} px low-resolution crops at "
                             f"scale {self.scale}; the network trains on at least {MIN_LR_SIZE} px (its 9x9 "
                             f"reflection pad): use --hr-size {MIN_LR_SIZE * self.scale} or more")
        cpus = os.cpu_count() or 1
        if self.workers > cpus:  # more processes than CPUs only compete for them
            print(f"prepare: --workers {self.workers} capped at this machine's {cpus} CPUs", file=sys.stderr)
            self.workers = cpus

    @property
    def lr_size(self) -> int:
        return self.hr_size // self.scale

    @property
    def source_root(self) -> Path:
        """The source folders' common parent (the folder itself when there is one): image names are
        relative to it."""
        return common_parent(self.source)

    def settings(self) -> dict:
        """The settings that determine the output (everything but `out` and `workers`), JSON-ready."""
        settings = asdict(self)
        del settings["out"], settings["workers"]
        settings["source"] = [str(folder.resolve()) for folder in self.source]
        return settings


# ----------------------------------------------------------------------------- choosing images


def find_images(source: Path) -> list[str]:
    """Relative POSIX paths of the image files under one folder `source`, sorted."""
    if not source.is_dir():
        raise FileNotFoundError(f"source folder not found: {source}")
    found = []
    for folder, subfolders, files in os.walk(source):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                found.append((Path(folder) / name).relative_to(source).as_posix())
    return sorted(found)


def probe_image(path: Path, hr_size: int, decode: bool = False) -> str | None:
    """Why the image at `path` cannot give an `hr_size` crop, or None if it can: from its header
    alone, or also decoding the pixels when `decode` (which finds a file cut short)."""
    if not path.is_file():  # a pipe named like a photo would block the header read
        return "not a regular file"
    try:
        with Image.open(path) as image:
            width, height = image.size
            if decode and min(width, height) >= hr_size:
                image.load()
    except (*UNREADABLE_ERRORS, ValueError, Image.DecompressionBombError) as error:
        return f"unreadable: {error}"
    if min(width, height) < hr_size:
        return f"smaller than hr_size {hr_size} ({width}x{height})"
    return None


def _probe_job(job: tuple[str, int, bool]) -> str | None:
    return probe_image(Path(job[0]), job[1], job[2])


def common_parent(folders: tuple[Path, ...]) -> Path:
    """The folders' deepest common parent, resolved (the folder itself when there is one)."""
    return Path(os.path.commonpath([folder.resolve() for folder in folders]))


def find_source_images(sources: tuple[Path, ...]) -> list[str]:
    """Relative POSIX paths, from the folders' common parent, of the image files under every folder
    in `sources`, sorted; FileNotFoundError naming a folder that does not exist."""
    for source in sources:
        if source.exists() and not source.is_dir():
            raise ValueError(f"source {source} is a file; pass folders of photos (OUT comes last)")
        if not source.is_dir():
            raise FileNotFoundError(f"source folder not found: {source}")
    root = common_parent(sources)
    found = set()  # a folder inside another would list its images twice
    for source in sources:
        prefix = source.resolve().relative_to(root)
        found.update((prefix / name).as_posix() for name in find_images(source))
    return sorted(found)


def choose_images(config: PrepareConfig, pool: ProcessPoolExecutor | None) -> dict:
    """The plan: which files form each split, and which candidates were skipped on the way."""
    files = find_source_images(config.source)
    where = ", ".join(str(folder) for folder in config.source)
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {where}")
    val_target = min(config.val_images, max(1, int(len(files) * MAX_VAL_FRACTION))) if len(files) > 1 else 0
    train_target = min(config.num_images, len(files) - val_target)
    order = np.random.default_rng(config.seed).permutation(len(files))
    root = config.source_root
    chosen: dict[str, list[str]] = {"val": [], "train": []}
    skipped: list[dict] = []
    position = 0
    with tqdm(total=val_target + train_target, desc="checking image headers", unit="img") as bar:
        while position < len(files) and (len(chosen["val"]) < val_target or len(chosen["train"]) < train_target):
            missing = val_target - len(chosen["val"]) + train_target - len(chosen["train"])
            batch = [files[i] for i in order[position: position + max(64, missing + missing // 4)]]
            # Validation candidates are decoded whole: a file whose data is cut short would
            # otherwise be found only when cropping, and leave the few validation rows emptier.
            decode = len(chosen["val"]) < val_target
            jobs = [(str(root / name), config.hr_size, decode) for name in batch]
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
        raise ValueError(f"no usable training images under {where}: {len(files)} found, "
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


# ----------------------------------------------------------------------------- bookkeeping files


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
    found = dict(found)
    if isinstance(found.get("source"), str):  # written before several source folders: one path
        found["source"] = [found["source"]]
    return ", ".join(f"{key} {found.get(key)!r} (this run: {expected[key]!r})"
                     for key in expected if found.get(key) != expected[key])


def _jobs(config: PrepareConfig, plan: dict, done: dict[str, set[int]]) -> Iterator[CropJob]:
    root = config.source_root  # resolved once, not per image
    for split in SPLITS:
        for index, name in enumerate(plan["splits"][split]):
            if index not in done[split]:
                seed = (config.seed, SPLIT_CODES[split], index) if split == "train" else None
                yield CropJob(split, index, str(root / name), _crops_per_image(config, split),
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
            started = (out / PROGRESS_FILE).exists() or any(out.glob("*.npy.partial"))
            if mismatch and started:
                raise ValueError(f"{out} holds an unfinished run made with {mismatch}; "
                                 "re-run with those settings to finish it, or choose another OUT")
            if mismatch:  # a run refused before it wrote a crop (e.g. for disk space): nothing to keep
                plan = None
        if plan is None:
            plan = choose_images(config, pool)
            write_json(out / PLAN_FILE, plan)
        shapes = _shapes(config, plan)

        progress = _read_json(out / PROGRESS_FILE, {"done": dict, "failed": dict})
        total = sum(len(plan["splits"][split]) for split in SPLITS)
        finished = progress is not None and sum(len(progress["done"][split]) for split in SPLITS) == total
        if not finished:
            resume = progress is not None and PartialArrays.usable(out, shapes)
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
    arrays = PartialArrays(out, shapes, create=not resume)
    total = sum(len(plan["splits"][split]) for split in SPLITS)
    last_checkpoint = time.monotonic()

    def checkpoint() -> None:
        arrays.sync()  # the rows must be on disk before progress.json claims them
        progress["done"] = {split: sorted(done[split]) for split in SPLITS}
        write_json(out / PROGRESS_FILE, progress)

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
            finalise_array(out / f"{stem}.npy.partial", out / f"{stem}.npy", shapes[stem], rows)
        if failed:
            print(f"warning: {len(failed)} of {len(plan['splits'][split])} {split} images could not be cropped "
                  f"(listed under 'skipped' in {MANIFEST_FILE}); the {split} split has {len(rows)} rows",
                  file=sys.stderr)
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
        "source_root": str(config.source_root),
        "source_folders": config.settings()["source"],
        # Row r of split s was cropped from source_root / sources[s][r // crops_per_image[s]].
        "sources": sources,
        "skipped": skipped,
        "small_images": f"skipped when the shorter side is below hr_size {config.hr_size}",
        "settings": config.settings(),
        "versions": package_versions(),
    }
    write_json(out / MANIFEST_FILE, manifest)
    for name in [f"{stem}.npy.partial" for stem in shapes] + [PROGRESS_FILE, PLAN_FILE]:
        (out / name).unlink(missing_ok=True)
    return manifest
