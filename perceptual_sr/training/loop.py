"""Training: set-up, the training step and the loop that logs, checkpoints and validates.

`train(model_config, train_config)` runs a recipe on a dataset written by `prepare_data.py`, in
one process or under `torchrun` (DistributedDataParallel). It reads top to bottom: `setup_run`,
then a loop over `batches` that calls `train_step` and logs, checkpoints and validates, then
`finish`. The settings are `train_config.TrainConfig`; checkpoints and the weight average are
`checkpoint.py`; sample order and augmentation `train_samples.py`; the logs `train_logs.py`; the card and the upload `model_card.py`. The reference
recipe (Johnson et al. 2016, x4 SR) is VGG-16 relu2_2 feature loss + total variation, Adam lr 1e-3;
docs/training.md records the settings the shipped model was trained with.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader
from tqdm import tqdm

from perceptual_sr.data.dataset import SRPairDataset
from perceptual_sr.data.degradations import PRESETS, degrade_realistic_batch
from perceptual_sr.hub.model_card import push, training_card_kwargs
from perceptual_sr.networks.discriminator import Critic
from perceptual_sr.networks.phase_training import PhaseTrainingNetwork, supports_phase_training
from perceptual_sr.networks.upscaler import PerceptualSR, SRConfig
from perceptual_sr.training import checkpoint as checkpoints
from perceptual_sr.training.config import TrainConfig, learning_rate_at
from perceptual_sr.training.logs import (
    LOSS_TERMS,
    TRAIN_LOG_FIELDS,
    VAL_FIELDS,
    CsvLog,
    plot_losses,
    truncate_log,
    validate,
)
from perceptual_sr.training.loss import PerceptualLoss
from perceptual_sr.training.samples import ResumableSampler, random_crops, random_dihedral
from perceptual_sr.utils.atomic_write import write_json
from perceptual_sr.utils.interrupts import interrupts_deferred
from perceptual_sr.utils.runtime import autocast, choose_device, resolve_precision, training_precision


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# --- Device, precision, distribution -------------------------------------------------------


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int
    world_size: int
    precision: str  # resolved: "bf16", "fp16" or "fp32" (runtime.training_precision)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return resolve_precision(self.device, self.precision)  # an explicit name: no timing


def setup_runtime(config: TrainConfig) -> Runtime:
    """Pick the device and precision (perceptual_sr.utils.runtime); join the process group under torchrun."""
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
    return Runtime(device, rank, world_size, training_precision(device, config.precision))


# --- The run ---------------------------------------------------------------------------------


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
class TrainingData:
    """The prepared training split and the order this process reads it in."""

    dataset: SRPairDataset
    sampler: ResumableSampler
    scale: int
    steps_per_epoch: int


@dataclass
class Learner:
    """What learns: the model (and `network`, the same model possibly wrapped by DDP or
    torch.compile), the loss, the optimizer, the loss scaler, the optional weight average and the
    optional discriminator of an adversarial term."""

    model: PerceptualSR
    network: torch.nn.Module
    loss_fn: PerceptualLoss
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    average: AveragedModel | None
    critic: Critic | None = None

    @property
    def final_model(self) -> PerceptualSR:
        """The weights to validate and ship: the moving average when one is kept."""
        return self.average.module if self.average is not None else self.model


@dataclass
class Run:
    """Everything `train_step` and the loop need, built once by `setup_run`."""

    config: TrainConfig
    runtime: Runtime
    data: TrainingData
    learner: Learner
    steps: int  # updates in the whole run
    out_dir: Path
    step: int = 0  # updates done
    lpips_metric: Any = None  # the validation metric, built on first use

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / checkpoints.CHECKPOINT_DIR

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.config.channels_last else torch.contiguous_format


def _training_data(model_config: SRConfig, config: TrainConfig, runtime: Runtime) -> TrainingData:
    dataset = SRPairDataset(config.data, split="train")
    scale = int(dataset.manifest["scale"])
    if scale != model_config.scale:
        raise ValueError(f"the dataset in {config.data} is x{scale} but the model is x{model_config.scale}; "
                         f"pass --scale {scale} or prepare a x{model_config.scale} dataset")
    if config.crop_size is not None:
        # The 9x9 head needs an LR of 5 px and more, the grid penalty 8 periods of the scale.
        smallest, prepared = max(32, 8 * scale), int(dataset.manifest["hr_size"])
        if config.crop_size % scale or not smallest <= config.crop_size <= prepared:
            raise ValueError(f"crop_size must be a multiple of the scale {scale} from {smallest} to {prepared} "
                             f"(the HR size of the pairs in {config.data}), got {config.crop_size}")
    return TrainingData(dataset=dataset, sampler=ResumableSampler(len(dataset), config.seed, runtime.rank,
                                                                  runtime.world_size),
                        scale=scale, steps_per_epoch=steps_per_epoch(config, len(dataset), runtime.world_size))


def _learner(model_config: SRConfig, config: TrainConfig, runtime: Runtime) -> Learner:
    model = PerceptualSR(model_config)
    if config.init_from:
        checkpoints.load_weights_into(model, Path(config.init_from))
    model = model.to(runtime.device).train()
    loss_fn = PerceptualLoss(config.feature_layers, tv_weight=config.tv_weight, pixel_weight=config.pixel_weight,
                             grid_weight=config.grid_weight, grid_period=model_config.scale,
                             hatch_weight=config.hatch_weight).to(runtime.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
        loss_fn = loss_fn.to(memory_format=torch.channels_last)
    # The exact phase-form rewrite of the resize-conv stages (phase_training): the same function,
    # gradients and BatchNorm statistics, 1.2-1.5x faster through the network.
    network = PhaseTrainingNetwork(model) if supports_phase_training(model) else model
    return Learner(model=model, network=network, loss_fn=loss_fn,
                   optimizer=torch.optim.Adam(model.parameters(), lr=config.learning_rate),
                   scaler=torch.amp.GradScaler(runtime.device.type, enabled=runtime.precision == "fp16"),
                   average=checkpoints.weight_average(model, config.ema_decay) if config.ema_decay > 0 else None,
                   critic=_critic(config, runtime))


def _critic(config: TrainConfig, runtime: Runtime) -> Critic | None:
    """The discriminator of the adversarial term, when the recipe has one."""
    if not config.adversarial_weight:
        return None
    if runtime.world_size > 1:
        raise ValueError("--adversarial-weight is not supported under torchrun yet; train in one process")
    if runtime.precision == "fp16":
        raise ValueError("--adversarial-weight trains in bf16 or fp32, not fp16 (the discriminator has no loss "
                         "scaler); pass --precision bf16 or fp32")
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    return Critic(config.adversarial_weight, config.discriminator_features, config.learning_rate, runtime.device,
                  memory_format)


def _restore(config: TrainConfig, runtime: Runtime, folder: Path, learner: Learner) -> int:
    """The step to start from: the checkpoint's with --resume (checked to be the same recipe), else 0."""
    if runtime.is_main:
        checkpoints.recover(folder)  # a kill mid-save left the last good checkpoint aside: put it back
    if not config.resume:  # every rank checks, before any of them can write into the folder
        if folder.exists():
            raise FileExistsError(f"{folder} already holds a checkpoint; pass --resume to continue it "
                                  "or choose another --output-dir")
        _check_new_run_folder(folder.parent)
    if runtime.world_size > 1:
        dist.barrier()  # the other ranks look at the folder only once it is repaired
    if not config.resume:
        return 0
    saved = checkpoints.read_settings(folder)
    checkpoints.check_resumable(saved.config, config, saved_precision=saved.precision,
                                precision=runtime.precision)
    return checkpoints.load_checkpoint(folder, learner.model, learner.optimizer, learner.scaler,
                                       runtime.device, learner.average, learner.critic)


