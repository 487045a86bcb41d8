import os

import numpy as np
import pytest
import torch
from PIL import Image

# Nothing in the tests may touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def synthetic_photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """An (height, width, 3) uint8 RGB image with structure at several scales, as a photo has:
    smooth shapes, edges and fine texture (bicubic-upsampled noise at three cell sizes)."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 128.0, dtype=np.float32)
    for cell, amplitude in ((16, 50.0), (4, 25.0), (1, 12.0)):
        coarse = rng.normal(size=(-(-height // cell) + 1, -(-width // cell) + 1, 3)).astype(np.float32)
        planes = [np.asarray(Image.fromarray(coarse[..., c], mode="F").resize((width, height), Image.Resampling.BICUBIC))
                  for c in range(3)]
        image += amplitude * np.stack(planes, axis=2)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def model():
    """A tiny random network (4 channels, 1 block): fast, and enough for everything but image quality."""
    from perceptual_sr import PerceptualSR, SRConfig

    torch.manual_seed(0)
    return PerceptualSR(SRConfig(channels=4, residual_blocks=1)).eval()


@pytest.fixture(scope="session")
def bundled_pipeline():
    """The bundled model with its four weight sets, loaded once: for tests that only read it."""
    from perceptual_sr import SRPipeline

    return SRPipeline.from_pretrained()


@pytest.fixture
def ctrl_c_raises():
    """SIGINT as an interactive run has it (KeyboardInterrupt): a suite started in the background
    (`nohup ... &`) inherits it ignored, and tests that send Ctrl-C would then see nothing."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def make_photo():
    """`make_photo(width, height, seed=0)`: a synthetic photo (see `synthetic_photo`); every test file's test image."""
    return synthetic_photo


@pytest.fixture(autouse=True)
def _train_in_fp32_on_any_cpu(monkeypatch):
    """`--precision auto` trains in bf16 on CPUs with AMX and fp32 elsewhere; CI machines differ from
    session to session, so every test sees a CPU without AMX unless it says otherwise."""
    from perceptual_sr.utils import runtime
    monkeypatch.setattr(runtime, "cpu_has_amx_bf16", lambda: False)
