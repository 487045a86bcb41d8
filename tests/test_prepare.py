"""Data preparation: LR = degrade(HR), counts and manifest, disjoint splits, skipping, resuming, refusing."""

import json
import shutil
from collections import namedtuple

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from perceptual_sr.commands.prepare import main
from perceptual_sr.data.degradations import degrade
from perceptual_sr.data.prepare import PrepareConfig, crop_positions, find_images, prepare
from perceptual_sr.utils.image_io import load_rgb8 as load_rgb

HR, SCALE = 32, 4
ARRAYS = ("train_hr", "train_lr", "val_hr", "val_lr")


@pytest.fixture(scope="module")
def source(make_photo, tmp_path_factory):
    """~20 usable images in nested folders and several formats, plus files that must be skipped."""
    root = tmp_path_factory.mktemp("source")
    (root / "class_a").mkdir()
    (root / "class_b" / "deeper").mkdir(parents=True)
    formats = [("class_a", "png"), ("class_a", "bmp"), ("class_b", "tif"), ("class_b/deeper", "webp")]
    for i in range(16):
        folder, extension = formats[i % len(formats)]
        options = {"lossless": True} if extension == "webp" else {}
        Image.fromarray(make_photo(60 - i, 40 + 3 * i, seed=i)).save(root / folder / f"img{i:02d}.{extension}", **options)
    # Real photos, scaled down so the test stays fast; one greyscale, one JPEG.
    for name in ("astronaut", "chelsea", "coffee", "camera"):
        image = Image.fromarray(getattr(skdata, name)())
        image.thumbnail((72, 72))
        image.save(root / f"{name}.png")
    Image.fromarray(skdata.rocket()).resize((64, 48)).save(root / "rocket.JPG", quality=95)
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    truncated = root / "class_a" / "truncated.jpg"
    Image.fromarray(make_photo(64, 64, seed=100)).save(truncated, quality=95)
    truncated.write_bytes(truncated.read_bytes()[:700])  # header intact, data cut: only decoding finds it
    Image.fromarray(make_photo(50, 20, seed=101)).save(root / "small.png")  # shorter side below HR
    Image.fromarray(make_photo(40, 40, seed=102)).save(root / "._hidden.png")  # macOS metadata name: ignored
    (root / "notes.txt").write_text("not an image")
    return root


def _config(source, out, **overrides):
    settings = dict(num_images=100, val_images=2, crops_per_image=3, hr_size=HR, scale=SCALE, seed=7, workers=1)
    return PrepareConfig(source=source, out=out, **{**settings, **overrides})


def _arrays(out):
    return {name: np.load(out / f"{name}.npy") for name in ARRAYS}


