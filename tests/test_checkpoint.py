"""Checkpoints: round trips, the resume check, the weight average, and saves that a failure cannot half-do."""

import dataclasses
import json

import pytest
import torch

from perceptual_sr import PerceptualSR, SRConfig
from perceptual_sr.hub import model_card
from perceptual_sr.training.checkpoint import (
    TRAINING_STATE,
    check_resumable,
    load_checkpoint,
    read_settings,
    recover,
    save_checkpoint,
    save_final_model,
    weight_average,
)
from perceptual_sr.training.config import TrainConfig

TINY = SRConfig(channels=8, residual_blocks=1, upsampler="resize-conv")


def _config(**overrides) -> TrainConfig:
    return TrainConfig(**{"data": "data/x4", "output_dir": "runs/a", "steps": 6, **overrides})


def _trained_a_little(model: PerceptualSR, steps: int = 2, seed: int = 0) -> torch.optim.Optimizer:
    """Two Adam steps (which also move BatchNorm's running statistics), so states are not initial."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        low_res = torch.rand(2, 3, 8, 8, generator=generator)
        loss = (model(low_res) - torch.rand(2, 3, 32, 32, generator=generator)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return optimizer


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)


# --- The resume check ------------------------------------------------------------------------


def test_resume_refuses_a_changed_recipe_naming_each_setting():
    saved = dataclasses.asdict(_config())
    check_resumable(saved, _config(log_every=3, steps=9, device="cpu"))  # how long and how it reports: fine
    with pytest.raises(ValueError, match=r"pixel_weight: 0\.0 -> 5\.0.*seed: 0 -> 1"):
        check_resumable(saved, _config(pixel_weight=5.0, seed=1))


def test_resume_refuses_a_changed_precision_naming_it():
    saved = dataclasses.asdict(_config())
    with pytest.raises(ValueError, match="precision: 'bf16' -> 'fp32'"):
        check_resumable(saved, _config(), saved_precision="bf16", precision="fp32")
    # What counts is the precision the run resolves to, not the word it was asked for with.
    check_resumable(saved, _config(precision="bf16"), saved_precision="bf16", precision="bf16")
    # A checkpoint that does not record its precision: the setting itself must then match.
    with pytest.raises(ValueError, match="precision: 'auto' -> 'bf16'"):
        check_resumable(saved, _config(precision="bf16"), saved_precision=None, precision="bf16")


def test_resume_treats_settings_an_old_checkpoint_lacks_as_defaults():
    old = {key: value for key, value in dataclasses.asdict(_config()).items()
           if key not in ("grid_weight", "ema_decay", "lr_schedule")}  # written before those existed
    check_resumable(old, _config())
    with pytest.raises(ValueError, match="grid_weight"):
        check_resumable(old, _config(grid_weight=5.0))
    with pytest.warns(UserWarning, match="cosine"):
        check_resumable({**old, "lr_schedule": "cosine"}, _config(lr_schedule="cosine", steps=99))


def test_a_checkpoint_that_says_lr_resumes_as_learning_rate():
    old = {("lr" if key == "learning_rate" else key): value for key, value in dataclasses.asdict(_config()).items()}
    check_resumable(old, _config())
    with pytest.raises(ValueError, match="learning_rate"):
        check_resumable(old, _config(learning_rate=old["lr"] / 2))


# --- Save and load ---------------------------------------------------------------------------


@pytest.mark.slow
def test_checkpoint_round_trip_restores_model_average_optimizer_and_precision(tmp_path):
    model = PerceptualSR(TINY)
    average = weight_average(model, 0.9)
    optimizer = _trained_a_little(model)
    average.update_parameters(model)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    save_checkpoint(tmp_path / "checkpoint", model, optimizer, scaler, 7, _config(ema_decay=0.9),
                    precision="fp32", average=average)
    saved = read_settings(tmp_path / "checkpoint")
    assert saved.precision == "fp32" and saved.config == json.loads(json.dumps(dataclasses.asdict(_config(ema_decay=0.9))))

    restored = PerceptualSR(TINY)
    restored_average = weight_average(restored, 0.9)
    restored_optimizer = torch.optim.Adam(restored.parameters(), lr=1e-2)
    step = load_checkpoint(tmp_path / "checkpoint", restored, restored_optimizer, scaler, torch.device("cpu"),
                           restored_average)
    assert step == 7
    _assert_same_state(model, restored)
    _assert_same_state(average.module, restored_average.module)
    assert restored_optimizer.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]
    # Both averages go on alike: the restored one knows how many updates it has averaged.
    _trained_a_little(model, seed=1)
    average.update_parameters(model)
    restored.load_state_dict(model.state_dict())
    restored_average.update_parameters(restored)
    _assert_same_state(average.module, restored_average.module)


@pytest.mark.slow
def test_a_checkpoint_from_before_precision_was_recorded_still_resumes(tmp_path):
    model = PerceptualSR(TINY)
    optimizer = _trained_a_little(model)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    save_checkpoint(tmp_path / "checkpoint", model, optimizer, scaler, 3, _config(), precision="fp32",
                    average=weight_average(model, 0.9))
    state = torch.load(tmp_path / "checkpoint" / TRAINING_STATE, weights_only=True)
    del state["precision"]
    torch.save(state, tmp_path / "checkpoint" / TRAINING_STATE)
    saved = read_settings(tmp_path / "checkpoint")
    assert saved.precision is None
    check_resumable(saved.config, _config(), saved_precision=saved.precision, precision="fp32")
    assert load_checkpoint(tmp_path / "checkpoint", PerceptualSR(TINY), torch.optim.Adam(model.parameters()),
                           scaler, torch.device("cpu"), weight_average(PerceptualSR(TINY), 0.9)) == 3


def test_a_kill_between_the_two_renames_of_a_save_leaves_the_last_checkpoint(tmp_path):
    model = PerceptualSR(TINY)
    optimizer = _trained_a_little(model)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    folder = tmp_path / "checkpoint"
    save_checkpoint(folder, model, optimizer, scaler, 3, _config(), precision="fp32")
    folder.rename(tmp_path / "checkpoint.old")  # the next save parked the old one, then was killed
    (tmp_path / "checkpoint.tmp").mkdir()  # with its new one half written
    recover(folder)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint"]
    assert read_settings(folder).precision == "fp32"


def test_checkpoints_leave_the_live_model_in_its_memory_layout(tmp_path):
    model = PerceptualSR(TINY).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters())
    save_checkpoint(tmp_path / "checkpoint", model, optimizer, torch.amp.GradScaler("cpu", enabled=False), 0,
                    _config(), precision="fp32")
    assert model.head[0].weight.is_contiguous(memory_format=torch.channels_last)  # training goes on alike
    assert model.training


def test_no_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        read_settings(tmp_path / "checkpoint")


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign pickle"])
def test_a_damaged_training_state_is_one_clear_error_naming_it(tmp_path, damage):
    model = PerceptualSR(TINY)
    optimizer = _trained_a_little(model)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    save_checkpoint(tmp_path / "checkpoint", model, optimizer, scaler, 3, _config(), precision="fp32")
    state = tmp_path / "checkpoint" / TRAINING_STATE
    if damage == "garbage":
        state.write_bytes(b"this is not a checkpoint")
    elif damage == "truncated":
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    else:  # a well-formed file of something else
        torch.save({"weights": torch.zeros(2)}, state)
    for load in (lambda: read_settings(tmp_path / "checkpoint"),
                 lambda: load_checkpoint(tmp_path / "checkpoint", model, optimizer, scaler, torch.device("cpu"))):
        with pytest.raises(ValueError, match=f"cannot resume from .*{TRAINING_STATE}: it is damaged"):
            load()


# --- The weight average ----------------------------------------------------------------------


def test_weight_average_follows_the_warmed_up_ema_of_parameters_and_batchnorm_statistics():
    decay = 0.9
    model = PerceptualSR(TINY)
    average = weight_average(model, decay)
    # The formula it replaces: decay min(d, (1 + n) / (10 + n)) at the n-th update, on every float
    # entry of the state (BatchNorm running statistics included); integer buffers copied.
    expected = {name: value.clone() for name, value in model.state_dict().items()}
    for update in range(3):
        _trained_a_little(model, steps=1, seed=update)
        average.update_parameters(model)
        rate = min(decay, (1 + update) / (10 + update))
        for name, value in model.state_dict().items():
            expected[name] = rate * expected[name] + (1 - rate) * value if value.is_floating_point() else value.clone()
    for name, value in average.module.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=1e-6, atol=1e-7, msg=name)
    assert average.module.state_dict()["head.1.num_batches_tracked"] == 3
    assert not torch.equal(average.module.state_dict()["head.1.running_mean"], model.state_dict()["head.1.running_mean"])


# --- The final model -------------------------------------------------------------------------


def test_the_final_model_replaces_the_last_one_with_a_fresh_card(tmp_path):
    first, second = PerceptualSR(TINY), PerceptualSR(TINY)
    torch.nn.init.normal_(second.tail.weight)
    save_final_model(first, tmp_path, {"notes": "first run"})
    save_final_model(second, tmp_path, {"notes": "second run"})
    _assert_same_state(PerceptualSR.from_pretrained(tmp_path), second)
    card = (tmp_path / "README.md").read_text()
    assert "second run" in card and "first run" not in card
    assert sorted(path.name for path in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_a_failure_while_saving_the_final_model_leaves_the_previous_one(tmp_path, monkeypatch):
    save_final_model(PerceptualSR(TINY), tmp_path, {"notes": "first run"})
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}

    def disk_full(*args, **kwargs):  # the card is written after the weights: a failure mid-save
        raise OSError("No space left on device")

    monkeypatch.setattr(model_card, "build", disk_full)
    changed = PerceptualSR(TINY)
    torch.nn.init.normal_(changed.tail.weight)
    with pytest.raises(OSError, match="No space"):
        save_final_model(changed, tmp_path, {"notes": "second run"})
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before  # nothing half-written left
