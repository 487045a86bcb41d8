import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage import data as skdata

from perceptual_sr.training.loss import PerceptualLoss, VGG16Features, parse_feature_weights, total_variation
from perceptual_sr.utils.pixels import uint8_to_tensor


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return uint8_to_tensor(skdata.astronaut()[::4, ::4].copy()).unsqueeze(0)  # (1, 3, 128, 128)


@pytest.fixture(scope="module")
def feature_loss() -> PerceptualLoss:
    return PerceptualLoss("relu2_2")


def _blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    array = image.numpy()
    return torch.from_numpy(gaussian_filter(array, sigma=(0, 0, sigma, sigma), mode="reflect"))


def test_feature_loss_is_zero_on_identical_images(photo, feature_loss):
    total, _ = feature_loss(photo, photo.clone())
    assert total.item() == 0.0


@pytest.mark.slow
def test_feature_loss_grows_with_blur(photo, feature_loss):
    losses = [feature_loss(_blur(photo, sigma), photo)[0].item() for sigma in (0.5, 1.0, 2.0, 4.0)]
    assert all(a < b for a, b in zip(losses, losses[1:])), losses


@pytest.mark.slow  # builds two VGG-16s
def test_imagenet_features_differ_from_random_init(photo):
    trained = VGG16Features(("relu2_2",))(photo)["relu2_2"]
    random = VGG16Features(("relu2_2",), weights=None)(photo)["relu2_2"]
    assert trained.shape == random.shape == (1, 128, 64, 64)
    relative = (trained - random).norm() / trained.norm()
    assert relative > 0.5


def test_vgg_is_frozen_and_stays_in_eval_mode(feature_loss):
    feature_loss.train()
    assert not feature_loss.vgg.training
    assert not any(p.requires_grad for p in feature_loss.vgg.parameters())


def test_gradient_flows_to_the_output_only(photo, feature_loss):
    output = _blur(photo, 1.0).requires_grad_(True)
    target = photo.clone().requires_grad_(True)
    total, _ = feature_loss(output, target)
    total.backward()
    assert output.grad is not None and output.grad.abs().sum() > 0
    assert target.grad is None


@pytest.mark.slow  # builds its own VGG-16
def test_combined_loss_reports_its_terms(photo):
    loss = PerceptualLoss("relu1_2:0.5,relu2_2", tv_weight=1e-5, pixel_weight=0.1)
    total, terms = loss(_blur(photo, 1.0), photo)
    assert set(terms) == {"relu1_2", "relu2_2", "tv", "pixel"}
    assert torch.isclose(total, sum(terms.values()))


def test_tv_is_zero_on_constant_and_positive_on_noise():
    assert total_variation(torch.full((1, 3, 8, 8), 0.3)).item() == 0
    assert total_variation(torch.rand(1, 3, 8, 8)).item() > 0


@pytest.mark.parametrize("bad", ["relu9_9", "relu2_2:abc", ""])
def test_bad_layer_spec_is_a_clear_error(bad):
    with pytest.raises(ValueError):
        parse_feature_weights(bad)


def test_periodic_error_sees_a_grid_and_not_aperiodic_texture():
    from perceptual_sr.training.loss import periodic_error

    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 64, 64, generator=generator)
    assert periodic_error(target, target) == 0
    rows, cols = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    grid = 0.02 * ((cols % 2 == 0).float() - 0.5) + 0.02 * ((rows % 4 == 0).float() - 0.25)
    noise = 0.02 * torch.randn(2, 3, 64, 64, generator=generator)  # the same amplitude, no period
    assert periodic_error(target + grid, target) > 20 * periodic_error(target + noise, target)
    assert periodic_error(target + 0.1, target) == pytest.approx(0.0, abs=1e-12)  # a uniform shift is no grid
    with pytest.raises(ValueError, match="at least 32x32"):
        periodic_error(target[..., :16, :16], target[..., :16, :16])


def test_grid_term_is_reported_and_weighted():
    loss = PerceptualLoss("none", pixel_weight=1.0, grid_weight=100.0, vgg_weights=None)
    target = torch.rand(1, 3, 32, 32)
    _, terms = loss(target + 0.01 * (torch.arange(32) % 2).float(), target)
    assert set(terms) == {"grid", "pixel"} and terms["grid"] > 0


def _with_hatch(image: torch.Tensor, amplitude: float, frequency=(0.40, 0.39)) -> torch.Tensor:
    """`image` plus a diagonal cross-hatch: the periodic texture of metrics.hatch_score."""
    rows, cols = torch.meshgrid(torch.arange(image.shape[-2]), torch.arange(image.shape[-1]), indexing="ij")
    fy, fx = frequency
    hatch = torch.cos(2 * torch.pi * (fy * rows + fx * cols)) + torch.cos(2 * torch.pi * (fy * rows - fx * cols))
    return image + amplitude / 255 * hatch


@pytest.mark.slow
def test_spectral_excess_sees_a_hatch_and_not_blur_or_the_photos_own_spectrum(photo):
    from perceptual_sr.training.loss import spectral_excess

    photos = photo.repeat(2, 1, 1, 1)
    assert spectral_excess(photos, photos) == 0
    assert spectral_excess(_blur(photos, 1.5), photos) == 0  # less power than the photo costs nothing
    assert spectral_excess(photos + 0.1, photos) == 0  # nor does a brightness shift
    faint, strong = (spectral_excess(_with_hatch(photos, amplitude), photos) for amplitude in (3.0, 12.0))
    assert 0 < faint < strong
    # Texture the photo has costs nothing wherever it lands: turned by 180 degrees every pixel is
    # wrong (the pixel and feature terms see that), but the power spectrum is the photo's.
    turned = photos.flip(-2, -1)
    assert (turned - photos).abs().mean() > 0.1 and spectral_excess(turned, photos) == 0


@pytest.mark.slow
def test_spectral_excess_gradient_removes_the_hatch(photo):
    from perceptual_sr.training.loss import spectral_excess

    hatched = _with_hatch(photo, 12.0)
    output = hatched.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([output], lr=0.5 / 255)
    for _ in range(40):
        optimizer.zero_grad()
        spectral_excess(output, photo).backward()
        optimizer.step()
    output = output.detach()
    assert spectral_excess(output, photo) < spectral_excess(hatched, photo) / 10
    hatch = hatched - photo  # what descent took away is the hatch, not the photo
    assert ((output - photo) * hatch).sum() < 0.3 * (hatch * hatch).sum()  # 0.17 of it left, measured


def test_spectral_excess_inputs_are_checked(photo):
    from perceptual_sr.training.loss import spectral_excess

    with pytest.raises(ValueError, match="one shape"):
        spectral_excess(photo[..., :64, :64], photo)
    with pytest.raises(ValueError, match="at least 16x16"):
        spectral_excess(photo[..., :8, :8], photo[..., :8, :8])


def test_hatch_term_is_reported_weighted_and_refused_when_negative(photo):
    loss = PerceptualLoss("none", hatch_weight=10.0, vgg_weights=None)
    _, terms = loss(_with_hatch(photo, 12.0), photo)
    assert set(terms) == {"hatch"} and terms["hatch"] > 0
    with pytest.raises(ValueError, match="hatch=-1"):
        PerceptualLoss("none", hatch_weight=-1.0, vgg_weights=None)
