"""SIGTERM taken as Ctrl-C by the command-line tools: the same clean-up, nothing half-written."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from perceptual_sr import PerceptualSR, SRConfig
from perceptual_sr.utils.interrupts import sigterm_as_interrupt


def test_within_the_block_sigterm_is_a_keyboard_interrupt_and_the_old_handler_returns():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at the next bytecode; never reached
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.slow
def test_a_killed_upscale_run_leaves_only_whole_outputs_and_says_how_to_continue(tmp_path):
    torch.manual_seed(0)
    PerceptualSR(SRConfig(channels=4, residual_blocks=1)).save_pretrained(tmp_path / "model")
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for k in range(40):
        Image.fromarray(rng.integers(0, 256, (160, 200, 3), dtype=np.uint8)).save(photos / f"p{k:02d}.png")
    command = [sys.executable, "-m", "perceptual_sr", "upscale", str(photos), "-o", str(out),
               "--model", str(tmp_path / "model")]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(out.glob("*_x4.png"))):
        assert process.poll() is None and time.monotonic() < deadline, "finished or stuck before the kill"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 130, errors
    assert "interrupted; no partial files were left; rerun with --skip-existing" in errors
    written = sorted(path.name for path in out.iterdir())
    assert written and all(name.endswith("_x4.png") for name in written), written  # no staging files
    for name in written:
        with Image.open(out / name) as image:
            image.load()  # every file there is whole
            assert image.size == (800, 640)
    assert len(written) < 40  # it was stopped midway
