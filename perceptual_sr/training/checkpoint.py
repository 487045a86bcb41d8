"""Checkpoints of a training run: save, load, the resume check, and the weight average they carry.

A checkpoint is a folder (`<output_dir>/checkpoint`) holding the model as `save_pretrained` writes
it (safetensors + config.json), the weight average the same way in `ema/` when one is kept, and
`training_state.pt`: step, optimizer, loss scaler, RNG, the TrainConfig as JSON and the precision
the run resolved to; with an adversarial term, the discriminator in `discriminator.safetensors` and
its optimizer in the training state. The folder is replaced whole (`atomic_write.atomic_folder`), so a run killed
while saving keeps the previous checkpoint; `recover` repairs the one window a kill can leave.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from perceptual_sr.networks.discriminator import Critic
from perceptual_sr.networks.upscaler import PerceptualSR
from perceptual_sr.training.config import RENAMED_FIELDS, TrainConfig, resumable_fields
from perceptual_sr.utils.atomic_write import atomic_file, atomic_folder, recover_folder

CHECKPOINT_DIR = "checkpoint"  # inside the run's output_dir
EMA_DIR = "ema"  # inside the checkpoint folder
TRAINING_STATE = "training_state.pt"
DISCRIMINATOR = "discriminator.safetensors"


# --- The weight average ----------------------------------------------------------------------


def _warmed_up_ema(decay: float):
    """An `AveragedModel` multi_avg_fn: EMA whose decay warms up as (1 + n) / (10 + n) after n
    updates, so the first updates are not anchored to the starting weights; integer buffers
    (BatchNorm's num_batches_tracked) are copied, not averaged."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor | int) -> None:
        if not averaged[0].is_floating_point():  # AveragedModel groups tensors by dtype
            torch._foreach_copy_(averaged, current)
            return
        updates = int(num_averaged) - 1  # the first of AveragedModel's counts is the starting copy
        get_ema_multi_avg_fn(min(decay, (1 + updates) / (10 + updates)))(averaged, current, num_averaged)

    return update


def weight_average(model: PerceptualSR, decay: float) -> AveragedModel:
    """An exponential moving average of `model`'s parameters and buffers (BatchNorm statistics
    included), as BasicSR's `net_g_ema`; `update_parameters(model)` after each step, `.module` ships."""
    average = AveragedModel(model, multi_avg_fn=_warmed_up_ema(decay), use_buffers=True)
    # The average is validated and saved, never trained: the standard layout, no gradients.
    average.module.to(memory_format=torch.contiguous_format).eval().requires_grad_(False)
    average.update_parameters(model)  # the starting copy: the first real update then averages
    return average


def average_updates(average: AveragedModel) -> int:
    """How many training steps `average` has averaged."""
    return int(average.n_averaged) - 1


# --- Weights ---------------------------------------------------------------------------------


def save_weights(model: PerceptualSR, folder: Path, **card: Any) -> None:
    """`save_pretrained` of `model` into `folder`, in the standard memory layout.

    The live model keeps its own layout (channels_last during training), so training after a
    checkpoint runs the same kernels as training after a resume.
    """
    was_training = model.training
    weight = model.head[0].weight
    channels_last = weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    model.eval().to(memory_format=torch.contiguous_format).save_pretrained(folder, **card)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train(was_training)


def load_weights_into(model: PerceptualSR, folder: Path) -> None:
    """Load the weights saved in `folder` into `model`; ValueError if they are for another architecture."""
    saved = PerceptualSR.from_pretrained(folder)
    if saved.config != model.config:
        raise ValueError(f"the weights in {folder} are for {saved.config}, not the requested {model.config}")
    model.load_state_dict(saved.state_dict(), strict=True)


def save_final_model(model: PerceptualSR, out_dir: Path, model_card_kwargs: dict[str, Any]) -> None:
    """Save the finished model (weights, config.json, card) into the run folder `out_dir`.

    The run folder also holds the logs and the checkpoint, so it is not replaced whole: the model
    (weights, config, a fresh card) is saved into a staging folder first, then each file replaces
    its namesake in one rename. A failure while saving leaves the previous model as it was; a kill
    between the renames can leave some files new, but never one half-written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".final-model-") as staging:
        save_weights(model, Path(staging), model_card_kwargs=model_card_kwargs)
        for saved in sorted(Path(staging).iterdir()):
            with atomic_file(out_dir / saved.name) as target:
                os.replace(saved, target)


# --- Checkpoints -----------------------------------------------------------------------------


def save_checkpoint(folder: Path, model: PerceptualSR, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, step: int, config: TrainConfig, *, precision: str,
                    average: AveragedModel | None = None, critic: Critic | None = None) -> None:
    """Atomically write the model, its weight average, optimizer, scaler, RNG state and discriminator.

    precision: the precision the run resolved to ("bf16", "fp16", "fp32"); a resume must match it.
    """
    with atomic_folder(folder) as staging:
        save_weights(model, staging)
        state = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "train_config": json.dumps(dataclasses.asdict(config)),
            "precision": precision,
        }
        if average is not None:
            save_weights(average.module, staging / EMA_DIR)
            state["ema_updates"] = average_updates(average)
        if critic is not None:
            save_file({name: tensor.contiguous() for name, tensor in critic.network.state_dict().items()},
                      str(staging / DISCRIMINATOR))
            state["discriminator_optimizer"] = critic.optimizer.state_dict()
        torch.save(state, staging / TRAINING_STATE)


class SavedSettings(NamedTuple):
    """What a checkpoint records about how its run trains."""

    config: dict[str, Any]  # the TrainConfig as a dict, under the names it was written with
    precision: str | None  # the resolved precision; None in checkpoints written before it was recorded


def recover(folder: Path) -> None:
    """Repair a checkpoint folder a kill left mid-swap (the last good checkpoint is put back)."""
    recover_folder(folder)


def read_settings(folder: Path) -> SavedSettings:
    """The settings the checkpoint in `folder` was written with; FileNotFoundError if there is none."""
    if not (folder / TRAINING_STATE).is_file():
        raise FileNotFoundError(f"--resume: no checkpoint in {folder}; run without --resume to start fresh")
    state = _load_training_state(folder / TRAINING_STATE, "cpu")
    return SavedSettings(json.loads(state["train_config"]), state.get("precision"))


def _load_training_state(path: Path, map_location: Any) -> dict[str, Any]:
    """The training state `save_checkpoint` wrote, or one ValueError naming the file. weights_only:
    the restricted unpickler, which admits tensors and plain containers only; what it refuses is
    reported as damage, never retried without it (torch's own message would suggest that)."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(state, dict) or not isinstance(state.get("train_config"), str):
            raise ValueError("no train_config in it")
        json.loads(state["train_config"])
    except Exception as error:  # noqa: BLE001 - a damaged file raises anything from UnpicklingError to IndexError
        raise ValueError(f"cannot resume from {path}: it is damaged or was not written by train.py "
                         f"({type(error).__name__}); start a new run in another --output-dir, or use "
                         f"--init-from on a saved model folder") from None
    return state


def check_resumable(saved: dict[str, Any], config: TrainConfig, *, saved_precision: str | None = None,
                    precision: str | None = None) -> None:
    """Refuse to resume a run with a different recipe: the result would be neither run.

    saved: the TrainConfig (as a dict) the checkpoint was written with. A setting it does not record
    (written by an older version) counts as its default; one it records under an old name
    (RENAMED_FIELDS) counts under the new one. Only `resumable` settings may change.
    saved_precision, precision: the resolved precision of the checkpoint and of this run; they must
    agree. Where the checkpoint does not record one, the `precision` settings must agree instead.
    """
    current = dataclasses.asdict(config)
    defaults = dataclasses.asdict(TrainConfig())
    saved = {**defaults, **{RENAMED_FIELDS.get(name, name): value for name, value in saved.items()}}
    may_change = resumable_fields()
    if saved_precision is None or precision is None:
        may_change -= {"precision"}
    changed = sorted(name for name in current if name not in may_change and saved[name] != current[name])
    details = [f"{name}: {saved[name]!r} -> {current[name]!r}" for name in changed]
    if saved_precision is not None and precision is not None and saved_precision != precision:
        how = " (what --precision auto gives on this device)" if config.precision == "auto" else ""
        details.append(f"precision: {saved_precision!r} -> {precision!r}{how}")
    if details:
        raise ValueError(f"--resume with a different recipe ({', '.join(details)}); use the original flags "
                         "and hardware, or start a new run in another --output-dir")
    if config.lr_schedule == "cosine" and (saved["steps"], saved["epochs"]) != (config.steps, config.epochs):
        warnings.warn("resuming a cosine schedule with a different length: the learning rate is recomputed "
                      "for the new total and jumps at the resumed step", stacklevel=2)


def load_checkpoint(folder: Path, model: PerceptualSR, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, device: torch.device,
                    average: AveragedModel | None = None, critic: Critic | None = None) -> int:
    """Restore a checkpoint written by `save_checkpoint`; returns the step it was taken at."""
    if not (folder / TRAINING_STATE).is_file():
        raise FileNotFoundError(f"no checkpoint to resume from in {folder}; run without --resume to start fresh")
    load_weights_into(model, folder)
    state = _load_training_state(folder / TRAINING_STATE, device)
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"].cpu())
    if average is not None:
        load_weights_into(average.module, folder / EMA_DIR)
        average.n_averaged.fill_(int(state["ema_updates"]) + 1)  # + the starting copy
    if critic is not None:
        if not (folder / DISCRIMINATOR).is_file() or "discriminator_optimizer" not in state:
            raise ValueError(f"cannot resume from {folder}: the run has an adversarial term but the checkpoint "
                             f"holds no discriminator ({DISCRIMINATOR})")
        critic.network.load_state_dict(load_file(str(folder / DISCRIMINATOR), device=str(device)), strict=True)
        critic.optimizer.load_state_dict(state["discriminator_optimizer"])
    return int(state["step"])
