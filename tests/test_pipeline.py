from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from perceptual_sr import PerceptualSR, SRConfig, SRPipeline
from perceptual_sr.inference.pipeline import CLEANUP_SUBFOLDER, MAX_CACHED_BLENDS, REAL_PHOTO_SUBFOLDER, TWIN_SUBFOLDER

CONFIG = SRConfig(channels=8, residual_blocks=1, upsampler="resize-conv")


def _pair(tmp_path, config=CONFIG):
    """A model folder with a pixel-loss twin (two different random inits stand in for the two losses)."""
    torch.manual_seed(0)
    PerceptualSR(config).save_pretrained(tmp_path / "pair")
    PerceptualSR(config).save_pretrained(tmp_path / "pair" / TWIN_SUBFOLDER)
    return tmp_path / "pair"


def _image(height=10, width=12):
    return np.random.default_rng(0).random((height, width, 3)).astype(np.float32)


def test_detail_ends_are_exactly_the_two_weight_sets_and_the_middle_is_the_blend(tmp_path):
    folder = _pair(tmp_path)
    pipeline = SRPipeline.from_pretrained(folder)
    feature = PerceptualSR.from_pretrained(folder)
    pixel = PerceptualSR.from_pretrained(folder / TWIN_SUBFOLDER)
    assert pipeline.has_axis("detail") and pipeline.scale == 4
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(pipeline.network_at(detail=1.0)(x), feature(x))
        assert torch.equal(pipeline.network_at()(x), feature(x))  # detail 1 unless asked
        assert torch.equal(pipeline.network_at(detail=0.0)(x), pixel(x))
    half = pipeline.network_at(detail=0.5).state_dict()
    for name, value in half.items():  # parameters and BatchNorm statistics alike
        if value.is_floating_point():
            torch.testing.assert_close(value, (feature.state_dict()[name] + pixel.state_dict()[name]) / 2)


def test_upscale_takes_a_detail_per_call(tmp_path):
    pipeline = SRPipeline.from_pretrained(_pair(tmp_path))
    image = _image()
    sharp = pipeline.upscale(image, color_fix=None)
    faithful = pipeline.upscale(image, detail=0.0, color_fix=None)
    assert faithful.shape == sharp.shape == (40, 48, 3) and not np.array_equal(faithful, sharp)
    np.testing.assert_array_equal(pipeline.upscale(image, detail=1.0, color_fix=None), sharp)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "high", True])
def test_bad_detail_is_a_clear_error(tmp_path, bad):
    pipeline = SRPipeline.from_pretrained(_pair(tmp_path))
    with pytest.raises(ValueError, match="detail"):
        pipeline.upscale(_image(), detail=bad)


def test_an_unknown_axis_or_option_is_a_clear_error(tmp_path):
    pipeline = SRPipeline.from_pretrained(_pair(tmp_path))
    with pytest.raises(ValueError, match="unknown blend axes"):
        pipeline.network_at(sharpness=0.5)
    with pytest.raises(TypeError, match="tile_sise"):
        pipeline.upscale(_image(), tile_sise=64)


def test_detail_without_a_twin_is_a_clear_error(tmp_path):
    PerceptualSR(CONFIG).save_pretrained(tmp_path / "solo")
    pipeline = SRPipeline.from_pretrained(tmp_path / "solo")
    assert not pipeline.has_axis("detail")
    with pytest.raises(ValueError, match="cannot blend detail.*needs pixel-twin/"):
        pipeline.upscale(_image(), detail=0.5)
    assert pipeline.upscale(_image(), detail=1.0).shape == (40, 48, 3)


def test_a_twin_of_another_architecture_is_refused(tmp_path):
    PerceptualSR(CONFIG).save_pretrained(tmp_path / "pair")
    PerceptualSR(SRConfig(channels=4, residual_blocks=1)).save_pretrained(tmp_path / "pair" / TWIN_SUBFOLDER)
    with pytest.raises(ValueError, match="share one architecture"):
        SRPipeline.from_pretrained(tmp_path / "pair")


def test_save_and_load_keep_every_weight_set(tmp_path):
    from huggingface_hub import ModelCard

    pipeline = SRPipeline.from_pretrained(_pair(tmp_path))
    scores = [{"dataset": "Set5", "metric": "lpips", "value": 0.25}]
    pipeline.save_pretrained(tmp_path / "copy", scores=scores, repo_id="someone/sr")
    again = SRPipeline.from_pretrained(tmp_path / "copy")
    image = _image()
    for detail in (0.0, 0.5, 1.0):
        np.testing.assert_array_equal(again.upscale(image, detail=detail, color_fix=None),
                                      pipeline.upscale(image, detail=detail, color_fix=None))
    card = ModelCard.load(tmp_path / "copy" / "README.md")
    assert [result.metric_value for result in card.data.eval_results] == [0.25]
    assert not (tmp_path / "copy" / TWIN_SUBFOLDER / "README.md").exists()  # one card, at the top
    assert again.fingerprint() == pipeline.fingerprint() != SRPipeline.from_network(PerceptualSR(CONFIG)).fingerprint()


