"""perceptual_sr: 4x photo super-resolution with a perceptual (VGG-16 feature) loss."""

from perceptual_sr.inference.pipeline import SRPipeline
from perceptual_sr.networks.upscaler import PerceptualSR, SRConfig

__all__ = ["PerceptualSR", "SRConfig", "SRPipeline", "PerceptualLoss", "VGG16Features"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # The training loss pulls in torchvision; upscaling never needs it, so it loads on first use.
    if name in ("PerceptualLoss", "VGG16Features"):
        from perceptual_sr.training import loss
        return getattr(loss, name)
    raise AttributeError(f"module 'perceptual_sr' has no attribute {name!r}")
