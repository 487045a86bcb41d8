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


# --- Round 3 (issue "Nothing lost, round 3"): one test per class, each failing before its fix. ---

def _tiny_pipeline():
    from perceptual_sr import PerceptualSR, SRConfig, SRPipeline

    torch.manual_seed(0)
    return SRPipeline.from_network(PerceptualSR(SRConfig(channels=4, residual_blocks=1)).eval())


def _photo_folder(folder, make_photo, count: int, side: int):
    """A new folder of `count` distinct synthetic `side` x `side` PNG photos."""
    from PIL import Image

    folder.mkdir()
    for i in range(count):
        Image.fromarray(make_photo(side, side, seed=i)).save(folder / f"{i}.png")
    return folder


@pytest.mark.slow
def test_r3_01_training_never_writes_over_a_folder_that_holds_something(tmp_path, make_photo, capsys):
    import shutil

    from perceptual_sr.hub.weights import DEFAULT_WEIGHTS_DIR

    photos = _photo_folder(tmp_path / "photos", make_photo, count=3, side=48)
    assert main(["prepare", str(photos), str(tmp_path / "data"), "--hr-size", "32", "--val-images", "0",
                 "--crops-per-image", "1"]) == 0
    shutil.copytree(DEFAULT_WEIGHTS_DIR, tmp_path / "model")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("mine")
    for folder in (tmp_path / "model", tmp_path / "notes"):
        before = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
        code = main(["train", "--data", str(tmp_path / "data"), "--output-dir", str(folder), "--steps", "1",
                     "--channels", "4", "--residual-blocks", "1", "--feature-layers", "none", "--pixel-weight", "1",
                     "--no-validate-at-start", "--val-every", "100", "--batch-size", "2"])
        assert code != 0 and "already holds" in capsys.readouterr().err
        assert {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()} == before


def test_r3_02_deploy_space_stages_no_secrets_links_out_or_strays(tmp_path):
    import shutil

    from perceptual_sr.app.deploy import REPO_ROOT, deploy_space, stage_space

    source = tmp_path / "checkout"
    source.mkdir()
    for name in ("app.py", "requirements.txt", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "perceptual_sr", source / "perceptual_sr",
                    ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
    shutil.copytree(REPO_ROOT / "examples", source / "examples")
    (source / "perceptual_sr" / ".env").write_text("HF_TOKEN=hf_secret")
    (source / "examples" / ".hf_token").write_text("hf_secret")
    (source / "examples" / "my_token.png").write_text("hf_secret")
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"private")
    (source / "examples" / "shadow.png").symlink_to(outside)
    (source / "examples" / "linked").symlink_to(tmp_path, target_is_directory=True)
    (source / "examples" / "loop.png").symlink_to(source / "examples" / "loop.png")
    (source / "perceptual_sr" / "runs").mkdir()
    (source / "perceptual_sr" / "runs" / "training_state.pt").write_bytes(b"0" * 100)
    (source / "examples" / "clip.mp4").write_bytes(b"0" * 100)
    (source / "examples" / ".photo.png.swp").write_bytes(b"0")
    (source / "examples" / "huge.png").write_bytes(b"0" * (21 * 1024 * 1024))
    listing = deploy_space("someone/space", dry_run=True, source=source)
    staged = {str(path) for path in stage_space(tmp_path / "staged", source)}
    for name in (".env", ".hf_token", "my_token.png", "shadow.png", "linked", "loop.png", "training_state.pt",
                 "clip.mp4", ".photo.png.swp", "huge.png"):
        assert not [path for path in staged if name in path], name
        assert f"{name}:" in listing or f"{name}/" in listing, name
    assert "hf_secret" not in "".join(p.read_text(errors="ignore") for p in (tmp_path / "staged").rglob("*")
                                      if p.is_file() and p.suffix in (".py", ".md", ".png", ""))
    assert " kB  app.py" in listing  # each file with its size


