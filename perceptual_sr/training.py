"""Training: configuration, the step loop, checkpoints and resume, validation and logs.

`train(model_config, train_config)` runs the reference recipe (Johnson et al. 2016 for x4 SR:
VGG-16 relu2_2 feature loss + total variation, Adam lr 1e-3, batch 4) on a dataset written by
`prepare_data.py`, in one process or under `torchrun` (DistributedDataParallel).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from perceptual_sr.data import SRPairDataset
from perceptual_sr.inference import choose_device, cpu_has_fast_bf16
from perceptual_sr.loss import PerceptualLoss, parse_feature_weights
from perceptual_sr.model import PerceptualSR, SRConfig

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
CHECKPOINT_DIR = "checkpoint"
TRAINING_STATE = "training_state.pt"


@dataclass
class TrainConfig:
    """Run settings, saved with every checkpoint (never in the model's config.json)."""

    data: str = ""  # folder written by prepare_data.py
    output_dir: str = "runs/perceptual-sr-x4"
    val_dir: str | None = None  # folder of HR images (e.g. Set5) for periodic validation
    epochs: float = 2.0
    steps: int | None = None  # overrides epochs when set
    batch_size: int = 4
    lr: float = 1e-3
    feature_layers: str = "relu2_2"  # "relu2_2" or "relu2_2:1,relu3_3:0.5"
    tv_weight: float = 1e-5  # Johnson et al. tuned it between 1e-6 and 1e-4
    pixel_weight: float = 0.0
    crop_size: int | None = None  # random HR crops of this size (a multiple of scale); None: whole samples
    precision: str = "auto"  # auto: bf16 autocast on CPU and on CUDA where supported, else fp16
    channels_last: bool = True
    compile: bool = False
    device: str = "auto"
    workers: int = 2
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 250
    val_every: int = 250
    val_images: int = 0  # validate on the first N images of val_dir (0: all)
    resume: bool = False
    push_to_hub: str | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps!r}")
        if self.steps is None and self.epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.tv_weight < 0 or self.pixel_weight < 0:
            raise ValueError(f"loss weights must be >= 0, got tv={self.tv_weight!r} pixel={self.pixel_weight!r}")
        if self.crop_size is not None and self.crop_size < 8:
            raise ValueError(f"crop_size must be >= 8, got {self.crop_size!r}")
        for name in ("log_every", "checkpoint_every", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        parse_feature_weights(self.feature_layers)


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
    """Pick the device and precision; join the process group when launched by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = choose_device(None if config.device == "auto" else config.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    precision = config.precision
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            # bf16 autocast is 3-5x faster on CPUs with AVX-512 bf16 / AMX, several times slower
            # without them (measured on an AVX2-only EPYC): there fp32 + channels_last is the fast path.
            precision = "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
    return Runtime(device, rank, world_size, dtype)


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


def augment_batch(lr: torch.Tensor, hr: torch.Tensor, scale: int, crop_size: int | None,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random aligned crop, flips and 90-degree rotation of a (B, 3, h, w) / (B, 3, H, W) pair.

    Done here, from a generator seeded by the step, rather than in DataLoader workers, so a
    resumed run draws exactly the same augmentations.
    """
    if crop_size is not None and crop_size < hr.shape[-1]:
        lr_crop = crop_size // scale
        top = int(torch.randint(0, lr.shape[-2] - lr_crop + 1, (1,), generator=generator))
        left = int(torch.randint(0, lr.shape[-1] - lr_crop + 1, (1,), generator=generator))
        lr = lr[..., top:top + lr_crop, left:left + lr_crop]
        hr = hr[..., top * scale:(top + lr_crop) * scale, left * scale:(left + lr_crop) * scale]
    flips = torch.randint(0, 2, (3,), generator=generator).tolist()
    if flips[0]:
        lr, hr = lr.flip(-1), hr.flip(-1)
    if flips[1]:
        lr, hr = lr.flip(-2), hr.flip(-2)
    if flips[2]:
        lr, hr = lr.transpose(-1, -2), hr.transpose(-1, -2)
    return lr.contiguous(), hr.contiguous()


# --- Checkpoints ---------------------------------------------------------------------------


def save_checkpoint(folder: Path, model: PerceptualSR, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, step: int, config: TrainConfig) -> None:
    """Atomically write model (safetensors via save_pretrained) + optimizer/RNG state."""
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "train_config": json.dumps(dataclasses.asdict(config)),
    }
    torch.save(state, staging / TRAINING_STATE)
    previous = folder.with_name(folder.name + ".old")
    shutil.rmtree(previous, ignore_errors=True)
    if folder.exists():
        folder.rename(previous)
    staging.rename(folder)
    shutil.rmtree(previous, ignore_errors=True)


