"""Atomic writes: a run killed mid-write leaves the old file (or folder) or the new one, never half.

Every writer in the package goes through here: images, JSON bookkeeping, ONNX files, checkpoints
and saved models. A file is written under a hidden temporary name in the same folder and renamed
over the real name (`os.replace` is atomic on one file system). A folder cannot be replaced in one
rename when the old one exists, so it is swapped in two, and `recover_folder` repairs the one
window in between (the old folder parked as `<name>.old`, the new one not yet in place).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Iterator

# New files get the permissions a plain `open()` would give them (umask applied), not the 0600 of
# tempfile.mkstemp: a saved model or image is meant to be read by others.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


def _staging_name(path: Path, suffix: str) -> Path:
    # Per process and thread, so concurrent writers (app users, DDP ranks) never share one.
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}{suffix}")


def clear_stale_staging(path: Path) -> None:
    """Remove the staging files of `path` that a killed process left (SIGKILL, the OOM killer: no
    clean-up ran). Ours are named `.<name>.<pid>-<thread>.partial`; one whose process no longer
    runs is never finished. Others' files and live writers' are left alone."""
    prefix, suffix = f".{path.name}.", ".partial"
    try:
        candidates = [child for child in path.parent.iterdir()
                      if child.name.startswith(prefix) and child.name.endswith(suffix)]
    except OSError:
        return
    for child in candidates:
        owner = child.name[len(prefix):-len(suffix)].split("-")[0]
        if owner.isdigit() and not _process_alive(int(owner)):
            child.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process, or not a pid: leave its file
    return True


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s new content to; on success it replaces `path`.

    On an exception the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_stale_staging(path)
    staging = _staging_name(path, ".partial")
    try:
        yield staging
        if staging.exists():
            os.chmod(staging, FILE_MODE)
            with open(staging, "rb") as file:  # on disk before the rename makes it visible
                os.fsync(file.fileno())
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def write_json(path: str | Path, data: Any, indent: int | None = 1) -> None:
    """Write `data` as JSON to `path`, atomically."""
    with atomic_file(path) as staging:
        staging.write_text(json.dumps(data, indent=indent))


def write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path`, atomically."""
    with atomic_file(path) as staging:
        staging.write_text(text)


@contextlib.contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder to fill; on success it replaces `folder` whole.

    The old folder is parked as `<folder>.old` for the moment between the two renames; a kill
    there is repaired by `recover_folder`. On an exception the staging folder is removed.
    """
    folder = Path(folder)
    with _staging_folder(folder) as staging:
        yield staging
        _make_readable(staging)
        previous = folder.with_name(folder.name + ".old")
        if folder.exists():
            folder.rename(previous)
        staging.rename(folder)
        shutil.rmtree(previous, ignore_errors=True)


@contextlib.contextmanager
def atomic_entries(folder: str | Path, owned: set[str]) -> Iterator[Path]:
    """Yield an empty staging folder to fill with `folder`'s entries named in `owned`; on success
    they replace those entries together, and every other entry of `folder` (a user's notes, a
    .git) stays where it is, untouched. On an exception nothing in `folder` has changed.

    Where `folder` holds only owned entries (or does not exist) it is swapped whole, as by
    `atomic_folder`; otherwise the owned entries are swapped one rename each, after every byte
    is on disk, so only a kill within those few renames could mix old and new entries.
    """
    folder = Path(folder)
    recover_folder(folder)
    if not folder.is_dir() or all(child.name in owned for child in folder.iterdir()):
        with atomic_folder(folder) as staging:
            yield staging
        return
    with _staging_folder(folder) as staging:
        yield staging
        _make_readable(staging)
        previous = folder.with_name(folder.name + ".old")
        previous.mkdir()
        for name in owned:
            if (folder / name).exists() or (folder / name).is_symlink():
                (folder / name).rename(previous / name)
        for child in staging.iterdir():
            child.rename(folder / child.name)
        shutil.rmtree(previous, ignore_errors=True)


@contextlib.contextmanager
def _staging_folder(folder: Path) -> Iterator[Path]:
    """An empty `<folder>.tmp` beside `folder` (an interrupted swap repaired first), removed on the way out."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(folder)
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _make_readable(staging: Path) -> None:
    for child in staging.rglob("*"):
        if child.is_file():
            os.chmod(child, FILE_MODE)


def recover_folder(folder: str | Path) -> None:
    """Finish or undo an `atomic_folder` swap that a kill interrupted.

    A `.old` folder with no folder in place means the kill came between the two renames: the old
    folder is complete, so it is put back. A `.old` beside a folder is a finished swap's leftover.
    A `.tmp` folder is never complete and is removed.
    """
    folder = Path(folder)
    previous = folder.with_name(folder.name + ".old")
    if previous.exists():
        if folder.exists():
            shutil.rmtree(previous, ignore_errors=True)
        else:
            previous.rename(folder)
    shutil.rmtree(folder.with_name(folder.name + ".tmp"), ignore_errors=True)

