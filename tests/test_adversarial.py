"""The adversarial term: the discriminator learns to tell real from fake, and the network's term
reaches the network only (training runs with it: test_training.py)."""

import pytest
import torch

from perceptual_sr.networks.discriminator import Critic, UNetDiscriminator
from perceptual_sr.training.config import TrainConfig
from perceptual_sr.utils.runtime import autocast

CPU = torch.device("cpu")


def test_the_discriminator_judges_every_pixel_and_says_what_crops_it_needs():
    torch.manual_seed(0)
    logits = UNetDiscriminator(features=4)(torch.rand(2, 3, 24, 40))
    assert logits.shape == (2, 1, 24, 40)
    with pytest.raises(ValueError, match="multiples of 8"):
        UNetDiscriminator(features=4)(torch.rand(1, 3, 20, 24))
    with pytest.raises(ValueError, match="features"):
        UNetDiscriminator(features=0)


@pytest.mark.slow
def test_the_discriminator_learns_to_tell_sharp_photos_from_smooth_output():
    torch.manual_seed(0)
    critic = Critic(0.1, features=8, learning_rate=1e-3, device=CPU)
    real = torch.rand(4, 3, 32, 32)  # fine texture
    fake = torch.nn.functional.avg_pool2d(torch.rand(4, 3, 32, 32), 4).repeat_interleave(4, -1).repeat_interleave(4, -2)
    losses = [critic.update(fake, real, 1e-3, autocast(CPU, None)).item() for _ in range(40)]
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        assert critic.network(real).mean() > critic.network(fake).mean()


def test_the_generator_term_trains_the_output_and_leaves_the_discriminator_alone():
    torch.manual_seed(0)
    critic = Critic(0.5, features=4, learning_rate=1e-3, device=CPU)
    output = torch.rand(2, 3, 16, 16, requires_grad=True)
    term = critic.generator_loss(output)
    term.backward()
    assert output.grad is not None and output.grad.abs().sum() > 0
    assert all(parameter.grad is None for parameter in critic.network.parameters())
    assert all(parameter.requires_grad for parameter in critic.network.parameters())  # the next update trains it
    # 0.5 x the BCE of "real" on every pixel's logit
    expected = 0.5 * torch.nn.functional.softplus(-critic.network(output.detach())).mean()
    torch.testing.assert_close(term.detach(), expected)


def test_the_adversarial_settings_are_checked_at_once():
    with pytest.raises(ValueError, match="adversarial_weight"):
        TrainConfig(adversarial_weight=-0.1, crop_size=32)
    with pytest.raises(ValueError, match="multiple of 8"):
        TrainConfig(adversarial_weight=0.1, crop_size=36)
    with pytest.raises(ValueError, match="multiple of 8"):
        TrainConfig(adversarial_weight=0.1)  # whole pairs: any size
    with pytest.raises(ValueError, match="discriminator_features"):
        TrainConfig(discriminator_features=0)
