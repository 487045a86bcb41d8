"""`perceptual-sr deploy-space you/name`: publish the demo as a Hugging Face Space.

The Space gets exactly what it runs, staged in a temporary folder: `app.py`, `requirements.txt`,
the package with its bundled model (not the 16 MB of loss-network weights that only training and
evaluation use), `examples/`, and `README.md` with the Space's front matter. Tests, docs and the
git history stay behind. `HfApi.upload_folder` stores the binary files (weights, images) the way
the Hub requires (LFS / Xet), which a plain `git push` of this repository's history does not.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL_FILES = ("app.py", "requirements.txt", "README.md")
# Never part of a Space: the loss networks (training and evaluation only) and build leftovers.
LEFT_OUT = ("vgg16_imagenet.safetensors", "alexnet_imagenet.safetensors", "__pycache__", "*.pyc", "*.egg-info")


def stage_space(destination: Path, source: Path = REPO_ROOT) -> list[Path]:
    """Copy the Space's files from the checkout `source` into `destination`; returns them, relative
    and sorted. ValueError if the checkout lacks one of them or the README has no front matter."""
    missing = [name for name in (*TOP_LEVEL_FILES, "perceptual_sr", "examples") if not (source / name).exists()]
    if missing:
        raise ValueError(f"{source} is not a perceptual_sr checkout: it has no {', '.join(missing)}")
    if not (source / "README.md").read_text(encoding="utf-8").startswith("---\n"):
        raise ValueError(f"{source / 'README.md'} has no Space front matter (a YAML block between --- lines)")
    for name in TOP_LEVEL_FILES:
        shutil.copy2(source / name, destination / name)
    ignore = shutil.ignore_patterns(*LEFT_OUT)
    for folder in ("perceptual_sr", "examples"):
        shutil.copytree(source / folder, destination / folder, ignore=ignore)
    return sorted(path.relative_to(destination) for path in destination.rglob("*") if path.is_file())


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
    with tempfile.TemporaryDirectory(prefix="perceptual_sr_space_") as staging:
        files = stage_space(Path(staging), source)
        if dry_run:
            return "\n".join(str(path) for path in files)
        try:
            api = HfApi(token=token)
            url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
            api.upload_folder(repo_id=repo_id, repo_type="space", folder_path=staging,
                              commit_message="Deploy the perceptual_sr demo")
        except (HfHubHTTPError, LocalTokenNotFoundError, OSError) as error:
            raise ValueError(f"could not deploy to the Space {repo_id!r} ({type(error).__name__}: {error}); log in "
                             "with `hf auth login` or set HF_TOKEN, and check your connection") from error
    return str(url)
