"""The command line: perceptual-sr and its upscale, train, prepare, eval, export, serve commands."""
