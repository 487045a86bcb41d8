"""Train the cleanup network that runs before the upscaler (stage A at LR, stage B through it).

The same as `perceptual-sr train-cleanup`; see perceptual_sr/commands/train_cleanup.py and `--help`.
"""

import sys

from perceptual_sr.commands.train_cleanup import main

if __name__ == "__main__":
    sys.exit(main())