@pytest.fixture(scope="module")
def clean_run(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "set"
    return out, prepare(_config(source, out))


def test_every_lr_is_the_degradation_of_its_hr_and_every_hr_a_crop_of_its_source(source, clean_run):
    out, manifest = clean_run
    arrays = _arrays(out)
    for split in ("train", "val"):
        hr, lr = arrays[f"{split}_hr"], arrays[f"{split}_lr"]
        assert hr.shape == (manifest["counts"][split], HR, HR, 3) and lr.shape == (len(hr), HR // 4, HR // 4, 3)
        assert all(np.array_equal(lr[row], degrade(hr[row], SCALE, "blur")) for row in range(len(hr)))
        per_image = manifest["crops_per_image"][split]
        for row in range(len(hr)):
            image = load_rgb(source / manifest["sources"][split][row // per_image])
            windows = np.lib.stride_tricks.sliding_window_view(image, (HR, HR, 3))[..., 0, :, :, :]
            matches = np.argwhere((windows == hr[row]).all(axis=(2, 3, 4)))
            assert len(matches), f"{split} row {row} is not a crop of its source"
            if split == "val":  # validation crops are centred
                assert [(image.shape[0] - HR) // 2, (image.shape[1] - HR) // 2] in matches.tolist()
    # Three random training crops of an image are not all the same crop.
    assert not np.array_equal(arrays["train_hr"][0], arrays["train_hr"][1]) or \
        not np.array_equal(arrays["train_hr"][1], arrays["train_hr"][2])


def test_bicubic_degradation_is_used_when_asked(source, tmp_path):
    manifest = prepare(_config(source, tmp_path / "set", degradation="bicubic", num_images=3, crops_per_image=1))
    hr, lr = np.load(tmp_path / "set" / "train_hr.npy"), np.load(tmp_path / "set" / "train_lr.npy")
    assert manifest["degradation"] == "bicubic" and len(hr) == 3
    assert all(np.array_equal(lr[row], degrade(hr[row], SCALE, "bicubic")) for row in range(3))
    assert not np.array_equal(lr[0], degrade(hr[0], SCALE, "blur"))


def test_counts_manifest_and_skipped_files(source, clean_run):
    out, manifest = clean_run
    assert sorted(path.name for path in out.iterdir()) == sorted([f"{name}.npy" for name in ARRAYS] + ["manifest.json"])
    assert json.loads((out / "manifest.json").read_text()) == manifest
    found = find_images(source)
    assert len(found) == 24 and not any("hidden" in name or name.endswith(".txt") for name in found)
    skipped = {entry["path"]: entry["reason"] for entry in manifest["skipped"]}
    assert set(skipped) == {"corrupt.png", "class_a/truncated.jpg", "small.png"}
    assert "truncated" in skipped["class_a/truncated.jpg"] and "smaller than hr_size 32" in skipped["small.png"]
    assert manifest["images"] == {"val": 2, "train": 24 - 3 - 2}  # all usable images were taken
    assert manifest["counts"] == {"val": 2, "train": 3 * 19}
    assert set(manifest["sources"]["train"]).isdisjoint(manifest["sources"]["val"])
    assert set(manifest["sources"]["train"]) | set(manifest["sources"]["val"]) | set(skipped) == set(found)
    assert manifest["source_root"] == str(source.resolve())
    for key, value in dict(scale=4, hr_size=32, lr_size=8, degradation="blur", seed=7).items():
        assert manifest[key] == value
    assert {"numpy", "pillow", "torch", "python"} <= set(manifest["versions"])


def test_selection_depends_on_the_seed_and_respects_the_limits(source, tmp_path):
    small = prepare(_config(source, tmp_path / "a", num_images=4, val_images=50, crops_per_image=1))
    assert small["images"] == {"val": 2, "train": 4}  # val capped at 10% of the 24 images found
    other_seed = prepare(_config(source, tmp_path / "b", num_images=4, val_images=50, crops_per_image=1, seed=8))
    assert other_seed["sources"] != small["sources"]
    no_val = prepare(_config(source, tmp_path / "c", num_images=2, val_images=0, crops_per_image=1))
    assert no_val["counts"]["val"] == 0 and np.load(tmp_path / "c" / "val_hr.npy").shape == (0, HR, HR, 3)


def test_crop_positions_are_seeded_and_in_bounds():
    positions = crop_positions(50, 70, 32, 200, seed=(1, 1, 5))
    assert positions == crop_positions(50, 70, 32, 200, seed=(1, 1, 5))
    assert positions != crop_positions(50, 70, 32, 200, seed=(1, 1, 6))
    tops, lefts = zip(*positions)
    assert min(tops) == 0 and max(tops) == 18 and min(lefts) == 0 and max(lefts) == 38
    assert crop_positions(50, 70, 32, 2, seed=None) == [(9, 19), (9, 19)]


class Interrupt(Exception):
    pass


def _interrupt_after(count):
    def on_image(done):
        if done >= count:
            raise Interrupt
    return on_image


@pytest.mark.slow
def test_interrupted_runs_resume_to_the_same_arrays_as_a_clean_run(source, clean_run, tmp_path):
    clean_out, clean_manifest = clean_run
    out = tmp_path / "set"
    config = _config(source, out)
    with pytest.raises(Interrupt):
        prepare(config, checkpoint_seconds=0, on_image=_interrupt_after(6))
    progress = json.loads((out / "progress.json").read_text())
    assert sum(map(len, progress["done"].values())) == 6 and not (out / "manifest.json").exists()

    # A hard kill can land after rows were written but before progress.json recorded them:
    # forget some recorded images and scribble over every row not recorded as done.
    progress["done"]["train"] = progress["done"]["train"][:1]
    (out / "progress.json").write_text(json.dumps(progress))
    partial = np.load(out / "train_hr.npy.partial", mmap_mode="r+")
    done_rows = {index * 3 + crop for index in progress["done"]["train"] for crop in range(3)}
    for row in set(range(len(partial))) - done_rows:
        partial[row] = 77
    partial.flush()
    del partial

    with pytest.raises(Interrupt):  # a second interruption, now with worker processes
        prepare(PrepareConfig(**{**vars(config), "workers": 2}), checkpoint_seconds=0, on_image=_interrupt_after(12))
    resumed = prepare(PrepareConfig(**{**vars(config), "workers": 2}))
    assert resumed["counts"] == clean_manifest["counts"] and resumed["sources"] == clean_manifest["sources"]
    assert resumed["skipped"] == clean_manifest["skipped"]
    clean, again = _arrays(clean_out), _arrays(out)
    assert all(np.array_equal(clean[name], again[name]) for name in ARRAYS)
    assert not list(out.glob("*.partial")) and not (out / "progress.json").exists()


def test_finished_folder_is_kept_and_other_settings_are_refused(source, clean_run):
    out, manifest = clean_run
    before = {name: (out / f"{name}.npy").stat().st_mtime_ns for name in ARRAYS}
    assert prepare(_config(source, out, workers=2)) == manifest  # workers do not change the output
    assert before == {name: (out / f"{name}.npy").stat().st_mtime_ns for name in ARRAYS}
    with pytest.raises(ValueError, match="hr_size 32 .this run: 64"):
        prepare(_config(source, out, hr_size=64))


def test_unfinished_run_with_other_settings_is_refused(source, tmp_path):
    out = tmp_path / "set"
    with pytest.raises(Interrupt):
        prepare(_config(source, out), checkpoint_seconds=0, on_image=_interrupt_after(2))
    with pytest.raises(ValueError, match="seed 7 .this run: 8"):
        prepare(_config(source, out, seed=8))
    assert json.loads((out / "progress.json").read_text())["done"]  # the unfinished work is still there


def test_refuses_when_the_disk_is_too_small(source, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(OSError, match="not enough disk space"):
        prepare(_config(source, tmp_path / "set"))
    assert not list((tmp_path / "set").glob("*.npy*"))  # nothing was allocated


def test_disk_message_states_the_needed_size(source, tmp_path, capsys):
    prepare(_config(source, tmp_path / "set", num_images=1, val_images=0, crops_per_image=2))
    needed = 2 * (HR * HR * 3 + 8 * 8 * 3)
    assert f"the arrays need {needed / 1000:.1f} KB more" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [dict(hr_size=30), dict(crops_per_image=0), dict(degradation="jpeg"),
                                 dict(val_images=-1), dict(workers=0), dict(seed=-3)])
def test_bad_settings_are_named(source, tmp_path, bad):
    (name, value), = bad.items()
    with pytest.raises(ValueError, match=f"{name}.*{value}|{value}.*{name}"):
        _config(source, tmp_path, **bad)


def test_command_line_errors_are_one_line_and_nonzero(tmp_path, capsys):
    assert main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "source folder not found" in err and "missing" in err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), str(tmp_path / "out"), "--hr-size", "30"]) == 1
    assert "not a multiple of scale" in capsys.readouterr().err
    assert main([str(tmp_path / "empty"), str(tmp_path / "out")]) == 1
    assert "no image files" in capsys.readouterr().err


def test_command_line_builds_a_dataset(source, tmp_path, capsys):
    out = tmp_path / "set"
    args = [str(source), str(out), "--num-images", "2", "--val-images", "1", "--crops-per-image", "2",
            "--hr-size", "32", "--degradation", "bicubic", "--seed", "3", "--workers", "1"]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"val": 1, "train": 4} and manifest["degradation"] == "bicubic"
    assert "train 4 rows, val 1 rows" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["manifest.json", "plan.json", "progress.json"])
