"""The adversarial term: a discriminator that tells real photos from the network's output, and its losses.

The VGG feature loss and the pixel loss average over what the low-resolution input leaves
uncertain. On clean bicubic inputs that uncertainty is small; on a JPEG or a noisy photo it is
large, and the real-photo weights learned to answer it with smooth surfaces (LPIPS 0.68x
bicubic's on clean BSD68 against the default's 0.58x). An adversarial term rewards output that
a discriminator cannot tell from real photos, texture included: Real-ESRGAN's recipe (Wang et al.
2021, training details) of L1 + perceptual + 0.1 x GAN loss, with its U-Net discriminator with spectral
normalisation (its "networks" section), which judges every pixel rather than the whole crop, so it can say
where the output looks wrong.

`Critic` holds the discriminator, its optimizer and the weight of the term; `train_step` calls
`generator_loss` inside the network's step and `update` after it. Its weights and optimizer state
travel in the run's checkpoint (`checkpoint.save_checkpoint`), so `--resume` stays exact.
The discriminator is for training only: it is never shipped with the model.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class UNetDiscriminator(nn.Module):
    """Real-ESRGAN's `UNetDiscriminatorSN`: three stride-2 stages down, three bilinear x2 stages up
    with skip connections, spectral norm on every inner convolution; one realness logit per pixel.

    features: width of the first stage (Real-ESRGAN: 64; a quarter of the cost at 32).
    Input: RGB in [0, 1], height and width multiples of 8.
    """

    def __init__(self, features: int = 32) -> None:
        super().__init__()
        if features < 1:
            raise ValueError(f"discriminator features must be >= 1, got {features!r}")
        f = features

        def down(c_in: int, c_out: int) -> nn.Module:
            return spectral_norm(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=False))

        def same(c_in: int, c_out: int) -> nn.Module:
            return spectral_norm(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False))

        self.stem = nn.Conv2d(3, f, 3, padding=1)
        self.down1, self.down2, self.down3 = down(f, 2 * f), down(2 * f, 4 * f), down(4 * f, 8 * f)
        self.up3, self.up2, self.up1 = same(8 * f, 4 * f), same(4 * f, 2 * f), same(2 * f, f)
        self.refine1, self.refine2 = same(f, f), same(f, f)
        self.logits = nn.Conv2d(f, 1, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-2] % 8 or image.shape[-1] % 8:
            raise ValueError(f"the discriminator needs crops whose sides are multiples of 8, got {tuple(image.shape)}")
        act = lambda x: F.leaky_relu(x, 0.2)  # noqa: E731
        up = lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
        x0 = act(self.stem(image))
        x1 = act(self.down1(x0))
        x2 = act(self.down2(x1))
        x3 = act(self.down3(x2))
        x = act(self.up3(up(x3))) + x2
        x = act(self.up2(up(x))) + x1
        x = act(self.up1(up(x))) + x0
        x = act(self.refine2(act(self.refine1(x))))
        return self.logits(x)  # (B, 1, H, W)


def _realness_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """The standard (non-saturating) GAN loss, Real-ESRGAN's `vanilla`: BCE of every pixel's logit."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 1.0 if real else 0.0))


class Critic:
    """The discriminator in training: its network, its Adam optimizer and the term's weight."""

    def __init__(self, weight: float, features: int, learning_rate: float, device: torch.device,
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:
        if not weight > 0:
            raise ValueError(f"the adversarial weight must be > 0, got {weight!r}")
        self.weight = weight
        self.network = UNetDiscriminator(features).to(device, memory_format=memory_format).train()
        # Real-ESRGAN trains both networks with Adam (0.9, 0.99) at the same rate.
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=learning_rate, betas=(0.9, 0.99))

    def generator_loss(self, output: torch.Tensor) -> torch.Tensor:
        """The weighted term for the super-resolution network: its output should read as real.
        The discriminator's own weights get no gradient from it."""
        self.network.requires_grad_(False)
        try:
            return self.weight * _realness_loss(self.network(output), real=True)
        finally:
            self.network.requires_grad_(True)

    def update(self, output: torch.Tensor, high_res: torch.Tensor, learning_rate: float,
               autocast_context: Any) -> torch.Tensor:
        """One discriminator step on this batch (real: the HR crops, fake: the detached output);
        returns its loss. `autocast_context` is the training step's precision context."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        with autocast_context:
            loss = (_realness_loss(self.network(high_res), real=True)
                    + _realness_loss(self.network(output.detach()), real=False))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()
