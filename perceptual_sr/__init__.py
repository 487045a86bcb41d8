"""perceptual_sr: 4x photo super-resolution with a perceptual (VGG-16 feature) loss."""

from perceptual_sr.loss import PerceptualLoss, VGG16Features
from perceptual_sr.model import PerceptualSR, SRConfig

__all__ = ["PerceptualSR", "SRConfig", "PerceptualLoss", "VGG16Features"]
__version__ = "0.1.0"