@pytest.mark.parametrize("content", ['{"hello": 1}', "[]", "null", '{"settings": {}, "splits": {"train": []}}'])
def test_foreign_bookkeeping_files_are_a_clear_error(source, tmp_path, name, content):
    out = tmp_path / "out"
    out.mkdir()
    if name == "progress.json":  # progress is only read next to a plan of ours
        prepare(_config(source, tmp_path / "ours"), on_image=None)
        (out / "plan.json").write_text((tmp_path / "ours" / "manifest.json").read_text())
        plan = json.loads((out / "plan.json").read_text())
        (out / "plan.json").write_text(json.dumps({"settings": plan["settings"], "splits": plan["sources"]}))
    (out / name).write_text(content)
    with pytest.raises(ValueError, match=f"{name}.*(not written by prepare_data.py|corrupt)"):
        prepare(_config(source, out))


@pytest.fixture(scope="module")
def two_sources(make_photo, tmp_path_factory):
    """Two sibling folders that both hold a `1.png` (as BSDS500 and a renamed ImageNet sample could)."""
    root = tmp_path_factory.mktemp("photos")
    for folder, seeds in (("imagenet-sample", range(4)), ("bsds500", range(10, 14))):
        (root / folder / "train").mkdir(parents=True)
        for k, seed in enumerate(seeds):
            Image.fromarray(make_photo(40 + k, 44, seed=seed)).save(root / folder / "train" / f"{k}.png")
    return root / "imagenet-sample", root / "bsds500"


