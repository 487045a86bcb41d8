"""Turn folders of photos into a memory-mapped LR/HR training set: `python prepare_data.py SRC [SRC ...] OUT`.

See `perceptual_sr/data/prepare.py` for the layout and choices, `--help` for the options
(`perceptual_sr/commands/prepare.py`).
"""

import sys

from perceptual_sr.commands.prepare import main

if __name__ == "__main__":
    sys.exit(main())