def test_push_to_hub_uploads_every_weight_set(tmp_path, monkeypatch):
    from huggingface_hub import HfApi, RepoUrl

    uploaded = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kwargs: RepoUrl(f"https://huggingface.co/{repo_id}"))

    def fake_upload_folder(self, *, repo_id, folder_path, **kwargs):
        from pathlib import Path

        from huggingface_hub import ModelCard

        uploaded[repo_id] = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file())
        card = ModelCard.load(Path(folder_path) / "README.md")
        uploaded["card"] = (card.text, [result.metric_value for result in card.data.eval_results or []])

    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    scores = [{"dataset": "Set5", "metric": "lpips", "value": 0.13}]
    SRPipeline.from_pretrained(_pair(tmp_path)).push_to_hub("someone/sr", token="hf_fake", scores=scores)
    text, metrics = uploaded.pop("card")
    assert 'from_pretrained("someone/sr")' in text and "non-commercial research use" in text and metrics == [0.13]
    assert uploaded == {"someone/sr": ["README.md", "config.json", "model.safetensors",
                                       f"{TWIN_SUBFOLDER}/config.json", f"{TWIN_SUBFOLDER}/model.safetensors"]}


def test_a_hub_repo_is_downloaded_once_with_the_weight_files_and_the_card_only(tmp_path, monkeypatch):
    import perceptual_sr.inference.pipeline

    folder = _pair(tmp_path)
    calls = []

    def fake_snapshot_download(repo_id, allow_patterns, **kwargs):
        calls.append((repo_id, sorted(allow_patterns), kwargs))
        return str(folder)

    monkeypatch.setattr(perceptual_sr.inference.pipeline, "snapshot_download", fake_snapshot_download)
    pipeline = SRPipeline.from_pretrained("someone/sr", revision="v1")
    assert pipeline.has_axis("detail")
    subfolders = [TWIN_SUBFOLDER, "real-photo", "real-photo-pixel-twin", CLEANUP_SUBFOLDER]
    expected = ["README.md", "config.json", "model.safetensors",  # the card: its record is kept on a re-save
                *(f"{name}/{file}" for name in subfolders for file in ("config.json", "model.safetensors"))]
    assert calls == [("someone/sr", sorted(expected), {"revision": "v1"})]


def test_an_unreachable_hub_repo_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="could not get model 'nobody/no-such-model'"):
        SRPipeline.from_pretrained("nobody/no-such-model")  # HF_HUB_OFFLINE in the tests


def test_the_pipeline_never_changes_the_networks_it_was_given(tmp_path):
    network = PerceptualSR(CONFIG)
    before = {name: value.clone() for name, value in network.state_dict().items()}
    pipeline = SRPipeline.from_network(network)
    pipeline.upscale(_image(), color_fix=None)
    assert network.training and all(torch.equal(before[name], value) for name, value in network.state_dict().items())
    with torch.no_grad():  # and later edits to them do not reach the pipeline
        network.tail.weight.add_(1.0)
    assert not torch.equal(pipeline.network_at().tail.weight, network.tail.weight)


@pytest.mark.slow
def test_concurrent_upscales_at_many_details_agree_with_one_at_a_time(tmp_path):
    pipeline = SRPipeline.from_pretrained(_pair(tmp_path))
    image = _image(12, 10)
    details = [round(0.05 * k, 2) for k in range(21)] * 2
    assert len(set(details)) > MAX_CACHED_BLENDS  # the cache drops blends while others use them
    expected = {detail: pipeline.upscale(image, detail=detail, color_fix=None) for detail in set(details)}
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda d: pipeline.upscale(image, detail=d, color_fix=None), details))
    for detail, result in zip(details, results):
        np.testing.assert_array_equal(result, expected[detail])


def _four_corners(tmp_path, config=CONFIG):
    """A model folder with all four weight sets (random inits stand in for the trainings)."""
    torch.manual_seed(0)
    for name in ("", TWIN_SUBFOLDER, REAL_PHOTO_SUBFOLDER, "real-photo-pixel-twin"):
        PerceptualSR(config).save_pretrained(tmp_path / "four" / name)
    return tmp_path / "four"