def load_checkpoint(folder: Path, model: PerceptualSR, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, device: torch.device) -> int:
    """Restore a checkpoint written by `save_checkpoint`; returns the step it was taken at."""
    if not (folder / TRAINING_STATE).is_file():
        raise FileNotFoundError(f"no checkpoint to resume from in {folder}; run without --resume to start fresh")
    saved = PerceptualSR.from_pretrained(folder)
    if saved.config != model.config:
        raise ValueError(f"checkpoint architecture {saved.config} differs from the requested {model.config}")
    model.load_state_dict(saved.state_dict(), strict=True)
    # weights_only: the restricted unpickler, which admits tensors and plain containers only.
    state = torch.load(folder / TRAINING_STATE, map_location=device, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"].cpu())
    return int(state["step"])


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


def validate(model: PerceptualSR, config: TrainConfig, scale: int, degradation: str, step: int,
             out_dir: Path, lpips_metric: Any) -> dict[str, float]:
    """PSNR-Y / SSIM-Y / LPIPS on `val_dir` and a comparison grid PNG of the first images."""
    from perceptual_sr.evaluate import evaluate_folder

    # evaluate_folder runs the model in eval mode and restores training mode afterwards.
    result = evaluate_folder(model, Path(config.val_dir), scale=scale, degradation=degradation,
                             lpips_metric=lpips_metric, max_images=config.val_images or None,
                             comparison_dir=out_dir / "val" / f"step{step:07d}")
    means = result.means
    return {
        "psnr_y": means["model"]["psnr"], "ssim_y": means["model"]["ssim"], "lpips": means["model"]["lpips"],
        "bicubic_psnr_y": means["bicubic"]["psnr"], "bicubic_ssim_y": means["bicubic"]["ssim"],
        "bicubic_lpips": means["bicubic"]["lpips"],
    }


def plot_losses(log_path: Path, val_path: Path, out_path: Path) -> None:
    """Loss curve (and validation LPIPS / PSNR where logged) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with log_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    panels = 2 if val_path.exists() else 1
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    steps = [int(row["step"]) for row in rows]
    axes[0][0].plot(steps, [float(row["loss"]) for row in rows], label="training loss")
    axes[0][0].set_xlabel("step")
    axes[0][0].set_yscale("log")
    axes[0][0].legend()
    if panels == 2:
        with val_path.open(newline="") as handle:
            val_rows = list(csv.DictReader(handle))
        if val_rows:
            val_steps = [int(row["step"]) for row in val_rows]
            axes[0][1].plot(val_steps, [float(row["lpips"]) for row in val_rows], "o-", label="LPIPS (model)")
            axes[0][1].axhline(float(val_rows[0]["bicubic_lpips"]), color="gray", ls="--", label="LPIPS (bicubic)")
            axes[0][1].set_xlabel("step")
            axes[0][1].legend()
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    plt.close(figure)


# --- The run -------------------------------------------------------------------------------


def _unwrap(model: torch.nn.Module) -> PerceptualSR:
    """The plain PerceptualSR under DDP and torch.compile wrappers."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def total_steps(config: TrainConfig, dataset_size: int, world_size: int) -> int:
    if config.steps is not None:
        return config.steps
    steps_per_epoch = dataset_size // world_size // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"the dataset ({dataset_size} samples) is smaller than one batch of {config.batch_size} "
                         f"per process ({world_size} processes)")
    return max(1, math.ceil(config.epochs * steps_per_epoch))


