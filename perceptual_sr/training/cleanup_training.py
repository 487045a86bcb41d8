"""Training of the cleanup network (`networks.restorer.CleanupNet`), in two stages.

Stage "lr" (A): the degraded LR goes in, the clean bicubic LR is the target, Charbonnier loss at
LR. No VGG, so it is fast on a CPU; it teaches *what* damage is.
Stage "hr" (B): the cleaned LR goes through the frozen upscaler, and the perceptual loss (VGG-16
relu2_2 + pixel MSE, as the upscaler's own recipe) is taken on the HR output against the true HR,
with stage A's loss kept as deep supervision at LR. An L1 cleanup alone is smoother than a clean
LR and the upscaler then paints less (measured in issue #34: LPIPS worse than no cleanup); this
stage teaches the cleanup what the upscaler needs. Its target is the true HR, or with `hr_target`
"clean" the frozen upscaler's output on the clean LR: what a perfect cleanup would give. Through
the frozen upscaler, that target holds nothing the cleanup cannot reach (the upscaler's own error
is in both), so there is no reward for feeding it something other than a clean LR, such as the
cross-hatch a cleanup learnt to feed it against the true HR (`hatch_weight`). With
`upscaler_learning_rate` the upscaler is fine-tuned behind the cleanup too (issue #34's
prototype: the cleanup of such a joint run did better in front of the *unchanged* default than one
trained through the frozen default), and is saved as `upscaler/` beside the cleanup network.

In either stage, `adversarial_weight` adds a discriminator that tells the cleaned LR from the
clean one (`networks.discriminator`, judged at LR where it is cheap): what the smooth losses
average away, it rewards as texture. In stage B it can judge the upscaled output instead
(`adversarial_on` "hr"): the upscaler's output on the cleaned LR against its output on the clean
LR, so what it rewards is what a perfect cleanup gives, as seen where people look.

With `select_on` (a folder of photos, e.g. Set5), each checkpoint is scored by LPIPS on the HR
output (`cleanup_selection`), and the best so far is kept in `best/`: stage B improves and then
goes back as it trains on.

Every sample is degraded on the fly (`degradations.degrade_realistic`, a preset such as
"upload"), and its strength is read off the degraded LR by the rule `cleanup="auto"` applies to
files (`auto_cleanup.cleanup_strength`: the last JPEG's quality when the file ends as a JPEG,
and the noise estimate), so training and `auto` agree. A share `clean_share` of samples is a
clean LR at a random strength with itself as the target: a cleanup forced onto a clean photo
must leave it alone. Sample k of the run is made from seed k, so a resumed run is exact.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import functools
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from perceptual_sr.data.dataset import SRPairDataset
from perceptual_sr.data.degradations import PRESETS, degrade_realistic_with_record
from perceptual_sr.inference.auto_cleanup import cleanup_strength, noise_sigma
from perceptual_sr.networks.discriminator import Critic
from perceptual_sr.networks.restorer import CleanupConfig, CleanupNet
from perceptual_sr.networks.upscaler import PerceptualSR
from perceptual_sr.training.cleanup_selection import SELECTION_LOG, CheckpointSelection
from perceptual_sr.training.loss import PerceptualLoss, periodic_error, spectral_excess
from perceptual_sr.utils.atomic_write import atomic_folder, recover_folder, write_text
from perceptual_sr.utils.color import luma_plane, rgb_to_grey
from perceptual_sr.utils.config_flags import setting
from perceptual_sr.utils.interrupts import interrupts_deferred

STAGES = ("lr", "hr")
HR_TARGETS = ("photo", "clean")
ADVERSARIAL_PLACES = ("lr", "hr")
CHECKPOINT_DIR = "checkpoint"
TRAINING_STATE = "training_state.pt"
UPSCALER_DIR = "upscaler"
LOG_FIELDS = ("step", "samples", "loss", "lr_loss", "perceptual", "strength", "seconds", "adversarial",
              "discriminator")


@dataclass(frozen=True)
class CleanupTrainConfig:
    """Run settings of a cleanup training; saved with its checkpoints."""

    data: str = setting("", "a folder written by prepare_data.py (--degradation bicubic: its LR is the target)")
    output_dir: str = setting("runs/cleanup", "run folder: checkpoint, log.csv and the final network")
    stage: str = setting("lr", "lr: Charbonnier at LR (stage A); hr: perceptual loss through the upscaler (B)",
                         choices=STAGES)
    upscaler: str | None = setting(None, "model folder of the upscaler that stage hr trains through and selection "
                                         "scores in front of (none: the bundled default)")
    hr_target: str = setting("photo", "stage hr: what the HR output is compared with: photo (the true HR) or clean "
                                      "(the upscaler's output on the clean LR: what a perfect cleanup gives)",
                             choices=HR_TARGETS)
    init_from: str | None = setting(None, "start from this saved cleanup network (e.g. stage A's run folder)")
    degradation: str = setting("upload", "degradation preset of the training inputs", choices=tuple(PRESETS))
    clean_share: float = setting(0.1, "share of clean inputs at a random strength, left unchanged")
    steps: int = setting(2000, "optimizer steps")
    batch_size: int = setting(16, "samples per step")
    lr_crop: int = setting(48, "LR side of a sample, in pixels (the HR crop is scale times it)")
    learning_rate: float = setting(2e-4, "Adam learning rate (cosine decay to 0)")
    upscaler_learning_rate: float = setting(0.0, "stage hr: also fine-tune the upscaler behind the cleanup at this "
                                                 "rate (0: it stays frozen)")
    lr_weight: float = setting(1.0, "weight of the Charbonnier term at LR (stage hr: deep supervision)")
    feature_layers: str = setting("relu2_2", "VGG-16 layers of the perceptual term (stage hr) and of "
                                             "--lr-feature-weight")
    pixel_weight: float = setting(10.0, "pixel MSE weight of the perceptual term (stage hr)")
    # The bundled upscaler's own final recipe (docs/training.md, stage 6): without these terms the
    # feature loss rewards a diagonal cross-hatch, and a cleanup trained through the frozen upscaler
    # learns to feed it one (measured: hatch 0.1 -> 1.0 on Set5 JPEG 75 after 2,000 samples).
    hatch_weight: float = setting(10.0, "spectral cross-hatch penalty of the perceptual term (stage hr)")
    grid_weight: float = setting(30000.0, "4-pixel grid penalty of the perceptual term (stage hr)")
    # The Charbonnier and feature terms average over what the damage left uncertain, and a smooth LR
    # makes the upscaler paint less (stage A alone is worse than no cleanup). A discriminator that
    # tells the cleaned LR from the clean one rewards texture instead, at LR where it is cheap.
    adversarial_weight: float = setting(0.0, "weight of an adversarial term (0: none); --adversarial-on says what "
                                             "its discriminator judges")
    # Measured at LR: the cleanup painted a grid the upscaler magnified. Judged on the upscaled
    # output, the discriminator sees what the grid (or any texture) becomes.
    adversarial_on: str = setting("lr", "what the discriminator judges: lr (the cleaned LR against the clean LR) or, "
                                        "in stage hr, hr (the upscaled output against the upscaler's output on the "
                                        "clean LR)", choices=ADVERSARIAL_PLACES)
    discriminator_features: int = setting(32, "width of the discriminator's first stage (adversarial term)")
    # Measured: with the adversarial term alone the cleanup painted a fine grid that the upscaler
    # magnified (Set5 JPEG 75 hatch 0.14 -> 0.66), on clean inputs too when forced. These are the
    # upscaler's own texture penalties (`training.loss`), taken at LR against the clean LR; the grid's
    # period is the cleanup's pixel-shuffle factor, 2.
    lr_hatch_weight: float = setting(0.0, "spectral excess penalty of the cleaned LR against the clean LR")
    lr_grid_weight: float = setting(0.0, "2-pixel grid penalty of the cleaned LR against the clean LR")
    # The Charbonnier term's optimum is the average of what the damage hides, smoother than a clean
    # LR; a feature term at LR (Johnson et al.'s loss, at a sixteenth of stage hr's cost) averages in
    # VGG's space instead. Measured (docs/training.md, cleanup-n): it smoothed as much (the top band's
    # power fell 20%, as under Charbonnier alone), and LPIPS got worse.
    lr_feature_weight: float = setting(0.0, "weight of a VGG-16 feature term (--feature-layers) of the cleaned LR "
                                            "against the clean LR (logged as perceptual)")
    checkpoint_every: int = setting(100, "steps between checkpoints")
    select_on: str | None = setting(None, "a folder of photos (e.g. Set5); each checkpoint is scored by "
                                          "LPIPS on their JPEG 75 and noise LRs, and the best is kept in best/")
    select_images: int = setting(10, "photos of --select-on scored at each checkpoint")
    log_every: int = setting(25, "steps between log.csv rows")
    seed: int = setting(0, "seed of the sample order and the degradations")
    workers: int = setting(1, "processes that degrade samples while the network trains")
    resume: bool = setting(False, "continue the run in --output-dir from its checkpoint")

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.hr_target not in HR_TARGETS:
            raise ValueError(f"hr_target must be one of {HR_TARGETS}, got {self.hr_target!r}")
        if self.adversarial_on not in ADVERSARIAL_PLACES:
            raise ValueError(f"adversarial_on must be one of {ADVERSARIAL_PLACES}, got {self.adversarial_on!r}")
        if self.adversarial_on == "hr" and self.stage != "hr":
            raise ValueError("--adversarial-on hr needs stage hr (stage lr runs no upscaler)")
        if self.adversarial_on == "hr" and not self.adversarial_weight:
            raise ValueError("--adversarial-on hr needs an --adversarial-weight above 0 (there is no discriminator)")
        if self.degradation not in PRESETS:
            raise ValueError(f"degradation must be one of {sorted(PRESETS)}, got {self.degradation!r}")
        for name in ("steps", "batch_size", "lr_crop", "checkpoint_every", "log_every", "select_images",
                     "discriminator_features"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.lr_crop < 8:
            raise ValueError(f"lr_crop must be at least 8 (one JPEG block), got {self.lr_crop}")
        if not 0.0 <= self.clean_share <= 1.0:
            raise ValueError(f"clean_share must be in [0, 1], got {self.clean_share!r}")
        for name in ("learning_rate", "upscaler_learning_rate", "lr_weight", "pixel_weight", "hatch_weight",
                     "grid_weight", "adversarial_weight", "lr_hatch_weight", "lr_grid_weight", "lr_feature_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.stage == "lr" and (self.upscaler_learning_rate or self.hr_target != "photo"):
            raise ValueError("--upscaler-learning-rate and --hr-target need stage hr (stage lr runs no upscaler)")
        if (self.lr_hatch_weight or self.lr_grid_weight) and self.lr_crop < 16:
            raise ValueError(f"the LR texture penalties need an lr_crop of at least 16, got {self.lr_crop}")
        if self.adversarial_weight and self.lr_crop % 8:
            raise ValueError(f"the discriminator needs an lr_crop that is a multiple of 8, got {self.lr_crop}")
        if self.select_on is not None and not (self.select_on and Path(self.select_on).is_dir()):
            raise ValueError(f"--select-on: {self.select_on!r} is not a folder")


# --- samples ---------------------------------------------------------------------------------


def strength_of(lr: torch.Tensor, record: list[str]) -> float:
    """What `cleanup="auto"` would choose for the degraded (3, h, w) LR `lr`: the last JPEG's
    quality counts when the file ends as that JPEG (nothing resized it after), and the noise
    estimate always."""
    last = record[-1] if record else ""
    match = re.fullmatch(r"jpeg q(\d+)", last)
    quality = int(match.group(1)) if match else None
    grey = rgb_to_grey(lr.permute(1, 2, 0).double().numpy() * 255.0)
    return cleanup_strength(quality, noise_sigma(grey))


class DegradedSamples(Dataset):
    """Sample k of a run: (degraded LR, clean LR, HR, strength), made from seed `seed + k`.

    A random crop of `lr_crop` LR pixels (and the HR under it) of a random pair of `pairs`, a
    random flip/rotation, then the degradation preset (or, for a share `clean_share`, the clean
    LR itself at a random strength)."""

    def __init__(self, pairs: SRPairDataset, config: CleanupTrainConfig) -> None:
        self.pairs, self.config = pairs, config
        self.scale = int(pairs.manifest["scale"])
        if int(pairs.manifest["lr_size"]) < config.lr_crop:
            raise ValueError(f"lr_crop {config.lr_crop} is larger than the dataset's LR side "
                             f"{pairs.manifest['lr_size']}; prepare the data with a larger --hr-size")
        self.preset = PRESETS[config.degradation]

    def __len__(self) -> int:
        return 2 ** 62

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + k)
        while True:
            sample = self._draw(generator)
            # At strength 0 the network returns its input exactly and learns nothing from the sample:
            # through the upscaler and VGG (stage hr) such a sample would cost a full step for nothing.
            if self.config.stage == "lr" or sample[3] > 0:
                return sample

    def _draw(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        clean_lr, hr = self.pairs[int(torch.randint(len(self.pairs), (), generator=generator))]
        crop, side = self.config.lr_crop, clean_lr.shape[-1]
        top, left = (int(torch.randint(side - crop + 1, (), generator=generator)) for _ in range(2))
        clean_lr = clean_lr[:, top:top + crop, left:left + crop]
        hr = hr[:, top * self.scale:(top + crop) * self.scale, left * self.scale:(left + crop) * self.scale]
        turns, flip = int(torch.randint(4, (), generator=generator)), bool(torch.randint(2, (), generator=generator))
        clean_lr, hr = (torch.rot90(image.flip(-1) if flip else image, turns, (1, 2)).contiguous()
                        for image in (clean_lr, hr))
        if torch.rand((), generator=generator) < self.config.clean_share:
            return clean_lr, clean_lr, hr, torch.rand((), generator=generator)
        # The chain's own clean share is the bicubic LR of the HR: the dataset's LR, strength 0.
        degraded, record = degrade_realistic_with_record(hr, self.scale, generator, self.preset)
        return degraded, clean_lr, hr, torch.tensor(strength_of(degraded, record))


def sample_batches(samples: DegradedSamples, config: CleanupTrainConfig, start_step: int
                   ) -> Iterator[tuple[torch.Tensor, ...]]:
    """Batches of steps start_step, start_step + 1, ...: batch s holds samples s*B .. s*B + B - 1."""
    indices = range(start_step * config.batch_size, config.steps * config.batch_size)
    loader = DataLoader(torch.utils.data.Subset(samples, indices), batch_size=config.batch_size,
                        num_workers=config.workers, persistent_workers=False)
    yield from loader


def reachable_target(network: CleanupNet, degraded: torch.Tensor, clean_lr: torch.Tensor) -> torch.Tensor:
    """What a perfect cleanup by `network` would give: the clean LR, or for a colour-only network
    the clean LR's colour on the input's own luma. Every LR term and the discriminator compare with
    it, so none asks for what the network cannot change: Charbonnier's gradient is close to a sign
    per channel, and a luma error would swamp the colour's (measured against the clean LR: no gain
    in 4,000 samples); a discriminator would tell the input's luma from the clean one's and teach
    nothing about colour."""
    if network.config.corrects != "chroma":
        return clean_lr
    return clean_lr + luma_plane(degraded - clean_lr)  # R, G, B alike: luma only


def charbonnier(output: torch.Tensor, target: torch.Tensor, epsilon: float = 1e-3) -> torch.Tensor:
    """A smooth L1 (Charbonnier 1994; as in EDVR and SwinIR's restoration losses)."""
    return torch.sqrt((output - target) ** 2 + epsilon ** 2).mean()


# --- the run ---------------------------------------------------------------------------------


@dataclass
class _Learner:
    """What a step trains and what it trains against."""

    network: CleanupNet
    optimizer: torch.optim.Optimizer
    base_rates: list[float]  # of the optimizer's groups, before the schedule
    reference: PerceptualSR | None = None  # the frozen upscaler: selection scores in front of it
    upscaler: PerceptualSR | None = None  # what stage hr trains through: the reference or its trained copy
    perceptual: PerceptualLoss | None = None
    lr_features: PerceptualLoss | None = None  # the feature term at LR
    critic: Critic | None = None

    @property
    def trained_upscaler(self) -> PerceptualSR | None:
        """The upscaler fine-tuned behind the cleanup, if the recipe fine-tunes one."""
        return self.upscaler if self.upscaler is not self.reference else None


def train_cleanup(config: CleanupTrainConfig, network_config: CleanupConfig | None = None) -> CleanupNet:
    """Run (or resume) a cleanup training as `config` says; returns the trained network, also
    saved with `save_pretrained` into `config.output_dir`."""
    torch.manual_seed(config.seed)
    out_dir = Path(config.output_dir)
    checkpoint_dir = out_dir / CHECKPOINT_DIR
    state = None
    if config.resume:
        recover_folder(checkpoint_dir)
        if not (checkpoint_dir / TRAINING_STATE).is_file():
            raise FileNotFoundError(f"--resume: no checkpoint in {checkpoint_dir}; run without --resume to start fresh")
        state = _read_checkpoint(checkpoint_dir, config)
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; pass --resume to continue its run, or choose a new "
                              "--output-dir (nothing there is overwritten)")
    samples = DegradedSamples(SRPairDataset(config.data, "train"), config)
    learner = _set_up(config, network_config, samples.scale, checkpoint_dir, state)
    step = 0
    if state is not None:
        step = int(state["step"])
        _keep_log_rows_up_to(out_dir / "log.csv", step, LOG_FIELDS)  # rows after the checkpoint are logged again
        _keep_log_rows_up_to(out_dir / SELECTION_LOG, step)
    selection = (CheckpointSelection(config.select_on, config.select_images, learner.reference, out_dir)
                 if config.select_on else None)
    save_networks = functools.partial(_save_networks, learner=learner)  # what best/ gets
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "train_config.json", json.dumps(dataclasses.asdict(config), indent=2))
    log_path = out_dir / "log.csv"
    new_log = not log_path.exists()
    with log_path.open("a", newline="") as log_file, tqdm(total=config.steps, initial=step, unit="step") as bar:
        log = csv.writer(log_file)
        if new_log:
            log.writerow(LOG_FIELDS)
        started, totals, window = time.monotonic(), np.zeros(6), 0
        try:
            if selection is not None and not selection.has_scored(step):  # the start is a candidate too
                selection.score(step, learner.network, save_networks)
            for batch in sample_batches(samples, config, step):
                with interrupts_deferred():  # a step is taken whole, or not at all
                    totals += _train_step(learner, config, batch, step)
                    step += 1
                window += 1
                bar.update(1)
                if step % config.log_every == 0 or step == config.steps:
                    means = totals / window
                    log.writerow([step, step * config.batch_size, *(f"{v:.6f}" for v in means[:4]),
                                  f"{time.monotonic() - started:.1f}", *(f"{v:.6f}" for v in means[4:])])
                    log_file.flush()
                    bar.set_postfix(loss=f"{means[0]:.4f}")
                    totals[:], window = 0, 0
                if step % config.checkpoint_every == 0 or step == config.steps:
                    # Scored before the checkpoint is taken: a run stopped before its row is written
                    # scores that step again when it resumes (`has_scored`).
                    if selection is not None:
                        selection.score(step, learner.network, save_networks)
                    _save_checkpoint(checkpoint_dir, learner, step, config)
        except KeyboardInterrupt:
            _save_checkpoint(checkpoint_dir, learner, step, config)
            raise
    learner.network.eval()
    _save_networks(out_dir, learner)
    return learner.network


