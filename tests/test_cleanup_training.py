"""Training of the cleanup network: both stages run, learn, checkpoint and resume exactly."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from perceptual_sr.commands.train_cleanup import main
from perceptual_sr.data.dataset import SRPairDataset
from perceptual_sr.data.prepare import PrepareConfig, prepare
from perceptual_sr.inference.auto_cleanup import assess
from perceptual_sr.networks.restorer import CleanupConfig, CleanupNet
from perceptual_sr.training.cleanup_training import CleanupTrainConfig, DegradedSamples, strength_of, train_cleanup

TINY = CleanupConfig(channels=8, full_res_channels=4, blocks=1)
pytestmark = pytest.mark.slow  # prepares a dataset and trains


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, make_photo):
    source = tmp_path_factory.mktemp("photos")
    for i in range(6):
        Image.fromarray(make_photo(80, 72, seed=i)).save(source / f"img{i}.png")
    out = tmp_path_factory.mktemp("data") / "x4"
    prepare(PrepareConfig(source=source, out=out, num_images=100, val_images=1, crops_per_image=2,
                          hr_size=64, scale=4, seed=0, workers=1, degradation="bicubic"))
    return out


def _config(dataset, out_dir, **overrides):
    settings = dict(data=str(dataset), output_dir=str(out_dir), steps=4, batch_size=2, lr_crop=12, workers=0,
                    log_every=1, checkpoint_every=2)
    return CleanupTrainConfig(**{**settings, **overrides})


def test_a_sample_strength_is_what_auto_reads_off_the_same_file(make_photo):
    photo = make_photo(64, 48)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG", quality=80)
    decoded = Image.open(io.BytesIO(buffer.getvalue()))
    lr = torch.from_numpy(np.asarray(decoded.convert("RGB"), np.float32) / 255).permute(2, 0, 1)
    assert strength_of(lr, ["bicubic", "jpeg q80"]) == assess(decoded).cleanup > 0
    assert strength_of(lr, ["jpeg q80", "final resize bicubic -> 16x12"]) == assess(lr).cleanup  # no tables left


def test_samples_are_seeded_and_stage_hr_skips_what_it_cannot_learn_from(dataset):
    pairs = SRPairDataset(dataset)
    config = _config(dataset, "unused", stage="hr", clean_share=0.0)
    samples = DegradedSamples(pairs, config)
    first = samples[5]
    assert all(torch.equal(a, b) for a, b in zip(first, samples[5]))
    degraded, clean, hr, strength = first
    assert degraded.shape == clean.shape == (3, 12, 12) and hr.shape == (3, 48, 48)
    assert all(samples[k][3] > 0 for k in range(12))


@pytest.mark.parametrize("stage", ["lr", "hr"])
def test_each_stage_trains_checkpoints_and_resumes_exactly(dataset, tmp_path, stage, monkeypatch):
    from perceptual_sr.training import cleanup_training

    whole = train_cleanup(_config(dataset, tmp_path / "whole", stage=stage), TINY)
    calls, real_loss = [], cleanup_training.charbonnier

    def interrupted_at_the_third_step(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as Ctrl-C or SIGTERM: the run checkpoints its last step
        return real_loss(*args)

    monkeypatch.setattr(cleanup_training, "charbonnier", interrupted_at_the_third_step)
    with pytest.raises(KeyboardInterrupt):
        train_cleanup(_config(dataset, tmp_path / "split", stage=stage), TINY)
    monkeypatch.setattr(cleanup_training, "charbonnier", real_loss)
    resumed = train_cleanup(_config(dataset, tmp_path / "split", stage=stage, resume=True))  # its own architecture
    assert not torch.equal(whole.tail[-1].weight, torch.zeros_like(whole.tail[-1].weight))  # it learned
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    assert CleanupNet.from_pretrained(tmp_path / "whole").config == TINY
    rows = (tmp_path / "split" / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and len(rows) == 5


def test_a_used_output_folder_or_a_changed_recipe_is_refused(dataset, tmp_path, capsys):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "mine.txt").write_text("keep me")
    assert main(["--data", str(dataset), "--output-dir", str(tmp_path / "used"), "--steps", "1"]) == 1
    assert "not empty" in capsys.readouterr().err and (tmp_path / "used" / "mine.txt").read_text() == "keep me"
    train_cleanup(_config(dataset, tmp_path / "run", steps=2), TINY)
    with pytest.raises(ValueError, match="different recipe"):
        train_cleanup(_config(dataset, tmp_path / "run", steps=4, lr_crop=8, resume=True), TINY)


def test_bad_settings_are_clear_errors(dataset):
    with pytest.raises(ValueError, match="lr_crop"):
        CleanupTrainConfig(lr_crop=4)
    with pytest.raises(ValueError, match="clean_share"):
        CleanupTrainConfig(clean_share=1.5)
    with pytest.raises(ValueError, match="larger than the dataset"):
        DegradedSamples(SRPairDataset(dataset), _config(dataset, "unused", lr_crop=40))
