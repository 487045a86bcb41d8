import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from perceptual_sr import PerceptualSR, SRConfig
from perceptual_sr.hub.weights import DEFAULT_WEIGHTS_DIR
from perceptual_sr.networks.upscaler import UPSAMPLERS

TINY = dict(channels=8, residual_blocks=1)


@pytest.mark.parametrize("upsampler", UPSAMPLERS)
@pytest.mark.parametrize("scale", [2, 4, 8])
def test_output_is_scale_times_input(scale, upsampler):
    model = PerceptualSR(SRConfig(scale=scale, upsampler=upsampler, **TINY)).eval()
    out = model(torch.rand(2, 3, 10, 13))
    assert out.shape == (2, 3, 10 * scale, 13 * scale)
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("norm", ["batch", "instance"])
@pytest.mark.parametrize("global_skip", ["none", "bicubic"])
def test_every_parameter_gets_a_gradient(norm, global_skip):
    model = PerceptualSR(SRConfig(norm=norm, global_skip=global_skip, **TINY))
    if global_skip == "bicubic":
        assert model.tail.weight.abs().sum() == 0  # starts as plain bicubic...
        torch.nn.init.normal_(model.tail.weight, std=0.01)  # ...so move it for gradients to reach the body
    # Inputs in the middle of the range so the bicubic skip's clamp passes gradient.
    model(0.25 + 0.5 * torch.rand(2, 3, 12, 12)).mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_default_network_is_the_papers_x4():
    model = PerceptualSR()
    assert model.config == SRConfig(scale=4, channels=64, residual_blocks=4, norm="batch", upsampler="deconv")
    assert model.head[0].kernel_size == (9, 9) and model.tail.kernel_size == (9, 9)
    assert model.head[0].padding_mode == "reflect"
    assert len(model.body) == 4 and len(model.upsample) == 2


@pytest.mark.parametrize("bad", [dict(scale=3), dict(norm="layer"), dict(upsampler="bilinear"),
                                 dict(channels=0), dict(residual_blocks=-1), dict(global_skip="x")])
def test_invalid_config_names_the_value(bad):
    with pytest.raises(ValueError, match=repr(next(iter(bad.values())))):
        SRConfig(**bad)


def test_wrong_input_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="RGB"):
        PerceptualSR(SRConfig(**TINY))(torch.rand(1, 1, 8, 8))


def _trained_tiny(tmp_path):
    model = PerceptualSR(SRConfig(upsampler="resize-conv", **TINY))
    model.train()
    model(torch.rand(4, 3, 8, 8))  # move the batch-norm running stats away from their defaults
    model.eval()
    model.save_pretrained(tmp_path)
    return model


def test_save_load_round_trip_is_identical(tmp_path):
    model = _trained_tiny(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"config.json", "model.safetensors", "README.md"}
    assert json.loads((tmp_path / "config.json").read_text())["upsampler"] == "resize-conv"
    card = (tmp_path / "README.md").read_text()
    assert "library_name: perceptual-sr" in card and "pipeline_tag: image-to-image" in card and "license:" in card
    loaded = PerceptualSR.from_pretrained(tmp_path)
    assert loaded.config == model.config and not loaded.training
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PerceptualSR.from_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "config.json").write_text("{}")
        PerceptualSR.from_pretrained(tmp_path / "empty")


def test_bad_repo_id_offline_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="no-such-user/no-such-model-xyz"):
        PerceptualSR.from_pretrained("no-such-user/no-such-model-xyz")
    with pytest.raises(FileNotFoundError, match="not a valid repo"):
        PerceptualSR.from_pretrained("not a valid repo id!!")


def test_corrupted_safetensors_is_a_clear_error(tmp_path):
    _trained_tiny(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="could not load weights"):
        PerceptualSR.from_pretrained(tmp_path)


def test_renamed_tensor_fails_strictly(tmp_path):
    _trained_tiny(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["tail.renamed"] = tensors.pop("tail.weight")
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="tail"):
        PerceptualSR.from_pretrained(tmp_path)


def test_mismatched_config_is_a_clear_error(tmp_path):
    _trained_tiny(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "channels": 16}))
    with pytest.raises(ValueError, match="could not load weights"):
        PerceptualSR.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "depth": 3}))
    with pytest.raises(ValueError, match="depth"):
        PerceptualSR.from_pretrained(tmp_path)


def test_the_bundled_default_loads_offline():
    model = PerceptualSR.from_pretrained()
    assert model.scale == 4 and not model.training
    assert (DEFAULT_WEIGHTS_DIR / "model.safetensors").stat().st_size > 100_000  # real weights, not a stub


def test_missing_default_weights_are_a_clear_error(tmp_path, monkeypatch):
    import perceptual_sr.hub.weights

    monkeypatch.setattr(perceptual_sr.hub.weights, "DEFAULT_WEIGHTS_DIR", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="no default weights"):
        PerceptualSR.from_pretrained()


