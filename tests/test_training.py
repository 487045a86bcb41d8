"""Training: loss goes down, resume equals an uninterrupted run, DDP replicas agree, errors are clear.

Real training runs are marked `slow`; set-up, augmentation and the command line are quick.
"""

import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image
from safetensors.torch import load_file, save_file
from scipy.ndimage import gaussian_filter

import train as train_script
from perceptual_sr import PerceptualSR, SRConfig
from perceptual_sr.data.prepare import PrepareConfig, prepare
from perceptual_sr.networks.discriminator import Critic
from perceptual_sr.training.checkpoint import DISCRIMINATOR
from perceptual_sr.training.config import TrainConfig
from perceptual_sr.training.logs import TRAIN_LOG_FIELDS, CsvLog
from perceptual_sr.training.loop import TrainingDiverged, setup_run, train
from perceptual_sr.utils import runtime

TINY = SRConfig(channels=8, residual_blocks=1, upsampler="resize-conv")
PIXEL_LOSS = dict(feature_layers="none", pixel_weight=1.0)  # no VGG to load: for tests of the set-up alone


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A real prepared x4 dataset: 32 px HR crops of smooth random 'photos'."""
    source = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(8):
        noise = rng.normal(size=(48, 56, 3))
        image = gaussian_filter(noise, sigma=(2, 2, 0)) * 60 + 128
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(source / f"img{i}.png")
    out = tmp_path_factory.mktemp("data") / "x4"
    prepare(PrepareConfig(source=source, out=out, num_images=100, val_images=1, crops_per_image=4,
                          hr_size=32, scale=4, seed=0, workers=1))
    return out


def _config(dataset, out_dir, **overrides):
    settings = dict(data=str(dataset), output_dir=str(out_dir), steps=6, batch_size=4, feature_layers="relu1_2",
                    workers=0, log_every=1, checkpoint_every=3, val_every=1000, seed=0)
    return TrainConfig(**{**settings, **overrides})


def _read_column(path, column):
    import csv

    with open(path, newline="") as handle:
        return [float(row[column]) for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_a_few_steps_lower_the_loss_and_write_a_loadable_model(dataset, tmp_path):
    train(TINY, _config(dataset, tmp_path, steps=24, learning_rate=3e-3))
    losses = _read_column(tmp_path / "log.csv", "loss")
    assert len(losses) == 24
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    model = PerceptualSR.from_pretrained(tmp_path)
    assert model.config == TINY
    card = (tmp_path / "README.md").read_text()
    assert "## Training" in card and '"steps": 24' in card
    assert (tmp_path / "loss.png").stat().st_size > 0


@pytest.mark.slow
def test_resume_continues_exactly(dataset, tmp_path):
    straight = train(TINY, _config(dataset, tmp_path / "straight", steps=6))
    train(TINY, _config(dataset, tmp_path / "resumed", steps=3))
    # As an older version wrote it, before the last columns were added: a resume must keep the
    # log readable, the old rows padded and the new ones under the new header.
    log = tmp_path / "resumed" / "log.csv"
    old_columns = TRAIN_LOG_FIELDS.index("adversarial")
    log.write_text("".join(",".join(line.split(",")[:old_columns]) + "\n" for line in log.read_text().splitlines()))
    resumed = train(TINY, _config(dataset, tmp_path / "resumed", steps=6, resume=True))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert _read_column(log, "step") == [1, 2, 3, 4, 5, 6]
    rows = [line.split(",") for line in log.read_text().splitlines()]
    assert rows[0] == TRAIN_LOG_FIELDS and all(len(row) == len(TRAIN_LOG_FIELDS) for row in rows)
    assert _read_column(log, "loss")[:3] == _read_column(tmp_path / "straight" / "log.csv", "loss")[:3]


def test_a_log_from_another_program_is_refused_not_appended_to(tmp_path):
    (tmp_path / "log.csv").write_text("time,reading\n1,2\n")
    with pytest.raises(ValueError, match="move it aside"):
        CsvLog(tmp_path / "log.csv", TRAIN_LOG_FIELDS)
    assert (tmp_path / "log.csv").read_text() == "time,reading\n1,2\n"


@pytest.mark.slow
def test_a_second_run_into_a_used_folder_must_resume(dataset, tmp_path):
    train(TINY, _config(dataset, tmp_path, steps=1))
    with pytest.raises(FileExistsError, match="--resume"):
        train(TINY, _config(dataset, tmp_path, steps=2))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(TINY, _config(dataset, tmp_path / "fresh", steps=2, resume=True))


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(dataset, tmp_path, monkeypatch):
    from perceptual_sr.training import loss as loss_module
    original = loss_module.PerceptualLoss.forward
    calls = {"n": 0}

    def poisoned(self, output, target):
        calls["n"] += 1
        total, terms = original(self, output, target)
        return (total * float("nan"), terms) if calls["n"] == 5 else (total, terms)

    monkeypatch.setattr(loss_module.PerceptualLoss, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match="step 4"):
        train(TINY, _config(dataset, tmp_path, steps=6, checkpoint_every=3))
    kept = PerceptualSR.from_pretrained(tmp_path / "checkpoint")
    assert all(torch.isfinite(p).all() for p in kept.parameters())
    state = torch.load(tmp_path / "checkpoint" / "training_state.pt", weights_only=True)
    assert state["step"] == 3


def test_missing_or_mismatched_dataset_is_a_clear_error(dataset, tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        train(TINY, _config(tmp_path / "nothing", tmp_path / "run"))
    with pytest.raises(ValueError, match="x4"):
        train(SRConfig(scale=2, channels=8, residual_blocks=1), _config(dataset, tmp_path / "run2"))


def test_command_line_reports_errors_in_one_line(tmp_path, capsys):
    assert train_script.main(["--data", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "o")]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("train.py: error:") and "\n" not in error
    with pytest.raises(SystemExit) as exited:  # a choice argparse knows: its own usage error
        train_script.main(["--upsampler", "bilinear", "--data", "x"])
    assert exited.value.code == 2 and "invalid choice: 'bilinear'" in capsys.readouterr().err


@pytest.mark.slow
def test_push_to_hub_uploads_the_final_folder(dataset, tmp_path, monkeypatch):
    from huggingface_hub import HfApi, RepoUrl

    uploaded = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: RepoUrl(f"https://huggingface.co/{repo_id}"))

    def fake_upload_folder(self, *, repo_id, folder_path, allow_patterns=None, **kwargs):
        import fnmatch

        uploaded["repo_id"] = repo_id
        uploaded["files"] = {p.name: p.read_bytes() for p in __import__("pathlib").Path(folder_path).iterdir()
                             if p.is_file() and any(fnmatch.fnmatch(p.name, rule) for rule in allow_patterns)}
        return "commit"

    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    train(TINY, _config(dataset, tmp_path, steps=2, push_to_hub="someone/sr-test"))
    assert uploaded["repo_id"] == "someone/sr-test"
    assert set(uploaded["files"]) == {"config.json", "model.safetensors", "README.md", "train_config.json",
                                      "log.csv", "val.csv", "loss.png"}
    assert uploaded["files"]["README.md"] == (tmp_path / "README.md").read_bytes()  # the training card, unchanged
    assert b"## Training" in uploaded["files"]["README.md"]


def _ddp_worker(rank, world_size, port, dataset, out_dir, result_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    model = train(TINY, _config(dataset, out_dir, steps=3, device="cpu"))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(result_dir, f"rank{rank}.safetensors"))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_replicas_end_identical(dataset, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(dataset), str(tmp_path / "run"), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    trained = [name for name in rank0 if "running" not in name and "num_batches" not in name]
    for name in trained:
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0, msg=name)
    # The replicas moved away from the initial weights, and rank 0 saved the model.
    initial = PerceptualSR(TINY).state_dict()
    assert any(not torch.equal(initial[name], rank0[name]) for name in trained)
    assert PerceptualSR.from_pretrained(tmp_path / "run").config == TINY


@pytest.mark.slow
def test_weight_average_is_saved_and_resume_is_exact(dataset, tmp_path):
    recipe = dict(ema_decay=0.9, lr_schedule="cosine", warmup_steps=2)
    straight = train(TINY, _config(dataset, tmp_path / "straight", steps=6, **recipe))
    train(TINY, _config(dataset, tmp_path / "resumed", steps=3, **recipe))
    resumed = train(TINY, _config(dataset, tmp_path / "resumed", steps=6, resume=True, **recipe))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    saved = PerceptualSR.from_pretrained(tmp_path / "straight")
    for (name, a), b in zip(straight.state_dict().items(), saved.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)  # the average is what ships
    raw = PerceptualSR.from_pretrained(tmp_path / "straight" / "checkpoint")
    assert not torch.equal(raw.tail.weight, saved.tail.weight)


@pytest.mark.slow
def test_resume_refuses_a_changed_recipe(dataset, tmp_path):
    train(TINY, _config(dataset, tmp_path, steps=2, device="cpu"))  # auto: fp32 on a CPU without AMX (conftest)
    with pytest.raises(ValueError, match="pixel_weight"):
        train(TINY, _config(dataset, tmp_path, steps=4, resume=True, pixel_weight=5.0))
    with pytest.raises(ValueError, match="precision: 'fp32' -> 'bf16'"):
        train(TINY, _config(dataset, tmp_path, steps=4, resume=True, device="cpu", precision="bf16"))
    # Reporting may change, and so may the precision's spelling where it resolves alike.
    train(TINY, _config(dataset, tmp_path, steps=4, resume=True, log_every=2, device="cpu", precision="fp32"))


def test_init_from_starts_from_the_given_weights(dataset, tmp_path):
    start = PerceptualSR(TINY)
    torch.nn.init.normal_(start.tail.weight)
    start.save_pretrained(tmp_path / "start")
    run = setup_run(TINY, _config(dataset, tmp_path / "run", init_from=str(tmp_path / "start"),
                                  feature_layers="none", pixel_weight=1.0))
    torch.testing.assert_close(run.learner.model.tail.weight.cpu(), start.tail.weight)
    assert run.learner.loss_fn.vgg is None  # pixel loss only: no VGG
    with pytest.raises(ValueError, match="pixel-weight"):
        TrainConfig(data="x", feature_layers="none")
    with pytest.raises(ValueError, match="for"):
        setup_run(SRConfig(channels=4, residual_blocks=1, upsampler="resize-conv"),
                  _config(dataset, tmp_path / "run2", init_from=str(tmp_path / "start")))


@pytest.mark.slow
def test_validation_scores_the_held_out_split_and_the_val_dir(dataset, tmp_path):
    val_dir = tmp_path / "val"
    val_dir.mkdir()
    Image.fromarray((np.random.default_rng(1).random((48, 48, 3)) * 255).astype(np.uint8)).save(val_dir / "a.png")
    train(TINY, _config(dataset, tmp_path / "run", steps=2, val_dir=str(val_dir)))
    import csv

    with open(tmp_path / "run" / "val.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["step"], row["set"]) for row in rows] == [("0", "held-out"), ("0", "val"), ("2", "held-out"), ("2", "val")]
    assert all(np.isfinite(float(row["grid"])) for row in rows)


@pytest.mark.parametrize("amx, precision", [(True, "bf16"), (False, "fp32")])
def test_a_training_run_on_a_cpu_resolves_auto_precision_by_its_hardware_every_time(dataset, tmp_path, monkeypatch,
                                                                                    amx, precision):
    # A rule, not a timing: the same recipe must train alike from run to run on one machine.
    monkeypatch.setattr(runtime, "cpu_has_amx_bf16", lambda: amx)
    runs = [setup_run(TINY, _config(dataset, tmp_path / f"run{k}", device="cpu", **PIXEL_LOSS)) for k in range(2)]
    assert [run.runtime.precision for run in runs] == [precision, precision]
    assert runs[0].runtime.autocast_dtype == (torch.bfloat16 if amx else None)


@pytest.mark.slow
def test_a_run_resumed_on_another_cpu_keeps_the_precision_it_started_in(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runtime, "cpu_has_amx_bf16", lambda: True)
    train(TINY, _config(dataset, tmp_path, steps=1, device="cpu", **PIXEL_LOSS))  # bf16, as on an AMX Xeon
    monkeypatch.setattr(runtime, "cpu_has_amx_bf16", lambda: False)  # the next session's EPYC
    run = setup_run(TINY, _config(dataset, tmp_path, steps=2, resume=True, device="cpu", **PIXEL_LOSS))
    assert run.runtime.precision == "bf16" and run.step == 1
    assert "resuming in bf16" in capsys.readouterr().err
    with pytest.raises(ValueError, match="precision: 'bf16' -> 'fp32'"):  # asked for by name: refused, as before
        setup_run(TINY, _config(dataset, tmp_path, steps=2, resume=True, device="cpu", precision="fp32", **PIXEL_LOSS))


def test_a_resumed_run_starts_where_the_checkpoint_left_off(dataset, tmp_path):
    from perceptual_sr.training.loop import checkpoint

    run = setup_run(TINY, _config(dataset, tmp_path, **PIXEL_LOSS))
    torch.nn.init.normal_(run.learner.model.tail.weight)
    run.step = 5
    checkpoint(run)
    resumed = setup_run(TINY, _config(dataset, tmp_path, resume=True, **PIXEL_LOSS))
    assert resumed.step == 5
    torch.testing.assert_close(resumed.learner.model.tail.weight, run.learner.model.tail.weight, rtol=0, atol=0)


def _batch_at(run, step):
    from perceptual_sr.training.loop import batches

    run.step = step
    return next(batches(run))


def test_realistic_degradation_makes_each_lr_from_its_hr_crop_seeded_by_the_step(dataset, tmp_path):
    from perceptual_sr.data.degradations import degrade
    from perceptual_sr.utils.pixels import tensor_to_uint8, uint8_to_tensor

    config = _config(dataset, tmp_path, degradation="photo", crop_size=32, **PIXEL_LOSS)
    low_res, high_res = _batch_at(setup_run(TINY, config), 7)
    again_low, again_high = _batch_at(setup_run(TINY, config), 7)  # a fresh process resuming at step 7
    assert torch.equal(low_res, again_low) and torch.equal(high_res, again_high)
    assert low_res.shape == (4, 3, 8, 8) and high_res.shape == (4, 3, 32, 32)
    assert torch.equal(low_res * 255, (low_res * 255).round())  # 8-bit, as a decoded file
    other_low, _ = _batch_at(setup_run(TINY, config), 8)
    assert not torch.equal(low_res, other_low)
    # Mostly not the clean bicubic LR of the crop (a share of about 1 in 5 is kept clean).
    clean = torch.stack([uint8_to_tensor(degrade(tensor_to_uint8(hr), 4, "bicubic")) for hr in high_res])
    assert sum(not torch.equal(a, b) for a, b in zip(low_res, clean)) >= 2


@pytest.mark.slow
def test_resume_continues_exactly_with_realistic_degradation(dataset, tmp_path):
    settings = dict(degradation="photo", crop_size=32)
    straight = train(TINY, _config(dataset, tmp_path / "straight", steps=4, **settings))
    train(TINY, _config(dataset, tmp_path / "resumed", steps=2, checkpoint_every=2, **settings))
    resumed = train(TINY, _config(dataset, tmp_path / "resumed", steps=4, resume=True, **settings))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.slow
def test_sigterm_stops_train_py_with_a_checkpoint_of_its_last_step(dataset, tmp_path):
    """`kill`, a scheduler or a container stop sends SIGTERM: the run is checkpointed as on Ctrl-C."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "run"
    command = [sys.executable, "train.py", "--data", str(dataset), "--output-dir", str(out), "--steps", "100000",
               "--batch-size", "2", "--feature-layers", "none", "--pixel-weight", "1", "--channels", "4",
               "--residual-blocks", "1", "--workers", "0", "--log-every", "1", "--checkpoint-every", "100000",
               "--val-every", "100000", "--no-validate-at-start", "--precision", "fp32"]
    process = subprocess.Popen(command, cwd=Path(train_script.__file__).parent, stderr=subprocess.PIPE, text=True)
    log = out / "log.csv"
    deadline = time.monotonic() + 120
    while not (log.is_file() and len(log.read_text().splitlines()) > 3):  # a header and a few steps
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read() if process.poll() else ""
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 130, errors
    assert "interrupted: checkpoint saved; continue with --resume" in errors
    state = torch.load(out / "checkpoint" / "training_state.pt", weights_only=True)
    assert state["step"] >= 3


