"""`train_cleanup.py` and `perceptual-sr train-cleanup`: train the cleanup network, stage A then B.

    python train_cleanup.py --data DATA192 --output-dir ../runs/cleanup-a --stage lr --steps 4000
    python train_cleanup.py --data DATA192 --output-dir ../runs/cleanup-b --stage hr \\
        --init-from ../runs/cleanup-a --lr-crop 32 --steps 20000
    python train_cleanup.py ... --select-on SET5   # keep the checkpoint with the best LPIPS in best/
    python train_cleanup.py ... --resume          # continue after an interruption

Every field of CleanupConfig (architecture) and CleanupTrainConfig (run settings) is a flag;
docs/training.md has the recipe of the bundled network.
"""

from __future__ import annotations

import argparse
import sys

from perceptual_sr.networks.restorer import CleanupConfig
from perceptual_sr.training.cleanup_training import CleanupTrainConfig, train_cleanup
from perceptual_sr.utils.config_flags import add_flags, from_flags
from perceptual_sr.utils.interrupts import sigterm_as_interrupt


def parse_args(argv: list[str] | None = None) -> tuple[CleanupConfig, CleanupTrainConfig]:
    parser = argparse.ArgumentParser(prog="train_cleanup.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, CleanupConfig, "architecture (CleanupConfig, saved to config.json)")
    add_flags(parser, CleanupTrainConfig, "run (CleanupTrainConfig, saved with checkpoints)")
    args = vars(parser.parse_args(argv))
    if not args["data"]:
        parser.error("--data is required: a folder written by prepare_data.py --degradation bicubic")
    return from_flags(CleanupConfig, args), from_flags(CleanupTrainConfig, args)


def main(argv: list[str] | None = None) -> int:
    try:
        network_config, config = parse_args(argv)
        with sigterm_as_interrupt():
            train_cleanup(config, network_config)
    except KeyboardInterrupt:
        print("interrupted: checkpoint saved; continue with --resume", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as error:
        print(f"train_cleanup.py: error: {error}", file=sys.stderr)
        return 1
    print(f"cleanup network saved to {config.output_dir}")
    return 0
