"""Steady detail: still scenes hold their invented texture, motion is left as the image path makes it."""

import numpy as np
import pytest

from perceptual_sr.video.steady import SteadyDetail, SteadySettings


def test_steady_detail_holds_still_scenes_and_leaves_motion_alone():
    rng = np.random.default_rng(0)
    still = np.full((16, 16, 3), 120, np.uint8)
    steadier = SteadyDetail()
    outputs = [steadier(still, rng.integers(100, 140, (64, 64, 3), dtype=np.uint8)) for _ in range(6)]
    raw_flicker = 2 * 20 / 3  # mean |a - b| of two uniform draws over 40 levels, about 13
    flicker = np.mean([np.abs(b.astype(int) - a).mean() for a, b in zip(outputs, outputs[1:])])
    assert flicker < 0.5 * raw_flicker
    moving = SteadyDetail()
    first = rng.integers(0, 190, (16, 16, 3), dtype=np.uint8)
    moving(first, rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    second, output = first + 60, rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)  # a change everywhere
    assert np.abs(moving(second, output).astype(int) - output).max() <= 1
    assert np.array_equal(SteadyDetail(SteadySettings(hold=0.0))(still, output), output)
    with pytest.raises(ValueError, match="hold"):
        SteadySettings(hold=1.0)


def test_noise_the_cleanup_removed_does_not_come_back():
    # The low band comes from the output: a clean output of noisy frames stays clean.
    rng = np.random.default_rng(1)
    steadier = SteadyDetail(noise_sigma=5.0)
    clean = np.full((64, 64, 3), 128, np.uint8)
    outputs = [steadier(np.clip(128 + rng.normal(0, 5, (16, 16, 3)), 0, 255).astype(np.uint8), clean)
               for _ in range(5)]
    assert max(np.abs(out.astype(int) - 128).max() for out in outputs) <= 1


def test_the_threshold_follows_the_noise():
    assert SteadyDetail(noise_sigma=0.5).threshold == 1.5 and SteadyDetail(noise_sigma=8.0).threshold == 6.0
    assert SteadyDetail(SteadySettings(threshold=3.0), noise_sigma=8.0).threshold == 3.0
