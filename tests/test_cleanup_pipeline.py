"""The cleanup network as a pipeline component: skipped at 0, saved and pushed with the model,
restore-only, the colour fix from the cleaned input, ONNX, and the bundled network's behaviour."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from perceptual_sr import PerceptualSR, SRConfig, SRPipeline
from perceptual_sr.inference.pipeline import CLEANUP_SUBFOLDER
from perceptual_sr.networks.restorer import CleanupConfig, CleanupNet


def _cleanup_network(seed: int = 0) -> CleanupNet:
    torch.manual_seed(seed)
    network = CleanupNet(CleanupConfig(channels=8, full_res_channels=4, blocks=2))
    with torch.no_grad():
        network.tail[-1].weight.normal_(0, 0.1)  # a fresh network is the identity
    return network.eval()


@pytest.fixture(scope="module")
def upscaler():
    torch.manual_seed(0)
    return PerceptualSR(SRConfig(channels=4, residual_blocks=1, global_skip="bicubic")).eval()


@pytest.fixture(scope="module")
def pipelines(upscaler):
    """(the upscaler alone, the same upscaler with a cleanup network)."""
    return SRPipeline({"": upscaler}), SRPipeline({"": upscaler}, _cleanup_network())


def _jpeg(photo: np.ndarray, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_cleanup_zero_is_bit_identical_to_the_upscaler_alone(pipelines, make_photo):
    alone, with_cleanup = pipelines
    photo = make_photo(40, 28)
    assert with_cleanup.has_axis("cleanup") and not alone.has_axis("cleanup")
    assert np.array_equal(with_cleanup.upscale(photo, cleanup=0.0), alone.upscale(photo))
    # A clean PNG measures as clean: auto runs exactly the cleanup-0 path.
    assert with_cleanup.run(Image.fromarray(photo)).cleanup == 0.0
    assert np.array_equal(np.asarray(with_cleanup.upscale(Image.fromarray(photo))), alone.upscale(photo))


def test_a_strong_jpeg_is_cleaned_and_says_so(pipelines, make_photo):
    alone, with_cleanup = pipelines
    jpeg = _jpeg(make_photo(48, 40), 50)
    result = with_cleanup.run(jpeg)
    assert result.cleanup > 0 and "JPEG quality ~50" in result.describe()
    assert not np.array_equal(np.asarray(result.image), np.asarray(alone.upscale(jpeg)))


def test_the_colour_fix_takes_its_colour_from_the_cleaned_input(pipelines, make_photo, monkeypatch):
    from perceptual_sr.inference import upscale as inference

    _, with_cleanup = pipelines
    photo = make_photo(24, 24)
    seen = []
    real_fix = inference.apply_color_fix
    monkeypatch.setattr(inference, "apply_color_fix", lambda out, rgb, *a: seen.append(rgb.copy()) or real_fix(out, rgb, *a))
    with_cleanup.upscale(photo.astype(np.float32) / 255, cleanup=1.0)
    cleaned = with_cleanup.restore(photo.astype(np.float32) / 255, cleanup=1.0)
    assert np.allclose(seen[0], cleaned, atol=1e-6) and not np.allclose(seen[0], photo / 255, atol=1e-3)


def test_the_tiled_cleanup_equals_the_untiled_one(pipelines, make_photo):
    _, with_cleanup = pipelines
    photo = make_photo(150, 90)
    whole = with_cleanup.upscale(photo, cleanup=1.0).astype(int)
    tiled = with_cleanup.upscale(photo, cleanup=1.0, tile_size=70).astype(int)
    assert np.abs(whole - tiled).max() <= 1


def test_restore_keeps_the_size_and_the_kind(pipelines, make_photo):
    alone, with_cleanup = pipelines
    photo = make_photo(21, 13)
    assert with_cleanup.restore(photo, cleanup=1.0).shape == photo.shape
    rgba = Image.fromarray(np.dstack([photo, np.full(photo.shape[:2], 200, np.uint8)]), "RGBA")
    restored = with_cleanup.restore(rgba, cleanup=0.5)
    assert restored.mode == "RGBA" and restored.size == rgba.size
    assert np.array_equal(np.asarray(restored)[..., 3], np.asarray(rgba)[..., 3])
    tensor = torch.rand(2, 3, 9, 11)
    assert with_cleanup.restore(tensor, cleanup=1.0).shape == tensor.shape
    assert np.array_equal(with_cleanup.restore(photo, cleanup=0.0), photo)  # strength 0: the input itself
    assert with_cleanup.run_restore(_jpeg(photo, 40)).cleanup > 0
    with pytest.raises(ValueError, match="no cleanup network"):
        alone.restore(photo)


def test_save_load_and_push_keep_the_cleanup_network(pipelines, make_photo, tmp_path, monkeypatch):
    from huggingface_hub import HfApi, RepoUrl

    _, with_cleanup = pipelines
    with_cleanup.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model" / CLEANUP_SUBFOLDER).iterdir()) == ["config.json",
                                                                                          "model.safetensors"]
    loaded = SRPipeline.from_pretrained(tmp_path / "model")
    photo = make_photo(30, 20)
    assert np.array_equal(loaded.upscale(photo, cleanup=0.7), with_cleanup.upscale(photo, cleanup=0.7))
    assert "cleanup" in (tmp_path / "model" / "README.md").read_text()
    uploaded = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: RepoUrl(f"https://huggingface.co/{repo_id}"))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, *, repo_id, folder_path, **kw: uploaded.extend(
        str(path.relative_to(folder_path)) for path in Path(folder_path).rglob("*") if path.is_file()))
    loaded.push_to_hub("someone/sr")
    assert {f"{CLEANUP_SUBFOLDER}/config.json", f"{CLEANUP_SUBFOLDER}/model.safetensors"} <= set(uploaded)


def test_an_incomplete_cleanup_folder_is_a_clear_error(pipelines, tmp_path):
    _, with_cleanup = pipelines
    with_cleanup.save_pretrained(tmp_path / "model")
    (tmp_path / "model" / CLEANUP_SUBFOLDER / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="cleanup network is incomplete"):
        SRPipeline.from_pretrained(tmp_path / "model")


def test_onnx_keeps_the_cleanup_and_auto(pipelines, make_photo, tmp_path):
    pytest.importorskip("onnxruntime")
    from perceptual_sr.inference.onnx_pipeline import OnnxPipeline, cleanup_onnx_path, export_pipeline_onnx

    alone, with_cleanup = pipelines
    written = export_pipeline_onnx(with_cleanup, tmp_path / "m.onnx")
    assert written == [tmp_path / "m.onnx", cleanup_onnx_path(tmp_path / "m.onnx")]
    onnx = OnnxPipeline(tmp_path / "m.onnx")
    photo = make_photo(33, 19)
    assert np.array_equal(onnx.upscale(photo, cleanup=0.0), alone.upscale(photo, fast=False)) or \
        np.abs(onnx.upscale(photo, cleanup=0.0).astype(int) - alone.upscale(photo, fast=False)).max() <= 1
    for cleanup in (0.4, 1.0):
        difference = onnx.upscale(photo, cleanup=cleanup).astype(int) - with_cleanup.upscale(photo, cleanup=cleanup)
        assert np.abs(difference).max() <= 1
    jpeg = _jpeg(photo, 50)
    assert onnx.run(jpeg).cleanup == with_cleanup.run(jpeg).cleanup > 0
    assert np.abs(onnx.restore(photo, cleanup=1.0).astype(int) - with_cleanup.restore(photo, cleanup=1.0)).max() <= 1
    cleanup_onnx_path(tmp_path / "m.onnx").unlink()  # the upscaler alone: cleanup 0 only
    bare = OnnxPipeline(tmp_path / "m.onnx")
    assert bare.run(jpeg).cleanup == 0.0
    with pytest.raises(ValueError, match="needs the cleanup network"):
        bare.upscale(photo, cleanup=0.5)


def test_the_bundled_cleanup_grows_with_its_strength_and_cleans_a_jpeg(bundled_pipeline, make_photo):
    if not bundled_pipeline.has_cleanup_network():
        pytest.skip("the bundled model has no cleanup network")
    jpeg = _jpeg(make_photo(96, 80, seed=3), 50)
    assert bundled_pipeline.assess(jpeg).cleanup > 0
    source = np.asarray(jpeg.convert("RGB"), np.float32)
    changes = [np.abs(np.asarray(bundled_pipeline.restore(jpeg, cleanup=s), np.float32) - source).mean()
               for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert changes[0] == 0 and all(b > a for a, b in zip(changes, changes[1:])), changes


def test_restore_tiles_as_the_upscale_does(pipelines, make_photo):
    _, with_cleanup = pipelines
    photo = make_photo(150, 90)
    whole, tiled = (with_cleanup.restore(photo, cleanup=1.0, tile_size=size).astype(int) for size in (None, 70))
    assert np.abs(whole - tiled).max() <= 1


def test_restore_only_on_the_command_line_takes_no_colour_from_the_damage(pipelines, make_photo, tmp_path):
    from perceptual_sr.commands.cli import main

    _, with_cleanup = pipelines
    with_cleanup.save_pretrained(tmp_path / "model")
    Image.fromarray(make_photo(40, 30)).save(tmp_path / "photo.png")
    assert main(["upscale", str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"), "--model",
                 str(tmp_path / "model"), "--restore-only", "--cleanup", "1"]) == 0
    written = np.asarray(Image.open(tmp_path / "out" / "photo_cleaned.png"))
    assert np.array_equal(written, with_cleanup.restore(make_photo(40, 30), cleanup=1.0))


def test_an_onnx_export_records_its_detail_and_never_pairs_with_a_stale_cleanup(pipelines, tmp_path):
    pytest.importorskip("onnxruntime")
    from perceptual_sr.inference.onnx_pipeline import OnnxPipeline, cleanup_onnx_path, export_pipeline_onnx

    alone, with_cleanup = pipelines
    upscaler = alone.network_at()
    twin = PerceptualSR(upscaler.config)
    with_twin = SRPipeline({"": upscaler, "pixel-twin": twin}, _cleanup_network())
    export_pipeline_onnx(with_twin, tmp_path / "m.onnx", detail=0.5)
    onnx = OnnxPipeline(tmp_path / "m.onnx")
    assert onnx.detail == 0.5 and onnx.check_settings(detail=0.5)[0] == 0.5 and onnx.has_cleanup_network()
    with pytest.raises(ValueError, match="the detail it was exported at, 0.5"):
        onnx.check_settings(detail=1.0)
    export_pipeline_onnx(alone, tmp_path / "m.onnx")  # a model without a cleanup network, same name
    assert not cleanup_onnx_path(tmp_path / "m.onnx").exists() and not OnnxPipeline(tmp_path / "m.onnx").axes
    assert cleanup_onnx_path("model").name == "model.cleanup.onnx"
