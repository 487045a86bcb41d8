import numpy as np
import pytest
import torch
from PIL import Image

from perceptual_sr import PerceptualSR, SRConfig
from perceptual_sr.commands.cli import main


@pytest.fixture
def model_dir(tmp_path):
    torch.manual_seed(0)
    PerceptualSR(SRConfig(channels=4, residual_blocks=1)).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_upscale_folder_with_a_corrupt_file(make_photo, model_dir, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(make_photo(20, 16)).save(photos / "a.png")
    Image.fromarray(make_photo(20, 16, seed=1)).save(photos / "b.jpg")
    (photos / "broken.png").write_bytes(b"\x89PNG garbage")
    code = main(["upscale", str(photos), "-o", str(tmp_path / "out"), "--model", str(model_dir)])
    captured = capsys.readouterr()
    assert code == 1
    assert "broken.png" in captured.err and "corrupt" in captured.err
    assert "upscaled 2, skipped 0 existing, failed 1 of 3" in captured.out
    assert Image.open(tmp_path / "out" / "a_x4.png").size == (80, 64)
    assert Image.open(tmp_path / "out" / "b_x4.jpg").size == (80, 64)


def test_format_and_skip_existing(make_photo, model_dir, tmp_path, capsys):
    Image.fromarray(make_photo(20, 16)).save(tmp_path / "a.png")
    args = ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", str(model_dir),
            "--format", "webp", "--color-fix", "none"]
    assert main(args) == 0
    assert Image.open(tmp_path / "out" / "a_x4.webp").size == (80, 64)
    assert main(args + ["--skip-existing"]) == 0
    assert "upscaled 0, skipped 1 existing" in capsys.readouterr().out


@pytest.mark.slow
def test_eval_writes_tables(model_dir, tmp_path, capsys):
    data = tmp_path / "Set1"
    data.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(data / "x.png")
    code = main(["eval", "--data", str(data), "--model", str(model_dir), "--out", str(tmp_path / "res"),
                 "--degradation", "blur"])
    assert code == 0
    assert "Set1 (1)" in (tmp_path / "res" / "results.md").read_text()
    assert (tmp_path / "res" / "results.csv").is_file() and (tmp_path / "res" / "comparisons" / "Set1" / "x.png").is_file()
    assert "Bicubic PSNR" in capsys.readouterr().out


