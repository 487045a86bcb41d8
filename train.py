"""train: not implemented yet (see the project's open issues)."""

import sys

if __name__ == "__main__":
    sys.exit("train.py: not implemented yet")
