import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from perceptual_sr.evaluation.metrics import LPIPSMetric, psnr_y, ssim_y
from perceptual_sr.hub.weights import ALEXNET_WEIGHTS, loss_network_weights
from perceptual_sr.utils.color import rgb_to_studio_y


@pytest.fixture(scope="module")
def lpips_metric():
    return LPIPSMetric()


@pytest.fixture(scope="module")
def pair():
    hr = data.astronaut()[100:260, 150:350]
    rng = np.random.default_rng(0)
    sr = np.clip(hr.astype(int) + rng.integers(-25, 25, hr.shape), 0, 255).astype(np.uint8)
    return sr, hr


def test_psnr_and_ssim_agree_with_skimage(pair):
    sr, hr = pair
    sr_y, hr_y = rgb_to_studio_y(sr)[4:-4, 4:-4], rgb_to_studio_y(hr)[4:-4, 4:-4]
    assert psnr_y(sr, hr) == pytest.approx(peak_signal_noise_ratio(hr_y, sr_y, data_range=255), abs=1e-9)
    expected = structural_similarity(sr_y, hr_y, data_range=255, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    assert ssim_y(sr, hr) == pytest.approx(expected, abs=1e-9)
    assert 20 < psnr_y(sr, hr) < 40 and 0.3 < ssim_y(sr, hr) < 0.99


def test_border_matters_and_identical_images(pair):
    sr, hr = pair
    assert psnr_y(sr, hr, border=0) != psnr_y(sr, hr, border=4)
    assert psnr_y(hr, hr) == float("inf") and ssim_y(hr, hr) == pytest.approx(1.0)


def test_metric_inputs_are_checked(pair):
    sr, hr = pair
    with pytest.raises(ValueError, match="same shape"):
        psnr_y(sr[:-1], hr)
    with pytest.raises(ValueError, match="uint8"):
        ssim_y(sr.astype(np.float32), hr)


def _tensor(image):
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255


@pytest.mark.slow
def test_lpips_zero_on_identical_and_grows_with_blur(lpips_metric):
    photo = data.astronaut()[::2, ::2]
    x = _tensor(photo)
    distances = [lpips_metric(x, _tensor(gaussian_filter(photo, sigma=(s, s, 0)))).item() for s in (0.0, 1.0, 3.0)]
    assert distances[0] == pytest.approx(0.0, abs=1e-6)
    assert 0 < distances[1] < distances[2]
    batch = lpips_metric(torch.cat([x, x]), torch.cat([x, _tensor(gaussian_filter(photo, (3, 3, 0)))]))
    assert batch.shape == (2,)


def test_lpips_uses_imagenet_alexnet_not_random(lpips_metric):
    from safetensors.torch import load_file

    expected = load_file(str(loss_network_weights(ALEXNET_WEIGHTS)))["features.3.weight"]
    assert torch.equal(getattr(lpips_metric.lpips.net.slice2, "3").weight, expected)
    import lpips

    random_trunk = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
    assert not torch.allclose(getattr(random_trunk.net.slice1, "0").weight, getattr(lpips_metric.lpips.net.slice1, "0").weight)
    assert all(lin.model[1].weight.abs().sum() > 0 for lin in lpips_metric.lpips.lins)


def test_lpips_load_is_strict(tmp_path):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(loss_network_weights(ALEXNET_WEIGHTS)))
    del tensors["features.10.weight"]
    save_file(tensors, str(tmp_path / "partial.safetensors"))
    with pytest.raises(RuntimeError, match="Missing"):
        LPIPSMetric(alexnet_weights=tmp_path / "partial.safetensors")


