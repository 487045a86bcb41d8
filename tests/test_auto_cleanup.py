import io

import numpy as np
import pytest
import torch
from PIL import Image

from perceptual_sr.inference.auto_cleanup import assess, cleanup_strength, jpeg_quality, noise_sigma


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer)


@pytest.fixture
def clean_lr(make_photo):
    """A clean input of the benchmark protocol: a photo shrunk x1/4 with Pillow's bicubic."""
    return Image.fromarray(make_photo(256, 192)).resize((64, 48), Image.Resampling.BICUBIC)


@pytest.mark.parametrize("quality", [10, 30, 50, 75, 90, 95, 100])
def test_the_jpeg_quality_is_read_back_from_the_files_tables(clean_lr, quality):
    assert jpeg_quality(_jpeg(clean_lr, quality)) == quality


def test_a_clean_png_gets_no_cleanup_and_a_jpeg_at_quality_50_the_full_one(clean_lr, tmp_path):
    clean_lr.save(tmp_path / "clean.png")
    measured = assess(Image.open(tmp_path / "clean.png"))
    assert measured.jpeg_quality is None and measured.cleanup == 0.0
    assert assess(_jpeg(clean_lr, 50)).cleanup == 1.0
    assert assess(_jpeg(clean_lr, 85)).cleanup == 0.5  # halfway between the clean and the full quality
    assert "JPEG quality ~85" in assess(_jpeg(clean_lr, 85)).describe()


@pytest.mark.parametrize("sigma", [5.0, 10.0, 20.0])
def test_the_noise_estimate_reads_the_noise_added_to_a_smooth_image(sigma):
    rng = np.random.default_rng(0)
    smooth = np.add.outer(np.linspace(60, 180, 96), np.linspace(0, 40, 128))
    assert noise_sigma(smooth) < 0.5
    assert noise_sigma(smooth + rng.normal(0, sigma, smooth.shape)) == pytest.approx(sigma, rel=0.15)


def test_every_input_kind_is_measured_alike(clean_lr):
    rng = np.random.default_rng(1)
    noisy = np.clip(np.asarray(clean_lr, np.float64) + rng.normal(0, 20, (48, 64, 3)), 0, 255).astype(np.uint8)
    from_pil = assess(Image.fromarray(noisy)).noise_sigma
    assert from_pil > 10
    assert assess(noisy).noise_sigma == pytest.approx(from_pil, abs=0.3)
    assert assess(noisy.astype(np.uint16) * 257).noise_sigma == pytest.approx(from_pil, abs=0.3)
    assert assess(torch.from_numpy(noisy).permute(2, 0, 1).float() / 255).noise_sigma == pytest.approx(from_pil, abs=0.3)
    assert assess(Image.fromarray(noisy[:2, :2])).cleanup == 0.0  # too small to measure: no cleanup


def test_the_rule_takes_the_larger_need_and_stays_in_0_to_1():
    assert cleanup_strength(None, 0.0) == 0.0
    assert cleanup_strength(95, 0.0) == 0.0
    assert cleanup_strength(30, 0.0) == 1.0
    assert cleanup_strength(None, 100.0) == 1.0
    assert cleanup_strength(70, 100.0) == 1.0
