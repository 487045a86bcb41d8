import csv

import numpy as np
import pytest
from PIL import Image
from skimage import data

from perceptual_sr.evaluation.evaluate import evaluate, evaluate_folder, write_tables
from perceptual_sr.evaluation.metrics import LPIPSMetric, psnr_y


@pytest.fixture(scope="module")
def lpips_metric():
    return LPIPSMetric()


@pytest.fixture
def hr_folder(tmp_path):
    folder = tmp_path / "Set2"
    folder.mkdir()
    Image.fromarray(data.astronaut()[:66, :70]).save(folder / "astronaut.png")  # not a multiple of 4
    Image.fromarray(data.camera()[:64, :64]).save(folder / "camera.png")  # greyscale, like Set14's
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.mark.slow
def test_evaluate_folder_scores_bicubic_and_model(model, lpips_metric, hr_folder, tmp_path):
    result = evaluate_folder(model, hr_folder, lpips_metric=lpips_metric, comparison_dir=tmp_path / "cmp")
    assert [image.name for image in result.images] == ["astronaut", "camera"]
    for image in result.images:
        for method in ("bicubic", "model"):
            scores = image.scores[method]
            assert 5 < scores["psnr"] < 60 and -1 < scores["ssim"] <= 1 and scores["lpips"] >= 0
    # An untrained net is far worse than bicubic: the table must be able to say so.
    assert result.mean("model", "psnr") < result.mean("bicubic", "psnr")
    comparison = Image.open(tmp_path / "cmp" / "astronaut.png")
    assert comparison.size == (3 * 68, 64)  # [bicubic | model | HR], HR cropped to 68x64


def test_bicubic_scores_follow_the_protocol(model, lpips_metric, hr_folder):
    from perceptual_sr.data.dataset import crop_to_multiple
    from perceptual_sr.data.degradations import degrade
    from perceptual_sr.utils.image_io import resize_bicubic as bicubic_upscale

    result = evaluate_folder(model, hr_folder, lpips_metric=lpips_metric, degradation="blur", max_images=1)
    hr = crop_to_multiple(np.asarray(Image.open(hr_folder / "astronaut.png")), 4)
    expected = psnr_y(bicubic_upscale(degrade(hr, 4, "blur"), 4), hr)
    assert result.images[0].scores["bicubic"]["psnr"] == pytest.approx(expected)


@pytest.mark.slow
def test_tables_written(model, lpips_metric, hr_folder, tmp_path):
    results = evaluate(model, [hr_folder], out_dir=tmp_path / "out", lpips_metric=lpips_metric)
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "| Dataset | Bicubic PSNR / SSIM | Model PSNR / SSIM |" in markdown and "Set2 (2)" in markdown
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert [row["image"] for row in rows] == ["astronaut", "camera", "mean"]
    assert float(rows[-1]["bicubic_psnr"]) == pytest.approx(results[0].mean("bicubic", "psnr"), abs=1e-5)
    # The cross-hatch column is in the table and the CSV (NaN here: the images are below its 128 px).
    assert "| Bicubic hatch | Model hatch |" in markdown and rows[-1]["model_hatch"] == "nan"
    assert (tmp_path / "out" / "comparisons" / "Set2" / "camera.png").is_file()
    markdown_path, csv_path = write_tables(results, tmp_path / "out")  # written again: replaced, not appended
    assert markdown_path.read_text() == markdown and len(list(csv.DictReader(csv_path.open()))) == 3
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["comparisons", "results.csv", "results.md"]


def test_hatch_is_scored_on_images_large_enough(model, lpips_metric):
    from perceptual_sr.data.degradations import degrade
    from perceptual_sr.evaluation.evaluate import evaluate_pairs

    hr = data.astronaut()[::4, ::4]  # 128x128
    result = evaluate_pairs(model, [("astronaut", degrade(hr, 4, "bicubic"), hr)], "one", scale=4,
                            lpips_metric=lpips_metric)
    assert result.mean("bicubic", "hatch") < 0.1  # bicubic paints no hatch
    assert 0 <= result.mean("model", "hatch") < 10


def test_bad_folders_and_options(model, lpips_metric, tmp_path):
    with pytest.raises(FileNotFoundError):
        evaluate_folder(model, tmp_path / "missing", lpips_metric=lpips_metric)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        evaluate_folder(model, tmp_path / "empty", lpips_metric=lpips_metric)
    with pytest.raises(ValueError, match="degradation"):
        evaluate_folder(model, tmp_path / "empty", degradation="jpeg", lpips_metric=lpips_metric)


def test_images_too_small_for_the_protocol_are_skipped_with_a_message(model, lpips_metric, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, size in (("tiny", 3), ("small", 16), ("ok", 40)):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    result = evaluate_folder(model, folder, lpips_metric=lpips_metric)
    assert [image.name for image in result.images] == ["ok"] and result.skipped == ["small.png", "tiny.png"]
    assert "skipped tiny.png" in capsys.readouterr().err
    (folder / "ok.png").unlink()
    with pytest.raises(ValueError, match="large enough"):
        evaluate_folder(model, folder, lpips_metric=lpips_metric)