def test_r3_03_outscale_keeps_an_exif_rotated_photo_upright(tmp_path, make_photo):
    from PIL import Image

    image = Image.fromarray(make_photo(60, 30))
    exif = image.getexif()
    exif[0x0112] = 6  # a portrait phone photo, stored landscape
    image.save(tmp_path / "phone.jpg", exif=exif.tobytes())
    assert _tiny_pipeline().upscale(str(tmp_path / "phone.jpg"), outscale=2).size == (60, 120)


@pytest.mark.slow
def test_r3_04_save_pretrained_is_all_or_nothing_across_weight_sets(tmp_path):
    from perceptual_sr import SRPipeline

    pipeline = SRPipeline.from_pretrained()
    pipeline.save_pretrained(tmp_path / "m")
    before = {path: path.read_bytes() for path in (tmp_path / "m").rglob("*") if path.is_file()}
    other = _tiny_pipeline()
    with pytest.raises(TypeError):
        other.save_pretrained(tmp_path / "m", no_such_card_keyword=1)
    assert {path: path.read_bytes() for path in (tmp_path / "m").rglob("*") if path.is_file()} == before
    (tmp_path / "m" / "my_notes.txt").write_text("mine")  # not the model's: kept through a save
    other.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "my_notes.txt").read_text() == "mine"
    assert not (tmp_path / "m" / "pixel-twin").exists()  # the new model, whole: no stale sets beside it


def test_r3_05_resaving_or_pushing_a_loaded_model_keeps_its_card(tmp_path, monkeypatch, bundled_pipeline):
    from huggingface_hub import HfApi, ModelCard, RepoUrl

    from perceptual_sr.hub.weights import DEFAULT_WEIGHTS_DIR

    measured = ModelCard.load(DEFAULT_WEIGHTS_DIR / "README.md").data.eval_results
    bundled_pipeline.save_pretrained(tmp_path / "copy")
    assert ModelCard.load(tmp_path / "copy" / "README.md").data.eval_results == measured
    uploaded = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: RepoUrl(f"https://huggingface.co/{repo_id}"))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, *, repo_id, folder_path, **kw: uploaded.update(
        card=(tmp_path / "pushed.md").write_text((__import__("pathlib").Path(folder_path) / "README.md").read_text())))
    bundled_pipeline.push_to_hub("someone/sr")
    card = ModelCard.load(tmp_path / "pushed.md")
    assert card.data.eval_results == measured and 'from_pretrained("someone/sr")' in card.text
    assert "## Training" in card.text