def _check_new_run_folder(out_dir: Path) -> None:
    """A new run writes its logs, settings and model into `out_dir`: refuse one that holds anything
    (a saved model, someone's notes), which the run would overwrite."""
    if out_dir.is_file():
        raise FileExistsError(f"--output-dir {out_dir} is a file; pass a new or empty folder")
    present = sorted(child.name for child in out_dir.iterdir()) if out_dir.is_dir() else []
    if present:
        shown = ", ".join(present[:5]) + (f" and {len(present) - 5} more" if len(present) > 5 else "")
        raise FileExistsError(f"--output-dir {out_dir} already holds {shown}, which a new run would overwrite; "
                              "choose a new or empty folder (or --resume to continue a run's checkpoint)")


def _keep_recorded_precision(config: TrainConfig, runtime: Runtime, folder: Path) -> Runtime:
    """With --resume and --precision auto, a CPU run continues in the precision it started in (its
    checkpoint records it): auto differs between CPUs, and the machine may change between sessions."""
    if not (config.resume and config.precision == "auto" and runtime.device.type == "cpu"):
        return runtime
    try:
        recorded = checkpoints.read_settings(folder).precision
    except Exception:  # noqa: BLE001 - a missing or damaged checkpoint: _restore says what is wrong
        return runtime
    if recorded not in ("bf16", "fp32") or recorded == runtime.precision:
        return runtime
    print(f"resuming in {recorded}, the precision this run started in (--precision auto gives "
          f"{runtime.precision} on this CPU)", file=sys.stderr)
    return dataclasses.replace(runtime, precision=recorded)


