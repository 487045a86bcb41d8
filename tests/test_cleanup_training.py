"""Training of the cleanup network: both stages run, learn, checkpoint and resume exactly."""

import dataclasses
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from perceptual_sr.commands.train_cleanup import main
from perceptual_sr.data.dataset import SRPairDataset
from perceptual_sr.data.prepare import PrepareConfig, prepare
from perceptual_sr.inference.auto_cleanup import assess
from perceptual_sr.networks.restorer import CleanupConfig, CleanupNet
from perceptual_sr.networks.upscaler import PerceptualSR
from perceptual_sr.training.cleanup_training import (
    LOG_FIELDS,
    CleanupTrainConfig,
    DegradedSamples,
    strength_of,
    train_cleanup,
)
from perceptual_sr.utils.color import RGB_TO_YCBCR

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


@pytest.mark.parametrize("overrides", [
    dict(stage="lr"), dict(stage="lr", adversarial_weight=0.05, lr_crop=16, lr_hatch_weight=0.1, lr_grid_weight=10.0),
    dict(stage="lr", lr_feature_weight=0.05),
    dict(stage="hr"), dict(stage="hr", upscaler_learning_rate=1e-3, hr_target="clean"),
    dict(stage="hr", adversarial_weight=0.05, adversarial_on="hr", lr_crop=16)])
