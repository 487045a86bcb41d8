"""Where weights live and what is published with them: bundled weight paths and the model card."""
