"""Training: loss goes down, resume equals an uninterrupted run, DDP replicas agree, errors are clear."""

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
from perceptual_sr.prepare import PrepareConfig, prepare
from perceptual_sr.training import TrainConfig, TrainingDiverged, train

TINY = SRConfig(channels=8, residual_blocks=1, upsampler="resize-conv")
pytestmark = pytest.mark.slow  # real training runs on a prepared dataset


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


def test_resume_continues_exactly(dataset, tmp_path):
    straight = train(TINY, _config(dataset, tmp_path / "straight", steps=6))
    train(TINY, _config(dataset, tmp_path / "resumed", steps=3))
    resumed = train(TINY, _config(dataset, tmp_path / "resumed", steps=6, resume=True))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert _read_column(tmp_path / "resumed" / "log.csv", "step") == [1, 2, 3, 4, 5, 6]


def test_a_second_run_into_a_used_folder_must_resume(dataset, tmp_path):
    train(TINY, _config(dataset, tmp_path, steps=1))
    with pytest.raises(FileExistsError, match="--resume"):
        train(TINY, _config(dataset, tmp_path, steps=2))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(TINY, _config(dataset, tmp_path / "fresh", steps=2, resume=True))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(dataset, tmp_path, monkeypatch):
    from perceptual_sr import loss as loss_module

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


@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(precision="fp8"), dict(learning_rate=-1.0),
                                 dict(feature_layers="relu9_9"), dict(steps=0)])
def test_bad_train_config_names_the_value(bad):
    with pytest.raises(ValueError):
        TrainConfig(data="x", **bad)


def test_command_line_reports_errors_in_one_line(tmp_path, capsys):
    assert train_script.main(["--data", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "o")]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("train.py: error:") and "\n" not in error
    with pytest.raises(SystemExit) as exited:  # a choice argparse knows: its own usage error
        train_script.main(["--upsampler", "bilinear", "--data", "x"])
    assert exited.value.code == 2 and "invalid choice: 'bilinear'" in capsys.readouterr().err


def test_flags_are_generated_from_the_dataclasses(dataset, tmp_path):
    model_config, train_config = train_script.parse_args(
        ["--data", str(dataset), "--channels", "8", "--residual-blocks", "1", "--upsampler", "resize-conv",
         "--crop-size", "16", "--no-channels-last", "--steps", "2", "--val-dir", "none"])
    assert model_config == TINY
    assert train_config.crop_size == 16 and not train_config.channels_last and train_config.steps == 2
    assert train_config.val_dir is None


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


def test_each_sample_gets_its_own_crop_and_flip_and_pairs_stay_aligned():
    from perceptual_sr.training import random_crops, random_dihedral

    generator = torch.Generator().manual_seed(0)
    high_res = torch.rand(16, 3, 32, 32)
    low_res = torch.nn.functional.avg_pool2d(high_res, 4)  # commutes with aligned crops, flips and transposes
    low_crop, high_crop = random_crops(low_res, high_res, 4, 16, generator)
    low_aug, high_aug = random_dihedral(low_crop, high_crop, generator)
    assert low_aug.shape == (16, 3, 4, 4) and high_aug.shape == (16, 3, 16, 16)
    torch.testing.assert_close(torch.nn.functional.avg_pool2d(high_aug, 4), low_aug)
    # Not one window for the whole batch: the crops of different samples come from different places.
    origins = {tuple((high_res[i] == high_crop[i][:, :1, :1]).nonzero()[0].tolist()) for i in range(16)}
    assert len(origins) > 1
    flipped = [not torch.equal(high_aug[i], high_crop[i]) for i in range(16)]
    assert 0 < sum(flipped) < 16


