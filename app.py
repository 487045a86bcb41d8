"""app: not implemented yet (see the project's open issues)."""

import sys

if __name__ == "__main__":
    sys.exit("app.py: not implemented yet")