def _set_up(config: CleanupTrainConfig, network_config: CleanupConfig | None, scale: int, checkpoint_dir: Path,
            state: dict[str, Any] | None) -> _Learner:
    """The networks, losses and optimizers of the run, as the checkpoint left them when resuming
    (`state`), else fresh."""
    if state is not None:  # the checkpoint's own architecture, whatever the flags say
        network = CleanupNet.from_pretrained(checkpoint_dir)
    elif config.init_from:
        network = CleanupNet.from_pretrained(config.init_from)
    else:
        network = CleanupNet(network_config)
    network.train()
    critic = None
    if config.adversarial_weight:  # built before loading anything that draws random numbers, so
        # whether a run selects does not change where its discriminator starts
        critic = Critic(config.adversarial_weight, config.discriminator_features, config.learning_rate,
                        torch.device("cpu"))
    reference = upscaler = perceptual = None
    if config.stage == "hr" or config.select_on:  # trained through, or what selection scores in front of
        reference = PerceptualSR.from_pretrained(config.upscaler).eval().requires_grad_(False)
        if config.stage == "hr" and reference.scale != scale:
            raise ValueError(f"the upscaler is x{reference.scale}, the data x{scale}")
    if config.stage == "hr":
        upscaler = reference
        if config.upscaler_learning_rate > 0:  # a trained copy; the reference stays what selection scores
            # Kept in eval mode: its BatchNorm statistics stay the default's, so the gradient the cleanup
            # gets is that of the network as it runs (a batch of 8 small crops is a poor statistic).
            upscaler = (PerceptualSR.from_pretrained(checkpoint_dir / UPSCALER_DIR) if state is not None
                        else copy.deepcopy(reference)).eval().requires_grad_(True)
        perceptual = PerceptualLoss(config.feature_layers, pixel_weight=config.pixel_weight,
                                    hatch_weight=config.hatch_weight, grid_weight=config.grid_weight)
    lr_features = PerceptualLoss(config.feature_layers) if config.lr_feature_weight else None
    groups = [{"params": list(network.parameters()), "lr": config.learning_rate}]
    if upscaler is not None and upscaler is not reference:
        groups.append({"params": list(upscaler.parameters()), "lr": config.upscaler_learning_rate})
    optimizer = torch.optim.Adam(groups)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        if critic is not None:
            critic.network.load_state_dict(state["critic"])
            critic.optimizer.load_state_dict(state["critic_optimizer"])
    return _Learner(network, optimizer, [group["lr"] for group in groups], reference, upscaler, perceptual,
                    lr_features, critic)