def test_each_stage_trains_checkpoints_and_resumes_exactly(dataset, tmp_path, overrides, monkeypatch):
    from perceptual_sr.training import cleanup_training

    upscaler_rate = overrides.get("upscaler_learning_rate", 0.0)
    whole = train_cleanup(_config(dataset, tmp_path / "whole", **overrides), TINY)
    calls, real_loss = [], cleanup_training.charbonnier

    def interrupted_at_the_third_step(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as Ctrl-C or SIGTERM: the run checkpoints its last step
        return real_loss(*args)

    monkeypatch.setattr(cleanup_training, "charbonnier", interrupted_at_the_third_step)
    with pytest.raises(KeyboardInterrupt):
        train_cleanup(_config(dataset, tmp_path / "split", **overrides), TINY)
    monkeypatch.setattr(cleanup_training, "charbonnier", real_loss)
    resumed = train_cleanup(_config(dataset, tmp_path / "split", resume=True, **overrides))  # its own architecture
    assert not torch.equal(whole.tail[-1].weight, torch.zeros_like(whole.tail[-1].weight))  # it learned
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    assert CleanupNet.from_pretrained(tmp_path / "whole").config == TINY
    rows = (tmp_path / "split" / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and len(rows) == 5
    # The co-trained upscaler is a fine-tuned copy, saved beside the cleanup; the bundled one is untouched.
    assert (tmp_path / "whole" / "upscaler").is_dir() == (upscaler_rate > 0)
    if upscaler_rate > 0:
        bundled = PerceptualSR.from_pretrained().state_dict()
        trained, split = (PerceptualSR.from_pretrained(tmp_path / run / "upscaler").state_dict()
                          for run in ("whole", "split"))
        assert not torch.equal(trained["head.0.weight"], bundled["head.0.weight"])
        assert all(torch.allclose(trained[k], split[k], atol=1e-6) for k in trained)
        assert all(torch.equal(trained[k], bundled[k]) for k in trained if "running" in k)  # BatchNorm kept as is


@pytest.fixture(scope="module")
def selection_photos(tmp_path_factory, make_photo):
    folder = tmp_path_factory.mktemp("select")
    for i in range(2):  # large enough for the hatch score's spectrum
        Image.fromarray(make_photo(192, 160, seed=10 + i)).save(folder / f"photo{i}.png")
    return folder


def test_selection_scores_the_cleanup_in_front_of_the_upscaler_on_both_damages(selection_photos, monkeypatch):
    from perceptual_sr.evaluation.metrics import LPIPSMetric
    from perceptual_sr.training import cleanup_selection

    cleanup = CleanupNet(TINY)
    torch.nn.init.normal_(cleanup.tail[-1].weight, std=0.05)  # a cleanup that changes its input

    def scores(strength):
        return cleanup_selection.selection_scores(cleanup, PerceptualSR.from_pretrained(), selection_photos,
                                                  max_images=2, lpips_metric=LPIPSMetric(), strength=strength)

    cleaned, alone = scores("auto"), scores(0.0)
    assert set(cleaned) == {"jpeg75", "noise", "jpeg75 hatch", "noise hatch"}
    assert all(0 < value < 5 for value in cleaned.values()) and cleaned != alone
    unhatched = {**alone, "jpeg75 hatch": float("inf"), "noise hatch": float("inf")}
    assert cleanup_selection.selection_score(cleaned, unhatched) == pytest.approx((cleaned["jpeg75"] + cleaned["noise"]) / 2)
    painted = {**cleaned, "noise hatch": alone["noise hatch"] + 2 * cleanup_selection.HATCH_MARGIN}
    assert cleanup_selection.selection_score(painted, alone) == float("inf")  # never a candidate, whatever its LPIPS


@pytest.mark.parametrize("stage, scripted, best_step", [("hr", (0.5, 0.6, 0.4), 4), ("lr", (0.4, 0.5, 0.6), 0),
                                                        ("lr", (float("inf"), 0.5, float("inf")), 2)])
def test_a_run_keeps_its_best_scored_checkpoint(dataset, selection_photos, tmp_path, monkeypatch, stage, scripted,
                                                best_step):
    from perceptual_sr.training import cleanup_selection

    scores = iter(scripted)
    monkeypatch.setattr(cleanup_selection, "selection_scores",
                        lambda *args, strength="auto", **kwargs: {"jpeg75": (s := 1.0 if strength == 0 else next(scores)),
                                                                  "noise": s, "jpeg75 hatch": 0.1, "noise hatch": 0.1})
    monkeypatch.setattr(cleanup_selection, "selection_score", lambda scores, alone: scores["jpeg75"])
    start = CleanupNet(TINY)
    torch.nn.init.normal_(start.tail[-1].weight, std=0.01)
    start.save_pretrained(tmp_path / "start")
    final = train_cleanup(_config(dataset, tmp_path / "run", stage=stage, init_from=str(tmp_path / "start"),
                                  select_on=str(selection_photos)))
    rows = (tmp_path / "run" / "selection.csv").read_text().splitlines()
    assert rows[0] == "step,jpeg75,noise,jpeg75 hatch,noise hatch,score"
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "2", "4"]
    best = CleanupNet.from_pretrained(tmp_path / "run" / "best")
    expected = {0: start, 4: final}.get(best_step)
    if expected is not None:
        assert all(torch.equal(a, b) for a, b in zip(best.state_dict().values(), expected.state_dict().values()))
    assert json.loads((tmp_path / "run" / "best" / "score.json").read_text())["step"] == best_step


def test_a_run_saved_before_a_setting_existed_resumes_with_its_default(dataset, tmp_path):
    train_cleanup(_config(dataset, tmp_path / "run", steps=2), TINY)
    state_path = tmp_path / "run" / "checkpoint" / "training_state.pt"
    state = torch.load(state_path, weights_only=True)
    recipe = json.loads(state["train_config"])
    del recipe["upscaler_learning_rate"]
    torch.save({**state, "train_config": json.dumps(recipe)}, state_path)
    log = tmp_path / "run" / "log.csv"  # as such a run logged it: without the adversarial columns
    log.write_text("".join(",".join(row.split(",")[:7]) + "\n" for row in log.read_text().splitlines()))
    resumed = train_cleanup(_config(dataset, tmp_path / "run", steps=4, resume=True))
    assert resumed.config == TINY
    rows = log.read_text().splitlines()
    assert rows[0] == ",".join(LOG_FIELDS) and len(rows) == 5 and len(rows[-1].split(",")) == len(LOG_FIELDS)
    with pytest.raises(ValueError, match="upscaler_learning_rate"):
        train_cleanup(_config(dataset, tmp_path / "run", steps=6, resume=True, stage="hr", upscaler_learning_rate=1e-3))


def test_a_log_row_cut_off_by_a_hard_kill_is_dropped_on_resume(dataset, tmp_path):
    train_cleanup(_config(dataset, tmp_path / "run", steps=2, checkpoint_every=2), TINY)
    log = tmp_path / "run" / "log.csv"
    whole = log.read_text()
    log.write_text(whole + "3,24,0.01")  # a row of a step after the checkpoint, cut off mid-write
    train_cleanup(_config(dataset, tmp_path / "run", steps=4, checkpoint_every=2, resume=True))
    rows = log.read_text().splitlines()
    assert rows[:3] == whole.splitlines() and [row.split(",")[0] for row in rows[1:]] == ["1", "2", "3", "4"]
    assert all(len(row.split(",")) == len(LOG_FIELDS) for row in rows)
    log.write_text("step,sam")  # not even a whole header
    train_cleanup(_config(dataset, tmp_path / "run", steps=5, checkpoint_every=2, resume=True))
    assert log.read_text().splitlines()[0] == ",".join(LOG_FIELDS)


def test_judged_at_hr_the_discriminator_sees_the_upscaled_output_against_the_upscaled_clean_lr(dataset, tmp_path,
                                                                                                monkeypatch):
    from perceptual_sr.networks.discriminator import Critic

    seen, real_update = [], Critic.update

    def recording(self, output, real, *args):
        seen.append((output.detach().clone(), real.clone()))
        return real_update(self, output, real, *args)

    monkeypatch.setattr(Critic, "update", recording)
    config = _config(dataset, tmp_path / "run", steps=1, stage="hr", adversarial_weight=0.05, adversarial_on="hr",
                     lr_crop=16)
    train_cleanup(config, TINY)
    _, clean_lr, _, _ = DegradedSamples(SRPairDataset(dataset), config)[0]  # the first of the only batch
    reference = PerceptualSR.from_pretrained().eval()
    output, real = seen[0]
    assert output.shape[-2:] == real.shape[-2:] == (64, 64)  # HR, 4x the LR crop
    with torch.no_grad():
        assert torch.allclose(real[0], reference(clean_lr[None])[0], atol=1e-5)
        assert not torch.allclose(output[0], real[0], atol=1e-3)  # the cleaned damage, upscaled


def test_the_feature_term_at_lr_compares_the_cleaned_lr_with_the_clean_lr(dataset, tmp_path, monkeypatch):
    from perceptual_sr.training.loss import PerceptualLoss

    seen, real_forward = [], PerceptualLoss.forward

    def recording(self, output, target):
        seen.append((output.detach().clone(), target.clone()))
        return real_forward(self, output, target)

    monkeypatch.setattr(PerceptualLoss, "forward", recording)
    config = _config(dataset, tmp_path / "run", steps=1, stage="lr", lr_feature_weight=0.05)
    train_cleanup(config, TINY)
    _, clean_lr, _, _ = DegradedSamples(SRPairDataset(dataset), config)[0]
    output, target = seen[0]
    assert output.shape[-2:] == target.shape[-2:] == clean_lr.shape[-2:]  # at LR: no upscaler in stage lr
    assert torch.equal(target[0], clean_lr)
    row = (tmp_path / "run" / "log.csv").read_text().splitlines()[1].split(",")
    assert float(row[LOG_FIELDS.index("perceptual")]) > 0  # logged with the feature terms
    train_cleanup(_config(dataset, tmp_path / "plain", steps=1, stage="lr"), TINY)
    plain = (tmp_path / "plain" / "log.csv").read_text().splitlines()[1].split(",")
    assert float(plain[LOG_FIELDS.index("perceptual")]) == 0


def test_a_colour_only_network_is_trained_toward_the_clean_colour_on_its_input_luma():
    from perceptual_sr.training.cleanup_training import reachable_target

    clean, degraded = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    chroma_network, rgb_network = CleanupNet(dataclasses.replace(TINY, corrects="chroma")), CleanupNet(TINY)
    target = reachable_target(chroma_network, degraded, clean)
    ycbcr = torch.from_numpy(RGB_TO_YCBCR.copy())

    def planes(image):
        return torch.einsum("kc,bchw->bkhw", ycbcr, image)

    assert torch.allclose(planes(target)[:, 0], planes(degraded)[:, 0], atol=1e-6)  # the luma it cannot change
    assert torch.allclose(planes(target)[:, 1:], planes(clean)[:, 1:], atol=1e-6)  # the colour it should reach
    assert torch.equal(reachable_target(rgb_network, degraded, clean), clean)


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
    with pytest.raises(ValueError, match="hr_target"):
        CleanupTrainConfig(stage="hr", hr_target="upscaled")
    with pytest.raises(ValueError, match="need stage hr"):
        CleanupTrainConfig(stage="lr", upscaler_learning_rate=1e-5)
    with pytest.raises(ValueError, match="need stage hr"):
        CleanupTrainConfig(stage="lr", hr_target="clean")
    with pytest.raises(ValueError, match="needs stage hr"):
        CleanupTrainConfig(stage="lr", adversarial_weight=0.05, adversarial_on="hr")
    with pytest.raises(ValueError, match="needs an --adversarial-weight"):
        CleanupTrainConfig(stage="hr", adversarial_on="hr")
    with pytest.raises(ValueError, match="not a folder"):
        CleanupTrainConfig(stage="lr", select_on="")
    with pytest.raises(ValueError, match="at least 16"):
        CleanupTrainConfig(lr_hatch_weight=0.1, lr_crop=12)
    with pytest.raises(ValueError, match="multiple of 8"):
        CleanupTrainConfig(adversarial_weight=0.1, lr_crop=12)
    with pytest.raises(ValueError, match="not a folder"):
        CleanupTrainConfig(stage="hr", select_on=str(dataset / "no-such-folder"))
    with pytest.raises(ValueError, match="larger than the dataset"):
        DegradedSamples(SRPairDataset(dataset), _config(dataset, "unused", lr_crop=40))


def test_an_interrupt_after_the_weights_moved_waits_for_the_step_to_end(dataset, tmp_path, monkeypatch,
                                                                        ctrl_c_raises):
    import signal

    from perceptual_sr.networks.discriminator import Critic

    overrides = dict(stage="lr", adversarial_weight=0.05, lr_crop=16)
    whole = train_cleanup(_config(dataset, tmp_path / "whole", **overrides), TINY)
    calls, real_update = [], Critic.update

    def ctrl_c_during_the_second_discriminator_step(self, *args):
        calls.append(1)
        if len(calls) == 2:  # the network's weights have moved; the discriminator's have not yet
            signal.raise_signal(signal.SIGINT)
        return real_update(self, *args)

    monkeypatch.setattr(Critic, "update", ctrl_c_during_the_second_discriminator_step)
    with pytest.raises(KeyboardInterrupt):
        train_cleanup(_config(dataset, tmp_path / "split", **overrides), TINY)
    monkeypatch.setattr(Critic, "update", real_update)
    state = torch.load(tmp_path / "split" / "checkpoint" / "training_state.pt", weights_only=True)
    assert state["step"] == 2  # the step finished and was counted
    resumed = train_cleanup(_config(dataset, tmp_path / "split", resume=True, **overrides))
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_selection_survives_an_interrupt_and_refuses_other_photos_on_resume(dataset, selection_photos, tmp_path,
                                                                             monkeypatch):
    from perceptual_sr.training import cleanup_selection

    scored = []

    def scores(*args, strength="auto", **kwargs):
        if strength != 0:
            scored.append(1)
            if len(scored) == 2:  # while scoring step 2, before its row is written
                raise KeyboardInterrupt
        return {"jpeg75": 0.5, "noise": 0.5, "jpeg75 hatch": 0.1, "noise hatch": 0.1}

    monkeypatch.setattr(cleanup_selection, "selection_scores", scores)
    config = _config(dataset, tmp_path / "run", stage="lr", select_on=str(selection_photos))
    with pytest.raises(KeyboardInterrupt):
        train_cleanup(config, TINY)
    train_cleanup(dataclasses.replace(config, resume=True))
    rows = (tmp_path / "run" / "selection.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "2", "4"]  # step 2 scored on resume, once each
    with pytest.raises(ValueError, match="select-on"):
        train_cleanup(dataclasses.replace(config, resume=True, steps=6, select_images=1))
