"""The dataset's arrays on disk, for `perceptual_sr.data.prepare`: `.npy` files written row by row,
resumable after a kill, and finalised without the rows of files that turned out unreadable.

A `*.npy.partial` file is an .npy header followed by a sparse, zero-filled body, so disk is used
only as rows are written, and rows are written with `pwrite` (no memory map), so the resident
memory stays at a few MB for any number of rows.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np

DISK_MARGIN_BYTES = 64 * 2**20  # room for the manifest and progress files


def create_npy(path: Path, shape: tuple[int, ...]) -> None:
    """An .npy header followed by a sparse, zero-filled body: disk is used as rows are written."""
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(
            file, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape})
        file.truncate(file.tell() + int(np.prod(shape)))


def npy_offset(path: Path, shape: tuple[int, ...]) -> int | None:
    """Byte offset of the data in an existing uint8 .npy file of `shape`, or None if it is not one."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if array.dtype != np.uint8 or array.shape != shape:
        return None
    return int(array.offset) if isinstance(array, np.memmap) else None


def format_bytes(count: float) -> str:
    """A byte count for people: "512 B", "1.5 MB" (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1000
    raise AssertionError("unreachable")


def check_disk_space(folder: Path, needed: int, purpose: str = "the arrays") -> None:
    """Print what the run needs; raise OSError if the disk holding `folder` has less free space."""
    free = shutil.disk_usage(folder).free
    print(f"disk: {purpose} need {format_bytes(needed)} more in {folder}; {format_bytes(free)} free", file=sys.stderr)
    if needed + DISK_MARGIN_BYTES > free:
        raise OSError(f"not enough disk space in {folder}: the dataset needs {format_bytes(needed)} more "
                      f"but only {format_bytes(free)} is free; free some space or choose another OUT")


class PartialArrays:
    """The four `*.npy.partial` files, written row by row with pwrite (no mapping, so RSS stays small)."""

    def __init__(self, out: Path, shapes: dict[str, tuple[int, ...]], create: bool):
        self.paths = {stem: out / f"{stem}.npy.partial" for stem in shapes}
        self.shapes = shapes
        self.offsets: dict[str, int] = {}
        for stem, path in self.paths.items():
            if create:
                create_npy(path, shapes[stem])
            offset = npy_offset(path, shapes[stem])
            assert offset is not None, f"{path} has an unexpected header"
            self.offsets[stem] = offset
        self.fds = {stem: os.open(path, os.O_RDWR) for stem, path in self.paths.items()}

    @staticmethod
    def usable(out: Path, shapes: dict[str, tuple[int, ...]]) -> bool:
        return all(npy_offset(out / f"{stem}.npy.partial", shape) is not None for stem, shape in shapes.items())

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


def finalise_array(partial: Path, final: Path, shape: tuple[int, ...], keep_rows: list[int]) -> None:
    """Move a finished partial array to its final name, dropping the rows of skipped images.

    Idempotent, so a kill during finalisation is repaired by re-running.
    """
    if not partial.exists():
        if npy_offset(final, (len(keep_rows),) + shape[1:]) is None:
            raise ValueError(f"{partial} is missing and {final} is incomplete; delete {final.parent} and start over")
        return
    if len(keep_rows) == shape[0]:
        os.replace(partial, final)
        return
    # Not atomic_write.atomic_file: its staging name is per process, so a kill here would leave a
    # hidden copy of the whole array (gigabytes) behind for good; this fixed name is overwritten
    # by the re-run that repairs the kill. The `*.npy.partial` files keep fixed names for the same
    # reason, and because a resumed run must find them.
    temporary = final.with_name(final.name + ".tmp")
    source = np.load(partial, mmap_mode="r")
    create_npy(temporary, (len(keep_rows),) + shape[1:])
    target = np.load(temporary, mmap_mode="r+")
    for start in range(0, len(keep_rows), 256):  # bounded memory: 256 rows at a time
        target[start: start + 256] = source[keep_rows[start: start + 256]]
    target.flush()
    del target, source
    os.replace(temporary, final)