def test_several_source_folders_are_all_used_and_named_apart(two_sources, tmp_path):
    first, second = two_sources
    manifest = prepare(_config((first, second), tmp_path / "set", val_images=1, crops_per_image=1))
    names = manifest["sources"]["train"] + manifest["sources"]["val"]
    assert sorted(names) == sorted(f"{folder}/train/{k}.png" for folder in ("bsds500", "imagenet-sample")
                                   for k in range(4))
    assert manifest["source_root"] == str(first.parent.resolve())
    assert manifest["source_folders"] == [str(first.resolve()), str(second.resolve())]
    hr = np.load(tmp_path / "set" / "train_hr.npy")
    for row, name in enumerate(manifest["sources"]["train"]):  # every row traces back to its file
        image = load_rgb(first.parent / name)
        windows = np.lib.stride_tricks.sliding_window_view(image, (HR, HR, 3))[..., 0, :, :, :]
        assert (windows == hr[row]).all(axis=(2, 3, 4)).any(), name
    # A folder inside another one does not list its images twice.
    nested = prepare(_config((first.parent, second), tmp_path / "nested", val_images=0, crops_per_image=1))
    assert nested["images"]["train"] == 8


def test_a_missing_or_repeated_source_folder_is_a_clear_error(two_sources, tmp_path, capsys):
    first, _ = two_sources
    with pytest.raises(FileNotFoundError, match="source folder not found: .*nowhere"):
        prepare(_config((first, tmp_path / "nowhere"), tmp_path / "set"))
    assert main([str(first), str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "source folder not found" in err and "nowhere" in err
    with pytest.raises(ValueError, match="given twice"):
        _config((first, first.parent / "imagenet-sample" / "."), tmp_path / "set")


def test_command_line_takes_several_source_folders(two_sources, tmp_path, capsys):
    first, second = two_sources
    out = tmp_path / "set"
    assert main([str(first), str(second), str(out), "--num-images", "3", "--val-images", "0",
                 "--hr-size", "32", "--workers", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["source"] == [str(first.resolve()), str(second.resolve())]
    assert manifest["counts"]["train"] == 3 and "train 3 rows" in capsys.readouterr().out


def test_runs_made_before_several_folders_are_still_recognised(source, clean_run, tmp_path):
    """Manifests and plans written when `source` was one path (a string) still match one folder."""
    out, manifest = clean_run
    old = tmp_path / "old"
    shutil.copytree(out, old)
    written = json.loads((old / "manifest.json").read_text())
    written["settings"]["source"] = str(source.resolve())  # the old format
    (old / "manifest.json").write_text(json.dumps(written))
    assert prepare(_config(source, old)) == written  # complete, not refused
    unfinished = tmp_path / "unfinished"
    with pytest.raises(Interrupt):
        prepare(_config(source, unfinished), checkpoint_seconds=0, on_image=_interrupt_after(4))
    plan = json.loads((unfinished / "plan.json").read_text())
    plan["settings"]["source"] = str(source.resolve())
    (unfinished / "plan.json").write_text(json.dumps(plan))
    resumed = prepare(_config(source, unfinished))
    assert resumed["sources"] == manifest["sources"]
    assert all(np.array_equal(a, b) for a, b in zip(_arrays(out).values(), _arrays(unfinished).values()))


def test_a_validation_image_cut_short_is_replaced_not_lost(make_photo, tmp_path):
    """The header of a truncated file reads fine; validation must still get its rows."""
    root = tmp_path / "photos"
    root.mkdir()
    for k in range(12):
        Image.fromarray(make_photo(48, 40, seed=k)).save(root / f"{k:02d}.jpg", quality=95)
    first_choice = prepare(_config(root, tmp_path / "before", val_images=1, crops_per_image=1))["sources"]["val"][0]
    damaged = root / first_choice
    damaged.write_bytes(damaged.read_bytes()[:700])
    manifest = prepare(_config(root, tmp_path / "after", val_images=1, crops_per_image=1))
    assert manifest["counts"]["val"] == 1 and manifest["sources"]["val"] != [first_choice]
    assert first_choice in [entry["path"] for entry in manifest["skipped"]]
    assert np.load(tmp_path / "after" / "val_hr.npy").shape[0] == 1
