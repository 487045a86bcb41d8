"""perceptual_sr/utils/color.py: BT.601 luma in studio range (the metrics') and full range (grey, colour fix)."""

import numpy as np
import pytest
from PIL import Image
from skimage import color as skcolor
from skimage import data

from perceptual_sr.utils.color import (
    LUMA_WEIGHTS,
    RGB_TO_YCBCR,
    STUDIO_Y_WEIGHTS,
    YCBCR_TO_RGB,
    rgb_to_grey,
    rgb_to_studio_y,
)


@pytest.fixture(scope="module")
def photo():
    return data.astronaut()[::4, ::4]  # (128, 128, 3) uint8


def test_studio_y_is_skimage_and_basicsr_y(photo):
    y = rgb_to_studio_y(photo)
    assert y.dtype == np.float64 and y.shape == photo.shape[:2]
    assert np.allclose(y, skcolor.rgb2ycbcr(photo)[..., 0], atol=1e-9)  # skimage: the same ITU-R BT.601 Y
    # What metrics.rgb_to_y computed before it moved here, bit for bit: PSNR-Y tables stay the same.
    assert np.array_equal(y, 16.0 + (photo.astype(np.float64) / 255.0) @ np.array([65.481, 128.553, 24.966]))
    assert rgb_to_studio_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16.0)
    assert rgb_to_studio_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0)
    with pytest.raises(ValueError, match="uint8"):
        rgb_to_studio_y(photo.astype(np.float32) / 255)


def test_both_ranges_scale_one_luma():
    assert np.allclose(np.array(STUDIO_Y_WEIGHTS), 219 * np.array(LUMA_WEIGHTS), atol=1e-9)
    assert np.allclose(RGB_TO_YCBCR[0], LUMA_WEIGHTS) and sum(LUMA_WEIGHTS) == pytest.approx(1.0)


def test_grey_is_pillows_rgb_to_l(photo):
    grey = rgb_to_grey(photo.astype(np.float32) / 255)
    assert grey.dtype == np.float32
    pillow = np.asarray(Image.fromarray(photo).convert("L")).astype(int)
    difference = np.abs(np.rint(grey * 255).astype(int) - pillow)
    assert difference.max() <= 1 and difference.mean() < 0.05  # Pillow rounds in fixed point
    # What image_io.rgb_to_grey computed before it moved here, bit for bit.
    rgb = photo.astype(np.float32) / 255
    assert np.array_equal(grey, rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114)


def test_full_range_ycbcr_is_jfif_as_pillow_and_inverts(photo):
    rgb = photo.astype(np.float32) / 255
    ycbcr = rgb @ RGB_TO_YCBCR.T
    pillow = np.asarray(Image.fromarray(photo).convert("YCbCr")).astype(np.float32) / 255
    assert np.abs(ycbcr + [0, 128 / 255, 128 / 255] - pillow).max() <= 1.01 / 255
    assert np.allclose(ycbcr @ YCBCR_TO_RGB.T, rgb, atol=1e-5)
    grey_ycbcr = np.full((1, 3), 0.4, np.float32) @ RGB_TO_YCBCR.T
    assert np.allclose(grey_ycbcr, [[0.4, 0.0, 0.0]], atol=1e-6)  # no chroma in a grey pixel


def test_shared_matrices_cannot_be_changed_by_a_caller():
    with pytest.raises(ValueError, match="read-only"):
        RGB_TO_YCBCR[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        YCBCR_TO_RGB[0, 0] = 1.0
