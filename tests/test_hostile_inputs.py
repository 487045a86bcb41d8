"""Hostile inputs, one row per case: each gets a correct result or one clear error, and loses nothing.

The rows are the cases of a round of hostile testing (issue "Nothing lost, ever"), so the next
round starts from them; other files hold the cases that need their own set-up (tests/test_cli.py:
outputs that would overwrite inputs, results too large for their format; tests/test_image_io.py:
ICC profiles and EXIF; tests/test_model.py: absurd or broken config.json and weights).
"""

import numpy as np
import pytest
import torch

from perceptual_sr.commands.cli import main
from perceptual_sr.inference.upscale import UpscaleOptions, upscale


@pytest.fixture
def model_dir(tmp_path, model):
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


@pytest.mark.parametrize("flags, message", [
    (["--tile-size", "-1"], "--tile-size: expected a whole number >= 0"),
    (["--tile-overlap", "-1"], "--tile-overlap: expected a whole number >= 0"),
    (["--max-pixels", "0"], "--max-pixels: expected a whole number >= 1"),
    (["--max-pixels", "many"], "--max-pixels: expected a whole number >= 1, got 'many'"),
    (["--cleanup", "2"], "--cleanup: expected auto or a number from 0 to 1"),
])
def test_bad_command_line_numbers_are_refused_once_at_parse_time(make_photo, model_dir, tmp_path, capsys, flags,
                                                                 message):
    from PIL import Image

    Image.fromarray(make_photo(12, 10)).save(tmp_path / "a.png")
    with pytest.raises(SystemExit) as exit_info:
        main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", str(model_dir), *flags])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in error and error.count("error:") == 1
    assert not (tmp_path / "out").exists()


def test_tile_size_0_means_automatic_as_in_the_app(make_photo, model_dir, tmp_path):
    from PIL import Image

    Image.fromarray(make_photo(12, 10)).save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", str(model_dir),
                 "--tile-size", "0"]) == 0
    assert Image.open(tmp_path / "out" / "a_x4.png").size == (48, 40)


@pytest.mark.parametrize("options, message", [
    (dict(max_pixels=float("nan")), "max_pixels"), (dict(max_pixels=0), "max_pixels"),
    (dict(tile_size=0), "tile_size"), (dict(tile_size=2.5), "tile_size"), (dict(tile_overlap=-1), "tile_overlap"),
    (dict(tile_batch=True), "tile_batch"), (dict(color_fix="sepia"), "color_fix"),
])
def test_bad_upscale_options_are_one_clear_error(options, message):
    with pytest.raises(ValueError, match=message):
        UpscaleOptions(**options)


def test_numpy_numbers_are_accepted_wherever_a_python_number_is(model):
    image = np.zeros((6, 5, 3), np.float32)
    out = upscale(model, image, tile_size=np.int64(64), tile_overlap=np.int32(4), max_pixels=np.int64(10_000))
    assert out.shape == (24, 20, 3)


@pytest.mark.parametrize("make", [lambda: torch.empty(3, 8, 8, device="meta"),
                                  lambda: torch.rand(3, 8, 8).to_sparse()], ids=["meta", "sparse"])
def test_tensors_without_pixels_are_a_value_error(model, make):
    with pytest.raises(ValueError, match="dense tensor holding pixels"):
        upscale(model, make())


def test_eval_refuses_two_sets_with_one_name(model_dir, tmp_path, capsys):
    for parent in ("a", "b"):
        (tmp_path / parent / "one").mkdir(parents=True)
    code = main(["eval", "--data", str(tmp_path / "a" / "one"), str(tmp_path / "b" / "one"), "--model",
                 str(model_dir), "--out", str(tmp_path / "results")])
    assert code == 2 and "several --data folders are named 'one'" in capsys.readouterr().err


def test_train_refuses_a_bad_hub_repo_id_before_training():
    from perceptual_sr.training.config import TrainConfig

    with pytest.raises(ValueError, match="push_to_hub must be a Hub repo id"):
        TrainConfig(push_to_hub="not a repo id!!")
    assert TrainConfig(push_to_hub="someone/perceptual-sr").push_to_hub == "someone/perceptual-sr"


def test_prepare_caps_workers_at_the_cpu_count_and_refuses_crops_too_small_to_train(tmp_path, capsys):
    import os

    from perceptual_sr.data.prepare import PrepareConfig

    config = PrepareConfig(source=tmp_path, out=tmp_path / "out", workers=10_000)
    assert config.workers == (os.cpu_count() or 1) and "capped" in capsys.readouterr().err
    with pytest.raises(ValueError, match="hr_size 16 gives 4 px"):
        PrepareConfig(source=tmp_path, out=tmp_path / "out", hr_size=16, scale=4)


def test_the_apps_own_result_folder_is_removed_with_it(model):
    import gc

    from perceptual_sr.app.demo import Upscaler

    upscaler = Upscaler(model)
    folder = upscaler.output_dir
    assert folder.is_dir()
    del upscaler
    gc.collect()
    assert not folder.exists()


def test_a_32_bit_integer_image_outside_16_bits_is_refused_not_clipped(model):
    from PIL import Image

    inside = Image.fromarray(np.array([[0, 1000], [40000, 65535]], dtype=np.int32), mode="I")
    assert upscale(model, inside).size == (8, 8)
    for values in ([[-5, 10], [20, 30]], [[0, 70000], [10, 20]]):
        with pytest.raises(ValueError, match="32-bit integer image with values from"):
            upscale(model, Image.fromarray(np.array(values, dtype=np.int32), mode="I"))


def test_an_output_folder_that_is_a_file_is_one_clear_error_and_the_file_stays(make_photo, model_dir, tmp_path,
                                                                               capsys):
    from PIL import Image

    Image.fromarray(make_photo(12, 10)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "notes.txt"), "--model", str(model_dir)]) == 2
    assert "is a file; -o takes a folder" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"