def _train_step(learner: _Learner, config: CleanupTrainConfig, batch: tuple[torch.Tensor, ...],
                step: int) -> list[float]:
    """One optimizer step (and one discriminator step) on `batch`; returns the logged terms: loss,
    Charbonnier at LR, perceptual, mean strength, adversarial, discriminator."""
    degraded, clean_lr, hr, strength = batch
    rate = 0.5 * (1 + math.cos(math.pi * step / config.steps))
    for group, base_rate in zip(learner.optimizer.param_groups, learner.base_rates):
        group["lr"] = base_rate * rate
    cleaned = learner.network(degraded, strength)
    target = reachable_target(learner.network, degraded, clean_lr)  # what every LR term compares with
    lr_loss = charbonnier(cleaned, target)
    loss, perceptual_term = config.lr_weight * lr_loss, torch.zeros(())
    if config.lr_hatch_weight:
        loss = loss + config.lr_hatch_weight * spectral_excess(cleaned, target)
    if config.lr_grid_weight:
        loss = loss + config.lr_grid_weight * periodic_error(cleaned, target, period=2)
    if learner.lr_features is not None:
        perceptual_term = config.lr_feature_weight * learner.lr_features(cleaned, target)[0]
        loss = loss + perceptual_term
    judged, real = cleaned, target  # what the discriminator tells apart
    if learner.upscaler is not None:
        upscaled = learner.upscaler(cleaned)
        if config.hr_target == "clean" or config.adversarial_on == "hr":
            with torch.no_grad():
                upscaled_clean = learner.reference(target)
        hr_term, _ = learner.perceptual(upscaled, upscaled_clean if config.hr_target == "clean" else hr)
        loss, perceptual_term = loss + hr_term, perceptual_term + hr_term
        if config.adversarial_on == "hr":
            judged, real = upscaled, upscaled_clean
    adversarial_term, discriminator_loss = torch.zeros(()), torch.zeros(())
    if learner.critic is not None:
        adversarial_term = learner.critic.generator_loss(judged)
        loss = loss + adversarial_term
    learner.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    learner.optimizer.step()
    if learner.critic is not None:  # then the discriminator, on the output the network just learned from
        discriminator_loss = learner.critic.update(judged, real, config.learning_rate * rate,
                                                   contextlib.nullcontext())
    return [loss.item(), lr_loss.item(), perceptual_term.item(), strength.mean().item(), adversarial_term.item(),
            discriminator_loss.item()]