def test_learning_rate_schedule():
    from perceptual_sr.training import learning_rate_at

    constant = TrainConfig(data="x", learning_rate=1e-3)
    assert learning_rate_at(0, 100, constant) == learning_rate_at(99, 100, constant) == 1e-3
    cosine = TrainConfig(data="x", learning_rate=1e-3, lr_schedule="cosine", warmup_steps=10)
    assert learning_rate_at(0, 110, cosine) == pytest.approx(1e-4)
    assert learning_rate_at(10, 110, cosine) == pytest.approx(1e-3)
    assert learning_rate_at(60, 110, cosine) == pytest.approx(5e-4)
    assert learning_rate_at(110, 110, cosine) == pytest.approx(0.0, abs=1e-12)


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


def test_resume_refuses_a_changed_recipe(dataset, tmp_path):
    train(TINY, _config(dataset, tmp_path, steps=2))
    with pytest.raises(ValueError, match="pixel_weight"):
        train(TINY, _config(dataset, tmp_path, steps=4, resume=True, pixel_weight=5.0))
    train(TINY, _config(dataset, tmp_path, steps=4, resume=True, log_every=2))  # reporting may change


def test_init_from_starts_from_the_given_weights(dataset, tmp_path):
    from perceptual_sr.training import setup_run

    start = PerceptualSR(TINY)
    torch.nn.init.normal_(start.tail.weight)
    start.save_pretrained(tmp_path / "start")
    run = setup_run(TINY, _config(dataset, tmp_path / "run", init_from=str(tmp_path / "start"),
                                  feature_layers="none", pixel_weight=1.0))
    torch.testing.assert_close(run.model.tail.weight.cpu(), start.tail.weight)
    assert run.loss_fn.vgg is None  # pixel loss only: no VGG
    with pytest.raises(ValueError, match="pixel-weight"):
        TrainConfig(data="x", feature_layers="none")
    with pytest.raises(ValueError, match="for"):
        setup_run(SRConfig(channels=4, residual_blocks=1, upsampler="resize-conv"),
                  _config(dataset, tmp_path / "run2", init_from=str(tmp_path / "start")))


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


def test_checkpoints_leave_the_live_model_in_its_memory_layout(dataset, tmp_path):
    from perceptual_sr.training import save_checkpoint, setup_run

    run = setup_run(TINY, _config(dataset, tmp_path))
    assert run.model.head[0].weight.is_contiguous(memory_format=torch.channels_last)
    save_checkpoint(run.checkpoint_dir, run.model, run.optimizer, run.scaler, 0, run.config)
    assert run.model.head[0].weight.is_contiguous(memory_format=torch.channels_last)  # training goes on alike


def test_resume_treats_settings_an_old_checkpoint_lacks_as_defaults(dataset, tmp_path):
    from perceptual_sr.training import check_resumable

    old = {key: value for key, value in vars(_config(dataset, tmp_path)).items()
           if key not in ("grid_weight", "ema_decay", "lr_schedule")}  # written before those existed
    check_resumable(old, _config(dataset, tmp_path))
    with pytest.raises(ValueError, match="grid_weight"):
        check_resumable(old, _config(dataset, tmp_path, grid_weight=5.0))
    with pytest.warns(UserWarning, match="cosine"):
        check_resumable({**old, "lr_schedule": "cosine"}, _config(dataset, tmp_path, lr_schedule="cosine", steps=99))


def test_learning_rate_flag_keeps_its_old_name_and_old_checkpoints_resume(dataset, tmp_path):
    from perceptual_sr.train_command import parse_args
    from perceptual_sr.training import check_resumable

    for flag in ("--learning-rate", "--lr"):
        assert parse_args(["--data", "x", flag, "2e-4"])[1].learning_rate == 2e-4
    old = {("lr" if key == "learning_rate" else key): value for key, value in vars(_config(dataset, tmp_path)).items()}
    check_resumable(old, _config(dataset, tmp_path))  # a checkpoint that says "lr"
    with pytest.raises(ValueError, match="learning_rate"):
        check_resumable(old, _config(dataset, tmp_path, learning_rate=old["lr"] / 2))