def test_push_to_hub_uploads_the_hub_folder(tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    uploaded = {}

    def fake_create_repo(self, repo_id, **kwargs):
        from huggingface_hub import RepoUrl

        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def fake_upload_folder(self, *, repo_id, folder_path, **kwargs):
        uploaded["repo_id"] = repo_id
        uploaded["files"] = sorted(p.name for p in __import__("pathlib").Path(folder_path).iterdir())
        return "commit"

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    PerceptualSR(SRConfig(**TINY)).push_to_hub("someone/perceptual-sr-test", token="hf_fake")
    assert uploaded["repo_id"] == "someone/perceptual-sr-test"
    assert {"config.json", "model.safetensors", "README.md"} <= set(uploaded["files"])


def test_bicubic_skip_starts_as_bicubic_and_clamps_in_eval():
    model = PerceptualSR(SRConfig(global_skip="bicubic", **TINY)).eval()
    lr = torch.rand(1, 3, 8, 8)
    expected = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(model(lr), expected.clamp(0, 1))
        torch.nn.init.normal_(model.tail.weight, std=1.0)
        out = model(lr)
    assert out.min() >= 0 and out.max() <= 1


def test_a_network_is_one_weight_set_and_points_to_the_pipeline_for_detail(tmp_path):
    PerceptualSR(SRConfig(**TINY)).save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="SRPipeline"):
        PerceptualSR.from_pretrained(tmp_path / "m", detail=0.5)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_weights_holding_nan_or_inf_are_refused(tmp_path, value):
    model = PerceptualSR(SRConfig(**TINY))
    with torch.no_grad():
        model.tail.weight[0, 0, 0, 0] = value
    model.save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="NaN or infinite.*tail.weight"):
        PerceptualSR.from_pretrained(tmp_path / "m")


def test_a_weights_file_instead_of_its_folder_says_what_to_pass(tmp_path):
    PerceptualSR(SRConfig(**TINY)).save_pretrained(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="pass the folder"):
        PerceptualSR.from_pretrained(tmp_path / "m" / "model.safetensors")


def test_saved_files_are_readable_by_others_and_the_save_is_atomic(tmp_path, monkeypatch):
    import os

    import safetensors.torch

    model = PerceptualSR(SRConfig(**TINY))
    model.save_pretrained(tmp_path / "m")
    umask = os.umask(0)
    os.umask(umask)
    for name in ("config.json", "model.safetensors", "README.md"):
        assert (tmp_path / "m" / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    before = (tmp_path / "m" / "model.safetensors").read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        PerceptualSR(SRConfig(**TINY)).save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_full_res_channels_makes_a_leaner_last_stage():
    lean = PerceptualSR(SRConfig(residual_blocks=8, full_res_channels=32, upsampler="resize-conv"))
    assert lean(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)
    assert lean.tail.in_channels == 32 and lean.upsample[-1][-2].num_features == 32
    with pytest.raises(ValueError, match="full_res_channels"):
        SRConfig(full_res_channels=0)


@pytest.mark.parametrize("content, message", [("[]", "not a configuration object"), ("null", "not a configuration"),
                                              ("{oops", "not valid JSON"),
                                              ('{"model_type": "bert"}', "'bert' model")])
def test_foreign_or_broken_config_is_a_clear_error(tmp_path, content, message):
    PerceptualSR(SRConfig(**TINY)).save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        PerceptualSR.from_pretrained(tmp_path / "m")


def test_saved_config_names_the_model_type(tmp_path):
    PerceptualSR(SRConfig(**TINY)).save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "perceptual-sr"


def test_model_card_carries_the_metadata_and_measured_metrics(tmp_path):
    from huggingface_hub import ModelCard

    scores = [{"dataset": "Set5", "metric": "lpips", "value": 0.25}, {"dataset": "Set5", "metric": "psnr", "value": 28.1}]
    PerceptualSR(SRConfig(**TINY)).save_pretrained(tmp_path / "m", model_card_kwargs={
        "scores": scores, "repo_id": "someone/sr", "evaluation": "| a | b |"})
    card = ModelCard.load(tmp_path / "m" / "README.md")
    assert {"image-super-resolution", "pytorch_model_hub_mixin", "model_hub_mixin"} <= set(card.data.tags)
    assert card.data.datasets and card.data.metrics and card.data.library_name == "perceptual-sr"
    values = {(result.dataset_name, result.metric_type): result.metric_value for result in card.data.eval_results}
    assert values == {("Set5", "lpips"): 0.25, ("Set5", "psnr"): 28.1}
    assert 'SRPipeline.from_pretrained("someone/sr")' in card.text and "## Limitations" in card.text
    assert "non-commercial research use" in card.text  # the data's terms beside the code's licence


def test_bundled_card_has_a_model_index():
    from huggingface_hub import ModelCard

    card = ModelCard.load(DEFAULT_WEIGHTS_DIR / "README.md")
    datasets = {result.dataset_name for result in card.data.eval_results}
    assert datasets == {"Set5", "Set14", "BSD68"}


@pytest.mark.parametrize("bad, message", [({"channels": True}, "channels must be a positive integer"),
                                          ({"residual_blocks": 2.5}, "residual_blocks"),
                                          ({"channels": 4096}, "describes a network of .* parameters")])
def test_a_config_json_describing_no_sane_network_is_refused_before_allocating(tmp_path, bad, message):
    PerceptualSR(SRConfig(**TINY)).save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, **bad}))
    with pytest.raises(ValueError, match=message):
        PerceptualSR.from_pretrained(tmp_path / "m")


def test_the_parameter_count_is_known_from_the_configuration_alone():
    for config in (SRConfig(), SRConfig(upsampler="resize-conv", global_skip="bicubic", full_res_channels=16),
                   SRConfig(upsampler="pixelshuffle", norm="instance", scale=8), SRConfig(scale=2, residual_blocks=0)):
        network = PerceptualSR(config)
        assert config.parameter_count() == sum(t.numel() for t in network.state_dict().values() if t.is_floating_point())
