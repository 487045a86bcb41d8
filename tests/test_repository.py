"""Repository hygiene: binaries go through LFS (the Hub requires it), no machine paths, a light import."""

import fnmatch
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [REPO / name for name in listed.decode().split("\0") if name]


def _is_binary(path: Path) -> bool:
    return b"\0" in path.read_bytes()[:8192]


def test_every_binary_file_matches_an_lfs_rule():
    rules = [line.split()[0] for line in (REPO / ".gitattributes").read_text().splitlines()
             if "filter=lfs" in line and not line.startswith("#")]
    binaries = [path for path in _tracked_files() if path.is_file() and _is_binary(path)]
    assert binaries, "expected the bundled weights and images to be tracked"
    unmatched = [str(path.relative_to(REPO)) for path in binaries
                 if not any(fnmatch.fnmatch(path.name, rule) for rule in rules)]
    assert not unmatched, f"binary files without an LFS rule in .gitattributes: {unmatched}"


def test_no_committed_file_names_a_machine_path():
    pattern = re.compile(rb"(/work/|/home/[a-z]|/Users/[A-Z]|C:\\\\Users)")
    offenders = [str(path.relative_to(REPO)) for path in _tracked_files()
                 if path.is_file() and "tests" not in path.parts and not _is_binary(path)
                 and pattern.search(path.read_bytes())]
    assert not offenders, f"machine paths in {offenders}"


@pytest.mark.slow  # a fresh interpreter imports torch and loads the bundled model
def test_upscaling_does_not_import_the_training_stack():
    code = ("import sys, numpy as np, perceptual_sr; "
            "perceptual_sr.SRPipeline.from_pretrained().upscale(np.zeros((8, 8, 3), np.uint8)); "
            "print(sorted(m for m in ('torchvision', 'lpips', 'matplotlib', 'gradio', 'scipy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def _front_matter() -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    assert text.startswith("---\n")
    block = text[4:text.index("\n---", 4)]
    return {key.strip(): value.strip().strip('"') for key, _, value in
            (line.partition(":") for line in block.splitlines()) if value.strip()}


def test_space_front_matter_matches_what_the_space_installs_and_runs():
    front = _front_matter()
    assert front["sdk"] == "gradio" and (REPO / front["app_file"]).is_file()
    requirements = (REPO / "requirements.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", requirements, flags=re.M))
    assert pins.get("gradio") == front["sdk_version"]
    from importlib.metadata import version

    assert version("gradio") == front["sdk_version"]  # what the tests ran is what the Space runs
    # The Space installs requirements.txt: no test, training or evaluation tooling in it.
    for tool in ("pytest", "playwright", "scikit-image", "lpips", "matplotlib", "torchvision"):
        assert not re.search(rf"^{tool}\b", requirements, flags=re.M), tool
    assert "models" not in front  # the app loads the bundled weights, no Hub model repo


@pytest.mark.slow
def test_the_wheel_holds_the_default_model_but_not_the_loss_networks(tmp_path):
    """What `pip install perceptual-sr` gets: inference and its weights, core dependencies only.
    (Installing it into a fresh venv with only those dependencies and upscaling was checked by hand:
    see the README's set-up section.)"""
    import zipfile

    pytest.importorskip("setuptools")
    build = tmp_path / "src"
    subprocess.run(["git", "clone", "-q", str(REPO), str(build)], check=True)  # tracked files only
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(build)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("perceptual_sr-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "perceptual_sr/pretrained/perceptual-sr-x4/model.safetensors" in names
    for weight_set in ("pixel-twin", "real-photo", "real-photo-pixel-twin"):
        assert f"perceptual_sr/pretrained/perceptual-sr-x4/{weight_set}/model.safetensors" in names
    assert not [name for name in names if "vgg16" in name or "alexnet" in name]
    core = sorted(line.split(":", 1)[1].strip().split(">")[0].split("=")[0].split("<")[0].strip().lower()
                  for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line)
    assert core == ["huggingface-hub", "numpy", "pillow", "safetensors", "torch", "tqdm"]
    description = metadata.split("\n\n", 1)[1]
    assert description.startswith("# perceptual_sr") and "sdk: gradio" not in description  # no Space YAML on PyPI
    assert wheel.stat().st_size < 8_000_000  # four weight sets of 1.6 MB, without the 16 MB of loss networks
