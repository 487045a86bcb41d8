"""The training loop, its configuration, loss, samples, checkpoints and logs."""
