"""`perceptual-sr deploy-space you/name`: publish the demo as a Hugging Face Space.

The Space gets exactly what it runs, staged in a temporary folder: `app.py`, `requirements.txt`,
the package with its bundled model (not the 16 MB of loss-network weights that only training and
evaluation use), `examples/`, and `README.md` with the Space's front matter. Tests, docs and the
git history stay behind. `HfApi.upload_folder` stores the binary files (weights, images) the way
the Hub requires (LFS / Xet), which a plain `git push` of this repository's history does not.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL_FILES = ("app.py", "requirements.txt", "README.md")
# What the Space runs, by folder and kind: nothing else is staged, so a run folder, a checkpoint,
# a video or an editor's swap file left in the working tree stays behind.
STAGED_KINDS = {"perceptual_sr": (".py", ".json", ".safetensors", ".md"),
                "examples": (".png", ".jpg", ".jpeg", ".webp", ".md")}
# Never part of a Space: the loss networks (training and evaluation only) and build leftovers.
LEFT_OUT = ("vgg16_imagenet.safetensors", "alexnet_imagenet.safetensors", "*.egg-info/*")
# Names that hold secrets by convention. A new Space is public: such a file is refused by name,
# whatever it holds (hidden files, e.g. `.env`, are never staged at all).
SECRET_NAMES = ("*token*", "*secret*", "*password*", "*credential*", "*.pem", "*.key", "id_rsa*", "id_ed25519*",
                "*.p12", "*.pfx")
MAX_FILE_BYTES = 20 * 1024 * 1024  # the bundled weight sets are 1.6 MB each; anything near this is a stray


def space_files(source: Path = REPO_ROOT) -> tuple[list[Path], list[str]]:
    """The Space's files, relative to the checkout `source`, and what was left out with the reason
    ("examples/.env: hidden", ...). In a git checkout, tracked files only. ValueError if the
    checkout lacks a needed file or the README has no front matter."""
    missing = [name for name in (*TOP_LEVEL_FILES, "perceptual_sr", "examples") if not (source / name).exists()]
    if missing:
        raise ValueError(f"{source} is not a perceptual_sr checkout: it has no {', '.join(missing)}")
    if not (source / "README.md").read_text(encoding="utf-8").startswith("---\n"):
        raise ValueError(f"{source / 'README.md'} has no Space front matter (a YAML block between --- lines)")
    tracked = _tracked_files(source)
    candidates = [Path(name) for name in TOP_LEVEL_FILES]
    for folder in STAGED_KINDS:
        candidates += sorted(path.relative_to(source) for path in (source / folder).rglob("*")
                             if not path.is_dir() or path.is_symlink())
    chosen, left_out = [], []
    root = source.resolve()
    for relative in candidates:
        reason = _reason_to_leave_out(source, root, relative, tracked)
        if reason:
            left_out.append(f"{relative}: {reason}")
        else:
            chosen.append(relative)
    return chosen, left_out


def _reason_to_leave_out(source: Path, root: Path, relative: Path, tracked: set[str] | None) -> str | None:
    path, name = source / relative, relative.name.lower()
    top = relative.parts[0]
    if any(part.startswith(".") for part in relative.parts):
        return "hidden"
    if any(fnmatch.fnmatch(name, pattern) for pattern in SECRET_NAMES):
        return "looks like a secret"
    if len(relative.parts) > 1 and (relative.suffix.lower() not in STAGED_KINDS.get(top, ())
                                    or any(fnmatch.fnmatch(relative.as_posix(), f"*{p}") for p in LEFT_OUT)
                                    or "__pycache__" in relative.parts):
        return "not something the Space runs"
    if tracked is not None and relative.as_posix() not in tracked:
        return "not tracked by git"
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):  # a dangling link or a loop
        return "a broken link or a link loop"
    if not target.is_relative_to(root):
        return "a link out of the repository"
    if not target.is_file():
        return "not a regular file"
    if target.stat().st_size > MAX_FILE_BYTES:
        return f"{target.stat().st_size / 1e6:.0f} MB, over the {MAX_FILE_BYTES // 2**20} MB a Space file may have here"
    return None


def _tracked_files(source: Path) -> set[str] | None:
    """The files git tracks in `source` (None when it is not a git checkout or git is missing)."""
    if not (source / ".git").exists():
        return None
    try:
        listing = subprocess.run(["git", "-C", str(source), "ls-files", "-z"], capture_output=True, check=True,
                                 timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {name for name in listing.decode("utf-8", "surrogateescape").split("\0") if name}


def stage_space(destination: Path, source: Path = REPO_ROOT) -> list[Path]:
    """Copy the Space's files (`space_files`) from the checkout `source` into `destination`, as
    plain files (links are copied as what they point to inside the checkout); returns them,
    relative and sorted. ValueError, in one line, if a copy fails (a full disk, say)."""
    files, _ = space_files(source)
    try:
        for relative in files:
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile((source / relative).resolve(), destination / relative)
    except OSError as error:
        raise ValueError(f"could not stage the Space's files in {destination}: {error.strerror or error} "
                         f"({getattr(error, 'filename', '') or ''})") from None
    return sorted(files)


def deploy_space(repo_id: str, *, dry_run: bool = False, private: bool | None = None, token: str | None = None,
                 source: Path = REPO_ROOT) -> str:
    """Stage the Space and upload it to `repo_id` (created as a Gradio Space if needed); returns the
    Space's URL, or with `dry_run` the list of files it would upload, one per line."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalTokenNotFoundError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"expected a Space id such as you/perceptual-sr, got {repo_id!r} ({error})") from None
    if dry_run:
        files, left_out = space_files(source)
        sizes = [(source / path).resolve().stat().st_size for path in files]
        lines = [f"{size / 1e3:>10,.1f} kB  {path}" for path, size in zip(files, sizes)]
        lines.append(f"{sum(sizes) / 1e6:>10,.1f} MB  in {len(files)} files")
        return "\n".join(lines + [f"left out: {reason}" for reason in left_out])
    with tempfile.TemporaryDirectory(prefix="perceptual_sr_space_") as staging:
        stage_space(Path(staging), source)
        try:
            api = HfApi(token=token)
            url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
            api.upload_folder(repo_id=repo_id, repo_type="space", folder_path=staging,
                              commit_message="Deploy the perceptual_sr demo")
        except (HfHubHTTPError, LocalTokenNotFoundError, OSError) as error:
            raise ValueError(f"could not deploy to the Space {repo_id!r} ({type(error).__name__}: {error}); log in "
                             "with `hf auth login` or set HF_TOKEN, and check your connection") from error
        except Exception as error:  # noqa: BLE001 - httpx's connection errors and the like: one line, not 24 frames
            if type(error).__module__.split(".")[0] not in ("httpx", "httpcore", "requests", "urllib3", "huggingface_hub"):
                raise
            raise ValueError(f"could not reach the Hugging Face Hub to deploy {repo_id!r} ({type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else 'no connection'}); check your "
                             "connection") from error
    return str(url)