def _save_networks(folder: Path, learner: _Learner) -> None:
    """What a run ships: the cleanup network, and a co-trained upscaler as `upscaler/`. The
    cleanup network is written last, so a run folder that has one holds the whole pair (the final
    save goes into the run folder itself, beside the logs, and cannot be one folder swap)."""
    if learner.trained_upscaler is not None:
        learner.trained_upscaler.save_pretrained(folder / UPSCALER_DIR)
    learner.network.save_pretrained(folder)


def _save_checkpoint(folder: Path, learner: _Learner, step: int, config: CleanupTrainConfig) -> None:
    with atomic_folder(folder) as staging:
        _save_networks(staging, learner)
        critic = learner.critic
        critic_state = {} if critic is None else {"critic": critic.network.state_dict(),
                                                  "critic_optimizer": critic.optimizer.state_dict()}
        torch.save({"step": step, "optimizer": learner.optimizer.state_dict(), **critic_state,
                    "train_config": json.dumps(dataclasses.asdict(config))}, staging / TRAINING_STATE)


def _keep_log_rows_up_to(path: Path, step: int, header: tuple[str, ...] | None = None) -> None:
    """Drop the rows of log `path` after `step`, and a last row a hard kill cut off (the log is
    appended to: such a row has no line end); a `header` that extends the file's (a run logged
    before columns were added) replaces it, so the rows to come match their header."""
    if path.is_file():
        text = path.read_text()
        rows = text.splitlines()
        if rows and not text.endswith("\n"):
            rows.pop()
        if not rows:
            path.unlink()  # not even a whole header: the run writes a new log
            return
        if header is not None and header[:len(rows[0].split(","))] == tuple(rows[0].split(",")):
            rows[0] = ",".join(header)
        kept = rows[:1] + [row for row in rows[1:] if int(row.split(",", 1)[0]) <= step]
        write_text(path, "\n".join(kept) + "\n")


