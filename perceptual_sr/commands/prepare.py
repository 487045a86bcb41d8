"""`prepare_data.py` and `perceptual-sr prepare`: flags from PrepareConfig, one-line errors.

    python prepare_data.py SRC [SRC ...] OUT [--num-images N] [--hr-size 288] ...   # re-run to resume

Every field of `perceptual_sr.data.prepare.PrepareConfig` is a flag (the SRC folders and OUT are positional).
"""

from __future__ import annotations

import argparse
import sys
import time

from perceptual_sr.data.dataset import SPLITS
from perceptual_sr.data.prepare import MANIFEST_FILE, PrepareConfig, prepare
from perceptual_sr.data.prepare_arrays import format_bytes
from perceptual_sr.utils.config_flags import add_flags, from_flags
from perceptual_sr.utils.interrupts import sigterm_as_interrupt


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from `PrepareConfig`'s fields (source and out are positional)."""
    parser = argparse.ArgumentParser(
        prog="prepare_data.py", description="Turn folders of photos into memory-mapped LR/HR training arrays.")
    add_flags(parser, PrepareConfig, positional=("source", "out"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Build (or finish) the dataset the flags describe and print a one-line summary; 0 on success,
    1 with a one-line error, 130 when interrupted."""
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    try:
        config = from_flags(PrepareConfig, vars(args))
        already_complete = (config.out / MANIFEST_FILE).is_file()
        processed = []  # images cropped by this invocation (not by an earlier, interrupted one)
        with sigterm_as_interrupt():  # a killed run records its progress, as on Ctrl-C
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
          f"from {images} images, {len(manifest['skipped'])} skipped; {format_bytes(size)}{speed}")
    return 0