@pytest.mark.slow
def test_a_run_with_an_adversarial_term_resumes_exactly_and_ships_without_its_discriminator(dataset, tmp_path):
    recipe = dict(adversarial_weight=0.1, discriminator_features=4, crop_size=32, learning_rate=1e-3, hatch_weight=1.0)
    straight = train(TINY, _config(dataset, tmp_path / "straight", steps=6, **recipe))
    train(TINY, _config(dataset, tmp_path / "resumed", steps=3, **recipe))
    resumed = train(TINY, _config(dataset, tmp_path / "resumed", steps=6, resume=True, **recipe))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    discriminators = [load_file(tmp_path / run / "checkpoint" / DISCRIMINATOR) for run in ("straight", "resumed")]
    assert discriminators[0].keys() == discriminators[1].keys()
    for name in discriminators[0]:
        torch.testing.assert_close(discriminators[0][name], discriminators[1][name], rtol=1e-5, atol=1e-6, msg=name)
    # The discriminator trained, and it stays in the checkpoint: the model folder is the network alone.
    assert not torch.equal(discriminators[0]["logits.weight"],
                           Critic(0.1, 4, 1e-3, torch.device("cpu")).network.state_dict()["logits.weight"])
    assert not (tmp_path / "straight" / DISCRIMINATOR).exists()
    assert PerceptualSR.from_pretrained(tmp_path / "straight").config == TINY
    assert all(value > 0 for value in _read_column(tmp_path / "straight" / "log.csv", "adversarial"))
    assert all(value > 0 for value in _read_column(tmp_path / "straight" / "log.csv", "discriminator"))
    assert any(value > 0 for value in _read_column(tmp_path / "straight" / "log.csv", "hatch"))


