"""prepare_data: not implemented yet (see the project's open issues)."""

import sys

if __name__ == "__main__":
    sys.exit("prepare_data.py: not implemented yet")