def train(model_config: SRConfig, config: TrainConfig) -> PerceptualSR:
    """Train, checkpointing to `output_dir/checkpoint`; the final model is saved to `output_dir`.

    Returns this process's trained model (identical on every rank under DDP).
    """
    runtime = setup_runtime(config)
    torch.manual_seed(config.seed)
    out_dir = Path(config.output_dir)
    checkpoint_dir = out_dir / CHECKPOINT_DIR

    # Data
    dataset = SRPairDataset(config.data, split="train", augment=False)
    manifest = dataset.manifest
    scale = int(manifest["scale"])
    if scale != model_config.scale:
        raise ValueError(f"the dataset in {config.data} is x{scale} but the model is x{model_config.scale}; "
                         f"pass --scale {scale} or prepare a x{model_config.scale} dataset")
    if config.crop_size is not None and config.crop_size % scale:
        raise ValueError(f"crop_size {config.crop_size} is not a multiple of scale {scale}")
    sampler = ResumableSampler(len(dataset), config.seed, runtime.rank, runtime.world_size)
    steps = total_steps(config, len(dataset), runtime.world_size)
    steps_per_epoch = len(dataset) // runtime.world_size // config.batch_size

    # Model, loss, optimizer
    model = PerceptualSR(model_config).to(runtime.device)
    loss_fn = PerceptualLoss(config.feature_layers, tv_weight=config.tv_weight,
                             pixel_weight=config.pixel_weight).to(runtime.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
        loss_fn = loss_fn.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.autocast_dtype == torch.float16)
    step = 0
    if config.resume and (checkpoint_dir / TRAINING_STATE).exists():
        step = load_checkpoint(checkpoint_dir, model, optimizer, scaler, runtime.device)
    elif config.resume:
        raise FileNotFoundError(f"--resume: no checkpoint in {checkpoint_dir}")
    elif checkpoint_dir.exists():
        raise FileExistsError(f"{checkpoint_dir} already holds a checkpoint; pass --resume to continue it "
                              "or choose another --output-dir")
    network: torch.nn.Module = model
    if runtime.world_size > 1:
        network = DistributedDataParallel(model, device_ids=[runtime.device.index] if runtime.device.type == "cuda"
                                          else None)
    if config.compile:
        network = torch.compile(network)

    # Logs
    lpips_metric = None
    if runtime.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "train_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
        for name in ("log.csv", "val.csv"):
            truncate_log(out_dir / name, step)
    train_log = CsvLog(out_dir / "log.csv", ["step", "epoch", "loss", "feature", "tv", "pixel", "lr",
                                             "samples_per_s"]) if runtime.is_main else None
    val_log = CsvLog(out_dir / "val.csv", ["step", "psnr_y", "ssim_y", "lpips", "bicubic_psnr_y",
                                           "bicubic_ssim_y", "bicubic_lpips"]) if runtime.is_main else None

    def run_validation(at_step: int) -> dict[str, float] | None:
        nonlocal lpips_metric
        if not (runtime.is_main and config.val_dir):
            return None
        if lpips_metric is None:
            from perceptual_sr.metrics import LPIPSMetric

            lpips_metric = LPIPSMetric()
        metrics = validate(model, config, scale, manifest.get("degradation", "blur"), at_step, out_dir,
                           lpips_metric)
        val_log.write({"step": at_step, **metrics})
        return metrics

    def checkpoint(at_step: int) -> None:
        if runtime.is_main:
            save_checkpoint(checkpoint_dir, model, optimizer, scaler, at_step, config)

    if step == 0:
        run_validation(0)
    model.train()
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    progress = tqdm(total=steps, initial=step, desc="train", disable=not runtime.is_main, dynamic_ncols=True)
    loader_iter, epoch = None, -1
    window_start, window_samples = time.perf_counter(), 0
    try:
        while step < steps:
            if loader_iter is None or step // steps_per_epoch != epoch:
                epoch = step // steps_per_epoch
                sampler.set_position(epoch, (step % steps_per_epoch) * config.batch_size)
                loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, drop_last=True,
                                    num_workers=config.workers, persistent_workers=False,
                                    pin_memory=runtime.device.type == "cuda")
                loader_iter = iter(loader)
            lr_batch, hr_batch = next(loader_iter)
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step * 7919 + runtime.rank)
            lr_batch, hr_batch = augment_batch(lr_batch, hr_batch, scale, config.crop_size, generator)
            lr_batch = lr_batch.to(runtime.device, non_blocking=True).contiguous(memory_format=memory_format)
            hr_batch = hr_batch.to(runtime.device, non_blocking=True).contiguous(memory_format=memory_format)

            with torch.autocast(runtime.device.type, dtype=runtime.autocast_dtype or torch.float32,
                                enabled=runtime.autocast_dtype is not None):
                output = network(lr_batch)
                loss, terms = loss_fn(output, hr_batch)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss.item()} at step {step}; the last good checkpoint "
                                       f"is kept in {checkpoint_dir}; lower --lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            window_samples += lr_batch.shape[0] * runtime.world_size
            progress.update(1)

            if runtime.is_main and (step % config.log_every == 0 or step == steps):
                elapsed = time.perf_counter() - window_start
                feature = sum(value.item() for key, value in terms.items() if key.startswith("relu"))
                train_log.write({"step": step, "epoch": f"{step / steps_per_epoch:.4f}", "loss": f"{loss.item():.6g}",
                                 "feature": f"{feature:.6g}", "tv": f"{terms['tv'].item():.6g}" if "tv" in terms else 0,
                                 "pixel": f"{terms['pixel'].item():.6g}" if "pixel" in terms else 0,
                                 "lr": config.lr, "samples_per_s": f"{window_samples / elapsed:.3f}"})
                progress.set_postfix(loss=f"{loss.item():.4g}", samples_s=f"{window_samples / elapsed:.2f}")
                window_start, window_samples = time.perf_counter(), 0
            if step % config.checkpoint_every == 0 and step < steps:
                checkpoint(step)
            if step % config.val_every == 0 and step < steps:
                run_validation(step)
    except KeyboardInterrupt:
        checkpoint(step)
        progress.close()
        raise
    progress.close()
    checkpoint(step)
    final_metrics = run_validation(step)
    if runtime.is_main:
        _save_final(model, config, manifest, final_metrics, out_dir)
        plot_losses(out_dir / "log.csv", out_dir / "val.csv", out_dir / "loss.png")
        if config.push_to_hub:
            push(model, config, manifest, final_metrics)
    if runtime.world_size > 1:
        dist.barrier()
    return model.eval()


