"""Training: configuration, the training step, checkpoints and resume, validation and logs.

`train(model_config, train_config)` runs a recipe on a dataset written by `prepare_data.py`, in
one process or under `torchrun` (DistributedDataParallel). It reads top to bottom: set-up
(`setup_run`), then a loop that calls `train_step` and logs, checkpoints and validates, then
`finish`. The reference recipe (Johnson et al. 2016, x4 SR) is VGG-16 relu2_2 feature loss + total
variation, Adam lr 1e-3; docs/training.md records the settings the shipped model was trained with.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from perceptual_sr.data import SRPairDataset, tensor_to_uint8
from perceptual_sr.loss import PerceptualLoss, parse_feature_weights
from perceptual_sr.model import PerceptualSR, SRConfig
from perceptual_sr.prepare import write_json_atomic
from perceptual_sr.runtime import PRECISIONS, autocast, choose_device, resolve_precision

CHECKPOINT_DIR = "checkpoint"
EMA_DIR = "ema"  # inside the checkpoint folder
TRAINING_STATE = "training_state.pt"
LR_SCHEDULES = ("constant", "cosine")
# Settings a resumed run may change: how long it runs and how it reports, never what it learns.
RESUMABLE_CHANGES = ("epochs", "steps", "resume", "workers", "log_every", "checkpoint_every", "val_every",
                     "val_images", "validate_at_start", "push_to_hub", "device", "compile", "output_dir")


def _flag(default: Any, help_text: str, choices: tuple | None = None, aliases: tuple[str, ...] = ()) -> Any:
    """A dataclass field whose help text (and choices, alias flags) `config_flags` turns into the --flag."""
    metadata = {"help": help_text, **({"choices": choices} if choices else {}), **({"aliases": aliases} if aliases else {})}
    return field(default=default, metadata=metadata)


# Fields renamed since checkpoints were first written: old name -> new name.
RENAMED_FIELDS = {"lr": "learning_rate"}


@dataclass
class TrainConfig:
    """Run settings, saved with every checkpoint (never in the model's config.json)."""

    data: str = _flag("", "folder written by prepare_data.py")
    output_dir: str = _flag("runs/perceptual-sr-x4", "run folder: logs, checkpoint/, then the final model")
    val_dir: str | None = _flag(None, "folder of HR images (e.g. Set5) validated with the held-out split")
    epochs: float = _flag(2.0, "passes over the prepared training pairs")
    steps: int | None = _flag(None, "updates to run; overrides --epochs")
    batch_size: int = _flag(4, "samples per update and process")
    learning_rate: float = _flag(1e-3, "Adam learning rate (the peak, with a schedule)", aliases=("--lr",))
    lr_schedule: str = _flag("constant", "constant, or cosine decay to 0 after --warmup-steps of linear warm-up",
                             choices=LR_SCHEDULES)
    warmup_steps: int = _flag(0, "updates of linear learning-rate warm-up")
    ema_decay: float = _flag(0.0, "exponential moving average of the weights (0: off); validated and shipped when on")
    feature_layers: str = _flag("relu2_2", 'VGG-16 layers and weights: "relu2_2", "relu2_2:1,relu3_3:0.5", '
                                           'or "none" (pixel loss only)')
    tv_weight: float = _flag(1e-5, "total-variation weight (Johnson et al. tuned 1e-6 to 1e-4)")
    pixel_weight: float = _flag(0.0, "pixel MSE weight")
    grid_weight: float = _flag(0.0, "penalty on the error's 2/4-px periodic component (loss.periodic_error)")
    crop_size: int | None = _flag(None, "random HR crop per sample, a multiple of scale; none: whole pairs")
    init_from: str | None = _flag(None, "start from these weights (a save_pretrained folder) instead of random")
    precision: str = _flag("auto", "auto: bf16 autocast on CUDA and on CPUs with bf16 hardware, else fp32",
                           choices=PRECISIONS)
    channels_last: bool = _flag(True, "channels_last memory format")
    compile: bool = _flag(False, "torch.compile the network")
    device: str = _flag("auto", "auto, cpu, cuda, cuda:N or mps")
    workers: int = _flag(2, "DataLoader worker processes")
    seed: int = _flag(0, "initial weights, sample order, crops and flips")
    log_every: int = _flag(10, "updates between log.csv rows")
    checkpoint_every: int = _flag(250, "updates between checkpoints")
    val_every: int = _flag(250, "updates between validations")
    val_images: int = _flag(0, "validate on the first N images of each set (0: all)")
    validate_at_start: bool = _flag(True, "score the starting weights first, as a baseline")
    resume: bool = _flag(False, "continue the checkpoint in --output-dir (the recipe must match)")
    push_to_hub: str | None = _flag(None, "Hub repo id to upload the final model to")

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
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("tv_weight", "pixel_weight", "grid_weight"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.crop_size is not None and self.crop_size < 8:
            raise ValueError(f"crop_size must be >= 8, got {self.crop_size!r}")
        for name in ("log_every", "checkpoint_every", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers!r}")
        if not parse_feature_weights(self.feature_layers) and self.pixel_weight == 0:
            raise ValueError("with --feature-layers none, set --pixel-weight above 0: there would be nothing to learn")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# --- Device, precision, distribution -------------------------------------------------------


@dataclass
class Runtime:
    device: torch.device
    rank: int
    world_size: int
    autocast_dtype: torch.dtype | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_runtime(config: TrainConfig) -> Runtime:
    """Pick the device and precision (perceptual_sr.runtime); join the process group under torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = choose_device(config.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed crop sizes: let cuDNN pick its fastest kernels once
    return Runtime(device, rank, world_size, resolve_precision(device, config.precision))


class ResumableSampler(Sampler[int]):
    """Seeded shuffle per epoch, split across ranks, able to start mid-epoch.

    The order depends only on (seed, epoch), so a resumed run sees exactly the samples the
    uninterrupted run would have seen.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        per_rank = self.size // self.world_size  # equal share per rank: DDP needs equal step counts
        mine = order[self.rank * per_rank:(self.rank + 1) * per_rank]
        return iter(mine[self.start:])

    def __len__(self) -> int:
        return self.size // self.world_size - self.start


# --- Augmentation: one crop window and one of the 8 flips/transposes per sample -------------
# Drawn from a generator seeded by the step, rather than in DataLoader workers, so a resumed run
# draws exactly the same augmentations.


def random_crops(low_res: torch.Tensor, high_res: torch.Tensor, scale: int, crop_size: int | None,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """An aligned random crop per sample of a (B, 3, h, w) / (B, 3, h*scale, w*scale) pair."""
    if crop_size is None or (crop_size >= high_res.shape[-1] and crop_size >= high_res.shape[-2]):
        return low_res, high_res
    batch, lr_crop = low_res.shape[0], crop_size // scale
    tops = torch.randint(0, low_res.shape[-2] - lr_crop + 1, (batch,), generator=generator).tolist()
    lefts = torch.randint(0, low_res.shape[-1] - lr_crop + 1, (batch,), generator=generator).tolist()
    low_crops = [low_res[i, :, t:t + lr_crop, l:l + lr_crop] for i, (t, l) in enumerate(zip(tops, lefts))]
    high_crops = [high_res[i, :, t * scale:(t + lr_crop) * scale, l * scale:(l + lr_crop) * scale]
                  for i, (t, l) in enumerate(zip(tops, lefts))]
    return torch.stack(low_crops), torch.stack(high_crops)


def random_dihedral(low_res: torch.Tensor, high_res: torch.Tensor,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random horizontal flip, vertical flip and (for square samples) transpose per sample."""
    draws = torch.randint(0, 2, (low_res.shape[0], 3), generator=generator).bool()

    def apply(images: torch.Tensor) -> torch.Tensor:
        masks = draws.to(images.device).view(-1, 3, 1, 1, 1).unbind(1)  # three (B, 1, 1, 1) masks
        images = torch.where(masks[0], images.flip(-1), images)
        images = torch.where(masks[1], images.flip(-2), images)
        if images.shape[-1] == images.shape[-2]:
            images = torch.where(masks[2], images.transpose(-1, -2), images)
        return images

    return apply(low_res), apply(high_res)


# --- Learning rate and weight averaging ----------------------------------------------------


def learning_rate_at(step: int, total: int, config: TrainConfig) -> float:
    """The learning rate for the update after `step` updates (a pure function: resume is exact)."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return config.learning_rate
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class WeightAverage:
    """Exponential moving average of a model's parameters and floating-point buffers (BatchNorm
    statistics included), as BasicSR's `net_g_ema`. The decay warms up as (1 + n) / (10 + n), so
    the first updates are not anchored to the random initialisation.
    """

    def __init__(self, model: PerceptualSR, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.model = PerceptualSR(model.config).to(next(model.parameters()).device)
        self.model.load_state_dict(model.state_dict())
        self.model.eval().requires_grad_(False)

    def _pairs(self, model: PerceptualSR) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        mine = list(self.model.state_dict().values())
        theirs = list(model.state_dict().values())
        floats = [k for k, value in enumerate(mine) if value.is_floating_point()]
        return [mine[k] for k in floats], [theirs[k] for k in floats]

    @torch.no_grad()
    def update(self, model: PerceptualSR) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        mine, theirs = self._pairs(model)
        torch._foreach_lerp_(mine, theirs, 1.0 - decay)
        for name, value in model.state_dict().items():  # integer buffers (num_batches_tracked): copied
            if not value.is_floating_point():
                self.model.state_dict()[name].copy_(value)
        self.updates += 1


# --- Checkpoints ---------------------------------------------------------------------------


def save_checkpoint(folder: Path, model: PerceptualSR, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, step: int, config: TrainConfig,
                    average: WeightAverage | None = None) -> None:
    """Atomically write model (safetensors via save_pretrained), its average, optimizer and RNG state."""
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    _save_weights(model, staging)
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "train_config": json.dumps(dataclasses.asdict(config)),
    }
    if average is not None:
        _save_weights(average.model, staging / EMA_DIR)
        state["ema_updates"] = average.updates
    torch.save(state, staging / TRAINING_STATE)
    previous = folder.with_name(folder.name + ".old")
    shutil.rmtree(previous, ignore_errors=True)
    if folder.exists():
        folder.rename(previous)
    staging.rename(folder)
    shutil.rmtree(previous, ignore_errors=True)


def _save_weights(model: PerceptualSR, folder: Path, **card: Any) -> None:
    # save_pretrained on the plain module, in the standard memory layout; the live model keeps its
    # layout (channels_last during training), so training after a checkpoint runs the same kernels
    # as training after a resume.
    was_training = model.training
    weight = model.head[0].weight
    channels_last = weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    model.eval().to(memory_format=torch.contiguous_format).save_pretrained(folder, **card)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train(was_training)


def read_checkpoint_config(folder: Path) -> dict[str, Any]:
    """The TrainConfig (as a dict) a checkpoint was written with."""
    state = torch.load(folder / TRAINING_STATE, map_location="cpu", weights_only=True)
    return json.loads(state["train_config"])


def check_resumable(saved: dict[str, Any], config: TrainConfig) -> None:
    """Refuse to resume a run with a different recipe: the result would be neither run.

    A setting the checkpoint does not record (written by an older version) counts as its default;
    one it records under an old name (RENAMED_FIELDS) counts under the new one.
    """
    current = dataclasses.asdict(config)
    defaults = dataclasses.asdict(TrainConfig())
    saved = {**defaults, **{RENAMED_FIELDS.get(name, name): value for name, value in saved.items()}}
    changed = sorted(name for name in current if name not in RESUMABLE_CHANGES and saved[name] != current[name])
    if changed:
        details = ", ".join(f"{name}: {saved[name]!r} -> {current[name]!r}" for name in changed)
        raise ValueError(f"--resume with a different recipe ({details}); use the original flags, "
                         "or start a new run in another --output-dir")
    if config.lr_schedule == "cosine" and (saved["steps"], saved["epochs"]) != (config.steps, config.epochs):
        warnings.warn("resuming a cosine schedule with a different length: the learning rate is recomputed "
                      "for the new total and jumps at the resumed step", stacklevel=2)


def load_checkpoint(folder: Path, model: PerceptualSR, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, device: torch.device,
                    average: WeightAverage | None = None) -> int:
    """Restore a checkpoint written by `save_checkpoint`; returns the step it was taken at."""
    if not (folder / TRAINING_STATE).is_file():
        raise FileNotFoundError(f"no checkpoint to resume from in {folder}; run without --resume to start fresh")
    _load_weights_into(model, folder)
    # weights_only: the restricted unpickler, which admits tensors and plain containers only.
    state = torch.load(folder / TRAINING_STATE, map_location=device, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"].cpu())
    if average is not None:
        _load_weights_into(average.model, folder / EMA_DIR)
        average.updates = int(state["ema_updates"])
    return int(state["step"])


def _load_weights_into(model: PerceptualSR, folder: Path) -> None:
    saved = PerceptualSR.from_pretrained(folder)
    if saved.config != model.config:
        raise ValueError(f"the weights in {folder} are for {saved.config}, not the requested {model.config}")
    model.load_state_dict(saved.state_dict(), strict=True)


# --- Logs and validation -------------------------------------------------------------------


class CsvLog:
    """Append-only CSV with a fixed header (kept across resumes)."""

    def __init__(self, path: Path, fields: list[str]) -> None:
        self.path, self.fields = path, fields
        if not path.exists():
            with path.open("w", newline="") as handle:
                csv.writer(handle).writerow(fields)

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow([row.get(field, "") for field in self.fields])


def truncate_log(path: Path, after_step: int) -> None:
    """Drop rows logged after `after_step` (they are re-done when a run resumes)."""
    if not path.exists():
        return
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    kept = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) <= after_step]
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(kept)


VAL_FIELDS = ["step", "set", "psnr_y", "ssim_y", "lpips", "grid", "bicubic_psnr_y", "bicubic_ssim_y",
              "bicubic_lpips", "bicubic_grid"]


def validate(model: PerceptualSR, config: TrainConfig, dataset_root: Path, scale: int, degradation: str,
             step: int, out_dir: Path, lpips_metric: Any, device: torch.device) -> list[dict[str, Any]]:
    """Scores on the dataset's held-out split and on `val_dir`, each a row of VAL_FIELDS; comparison PNGs."""
    from perceptual_sr.evaluate import evaluate_folder, evaluate_pairs

    results = []
    held_out = SRPairDataset(dataset_root, split="val")
    if len(held_out):
        count = min(len(held_out), config.val_images or len(held_out))
        pairs = ((f"val{k:03d}", *(tensor_to_uint8(image) for image in held_out[k])) for k in range(count))
        results.append(evaluate_pairs(model, pairs, "held-out", scale=scale, lpips_metric=lpips_metric,
                                      device=device))
    if config.val_dir:
        results.append(evaluate_folder(model, Path(config.val_dir), scale=scale, degradation=degradation,
                                       lpips_metric=lpips_metric, max_images=config.val_images or None,
                                       device=device, comparison_dir=out_dir / "val" / f"step{step:07d}"))
    rows = []
    for result in results:
        means = result.means
        row = {"step": step, "set": result.name}
        for metric, column in (("psnr", "psnr_y"), ("ssim", "ssim_y"), ("lpips", "lpips"), ("grid", "grid")):
            row[column] = means["model"][metric]
            row[f"bicubic_{column}"] = means["bicubic"][metric]
        rows.append(row)
    return rows


def plot_losses(log_path: Path, val_path: Path, out_path: Path) -> None:
    """Loss curve (and validation LPIPS per set where logged) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with log_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    val_rows = []
    if val_path.exists():
        with val_path.open(newline="") as handle:
            val_rows = list(csv.DictReader(handle))
    panels = 2 if val_rows else 1
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    steps = [int(row["step"]) for row in rows]
    axes[0][0].plot(steps, [float(row["loss"]) for row in rows], label="training loss")
    axes[0][0].set_xlabel("step")
    axes[0][0].set_yscale("log")
    axes[0][0].legend()
    if val_rows:
        for name in dict.fromkeys(row["set"] for row in val_rows):
            mine = [row for row in val_rows if row["set"] == name]
            line, = axes[0][1].plot([int(row["step"]) for row in mine], [float(row["lpips"]) for row in mine], "o-",
                                    label=f"LPIPS {name}")
            axes[0][1].axhline(float(mine[0]["bicubic_lpips"]), color=line.get_color(), ls="--",
                               label=f"bicubic {name}")
        axes[0][1].set_xlabel("step")
        axes[0][1].legend()
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    plt.close(figure)


# --- The run -------------------------------------------------------------------------------


def total_steps(config: TrainConfig, dataset_size: int, world_size: int) -> int:
    if config.steps is not None:
        return config.steps
    return max(1, math.ceil(config.epochs * steps_per_epoch(config, dataset_size, world_size)))


def steps_per_epoch(config: TrainConfig, dataset_size: int, world_size: int) -> int:
    per_epoch = dataset_size // world_size // config.batch_size
    if per_epoch == 0:
        raise ValueError(f"the dataset ({dataset_size} samples) is smaller than one batch of {config.batch_size} "
                         f"per process ({world_size} processes); lower --batch-size or prepare more crops")
    return per_epoch


@dataclass
class Run:
    """Everything `train_step` and the loop need, built once by `setup_run`."""

    config: TrainConfig
    runtime: Runtime
    dataset: SRPairDataset
    sampler: ResumableSampler
    scale: int
    steps: int
    steps_per_epoch: int
    model: PerceptualSR
    network: torch.nn.Module  # the model, possibly wrapped by DDP / torch.compile
    loss_fn: PerceptualLoss
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    average: WeightAverage | None
    out_dir: Path
    step: int = 0
    lpips_metric: Any = None  # the validation metric, built on first use

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / CHECKPOINT_DIR

    @property
    def final_model(self) -> PerceptualSR:
        """The weights to validate and ship: the moving average when one is kept."""
        return self.average.model if self.average is not None else self.model

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.config.channels_last else torch.contiguous_format


def setup_run(model_config: SRConfig, config: TrainConfig) -> Run:
    """Data, model, loss, optimizer, weight average; restored from the checkpoint with --resume."""
    runtime = setup_runtime(config)
    torch.manual_seed(config.seed)
    out_dir = Path(config.output_dir)
    checkpoint_dir = out_dir / CHECKPOINT_DIR

    dataset = SRPairDataset(config.data, split="train")
    scale = int(dataset.manifest["scale"])
    if scale != model_config.scale:
        raise ValueError(f"the dataset in {config.data} is x{scale} but the model is x{model_config.scale}; "
                         f"pass --scale {scale} or prepare a x{model_config.scale} dataset")
    if config.crop_size is not None and config.crop_size % scale:
        raise ValueError(f"crop_size {config.crop_size} is not a multiple of scale {scale}")
    per_epoch = steps_per_epoch(config, len(dataset), runtime.world_size)

    model = PerceptualSR(model_config)
    if config.init_from:
        _load_weights_into(model, Path(config.init_from))
    model = model.to(runtime.device).train()
    loss_fn = PerceptualLoss(config.feature_layers, tv_weight=config.tv_weight, pixel_weight=config.pixel_weight,
                             grid_weight=config.grid_weight, grid_period=model_config.scale).to(runtime.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
        loss_fn = loss_fn.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.autocast_dtype == torch.float16)
    average = WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None

    step = 0
    previous = checkpoint_dir.with_name(checkpoint_dir.name + ".old")
    if not checkpoint_dir.exists() and (previous / TRAINING_STATE).exists():
        previous.rename(checkpoint_dir)  # killed between save_checkpoint's two renames: the last good one
    if config.resume:
        if not (checkpoint_dir / TRAINING_STATE).exists():
            raise FileNotFoundError(f"--resume: no checkpoint in {checkpoint_dir}")
        check_resumable(read_checkpoint_config(checkpoint_dir), config)
        step = load_checkpoint(checkpoint_dir, model, optimizer, scaler, runtime.device, average)
    elif checkpoint_dir.exists():
        raise FileExistsError(f"{checkpoint_dir} already holds a checkpoint; pass --resume to continue it "
                              "or choose another --output-dir")
    network: torch.nn.Module = model
    if runtime.world_size > 1:
        network = DistributedDataParallel(model, device_ids=[runtime.device.index] if runtime.device.type == "cuda"
                                          else None)
    if config.compile:
        network = torch.compile(network)
    return Run(config, runtime, dataset, ResumableSampler(len(dataset), config.seed, runtime.rank, runtime.world_size),
               scale, total_steps(config, len(dataset), runtime.world_size), per_epoch, model, network, loss_fn,
               optimizer, scaler, average, out_dir, step)


def batches(run: Run):
    """Yield (low_res, high_res) training batches on the device, augmented, from `run.step` on."""
    config, runtime = run.config, run.runtime
    while True:
        epoch = run.step // run.steps_per_epoch
        run.sampler.set_position(epoch, (run.step % run.steps_per_epoch) * config.batch_size)
        loader = DataLoader(run.dataset, batch_size=config.batch_size, sampler=run.sampler, drop_last=True,
                            num_workers=config.workers, pin_memory=runtime.device.type == "cuda")
        for low_res, high_res in loader:
            # Seeded by the step: a resumed run draws the same crops and flips.
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + run.step * 7919 + runtime.rank)
            low_res, high_res = random_crops(low_res, high_res, run.scale, config.crop_size, generator)
            low_res = low_res.to(runtime.device, non_blocking=True)
            high_res = high_res.to(runtime.device, non_blocking=True)
            low_res, high_res = random_dihedral(low_res, high_res, generator)
            yield (low_res.contiguous(memory_format=run.memory_format),
                   high_res.contiguous(memory_format=run.memory_format))
            if run.step // run.steps_per_epoch != epoch:
                break  # a new epoch: a new shuffle


def train_step(run: Run, low_res: torch.Tensor, high_res: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimisation step on a batch; returns the loss and its weighted terms (unsynchronised)."""
    for group in run.optimizer.param_groups:
        group["lr"] = learning_rate_at(run.step, run.steps, run.config)
    with autocast(run.runtime.device, run.runtime.autocast_dtype):
        output = run.network(low_res)
        loss, terms = run.loss_fn(output, high_res)
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"loss became {loss.item()} at step {run.step}; the last good checkpoint is "
                               f"kept in {run.checkpoint_dir}; lower --learning-rate or check the data")
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    if run.average is not None:
        run.average.update(run.model)
    run.step += 1
    return loss, terms


TRAIN_LOG_FIELDS = ["step", "epoch", "loss", "feature", "tv", "pixel", "grid", "lr", "samples_per_s"]


class StepLog:
    """The training log: one CSV row every `log_every` steps, with the throughput since the last row."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.csv = CsvLog(run.out_dir / "log.csv", TRAIN_LOG_FIELDS) if run.runtime.is_main else None
        self.progress = tqdm(total=run.steps, initial=run.step, desc="train", disable=not run.runtime.is_main,
                             dynamic_ncols=True)
        self.window_start, self.window_samples = time.perf_counter(), 0

    def record(self, batch_size: int, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
        run = self.run
        self.window_samples += batch_size * run.runtime.world_size
        self.progress.update(1)
        if self.csv is None or not (run.step % run.config.log_every == 0 or run.step == run.steps):
            return
        samples_per_s = self.window_samples / (time.perf_counter() - self.window_start)
        values = {key: value.item() for key, value in terms.items()}  # synchronises: only every log_every
        feature = sum(value for key, value in values.items() if key.startswith("relu"))
        self.csv.write({"step": run.step, "epoch": f"{run.step / run.steps_per_epoch:.4f}", "loss": f"{loss.item():.6g}",
                        "feature": f"{feature:.6g}", "tv": f"{values.get('tv', 0):.6g}",
                        "pixel": f"{values.get('pixel', 0):.6g}", "grid": f"{values.get('grid', 0):.6g}",
                        "lr": f"{run.optimizer.param_groups[0]['lr']:.6g}",  # what train_step used
                        "samples_per_s": f"{samples_per_s:.3f}"})
        self.progress.set_postfix(loss=f"{loss.item():.4g}", samples_s=f"{samples_per_s:.2f}")
        self.window_start, self.window_samples = time.perf_counter(), 0

    def close(self) -> None:
        self.progress.close()


def start_logs(run: Run) -> None:
    """Record the settings and drop log rows past the resumed step (they are about to be redone)."""
    if run.runtime.is_main:
        run.out_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run.out_dir / "train_config.json", dataclasses.asdict(run.config), indent=2)
        for name in ("log.csv", "val.csv"):
            truncate_log(run.out_dir / name, run.step)


def run_validation(run: Run) -> list[dict[str, Any]]:
    """Validate the weights that would ship now (main process only) and append them to val.csv."""
    if not run.runtime.is_main:
        return []
    if run.lpips_metric is None:  # built on first use: two weight files to load
        from perceptual_sr.metrics import LPIPSMetric

        run.lpips_metric = LPIPSMetric().to(run.runtime.device)
    rows = validate(run.final_model, run.config, Path(run.config.data), run.scale,
                    run.dataset.manifest.get("degradation", "blur"), run.step, run.out_dir, run.lpips_metric,
                    run.runtime.device)
    val_log = CsvLog(run.out_dir / "val.csv", VAL_FIELDS)
    for row in rows:
        val_log.write(row)
    return rows


def checkpoint(run: Run) -> None:
    if run.runtime.is_main:
        save_checkpoint(run.checkpoint_dir, run.model, run.optimizer, run.scaler, run.step, run.config, run.average)


def finish(run: Run) -> PerceptualSR:
    """Last checkpoint and validation; the final model, its card, the loss plot and the optional push."""
    checkpoint(run)
    rows = run_validation(run)
    if run.runtime.is_main:
        manifest = run.dataset.manifest
        _save_final(run.final_model, run.config, manifest, rows, run.out_dir)
        plot_losses(run.out_dir / "log.csv", run.out_dir / "val.csv", run.out_dir / "loss.png")
        if run.config.push_to_hub:
            push(run.out_dir, run.config.push_to_hub)
    if run.runtime.world_size > 1:
        dist.barrier()
    return run.final_model.eval()


def train(model_config: SRConfig, config: TrainConfig) -> PerceptualSR:
    """Train, checkpointing to `output_dir/checkpoint`; the final model is saved to `output_dir`.

    Returns this process's trained model (the weight average when `ema_decay` is set), identical
    on every rank under DDP.
    """
    run = setup_run(model_config, config)
    start_logs(run)
    if run.step == 0 and config.validate_at_start:
        run_validation(run)
    log = StepLog(run)
    data = batches(run)
    try:
        while run.step < run.steps:
            low_res, high_res = next(data)
            loss, terms = train_step(run, low_res, high_res)
            log.record(low_res.shape[0], loss, terms)
            if run.step % config.checkpoint_every == 0 and run.step < run.steps:
                checkpoint(run)
            if run.step % config.val_every == 0 and run.step < run.steps:
                run_validation(run)
    except KeyboardInterrupt:
        checkpoint(run)
        raise
    finally:
        log.close()
    return finish(run)


def _card_kwargs(config: TrainConfig, manifest: dict, rows: list[dict[str, Any]]) -> dict[str, Any]:
    data_summary = {key: manifest.get(key) for key in ("scale", "hr_size", "degradation", "counts", "seed")}
    evaluation, scores = None, []
    if rows:
        lines = [f"Validation at the end of training ({manifest.get('degradation', 'blur')} degradation; "
                 "`held-out` is the dataset's held-out split):", "",
                 "| set | method | PSNR-Y | SSIM-Y | LPIPS-alex | grid |", "| --- | --- | --- | --- | --- | --- |"]
        for row in rows:
            for method, prefix in (("bicubic", "bicubic_"), ("model", "")):
                lines.append(f"| {row['set']} | {method} | {row[prefix + 'psnr_y']:.2f} | {row[prefix + 'ssim_y']:.4f} "
                             f"| {row[prefix + 'lpips']:.4f} | {row[prefix + 'grid']:.2f} |")
            scores += [{"dataset": row["set"], "metric": metric, "value": float(row[column])}
                       for metric, column in (("psnr", "psnr_y"), ("ssim", "ssim_y"), ("lpips", "lpips"), ("grid", "grid"))]
        evaluation = "\n".join(lines)
    return {"training": {"train_config": dataclasses.asdict(config), "data": data_summary}, "evaluation": evaluation,
            "scores": scores, "repo_id": config.push_to_hub}


def _save_final(model: PerceptualSR, config: TrainConfig, manifest: dict, rows: list[dict[str, Any]],
                out_dir: Path) -> None:
    # The mixin never overwrites README.md, so remove a stale card from an earlier run first.
    (out_dir / "README.md").unlink(missing_ok=True)
    _save_weights(model, out_dir, model_card_kwargs=_card_kwargs(config, manifest, rows))


UPLOADED_FILES = ["config.json", "model.safetensors", "README.md", "train_config.json", "log.csv", "val.csv",
                  "loss.png"]


def push(out_dir: Path, repo_id: str) -> str:
    """Upload the finished run folder to the Hub: the weights with the card training wrote, the logs
    and the settings. (`model.push_to_hub` would save a fresh folder with a bare card instead.)"""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    try:
        api = HfApi()
        url = api.create_repo(repo_id, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(out_dir), allow_patterns=UPLOADED_FILES,
                          commit_message="Upload model and training logs from perceptual_sr train.py")
        return str(url)
    except (HfHubHTTPError, LocalTokenNotFoundError, OSError) as error:
        raise RuntimeError(f"could not push to the Hub repo {repo_id!r} ({type(error).__name__}: "
                           f"{error}); log in with `hf auth login` or set HF_TOKEN, and check your connection. "
                           f"The model is saved in {out_dir}") from error
