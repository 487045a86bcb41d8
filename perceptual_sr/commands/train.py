"""`train.py` and `perceptual-sr train`: flags from SRConfig and TrainConfig, one-line errors.

    python train.py --data DATA_DIR --output-dir runs/x4 [--val-dir ../shared/data/benchmarks/Set5]
    torchrun --nproc-per-node 2 train.py --data DATA_DIR ...      # DistributedDataParallel
    python train.py --data DATA_DIR --output-dir runs/x4 --resume  # continue after an interruption

Every field of SRConfig (architecture) and TrainConfig (run settings) is a flag.
"""

from __future__ import annotations

import argparse
import sys

from perceptual_sr.networks.upscaler import SRConfig
from perceptual_sr.training.config import TrainConfig
from perceptual_sr.training.loop import TrainingDiverged, train
from perceptual_sr.utils.config_flags import add_flags, from_flags
from perceptual_sr.utils.interrupts import sigterm_as_interrupt
from perceptual_sr.utils.runtime import reuse_freed_memory


def parse_args(argv: list[str] | None = None) -> tuple[SRConfig, TrainConfig]:
    parser = argparse.ArgumentParser(prog="train.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, SRConfig, "architecture (SRConfig, saved to config.json)")
    add_flags(parser, TrainConfig, "run (TrainConfig, saved with checkpoints)")
    args = vars(parser.parse_args(argv))
    if not args["data"]:
        parser.error("--data is required: a folder written by prepare_data.py")
    return from_flags(SRConfig, args), from_flags(TrainConfig, args)


def main(argv: list[str] | None = None) -> int:
    try:
        model_config, train_config = parse_args(argv)
        # Each step frees and reallocates the same feature maps (tens of MB each); glibc would hand
        # them back to the OS and page-fault them in again, zeroed: 1.1x (bf16) to 1.2x (fp32) per
        # step on a 2-core Xeon. This process exists to train, so it keeps them.
        reuse_freed_memory()
        with sigterm_as_interrupt():  # a killed run is checkpointed up to its last step, as on Ctrl-C
            train(model_config, train_config)
    except KeyboardInterrupt:
        print("interrupted: checkpoint saved; continue with --resume", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, TrainingDiverged, RuntimeError) as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 1
    print(f"model saved to {train_config.output_dir}")
    return 0