@pytest.mark.slow
def test_an_interrupt_after_the_weights_moved_waits_for_the_step_to_end(dataset, tmp_path, monkeypatch,
                                                                        ctrl_c_raises):
    """Ctrl-C between the network's update and the discriminator's: the step ends and is counted,
    so the checkpoint never labels moved weights as the step before (a resume would train twice)."""
    import signal

    recipe = dict(adversarial_weight=0.1, discriminator_features=4, crop_size=32, learning_rate=1e-3,
                  checkpoint_every=100)
    whole = train(TINY, _config(dataset, tmp_path / "whole", steps=4, **recipe))
    calls, real_update = [], Critic.update

    def ctrl_c_during_the_second_discriminator_step(self, *args):
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)
        return real_update(self, *args)

    monkeypatch.setattr(Critic, "update", ctrl_c_during_the_second_discriminator_step)
    with pytest.raises(KeyboardInterrupt):
        train(TINY, _config(dataset, tmp_path / "split", steps=4, **recipe))
    monkeypatch.setattr(Critic, "update", real_update)
    assert torch.load(tmp_path / "split" / "checkpoint" / "training_state.pt", weights_only=True)["step"] == 2
    resumed = train(TINY, _config(dataset, tmp_path / "split", steps=4, resume=True, **recipe))
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.slow
def test_a_checkpoint_that_lost_its_discriminator_is_one_clear_error(dataset, tmp_path):
    recipe = dict(adversarial_weight=0.1, discriminator_features=4, crop_size=32)
    train(TINY, _config(dataset, tmp_path, steps=2, **recipe))
    (tmp_path / "checkpoint" / DISCRIMINATOR).unlink()
    with pytest.raises(ValueError, match="holds no discriminator"):
        train(TINY, _config(dataset, tmp_path, steps=4, resume=True, **recipe))
