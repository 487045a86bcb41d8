"""`TrainConfig`: a training run's settings, saved with every checkpoint (never in the model's config.json).

Each field is a `train.py` flag (perceptual_sr.utils.config_flags). Fields marked `resumable` are the
settings a resumed run may change: how long it runs and how it reports, never what it learns
(`checkpoint.check_resumable` refuses any other change).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from perceptual_sr.data.degradations import PRESETS
from perceptual_sr.training.loss import parse_feature_weights
from perceptual_sr.utils.config_flags import setting
from perceptual_sr.utils.runtime import PRECISIONS

LR_SCHEDULES = ("constant", "cosine")
DEGRADATION_CHOICES = ("prepared", *PRESETS)

# Fields renamed since checkpoints were first written: old name -> new name.
RENAMED_FIELDS = {"lr": "learning_rate"}


@dataclass
class TrainConfig:
    """Run settings, saved with every checkpoint (never in the model's config.json)."""

    data: str = setting("", "folder written by prepare_data.py")
    output_dir: str = setting("runs/perceptual-sr-x4", "run folder: logs, checkpoint/, then the final model",
                              resumable=True)
    val_dir: str | None = setting(None, "folder of HR images (e.g. Set5) validated with the held-out split")
    epochs: float = setting(2.0, "passes over the prepared training pairs", resumable=True)
    steps: int | None = setting(None, "updates to run; overrides --epochs", resumable=True)
    batch_size: int = setting(4, "samples per update and process")
    learning_rate: float = setting(1e-3, "Adam learning rate (the peak, with a schedule)", aliases=("--lr",))
    lr_schedule: str = setting("constant", "constant, or cosine decay to 0 after --warmup-steps of linear warm-up",
                               choices=LR_SCHEDULES)
    warmup_steps: int = setting(0, "updates of linear learning-rate warm-up")
    ema_decay: float = setting(0.0, "exponential moving average of the weights (0: off); validated and shipped when on")
    feature_layers: str = setting("relu2_2", 'VGG-16 layers and weights: "relu2_2", "relu2_2:1,relu3_3:0.5", '
                                             'or "none" (pixel loss only)')
    tv_weight: float = setting(1e-5, "total-variation weight (Johnson et al. tuned 1e-6 to 1e-4)")
    pixel_weight: float = setting(0.0, "pixel MSE weight")
    grid_weight: float = setting(0.0, "penalty on the error's 2/4-px periodic component (loss.periodic_error)")
    hatch_weight: float = setting(0.0, "penalty on output power the target lacks at any frequency above 0.05 "
                                       "cycles/px, such as a painted cross-hatch (loss.spectral_excess)")
    adversarial_weight: float = setting(0.0, "weight of the adversarial term (adversarial.py; 0: off). Real-ESRGAN "
                                             "uses 0.1 beside L1 and perceptual terms of weight 1")
    discriminator_features: int = setting(32, "width of the U-Net discriminator's first stage (Real-ESRGAN: 64)")
    crop_size: int | None = setting(None, "random HR crop per sample, a multiple of scale; none: whole pairs")
    degradation: str = setting("prepared", "prepared: the LR the dataset holds; a preset of degradations.py "
                                           f"({', '.join(PRESETS)}): each HR crop degraded on the fly, seeded "
                                           "by the step",
                               choices=DEGRADATION_CHOICES)
    init_from: str | None = setting(None, "start from these weights (a save_pretrained folder) instead of random")
    # Resumable as a setting, because a resume compares the precision it resolves to (recorded in
    # the checkpoint), not the word: "auto" and "bf16" are the same recipe where auto means bf16.
    precision: str = setting("auto", "auto: bf16 autocast on CUDA GPUs with bf16 (else fp16) and on CPUs with "
                                     "AMX, else fp32; decided by the hardware alone, so a recipe always trains "
                                     "alike on one machine (--resume keeps the precision a run started in)",
                             choices=PRECISIONS, resumable=True)
    channels_last: bool = setting(True, "channels_last memory format")
    compile: bool = setting(False, "torch.compile the network", resumable=True)
    device: str = setting("auto", "auto, cpu, cuda, cuda:N or mps", resumable=True)
    workers: int = setting(2, "DataLoader worker processes", resumable=True)
    seed: int = setting(0, "initial weights, sample order, crops and flips")
    log_every: int = setting(10, "updates between log.csv rows", resumable=True)
    checkpoint_every: int = setting(250, "updates between checkpoints", resumable=True)
    val_every: int = setting(250, "updates between validations", resumable=True)
    val_images: int = setting(0, "validate on the first N images of each set (0: all)", resumable=True)
    validate_at_start: bool = setting(True, "score the starting weights first, as a baseline", resumable=True)
    resume: bool = setting(False, "continue the checkpoint in --output-dir (the recipe must match)", resumable=True)
    push_to_hub: str | None = setting(None, "Hub repo id to upload the final model to", resumable=True)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}")
        if not self.learning_rate > 0 or not math.isfinite(self.learning_rate):
            raise ValueError(f"learning_rate must be a finite number > 0, got {self.learning_rate!r}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps!r}")
        if self.steps is None and not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise ValueError(f"epochs must be a finite number > 0, got {self.epochs!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.degradation not in DEGRADATION_CHOICES:
            raise ValueError(f"degradation must be one of {DEGRADATION_CHOICES}, got {self.degradation!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("tv_weight", "pixel_weight", "grid_weight", "hatch_weight", "adversarial_weight"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.crop_size is not None and self.crop_size < 8:
            raise ValueError(f"crop_size must be >= 8, got {self.crop_size!r}")
        if self.discriminator_features < 1:
            raise ValueError(f"discriminator_features must be >= 1, got {self.discriminator_features!r}")
        if self.adversarial_weight and (self.crop_size is None or self.crop_size % 8):
            raise ValueError(f"an adversarial term needs --crop-size a multiple of 8 (the discriminator halves "
                             f"it three times), got {self.crop_size!r}")
        if self.push_to_hub is not None:  # refused now, not after hours of training
            from huggingface_hub.errors import HFValidationError
            from huggingface_hub.utils import validate_repo_id

            try:
                validate_repo_id(self.push_to_hub)
            except HFValidationError as error:
                raise ValueError(f"push_to_hub must be a Hub repo id such as you/perceptual-sr-x4, got "
                                 f"{self.push_to_hub!r} ({error})") from None
        for name in ("log_every", "checkpoint_every", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers!r}")
        if not parse_feature_weights(self.feature_layers) and self.pixel_weight == 0:
            raise ValueError("with --feature-layers none, set --pixel-weight above 0: there would be nothing to learn")


def resumable_fields() -> frozenset[str]:
    """The TrainConfig settings a resumed run may change."""
    return frozenset(spec.name for spec in dataclasses.fields(TrainConfig) if spec.metadata.get("resumable"))


def learning_rate_at(step: int, total: int, config: TrainConfig) -> float:
    """The learning rate for the update after `step` updates (a pure function: resume is exact)."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return config.learning_rate
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
