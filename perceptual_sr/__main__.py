"""`python -m perceptual_sr`: the `perceptual-sr` command."""

import sys

from perceptual_sr.commands.cli import main

sys.exit(main())