def test_grid_score_is_high_for_a_periodic_pattern_and_zero_for_the_ground_truth():
    from scipy.ndimage import gaussian_filter

    from perceptual_sr.evaluation.metrics import grid_score

    rng = np.random.default_rng(0)
    photo = np.clip(gaussian_filter(rng.normal(size=(128, 128, 3)), sigma=(3, 3, 0)) * 80 + 128, 0, 255)
    clean = photo.astype(np.uint8)
    rows, cols = np.mgrid[:128, :128]
    pattern = (3.0 * ((cols % 4 == 0).astype(float) + (rows % 2 == 0))) [..., None]
    gridded = np.clip(photo + pattern, 0, 255).astype(np.uint8)
    assert grid_score(clean, clean) == 0.0
    assert grid_score(gridded, clean) > 1.0  # more than ten times the ground truth's peak energy
    noisy = np.clip(photo + rng.normal(scale=2.0, size=photo.shape), 0, 255).astype(np.uint8)
    assert abs(grid_score(noisy, clean)) < 0.3  # aperiodic detail is not a grid
    with pytest.raises(ValueError, match="at least"):
        grid_score(clean[:16, :16], clean[:16, :16])


def _textures(size=256):
    """A photo and two aperiodic textures (blurred noise, white noise), (size, size, 3) uint8."""
    rng = np.random.default_rng(1)
    photo = data.astronaut()[::2, ::2]
    blurred = np.clip(gaussian_filter(rng.normal(size=(size, size, 3)), sigma=(2, 2, 0)) * 120 + 128, 0, 255)
    white = np.clip(rng.normal(128, 30, size=(size, size, 3)), 0, 255)
    return {"photo": photo, "blurred noise": blurred.astype(np.uint8), "white noise": white.astype(np.uint8)}


def _add_hatch(image, amplitude, frequency=(0.40, 0.39)):
    rows, cols = np.mgrid[:image.shape[0], :image.shape[1]]
    wave = amplitude * np.sin(2 * np.pi * (frequency[0] * rows + frequency[1] * cols))
    return np.clip(image + wave[..., None], 0, 255).astype(np.uint8)


def test_hatch_score_is_zero_for_bicubic_and_for_aperiodic_texture():
    from perceptual_sr.evaluation.metrics import hatch_score
    from perceptual_sr.utils.image_io import resize_bicubic

    for name, hr in _textures().items():
        assert hatch_score(hr, hr) == 0.0, name
        bicubic = resize_bicubic(np.asarray(Image.fromarray(hr).resize((64, 64), Image.BICUBIC)), 4)
        assert hatch_score(bicubic, hr) < 0.1, name
    rng = np.random.default_rng(2)
    for name, hr in _textures().items():  # another draw of the same texture: no peak the photo lacks
        noisy = np.clip(hr + rng.normal(scale=8.0, size=hr.shape), 0, 255).astype(np.uint8)
        assert hatch_score(noisy, hr) < 0.1, name


def test_hatch_score_sees_a_faint_diagonal_hatch_at_its_frequency_and_grid_score_does_not():
    from perceptual_sr.evaluation.metrics import grid_score, hatch_peak

    for name, hr in _textures().items():
        score, (fy, fx) = hatch_peak(_add_hatch(hr, 6.0), hr)  # +-6 grey levels, on white noise of sd 30 too
        assert score > 0.5, name  # at least 3x more peaked than anything the photo has there
        assert (fy, fx) == pytest.approx((0.40, 0.39), abs=1 / 64), name
    photo = _textures()["photo"]
    faint, strong = hatch_peak(_add_hatch(photo, 3.0), photo)[0], hatch_peak(_add_hatch(photo, 6.0), photo)[0]
    assert 0.5 < faint < strong
    assert abs(grid_score(_add_hatch(photo, 6.0), photo)) < 0.3  # the grid score looks elsewhere


def test_hatch_inputs_are_checked():
    from perceptual_sr.evaluation.metrics import hatch_score

    photo = _textures()["photo"]
    with pytest.raises(ValueError, match="same shape"):
        hatch_score(photo[:-1], photo)
    with pytest.raises(ValueError, match="at least"):
        hatch_score(photo[:100, :200], photo[:100, :200])
    with pytest.raises(ValueError, match="uint8"):
        hatch_score(photo.astype(np.float32), photo.astype(np.float32))
