"""Train perceptual_sr on a dataset written by prepare_data.py (the reference recipe by default).

    python train.py --data DATA_DIR --output-dir runs/x4 [--val-dir ../shared/data/benchmarks/Set5]
    torchrun --nproc-per-node 2 train.py --data DATA_DIR ...      # DistributedDataParallel
    python train.py --data DATA_DIR --output-dir runs/x4 --resume  # continue after an interruption

The same as `perceptual-sr train`; see perceptual_sr/commands/train.py and `--help`.
"""

import sys

from perceptual_sr.commands.train import main, parse_args  # noqa: F401  (parse_args: for tests)

if __name__ == "__main__":
    sys.exit(main())
