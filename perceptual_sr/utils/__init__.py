"""Small helpers every layer uses: atomic writes, image files, colour, flags, runtime, interrupts."""