def _card_kwargs(config: TrainConfig, manifest: dict, metrics: dict[str, float] | None) -> dict[str, Any]:
    data_summary = {key: manifest.get(key) for key in ("scale", "hr_size", "degradation", "counts", "seed")}
    evaluation = None
    if metrics:
        evaluation = (f"Validation on `{config.val_dir}` ({manifest.get('degradation', 'blur')} degradation):\n\n"
                      "| | PSNR-Y | SSIM-Y | LPIPS-alex |\n| --- | --- | --- | --- |\n"
                      f"| bicubic | {metrics['bicubic_psnr_y']:.2f} | {metrics['bicubic_ssim_y']:.4f} | "
                      f"{metrics['bicubic_lpips']:.4f} |\n"
                      f"| model | {metrics['psnr_y']:.2f} | {metrics['ssim_y']:.4f} | {metrics['lpips']:.4f} |")
    return {"training": {"train_config": dataclasses.asdict(config), "data": data_summary}, "evaluation": evaluation}


def _save_final(model: PerceptualSR, config: TrainConfig, manifest: dict, metrics: dict[str, float] | None,
                out_dir: Path) -> None:
    # The mixin never overwrites README.md, so remove a stale card from an earlier run first.
    (out_dir / "README.md").unlink(missing_ok=True)
    model.eval()
    model.to(memory_format=torch.contiguous_format).save_pretrained(
        out_dir, model_card_kwargs=_card_kwargs(config, manifest, metrics))


def push(model: PerceptualSR, config: TrainConfig, manifest: dict, metrics: dict[str, float] | None) -> str:
    """Upload the final model to the Hub (token from `hf auth login` or HF_TOKEN)."""
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    try:
        return model.push_to_hub(config.push_to_hub, model_card_kwargs=_card_kwargs(config, manifest, metrics))
    except (HfHubHTTPError, LocalTokenNotFoundError, OSError) as error:
        raise RuntimeError(f"could not push to the Hub repo {config.push_to_hub!r} ({type(error).__name__}: "
                           f"{error}); log in with `hf auth login` or set HF_TOKEN, and check your connection. "
                           f"The model is saved in {config.output_dir}") from error