def setup_run(model_config: SRConfig, config: TrainConfig) -> Run:
    """Data, model, loss, optimizer, weight average; restored from the checkpoint with --resume."""
    out_dir = Path(config.output_dir)
    runtime = _keep_recorded_precision(config, setup_runtime(config), out_dir / checkpoints.CHECKPOINT_DIR)
    torch.manual_seed(config.seed)
    data = _training_data(model_config, config, runtime)
    learner = _learner(model_config, config, runtime)
    step = _restore(config, runtime, out_dir / checkpoints.CHECKPOINT_DIR, learner)
    if runtime.world_size > 1:
        learner.network = DistributedDataParallel(
            learner.network, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    if config.compile:
        learner.network = torch.compile(learner.network)
    return Run(config=config, runtime=runtime, data=data, learner=learner, out_dir=out_dir, step=step,
               steps=total_steps(config, len(data.dataset), runtime.world_size))


def batches(run: Run) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (low_res, high_res) training batches on the device, augmented, from `run.step` on."""
    config, runtime, data = run.config, run.runtime, run.data
    while True:
        epoch = run.step // data.steps_per_epoch
        data.sampler.set_position(epoch, (run.step % data.steps_per_epoch) * config.batch_size)
        loader = DataLoader(data.dataset, batch_size=config.batch_size, sampler=data.sampler, drop_last=True,
                            num_workers=config.workers, pin_memory=runtime.device.type == "cuda")
        for low_res, high_res in loader:
            # Seeded by the step: a resumed run draws the same crops and flips.
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + run.step * 7919 + runtime.rank)
            low_res, high_res = random_crops(low_res, high_res, data.scale, config.crop_size, generator)
            if config.degradation != "prepared":  # real-photo training: this crop's LR, made now
                seeds = torch.randint(2 ** 62, (high_res.shape[0],), generator=generator).tolist()
                low_res = degrade_realistic_batch(high_res, data.scale, seeds, PRESETS[config.degradation])
            low_res = low_res.to(runtime.device, non_blocking=True)
            high_res = high_res.to(runtime.device, non_blocking=True)
            low_res, high_res = random_dihedral(low_res, high_res, generator)
            yield (low_res.contiguous(memory_format=run.memory_format),
                   high_res.contiguous(memory_format=run.memory_format))
            if run.step // data.steps_per_epoch != epoch:
                break  # a new epoch: a new shuffle


def train_step(run: Run, low_res: torch.Tensor, high_res: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimisation step on a batch; returns the loss and its weighted terms (unsynchronised)."""
    learner = run.learner
    learning_rate = learning_rate_at(run.step, run.steps, run.config)
    for group in learner.optimizer.param_groups:
        group["lr"] = learning_rate
    with autocast(run.runtime.device, run.runtime.autocast_dtype):
        output = learner.network(low_res)
        loss, terms = learner.loss_fn(output, high_res)
        if learner.critic is not None:
            terms["adversarial"] = learner.critic.generator_loss(output)
            loss = loss + terms["adversarial"]
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"loss became {loss.item()} at step {run.step}; the last good checkpoint is "
                               f"kept in {run.checkpoint_dir}; lower --learning-rate or check the data")
    learner.optimizer.zero_grad(set_to_none=True)
    learner.scaler.scale(loss).backward()
    learner.scaler.step(learner.optimizer)
    learner.scaler.update()
    if learner.critic is not None:  # then the discriminator, on the output the network just learned from
        terms["discriminator"] = learner.critic.update(output, high_res, learning_rate,
                                                       autocast(run.runtime.device, run.runtime.autocast_dtype))
    if learner.average is not None:
        learner.average.update_parameters(learner.model)
    run.step += 1
    return loss, terms


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
        self.csv.write({"step": run.step, "epoch": f"{run.step / run.data.steps_per_epoch:.4f}",
                        "loss": f"{loss.item():.6g}", "feature": f"{feature:.6g}",
                        **{term: f"{values.get(term, 0):.6g}" for term in LOSS_TERMS},
                        "lr": f"{run.learner.optimizer.param_groups[0]['lr']:.6g}",  # what train_step used
                        "samples_per_s": f"{samples_per_s:.3f}"})
        self.progress.set_postfix(loss=f"{loss.item():.4g}", samples_s=f"{samples_per_s:.2f}")
        self.window_start, self.window_samples = time.perf_counter(), 0

    def close(self) -> None:
        self.progress.close()