def test_detail_and_cleanup_blend_four_weight_sets_bilinearly(tmp_path):
    folder = _four_corners(tmp_path)
    pipeline = SRPipeline.from_pretrained(folder)
    assert pipeline.axes == ("detail", "cleanup")
    corners = {name: PerceptualSR.from_pretrained(folder / name).state_dict()
               for name in ("", TWIN_SUBFOLDER, REAL_PHOTO_SUBFOLDER, "real-photo-pixel-twin")}
    for (detail, cleanup), name in {(1.0, 0.0): "", (0.0, 0.0): TWIN_SUBFOLDER, (1.0, 1.0): REAL_PHOTO_SUBFOLDER,
                                    (0.0, 1.0): "real-photo-pixel-twin"}.items():
        state = pipeline.network_at(detail=detail, cleanup=cleanup).state_dict()
        assert all(torch.equal(state[key], value) for key, value in corners[name].items())
    blended = pipeline.network_at(detail=0.25, cleanup=0.5).state_dict()
    for key, value in blended.items():
        if value.is_floating_point():
            expected = (0.5 * (0.75 * corners[TWIN_SUBFOLDER][key] + 0.25 * corners[""][key])
                        + 0.5 * (0.75 * corners["real-photo-pixel-twin"][key] + 0.25 * corners[REAL_PHOTO_SUBFOLDER][key]))
            torch.testing.assert_close(value, expected)


def test_cleanup_0_is_exactly_the_default_and_auto_measures_the_input(tmp_path, make_photo):
    import io

    from PIL import Image

    pipeline = SRPipeline.from_pretrained(_four_corners(tmp_path))
    clean = Image.fromarray(make_photo(64, 48))
    default = SRPipeline.from_network(PerceptualSR.from_pretrained(tmp_path / "four"))
    same = np.asarray(default.upscale(clean))
    np.testing.assert_array_equal(np.asarray(pipeline.upscale(clean, cleanup=0.0)), same)
    np.testing.assert_array_equal(np.asarray(pipeline.upscale(clean)), same)  # auto: a clean image gets 0
    buffer = io.BytesIO()
    clean.save(buffer, "JPEG", quality=50)
    jpeg = Image.open(io.BytesIO(buffer.getvalue()))
    assert pipeline.assess(jpeg).cleanup == 1.0
    np.testing.assert_array_equal(np.asarray(pipeline.upscale(jpeg)), np.asarray(pipeline.upscale(jpeg, cleanup=1.0)))
    assert not np.array_equal(np.asarray(pipeline.upscale(jpeg)), np.asarray(pipeline.upscale(jpeg, cleanup=0.0)))


def test_without_real_photo_weights_auto_is_0_and_a_cleanup_is_a_clear_error(tmp_path):
    pipeline = SRPipeline.from_pretrained(_pair(tmp_path))
    assert pipeline.axes == ("detail",)
    noisy = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    assert pipeline.assess(noisy).cleanup == 0.0
    with pytest.raises(ValueError, match="cannot blend cleanup.*needs real-photo/"):
        pipeline.upscale(noisy, cleanup=1.0)


def test_outscale_resizes_the_result_to_any_factor_of_the_input(tmp_path):
    from PIL import Image

    pipeline = SRPipeline.from_pretrained(_pair(tmp_path))
    photo = Image.fromarray((_image(10, 12) * 255).astype(np.uint8))
    assert pipeline.upscale(photo, outscale=2).size == (24, 20)
    assert pipeline.upscale(photo, outscale=2.5).size == (30, 25)
    array = (_image(10, 12) * 65535).astype(np.uint16)
    out = pipeline.upscale(array, outscale=3)
    assert out.shape == (30, 36, 3) and out.dtype == np.uint16
    assert pipeline.upscale(_image(), outscale=4).shape == pipeline.upscale(_image()).shape
    for bad in (0, -1, 17, float("nan"), "2x", True):
        with pytest.raises(ValueError, match="outscale"):
            pipeline.upscale(photo, outscale=bad)
    with pytest.raises(ValueError, match="outscale works on PIL images"):
        pipeline.upscale(torch.rand(3, 8, 8), outscale=2)


def test_saving_over_a_folder_with_more_weight_sets_leaves_none_of_them_loadable(tmp_path):
    four = SRPipeline.from_pretrained(_four_corners(tmp_path))
    four.save_pretrained(tmp_path / "out")
    pair = SRPipeline.from_pretrained(_pair(tmp_path))
    pair.save_pretrained(tmp_path / "out")
    again = SRPipeline.from_pretrained(tmp_path / "out")
    assert again.axes == ("detail",) and again.fingerprint() == pair.fingerprint()
