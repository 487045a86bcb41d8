import pytest

"""The model card of a trained model: the dataset's real scale and degradation, the validation scores."""

from perceptual_sr import SRConfig
from perceptual_sr.hub.model_card import build, training_card_kwargs

ROW = {"set": "held-out", "psnr_y": 30.0, "ssim_y": 0.9, "lpips": 0.2, "grid": 0.1,
       "bicubic_psnr_y": 29.0, "bicubic_ssim_y": 0.85, "bicubic_lpips": 0.3, "bicubic_grid": -0.5}


def _card(scale: int, degradation: str | None) -> str:
    manifest = {"scale": scale, "hr_size": 96, "counts": {"train": 8, "val": 1}, "seed": 0}
    if degradation:
        manifest["degradation"] = degradation
    kwargs = training_card_kwargs({"steps": 5}, manifest, [ROW], repo_id="someone/sr")
    return build(SRConfig(scale=scale, channels=8, residual_blocks=1), 1234, **kwargs)


def test_the_card_names_the_scale_and_degradation_the_model_was_trained_for():
    card = _card(2, "bicubic")
    assert "degraded by bicubic downscaling" in card.text and "blur then" not in card.text
    assert {result.task_name for result in card.data.eval_results} == {"Image super-resolution x2"}
    assert '"degradation": "bicubic"' in card.text  # the data summary
    blurred = _card(4, "blur")
    assert "Gaussian blur then bicubic downscaling" in blurred.text
    assert {result.task_name for result in blurred.data.eval_results} == {"Image super-resolution x4"}


def test_a_manifest_from_before_the_degradation_choice_reads_as_blur():
    assert "Gaussian blur then bicubic downscaling" in _card(4, None).text


def test_the_card_carries_the_final_validation_scores():
    card = _card(4, "blur")
    assert "| held-out | model | 30.00 | 0.9000 | 0.2000 | 0.10 |" in card.text
    assert "| held-out | bicubic | 29.00 | 0.8500 | 0.3000 | -0.50 |" in card.text
    values = {(result.dataset_name, result.metric_type): result.metric_value for result in card.data.eval_results}
    assert values[("held-out", "lpips")] == 0.2 and values[("held-out", "psnr")] == 30.0
    assert 'SRPipeline.from_pretrained("someone/sr")' in card.text


def test_the_code_location_is_the_publishers_and_never_guessed():
    from perceptual_sr import SRConfig
    from perceptual_sr.hub.model_card import build

    assert "https://github.com/someone/perceptual_sr" in build(SRConfig(), 1, code_url="https://github.com/someone/perceptual_sr").text
    usage = build(SRConfig(), 1).text.split("## Usage")[1].split("## Architecture")[0]
    assert "not on PyPI" in usage and "pip install ." in usage  # says how to install without a URL
    assert {word for word in usage.replace("`", " ").split() if "://" in word} == {"https://download.pytorch.org/whl/cpu"}


@pytest.mark.slow
def test_the_card_speaks_of_the_weight_sets_its_folder_holds(tmp_path):
    from perceptual_sr import SRPipeline

    pipeline = SRPipeline.from_pretrained()
    pipeline.save_pretrained(tmp_path / "all")
    card = (tmp_path / "all" / "README.md").read_text()
    assert "model-index" in card and "real-photo/" in card and "`cleanup`" in card  # the bundled record is kept
    bundled_limitations = card.split("## Limitations")[1].split("## ")[0]
    assert "cleans the colour" in bundled_limitations and "removes JPEG blocks" not in bundled_limitations
    alone = SRPipeline.from_network(pipeline.network_at())
    text = alone.save_pretrained(tmp_path / "one").joinpath("README.md").read_text()
    limitations = text.split("## Limitations")[1].split("## ")[0]
    assert "Default weights" in limitations and "real-photo" not in limitations and "pixel-twin" not in limitations


def test_a_loaded_models_record_survives_a_save_over_itself(tmp_path):
    import shutil

    from huggingface_hub import ModelCard

    from perceptual_sr import SRPipeline
    from perceptual_sr.hub.weights import DEFAULT_WEIGHTS_DIR

    shutil.copytree(DEFAULT_WEIGHTS_DIR, tmp_path / "m")
    before = ModelCard.load(tmp_path / "m" / "README.md")
    SRPipeline.from_pretrained(tmp_path / "m").save_pretrained(tmp_path / "m")
    after = ModelCard.load(tmp_path / "m" / "README.md")
    assert after.data.eval_results == before.data.eval_results and after.data.eval_results
    assert "## Training" in after.text and "## Provenance" in after.text