def test_r3_06_nan_weights_are_an_error_never_a_black_image(tmp_path):
    pipeline = _tiny_pipeline()
    network = pipeline.network_at()
    broken = type(network)(network.config)
    broken.load_state_dict(network.state_dict())
    with torch.no_grad():
        broken.tail.bias[0] = float("nan")
    from perceptual_sr import SRPipeline
    from perceptual_sr.inference.onnx_export import export_onnx

    with pytest.raises(ValueError, match="NaN"):
        SRPipeline.from_network(broken.eval()).upscale(np.full((12, 12, 3), 0.5, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        export_onnx(broken, tmp_path / "broken.onnx")
    assert not (tmp_path / "broken.onnx").exists()


@pytest.mark.slow
def test_r3_07_pure_white_and_black_are_kept():
    from PIL import Image, ImageDraw

    from perceptual_sr import SRPipeline

    pipeline = SRPipeline.from_pretrained()
    for level in (255, 0):
        assert set(np.unique(np.asarray(pipeline.upscale(Image.new("RGB", (24, 24), (level,) * 3))))) == {level}
    page = Image.new("RGB", (96, 40), "white")
    ImageDraw.Draw(page).text((4, 12), "Invoice 2026", fill="black")
    out = np.asarray(pipeline.upscale(page))
    assert (out == 255).all(axis=2).mean() > 0.8  # the page stays white (before: 19%)


@pytest.mark.slow
def test_r3_08_eval_flags_are_checked_and_honoured(tmp_path, make_photo, capsys):

    folder = _photo_folder(tmp_path / "set", make_photo, count=3, side=32)
    for bad in ("-4", "0"):
        with pytest.raises(SystemExit):
            main(["eval", "--data", str(folder), "--max-images", bad, "--out", str(tmp_path / "out")])
        assert "--max-images: expected a whole number >= 1" in capsys.readouterr().err
    from perceptual_sr import SRPipeline
    from perceptual_sr.evaluation.evaluate import sweep_detail

    rows = sweep_detail(SRPipeline.from_pretrained(), [folder], tmp_path / "sweep", details=(0.0, 1.0),
                        cleanup=1.0, max_images=1)
    assert len(rows) == 2
    text = (tmp_path / "sweep" / "sweep.csv").read_text()
    assert text  # written
    pipeline = SRPipeline.from_pretrained()
    assert pipeline.network_for(np.zeros((8, 8, 3), np.float32), detail=1.0, cleanup=1.0) is \
        pipeline.network_at(detail=1.0, cleanup=1.0)


def test_r3_09_partial_model_folders_say_what_they_lack(tmp_path):
    import shutil

    from perceptual_sr import SRPipeline
    from perceptual_sr.hub.weights import DEFAULT_WEIGHTS_DIR

    shutil.copytree(DEFAULT_WEIGHTS_DIR, tmp_path / "m")
    shutil.rmtree(tmp_path / "m" / "real-photo")
    pipeline = SRPipeline.from_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="needs real-photo/"):
        pipeline.upscale(np.zeros((8, 8, 3), np.float32), detail=0.0)
    (tmp_path / "m" / "real-photo").mkdir()
    shutil.copy(DEFAULT_WEIGHTS_DIR / "config.json", tmp_path / "m" / "real-photo")  # an interrupted download
    with pytest.raises(ValueError, match="real-photo holds config.json but no model.safetensors"):
        SRPipeline.from_pretrained(tmp_path / "m")


def test_r3_10_auto_measures_only_what_is_visible(bundled_pipeline):
    from PIL import Image

    rgba = np.random.default_rng(0).integers(0, 256, (128, 128, 4), dtype=np.uint8)
    rgba[..., 3] = 0
    rgba[48:80, 48:80] = (30, 120, 200, 255)  # a clean logo; random colour under alpha 0
    quality = bundled_pipeline.assess(Image.fromarray(rgba, "RGBA"))
    assert quality.noise_sigma < 2 and quality.cleanup == 0.0
    assert bundled_pipeline.assess(rgba).cleanup == 0.0


def test_r3_11_a_fifo_named_like_a_photo_never_hangs(tmp_path, model_dir, capsys):
    import os

    os.mkfifo(tmp_path / "p.png")
    code = main(["upscale", str(tmp_path / "p.png"), "-o", str(tmp_path / "out"), "--model", str(model_dir)])
    assert code == 2 and "pipe or device" in capsys.readouterr().err and not (tmp_path / "out").exists()
    from perceptual_sr.data.prepare import probe_image

    assert probe_image(tmp_path / "p.png", 32) == "not a regular file"


def test_r3_12_a_thin_strip_is_limited_by_what_the_network_runs_on():
    from perceptual_sr.inference.upscale import ImageTooLargeError

    with pytest.raises(ImageTooLargeError, match="8 pixels a side"):
        _tiny_pipeline().upscale(np.zeros((1, 200_000, 3), np.uint8), max_pixels=1024 * 1024)


def test_r3_13_the_pixel_limit_comes_before_auto_measures(monkeypatch, bundled_pipeline):
    from PIL import Image

    from perceptual_sr.inference import auto_cleanup
    from perceptual_sr.inference.upscale import ImageTooLargeError

    measured = []
    monkeypatch.setattr(auto_cleanup, "assess", lambda image: measured.append(image))
    with pytest.raises(ImageTooLargeError):
        bundled_pipeline.upscale(Image.new("RGB", (5000, 4000)))
    assert not measured


@pytest.mark.slow
def test_r3_14_the_app_removes_its_outputs_on_sigterm(tmp_path):
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp = tmp_path / "tmp"
    temp.mkdir()
    environment = {**os.environ, "TMPDIR": str(temp), "GRADIO_SERVER_PORT": str(port), "GRADIO_CACHE_MODE": "lazy",
                   "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_EXAMPLES_CACHE": str(tmp_path / "cache")}
    app = Path(__file__).resolve().parent.parent / "app.py"
    process = subprocess.Popen([sys.executable, str(app)], env=environment, cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(temp.glob("perceptual_sr_demo_*")):
            time.sleep(0.5)
        assert list(temp.glob("perceptual_sr_demo_*")), "the app did not start"
        time.sleep(3)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert not list(temp.glob("perceptual_sr_demo_*"))


def test_r3_15_a_killed_writers_staging_file_is_cleared_on_the_next_run(tmp_path):
    import subprocess
    import sys

    from perceptual_sr.utils.atomic_write import write_text

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".out.png.{dead}-1.partial"
    stale.write_bytes(b"half")
    alive = tmp_path / ".out.png.1-1.partial"  # pid 1 runs: someone's live write, left alone
    alive.write_bytes(b"busy")
    write_text(tmp_path / "out.png", "done")
    assert not stale.exists() and alive.exists()


def test_r3_16_a_refused_prepare_run_does_not_block_the_corrected_one(tmp_path, make_photo, capsys):

    photos = _photo_folder(tmp_path / "photos", make_photo, count=3, side=40)
    out = tmp_path / "data"
    assert main(["prepare", str(photos), str(out), "--hr-size", "32", "--crops-per-image", "1000000000",
                 "--val-images", "0"]) != 0
    assert main(["prepare", str(photos), str(out), "--hr-size", "32", "--crops-per-image", "2",
                 "--val-images", "0"]) == 0


def test_r3_17_the_same_command_twice_into_the_same_folder_skips_what_it_wrote(tmp_path, make_photo, model_dir):
    from PIL import Image

    Image.fromarray(make_photo(16, 12)).save(tmp_path / "comic.png")
    command = ["upscale", str(tmp_path), "-o", str(tmp_path), "--skip-existing", "--model", str(model_dir)]
    assert main(command) == 0
    written = (tmp_path / "comic_x4.png").read_bytes()
    assert main(command) == 0
    assert (tmp_path / "comic_x4.png").read_bytes() == written and not (tmp_path / "comic_x4_x4.png").exists()


@pytest.mark.parametrize("value, message", [
    (torch.empty(0, 3, 8, 8), "batch is empty"), (torch.rand(8), "shape"), (torch.rand(8, 8), "shape"),
    (torch.rand(1, 1, 3, 8, 8), "shape"), (torch.empty(3, 8, 8, device="meta"), "dense tensor"),
    (torch.rand(3, 8, 8).to_sparse(), "dense tensor"), (np.zeros(8, np.uint8), "shape"),
    (np.zeros((1, 8, 8, 3), np.uint8), "shape"), (np.zeros((8, 8, 3), np.int32), "dtype"),
    (np.zeros((8, 8, 3), bool), "dtype"), ([[0.5]], "cannot upscale a list"),
])
def test_r3_18_bad_inputs_get_their_clear_error_before_auto_measures(value, message, bundled_pipeline):
    for call in (bundled_pipeline.upscale, bundled_pipeline.assess):
        with pytest.raises(ValueError, match=message):
            call(value)


def test_r3_18_assess_refuses_floats_outside_0_1(bundled_pipeline):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bundled_pipeline.assess(np.full((16, 16, 3), 200.0, np.float32))


def test_r3_19_a_closed_or_cut_short_image_is_one_clear_error(tmp_path, make_photo):
    from PIL import Image

    Image.fromarray(make_photo(64, 64)).save(tmp_path / "a.jpg", quality=90)
    with Image.open(tmp_path / "a.jpg") as image:
        pass
    with pytest.raises(ValueError, match="closed"):
        _tiny_pipeline().upscale(image)
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    lazy = Image.open(tmp_path / "cut.jpg")
    with pytest.raises(ValueError, match="corrupt or cut short"):
        _tiny_pipeline().upscale(lazy)


def test_r3_20_an_unknown_device_type_is_one_clear_error(tmp_path, make_photo, model_dir, capsys):
    from PIL import Image

    Image.fromarray(make_photo(12, 12)).save(tmp_path / "a.png")
    code = main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--device", "meta",
                 "--model", str(model_dir)])
    assert code == 2 and "not one perceptual_sr runs on" in capsys.readouterr().err


