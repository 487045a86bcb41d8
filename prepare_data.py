"""Turn a folder of photos into a memory-mapped LR/HR training set: `python prepare_data.py SRC OUT`.

See `perceptual_sr/prepare.py` for the layout and choices, `--help` for the options.
"""

import sys

from perceptual_sr.prepare import main

if __name__ == "__main__":
    sys.exit(main())