def start_logs(run: Run) -> None:
    """Record the settings and drop log rows past the resumed step (they are about to be redone)."""
    if run.runtime.is_main:
        run.out_dir.mkdir(parents=True, exist_ok=True)
        write_json(run.out_dir / "train_config.json", dataclasses.asdict(run.config), indent=2)
        for name in ("log.csv", "val.csv"):
            truncate_log(run.out_dir / name, run.step)


def run_validation(run: Run) -> list[dict[str, Any]]:
    """Validate the weights that would ship now (main process only) and append them to val.csv."""
    if not run.runtime.is_main:
        return []
    if run.lpips_metric is None:  # built on first use: two weight files to load
        from perceptual_sr.evaluation.metrics import LPIPSMetric

        run.lpips_metric = LPIPSMetric().to(run.runtime.device)
    rows = validate(run.learner.final_model, dataset_root=Path(run.config.data), val_dir=run.config.val_dir,
                    val_images=run.config.val_images, scale=run.data.scale,
                    degradation=run.data.dataset.manifest.get("degradation", "blur"), step=run.step,
                    out_dir=run.out_dir, lpips_metric=run.lpips_metric, device=run.runtime.device)
    val_log = CsvLog(run.out_dir / "val.csv", VAL_FIELDS)
    for row in rows:
        val_log.write(row)
    return rows


def checkpoint(run: Run) -> None:
    if run.runtime.is_main:
        learner = run.learner
        checkpoints.save_checkpoint(run.checkpoint_dir, learner.model, learner.optimizer, learner.scaler, run.step,
                                    run.config, precision=run.runtime.precision, average=learner.average,
                                    critic=learner.critic)


def finish(run: Run) -> PerceptualSR:
    """Last checkpoint and validation; the final model, its card, the loss plot and the optional push."""
    checkpoint(run)
    rows = run_validation(run)
    final_model = run.learner.final_model
    if run.runtime.is_main:
        card = training_card_kwargs(dataclasses.asdict(run.config), run.data.dataset.manifest, rows,
                                    repo_id=run.config.push_to_hub)
        checkpoints.save_final_model(final_model, run.out_dir, card)
        plot_losses(run.out_dir / "log.csv", run.out_dir / "val.csv", run.out_dir / "loss.png")
        if run.config.push_to_hub:
            push(run.out_dir, run.config.push_to_hub)
    if run.runtime.world_size > 1:
        dist.barrier()
    return final_model.eval()


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
            with interrupts_deferred():  # a step is taken whole, or not at all: see interrupts_deferred
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