def test_r3_21_an_onnx_file_frozen_to_one_shape_fails_its_load_probe(tmp_path):
    import json

    from perceptual_sr.inference.onnx_export import CONFIG_KEY, INPUT_NAME, OUTPUT_NAME, OnnxSR

    class Frozen(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.interpolate(x, size=(64, 64))

    path = tmp_path / "frozen.onnx"
    torch.onnx.export(Frozen(), (torch.rand(1, 3, 16, 16),), str(path), input_names=[INPUT_NAME],
                      output_names=[OUTPUT_NAME], dynamo=False)
    import onnx

    model = onnx.load(str(path))
    model.metadata_props.add(key=CONFIG_KEY, value=json.dumps({"scale": 4}))
    onnx.save(model, str(path))
    with pytest.raises(ValueError, match="any batch, height and width|turns a"):
        OnnxSR(path)


@pytest.mark.parametrize("crop", ["16", "8", "64"])
def test_r3_22_bad_training_crop_sizes_are_refused_before_anything_is_written(tmp_path, make_photo, crop, capsys):

    photos = _photo_folder(tmp_path / "photos", make_photo, count=2, side=40)
    assert main(["prepare", str(photos), str(tmp_path / "data"), "--hr-size", "32", "--val-images", "0"]) == 0
    code = main(["train", "--data", str(tmp_path / "data"), "--output-dir", str(tmp_path / "run"), "--steps", "1",
                 "--crop-size", crop, "--channels", "4", "--residual-blocks", "1"])
    assert code != 0 and "crop_size" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_r3_23_a_camera_jpeg_with_an_mpf_preview_takes_its_primary_image(tmp_path, make_photo):
    from PIL import Image

    primary, preview = Image.fromarray(make_photo(40, 32)), Image.fromarray(make_photo(20, 16, seed=1))
    primary.save(tmp_path / "camera.jpg", "MPO", save_all=True, append_images=[preview])
    with Image.open(tmp_path / "camera.jpg") as check:
        assert check.format == "MPO" and check.n_frames == 2
    assert _tiny_pipeline().upscale(str(tmp_path / "camera.jpg")).size == (160, 128)


@pytest.mark.parametrize("options, message", [
    (dict(tile_size=float("nan")), "Tile size"), (dict(tile_size=float("inf")), "Tile size"),
    (dict(tile_size="big"), "Tile size"), (dict(detail="1"), "detail"), (dict(cleanup="0.5"), "cleanup"),
    (dict(outscale="2"), "outscale"), (dict(automatic_cleanup="false"), "switch"),
])
def test_r3_24_the_apps_upscaler_turns_every_bad_value_into_a_message(tmp_path, make_photo, options, message):
    import gradio as gr
    from PIL import Image

    from perceptual_sr.app.demo import Upscaler

    Image.fromarray(make_photo(16, 16)).save(tmp_path / "a.png")
    if "cleanup" in options:
        options = {**options, "automatic_cleanup": False}
    upscaler = Upscaler(_tiny_pipeline(), output_dir=tmp_path / "out")
    with pytest.raises(gr.Error, match=message):
        upscaler(str(tmp_path / "a.png"), **options)


def test_r3_25_numpy_numbers_are_numbers(bundled_pipeline):
    out = bundled_pipeline.upscale(np.zeros((8, 8, 3), np.float32), cleanup=np.float32(0.5),
                                               detail=np.int64(0), outscale=np.float64(2.0))
    assert out.shape == (16, 16, 3)


def test_r3_26_things_that_exist_are_named_for_what_they_are(tmp_path, model_dir, make_photo, capsys):
    from PIL import Image

    (tmp_path / "x.onnx").mkdir()
    Image.fromarray(make_photo(12, 12)).save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o1"), "--model",
                 str(tmp_path / "x.onnx")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["upscale", "/dev/stdin", "-o", str(tmp_path / "o2"), "--model", str(model_dir)]) == 2
    assert "pipe or device" in capsys.readouterr().err and not (tmp_path / "o2").exists()
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    from perceptual_sr import PerceptualSR

    with pytest.raises(ValueError, match="is a file, not a model folder"):
        PerceptualSR.from_pretrained(tmp_path / "m.onnx")
    from perceptual_sr.evaluation.evaluate import list_images

    with pytest.raises(ValueError, match="is a file"):
        list_images(tmp_path / "a.png")


