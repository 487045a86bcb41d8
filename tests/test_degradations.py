"""The real-photo degradation chain (`perceptual_sr.data.degradations`) and its contact-sheet tool."""

import io
import random
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from perceptual_sr.data import degradations, kernels
from perceptual_sr.data.degradations import (
    KERNEL_TYPES,
    DegradationConfig,
    add_gaussian_noise,
    add_poisson_noise,
    blur,
    degrade,
    degrade_realistic,
    degrade_realistic_batch,
    degrade_realistic_with_record,
    gaussian_kernel,
    jpeg_compress,
    sinc_kernel,
)
from perceptual_sr.utils.pixels import tensor_to_uint8, uint8_to_tensor

ROOT = Path(__file__).resolve().parents[1]
DEGRADED = DegradationConfig(clean_prob=0.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # As in DataLoader workers, where the chain runs: torch gives each worker one thread. Tiny
    # tensors gain nothing from more, and on a busy 2-core machine the thread hand-offs cost seconds.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def hr(make_photo):
    return uint8_to_tensor(make_photo(48, 40, seed=3))


@pytest.mark.parametrize("height, width, scale", [(40, 48, 4), (37, 50, 4), (33, 31, 3), (9, 11, 2), (5, 6, 1)])
def test_lr_is_hr_cropped_to_a_multiple_of_scale_then_divided(make_photo, height, width, scale):
    image = uint8_to_tensor(make_photo(width, height))
    for seed in range(4):
        lr = degrade_realistic(image, scale, seed, DEGRADED)
        assert lr.shape == (3, height // scale, width // scale) and lr.dtype == torch.float32
    clean = degrade_realistic(image, scale, 0, DegradationConfig(clean_prob=1.0))
    assert clean.shape == (3, height // scale, width // scale)


def test_same_seed_same_output_and_different_seeds_differ(hr):
    first, record = degrade_realistic_with_record(hr, 4, 7, DEGRADED)
    again, record_again = degrade_realistic_with_record(hr, 4, torch.Generator().manual_seed(7), DEGRADED)
    assert torch.equal(first, again) and record == record_again
    others = [degrade_realistic(hr, 4, seed, DEGRADED) for seed in (8, 9, 10)]
    assert all(not torch.equal(first, other) for other in others)


def test_clean_share_is_exactly_the_bicubic_lr(hr):
    expected = uint8_to_tensor(degrade(tensor_to_uint8(hr), 4, "bicubic"))
    lr, record = degrade_realistic_with_record(hr, 4, 0, DegradationConfig(clean_prob=1.0))
    assert torch.equal(lr, expected) and record == ["clean bicubic"]
    records = [degrade_realistic_with_record(hr, 4, seed)[1] for seed in range(40)]
    clean = sum(r == ["clean bicubic"] for r in records)
    assert 2 <= clean <= 16  # the default share is 20%


def test_the_upload_share_is_a_jpeg_of_the_bicubic_lr_with_noise_on_some(hr):
    bicubic = uint8_to_tensor(degrade(tensor_to_uint8(hr), 4, "bicubic"))
    plain = DegradationConfig(clean_prob=0.0, upload_prob=1.0, upload_noise_prob=0.0, jpeg_quality_2=(60, 60))
    lr, record = degrade_realistic_with_record(hr, 4, 0, plain)
    assert record == ["bicubic", "jpeg q60"] and torch.equal(lr, jpeg_compress(bicubic, 60))
    noisy = DegradationConfig(clean_prob=0.0, upload_prob=1.0, upload_noise_prob=1.0, noise_sigma_2=(8.0, 8.0),
                              jpeg_quality_2=(100, 100))  # near-lossless, so the noise is what differs
    lr, record = degrade_realistic_with_record(hr, 4, 0, noisy)
    assert record[0] == "bicubic" and record[1].startswith("gauss noise 8.0/255") and record[2] == "jpeg q100"
    assert 5 / 255 < (lr - jpeg_compress(bicubic, 100)).std() < 11 / 255
    # The "upload" preset: about half of the degraded samples take this path.
    records = [degrade_realistic_with_record(hr, 4, seed, degradations.PRESETS["upload"])[1] for seed in range(60)]
    assert 15 <= sum(r[0] == "bicubic" for r in records) <= 40


def test_output_is_in_range_8_bit_and_input_untouched(hr):
    original = hr.clone()
    for seed in range(12):
        lr = degrade_realistic(hr, 4, seed, DEGRADED)
        assert 0.0 <= lr.min() and lr.max() <= 1.0
        assert torch.equal(lr * 255, (lr * 255).round())
    assert torch.equal(hr, original)
    as_double = degrade_realistic(hr.double(), 4, 3, DEGRADED)
    assert torch.equal(as_double, degrade_realistic(hr, 4, 3, DEGRADED))


def test_global_random_state_is_untouched(hr):
    torch_state, numpy_state, python_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    for seed in range(6):
        degrade_realistic(hr, 4, seed, DEGRADED)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state))
    assert random.getstate() == python_state


def test_tiny_inputs(make_photo):
    for seed in range(20):
        assert degrade_realistic(uint8_to_tensor(make_photo(4, 4)), 4, seed, DEGRADED).shape == (3, 1, 1)
        assert degrade_realistic(uint8_to_tensor(make_photo(7, 5)), 4, seed, DEGRADED).shape == (3, 1, 1)
    assert degrade_realistic(torch.full((3, 1, 1), 0.5), 1, 0, DEGRADED).shape == (3, 1, 1)
    with pytest.raises(ValueError, match="smaller than scale 4"):
        degrade_realistic(torch.rand(3, 3, 8), 4, 0)


def test_bad_input_raises(hr):
    with pytest.raises(ValueError, match="float tensor"):
        degrade_realistic((hr * 255).byte(), 4, 0)
    with pytest.raises(ValueError, match="scale"):
        degrade_realistic(hr, 0, 0)
    with pytest.raises(ValueError, match="B seeds"):
        degrade_realistic_batch(hr[None], 4, [1, 2])


@pytest.mark.parametrize("field, value", [
    ("clean_prob", 1.5), ("second_blur_prob", -0.1), ("kernel_sizes", (7, 8)), ("kernel_sizes", ()),
    ("kernel_probs", (1.0, 0.0)), ("resize_probs_2", (0, 0, 0)), ("blur_sigma", (3.0, 1.0)),
    ("blur_sigma_2", (0.0, 1.0)), ("resize_range", (1.2, 1.5)), ("noise_sigma", (-1.0, 5.0)),
    ("jpeg_quality", (30, 101)), ("jpeg_quality_2", (30.5, 90)),
])
def test_bad_config_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        DegradationConfig(**{field: value})


def test_config_accepts_lists_and_stays_hashable():
    config = DegradationConfig(jpeg_quality=[70, 80])
    assert config.jpeg_quality == (70, 80) and hash(config) == hash(DegradationConfig(jpeg_quality=(70, 80)))


def test_jpeg_step_is_libjpeg_at_the_quality_given():
    # A smooth gradient: only block edges and quantization can make it rough.
    ramp = torch.linspace(0.1, 0.9, 64)
    image = torch.stack([ramp[None, :] * ramp[:, None], ramp[None, :].expand(64, 64), ramp[:, None].expand(64, 64)])
    buffer = io.BytesIO()
    Image.fromarray(tensor_to_uint8(image)).save(buffer, format="JPEG", quality=10)
    expected = uint8_to_tensor(np.array(Image.open(buffer)))
    compressed = jpeg_compress(image, 10)
    assert torch.equal(compressed, expected)
    assert torch.equal(jpeg_compress(image[None], 10)[0], expected)
    # 8x8 blocks: the error jumps across block borders far more than inside blocks.
    error = compressed - image
    steps = error.diff(dim=2).abs().mean(dim=(0, 1))  # (63,): jump between columns i and i + 1
    at_borders, inside = steps[7::8].mean(), steps[[i for i in range(63) if i % 8 != 7]].mean()
    assert at_borders > 2 * inside
    assert (jpeg_compress(image, 95) - image).abs().mean() < (compressed - image).abs().mean()


def test_noise_levels_are_what_they_claim():
    generator = torch.Generator().manual_seed(0)
    flat = torch.full((1, 3, 128, 128), 0.5)
    colour = add_gaussian_noise(flat, 0.04, gray=False, generator=generator) - flat
    assert abs(colour.std().item() - 0.04) < 0.002 and not torch.equal(colour[0, 0], colour[0, 1])
    grey = add_gaussian_noise(flat, 0.04, gray=True, generator=generator) - flat
    assert abs(grey.std().item() - 0.04) < 0.002 and torch.equal(grey[0, 0], grey[0, 2])
    dark = torch.full((1, 3, 128, 128), 0.25)
    shot = add_poisson_noise(dark, 2.0, gray=False, generator=generator) - dark
    assert abs(shot.std().item() - 2.0 * (0.25 / 256) ** 0.5) < 0.003  # scale * sqrt(v / 256)
    assert add_poisson_noise(torch.zeros(1, 3, 8, 8), 3.0, gray=True, generator=generator).abs().max() == 0


def test_kernels_sum_to_one_and_have_the_requested_spread():
    coords = torch.arange(21, dtype=torch.float32) - 10
    kernel = gaussian_kernel(21, 2.0, 2.0, 0.0)
    assert abs(kernel.sum().item() - 1) < 1e-5 and abs((kernel.sum(0) * coords ** 2).sum().item() - 4.0) < 0.05
    wide_x = gaussian_kernel(21, 3.0, 0.5, 0.0)
    assert (wide_x.sum(0) * coords ** 2).sum() > 10 * (wide_x.sum(1) * coords ** 2).sum()
    assert torch.allclose(gaussian_kernel(21, 3.0, 0.5, np.pi / 2), wide_x.T, atol=1e-6)
    for shape, beta in (("generalized", 0.5), ("generalized", 4.0), ("plateau", 1.5)):
        assert abs(gaussian_kernel(15, 1.5, 1.0, 0.3, shape, beta).sum().item() - 1) < 1e-5
    with pytest.raises(ValueError, match="shape"):
        gaussian_kernel(7, 1.0, 1.0, 0.0, "box")
    sinc = sinc_kernel(21, np.pi / 4)
    assert abs(sinc.sum().item() - 1) < 1e-5 and sinc.min() < 0  # negative lobes: ringing


def test_fft_blur_equals_conv2d_blur(monkeypatch):
    image = torch.rand(1, 3, 30, 41, generator=torch.Generator().manual_seed(1))
    kernel = gaussian_kernel(13, 2.0, 0.7, 0.5, "plateau", 1.2)
    by_fft = blur(image, kernel)
    monkeypatch.setattr(kernels, "FFT_MIN_KERNEL", 10**6)
    by_conv = blur(image, kernel)
    assert by_fft.shape == image.shape and torch.allclose(by_fft, by_conv, atol=1e-5)
    flat = torch.full((1, 3, 4, 4), 0.3)  # smaller than the kernel: replicated borders keep it flat
    assert torch.allclose(blur(flat, sinc_kernel(21, 1.0)), flat, atol=1e-5)


@pytest.mark.parametrize("kind", KERNEL_TYPES)
def test_every_kernel_type_and_stage_choice_runs(hr, kind):
    weights = tuple(float(k == kind) for k in KERNEL_TYPES)
    config = DegradationConfig(clean_prob=0.0, kernel_probs=weights, sinc_prob=0.0, sinc_prob_2=0.0,
                               second_blur_prob=1.0, second_order_prob=0.5, betag_range=(0.5, 4.0))
    records = [degrade_realistic_with_record(hr, 4, seed, config)[1] for seed in range(6)]
    assert all(r[0].startswith(f"blur {kind} ") for r in records)
    text = " | ".join(op for r in records for op in r)
    assert all(op in text for op in ("gauss noise", "poisson noise", "jpeg q", "final resize"))
    assert len({len(r) for r in records}) > 1  # stage 2 (blur, resize, noise) skipped in some
    sincs = degrade_realistic_with_record(hr, 4, 0, DegradationConfig(clean_prob=0.0, sinc_prob=1.0))[1]
    assert sincs[0].startswith("sinc k")


def test_batch_matches_single_samples(hr):
    batch = torch.stack([hr, hr.flip(-1)])
    out = degrade_realistic_batch(batch, 4, [5, 6], DEGRADED)
    assert torch.equal(out[0], degrade_realistic(hr, 4, 5, DEGRADED))
    assert torch.equal(out[1], degrade_realistic(hr.flip(-1), 4, 6, DEGRADED))


def test_contact_sheet_tool_writes_a_png(tmp_path, make_photo, monkeypatch, capsys):
    (tmp_path / "photos" / "nested").mkdir(parents=True)
    for k in range(2):
        Image.fromarray(make_photo(40, 36, seed=k)).save(tmp_path / "photos" / "nested" / f"{k}.jpg")
    out = tmp_path / "sheet.png"
    monkeypatch.setattr(sys, "argv", ["degradation_sheet.py", str(tmp_path / "photos"), str(out), "--images", "2",
                                      "--samples", "2", "--crop", "32", "--zoom", "2"])
    runpy.run_path(str(ROOT / "tools" / "degradation_sheet.py"), run_name="__main__")
    with Image.open(out) as sheet:
        assert sheet.width == 3 * (16 + 4) and sheet.height > 2 * 16
    assert "wrote" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["degradation_sheet.py", str(tmp_path / "missing"), str(out)])
    with pytest.raises(SystemExit, match="does not exist"):
        runpy.run_path(str(ROOT / "tools" / "degradation_sheet.py"), run_name="__main__")