def test_errors_are_one_line_and_nonzero(model_dir, tmp_path, capsys):
    assert main(["upscale", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o"), "--model", str(model_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and len(err.splitlines()) == 1
    assert main(["eval", "--data", str(tmp_path), "--model", str(tmp_path / "no-model")]) == 2
    assert "no-model" in capsys.readouterr().err


@pytest.mark.slow
def test_detail_flag_and_perception_distortion_sweep(tmp_path, capsys):
    from perceptual_sr.inference.pipeline import TWIN_SUBFOLDER

    torch.manual_seed(0)
    folder = tmp_path / "pair"
    PerceptualSR(SRConfig(channels=4, residual_blocks=1)).save_pretrained(folder)
    PerceptualSR(SRConfig(channels=4, residual_blocks=1)).save_pretrained(folder / TWIN_SUBFOLDER)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(photos / "a.png")
    outputs = {}
    for detail in ("0", "1"):
        out = tmp_path / f"out{detail}"
        assert main(["upscale", str(photos), "-o", str(out), "--model", str(folder), "--detail", detail]) == 0
        outputs[detail] = np.asarray(Image.open(out / "a_x4.png"))
    assert not np.array_equal(outputs["0"], outputs["1"])
    assert main(["upscale", str(photos), "-o", str(tmp_path / "bad"), "--model", str(folder), "--detail", "2"]) == 2
    assert "detail must be" in capsys.readouterr().err

    assert main(["eval", "--data", str(photos), "--model", str(folder), "--sweep-detail", "--no-fast",
                 "--out", str(tmp_path / "sweep")]) == 0
    rows = (tmp_path / "sweep" / "sweep.csv").read_text().splitlines()
    assert rows[0].startswith("detail,set,bicubic_psnr") and len(rows) == 1 + 5
    assert (tmp_path / "sweep" / "perception_distortion.png").stat().st_size > 0


def test_inputs_that_would_share_an_output_name_are_refused_before_any_work(make_photo, model_dir, tmp_path, capsys):
    for folder, name in (("d1", "x.png"), ("d2", "x.png")):
        (tmp_path / folder).mkdir()
        Image.fromarray(make_photo(20, 16)).save(tmp_path / folder / name)
    Image.fromarray(make_photo(20, 16)).save(tmp_path / "photo.jpg")
    Image.fromarray(make_photo(20, 16)).save(tmp_path / "photo.bmp")
    for inputs in ([tmp_path / "d1", tmp_path / "d2"], [tmp_path / "photo.jpg", tmp_path / "photo.bmp"]):
        out = tmp_path / "out"
        code = main(["upscale", *map(str, inputs), "-o", str(out), "--model", str(model_dir), "--format", "png"])
        assert code == 2 and "same output file" in capsys.readouterr().err
        assert not out.exists() or not any(out.iterdir())


def test_a_save_killed_midway_leaves_no_truncated_output_and_the_rerun_completes(make_photo, model_dir, tmp_path, monkeypatch,
                                                                                  capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(make_photo(20, 16)).save(photos / "a.png")
    original_save = Image.Image.save

    def killed_save(self, fp, *args, **kwargs):
        with open(fp, "wb") as handle:
            handle.write(b"\x89PNG\r\n\x1a\n half of a file")
        raise KeyboardInterrupt  # the process dies mid-write

    monkeypatch.setattr(Image.Image, "save", killed_save)
    assert main(["upscale", str(photos), "-o", str(tmp_path / "out"), "--model", str(model_dir)]) == 130
    messages = [line for line in capsys.readouterr().err.splitlines() if line and "%|" not in line]  # not the bar
    assert messages == ["perceptual-sr upscale: interrupted; no partial files were left; "
                        "rerun with --skip-existing to continue"]
    assert not (tmp_path / "out" / "a_x4.png").exists() and not list((tmp_path / "out").iterdir())
    monkeypatch.setattr(Image.Image, "save", original_save)
    # A truncated output from some other tool is redone by --skip-existing, not kept.
    (tmp_path / "out" / "a_x4.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert main(["upscale", str(photos), "-o", str(tmp_path / "out"), "--model", str(model_dir), "--skip-existing"]) == 0
    assert Image.open(tmp_path / "out" / "a_x4.png").size == (80, 64)


@pytest.mark.parametrize("device, message", [("banana", "unknown device"), ("cuda:7", "no usable CUDA")])
def test_a_device_this_machine_lacks_is_one_clear_line(make_photo, model_dir, tmp_path, capsys, device, message):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    Image.fromarray(make_photo(20, 16)).save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", str(model_dir),
                 "--device", device]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error


def test_tiny_images_upscale_from_the_command_line(model_dir, tmp_path):
    photos = tmp_path / "icons"
    photos.mkdir()
    for width, height in ((1, 1), (3, 3), (8, 8), (1, 20)):
        Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(photos / f"i{width}x{height}.png")
    assert main(["upscale", str(photos), "-o", str(tmp_path / "out"), "--model", str(model_dir)]) == 0
    assert Image.open(tmp_path / "out" / "i1x1_x4.png").size == (4, 4)
    assert Image.open(tmp_path / "out" / "i1x20_x4.png").size == (4, 80)


def test_outscale_and_suffix(make_photo, model_dir, tmp_path, capsys):
    Image.fromarray(make_photo(20, 16)).save(tmp_path / "a.png")  # 20 x 16
    grey = np.tile(np.linspace(0, 65535, 20).astype(np.uint16), (16, 1))
    Image.fromarray(grey).save(tmp_path / "g.png")
    out = tmp_path / "out"
    assert main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "g.png"), "-o", str(out), "--model",
                 str(model_dir), "--outscale", "2"]) == 0
    assert Image.open(out / "a_x2.png").size == (40, 32)
    assert Image.open(out / "g_x2.png").size == (40, 32) and Image.open(out / "g_x2.png").mode in ("I;16", "I")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(out), "--model", str(model_dir), "--outscale", "3.5",
                 "--suffix", "big"]) == 0
    assert Image.open(out / "a_big.png").size == (70, 56)
    for bad in (["--outscale", "0"], ["--suffix", "a/b"]):
        assert main(["upscale", str(tmp_path / "a.png"), "-o", str(out), "--model", str(model_dir), *bad]) == 2
    assert "--suffix" in capsys.readouterr().err


def test_version_and_the_script_commands(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and "perceptual-sr 0." in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--feature-layers" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    assert "--crops-per-image" in capsys.readouterr().out
    assert main(["demo", "unexpected"]) == 2


def test_an_input_is_never_overwritten_by_another_inputs_result(make_photo, model_dir, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(make_photo(20, 16)).save(folder / "a.png")
    Image.fromarray(make_photo(20, 16, seed=1)).save(folder / "a_x4.png")
    (folder / "link.png").symlink_to(folder / "a_x4.png")
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    monkeypatch.chdir(folder)
    for args in (["."], ["a.png", "a_x4.png"], ["link.png", "a.png"]):
        code = main(["upscale", *args, "-o", ".", "--model", str(model_dir)])
        assert code == 2 and "would overwrite an input" in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before  # nothing written, nothing lost


def test_a_result_too_large_for_its_format_is_refused_before_the_network_runs(model_dir, tmp_path, monkeypatch, capsys):
    import perceptual_sr.inference.image_pipeline

    Image.new("RGB", (4100, 2), (90, 90, 90)).save(tmp_path / "strip.webp", lossless=True)  # x4: 16,400 px wide
    ran = []
    monkeypatch.setattr(perceptual_sr.inference.image_pipeline.inference, "upscale_with", lambda *args: ran.append(args))
    code = main(["upscale", str(tmp_path / "strip.webp"), "-o", str(tmp_path / "out"), "--model", str(model_dir)])
    error = capsys.readouterr().err
    assert code == 1 and "too large for WEBP" in error and "--format png" in error and not ran