def _read_checkpoint(folder: Path, config: CleanupTrainConfig) -> dict[str, Any]:
    """The training state of the checkpoint in `folder` (step, optimizer, and the discriminator's
    weights and optimizer when the recipe has one), after checking that `config` is its recipe."""
    try:
        # weights_only: the restricted unpickler (tensors and plain containers only).
        state = torch.load(folder / TRAINING_STATE, map_location="cpu", weights_only=True)
        recipe = json.loads(state["train_config"])
    except Exception as error:  # noqa: BLE001 - a damaged file raises anything
        raise ValueError(f"cannot resume from {folder}: {TRAINING_STATE} is damaged ({type(error).__name__})") from None
    defaults = {f.name: f.default for f in dataclasses.fields(CleanupTrainConfig)}  # of runs saved before a field
    changed = [name for name in ("data", "stage", "degradation", "clean_share", "batch_size", "lr_crop", "seed",
                                 "upscaler", "feature_layers", "pixel_weight", "lr_weight", "hatch_weight",
                                 "grid_weight", "upscaler_learning_rate", "hr_target", "adversarial_weight",
                                 "adversarial_on", "discriminator_features", "lr_hatch_weight", "lr_grid_weight",
                                 "lr_feature_weight")
               if recipe.get(name, defaults[name]) != getattr(config, name)]
    if changed:
        raise ValueError(f"--resume with a different recipe ({', '.join(changed)}); use the original flags "
                         "or start a new run in another --output-dir")
    return state


def config_from(values: dict[str, Any]) -> CleanupTrainConfig:
    return CleanupTrainConfig(**{f.name: values[f.name] for f in dataclasses.fields(CleanupTrainConfig)
                                 if f.name in values})