@pytest.mark.parametrize("call, message", [
    (lambda d: d.degrade_realistic(torch.full((3, 16, 16), float("nan")), 4, 0), r"\[0, 1\]"),
    (lambda d: d.degrade_realistic(torch.rand(3, 16, 16) * 255, 4, 0), r"\[0, 1\]"),
    (lambda d: d.degrade_realistic(torch.rand(3, 16, 16), True, 0), "scale"),
    (lambda d: d.degrade_realistic(torch.rand(3, 16, 16), 4, 2 ** 70), "seed"),
    (lambda d: d.DegradationConfig(resize_range=(0.5, 1e6)), "resize_range"),
    (lambda d: d.DegradationConfig(clean_prob="0.5"), "clean_prob"),
])
def test_r3_27_degradations_refuse_nonsense(call, message):
    from perceptual_sr.data import degradations

    with pytest.raises(ValueError, match=message):
        call(degradations)


def test_r3_28_deploy_without_a_network_is_one_line(monkeypatch, capsys):
    import httpx
    from huggingface_hub import HfApi

    def offline(*args, **kwargs):
        raise httpx.ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(HfApi, "create_repo", offline)
    assert main(["deploy-space", "someone/sr"]) == 2
    error = capsys.readouterr().err
    assert "could not reach the Hugging Face Hub" in error and "Traceback" not in error and error.count("\n") == 1


def test_r3_29_an_image_in_a_colour_space_we_cannot_convert_is_refused(tmp_path):
    from PIL import Image

    lab = Image.new("LAB", (16, 16), (50, 0, 0))
    for cleanup in ("auto", 0.0):
        with pytest.raises(ValueError, match="LAB colour space"):
            _tiny_pipeline().upscale(lab, cleanup=cleanup)


def test_r3_30_output_names_differing_only_in_case_are_a_clash(tmp_path, make_photo, model_dir, capsys):
    from PIL import Image

    for folder, name in (("one", "Photo.jpg"), ("two", "photo.jpg")):
        (tmp_path / folder).mkdir()
        Image.fromarray(make_photo(12, 12)).save(tmp_path / folder / name)
    code = main(["upscale", str(tmp_path / "one"), str(tmp_path / "two"), "-o", str(tmp_path / "out"),
                 "--model", str(model_dir)])
    assert code == 2 and "without case" in capsys.readouterr().err
