"""Image reading for training (`image_io.load_rgb8`) and the prepared-pairs dataset (`SRPairDataset`)."""

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler

from perceptual_sr.data.dataset import SRPairDataset
from perceptual_sr.data.degradations import degrade
from perceptual_sr.utils.image_io import load_rgb8 as load_rgb
from perceptual_sr.utils.pixels import tensor_to_uint8

# ----------------------------------------------------------------------------- load_rgb


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def test_rgb_file_round_trips(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    loaded = load_rgb(_save(Image.fromarray(pixels), tmp_path / "rgb.png"))
    assert loaded.dtype == np.uint8 and np.array_equal(loaded, pixels)


@pytest.mark.parametrize("mode", ["L", "1"])
def test_greyscale_becomes_three_equal_channels(tmp_path, mode):
    grey = np.array([[0, 100, 255]], dtype=np.uint8)
    image = Image.fromarray(grey).convert(mode)
    loaded = load_rgb(_save(image, tmp_path / f"{mode}.png"))
    expected = np.asarray(image.convert("L"))
    assert loaded.shape == (1, 3, 3) and all(np.array_equal(loaded[..., c], expected) for c in range(3))


def test_palette_image_keeps_its_colours(tmp_path):
    pixels = np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8)
    image = Image.fromarray(pixels).convert("P", palette=Image.Palette.ADAPTIVE, colors=2)
    assert image.mode == "P"
    assert np.array_equal(load_rgb(_save(image, tmp_path / "p.png")), pixels)


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 0, 128]]], dtype=np.uint8)
    loaded = load_rgb(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "rgba.png"))
    assert loaded[0, 0].tolist() == [255, 0, 0]  # opaque: unchanged
    assert loaded[0, 1].tolist() == [255, 255, 255]  # fully transparent: the white background
    assert all(126 <= value <= 128 for value in loaded[0, 2])  # half-transparent black on white: mid grey

    la = Image.fromarray(np.array([[[10, 255], [10, 0]]], dtype=np.uint8), "LA")
    assert load_rgb(_save(la, tmp_path / "la.png")).tolist() == [[[10, 10, 10], [255, 255, 255]]]

    keyed = Image.fromarray(np.array([[[1, 2, 3], [9, 9, 9]]], dtype=np.uint8))  # PNG tRNS colour key
    assert load_rgb(_save(keyed, tmp_path / "key.png", transparency=(1, 2, 3))).tolist() == [[[255, 255, 255], [9, 9, 9]]]
    grey_key = Image.fromarray(np.array([[7, 50]], dtype=np.uint8))
    assert load_rgb(_save(grey_key, tmp_path / "gkey.png", transparency=7))[..., 0].tolist() == [[255, 50]]

    palette = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), "P")
    palette.putpalette([0, 0, 0, 0, 255, 0])
    loaded = load_rgb(_save(palette, tmp_path / "pt.png", transparency=0))
    assert loaded.tolist() == [[[255, 255, 255], [0, 255, 0]]]


def test_cmyk_becomes_rgb(tmp_path):
    cmyk = Image.fromarray(np.array([[[255, 0, 0, 0], [0, 0, 0, 255], [0, 0, 0, 0]]], dtype=np.uint8), "CMYK")
    loaded = load_rgb(_save(cmyk, tmp_path / "cmyk.tif"))
    assert loaded.tolist() == [[[0, 255, 255], [0, 0, 0], [255, 255, 255]]]


def test_sixteen_bit_greyscale_is_scaled_to_eight_bits(tmp_path):
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    image = Image.frombytes("I;16", (3, 1), values.astype("<u2").tobytes())
    path = _save(image, tmp_path / "grey16.png")
    assert Image.open(path).mode in ("I;16", "I")  # really stored and read back as 16-bit
    assert load_rgb(path)[..., 0].tolist() == [[0, 100, 255]]
    inside = Image.fromarray(np.array([[0, 257 * 7, 65535]], dtype=np.int32), "I")
    assert load_rgb(_save(inside, tmp_path / "grey32.tif"))[..., 1].tolist() == [[0, 7, 255]]
    wide = Image.fromarray(np.array([[0, 257 * 7, 70000]], dtype=np.int32), "I")
    with pytest.raises(ValueError, match="values from 0 to 70000"):  # refused, never silently clipped
        load_rgb(_save(wide, tmp_path / "grey32_wide.tif"))


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((2, 4, 3), dtype=np.uint8)
    pixels[0, 0] = [255, 0, 0]  # top-left marker
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    loaded = load_rgb(_save(Image.fromarray(pixels), tmp_path / "rotated.png", exif=exif))
    assert loaded.shape == (4, 2, 3)
    assert np.array_equal(loaded, np.rot90(pixels, -1))  # the marker is now top-right


def test_unreadable_files_raise_value_error_naming_the_path(tmp_path, monkeypatch):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image")
    truncated = tmp_path / "truncated.png"
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    for path in (garbage, truncated):
        with pytest.raises(ValueError, match=path.name):
            load_rgb(path)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_rgb(tmp_path / "missing.png")
    big = _save(Image.fromarray(pixels), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 // 4)  # 64x64 is now over twice the limit
    with pytest.raises(ValueError, match="bomb.png"):
        load_rgb(big)


# ----------------------------------------------------------------------------- SRPairDataset


def _write_dataset(root, count=6, hr_size=16, scale=4, split="train"):
    """A tiny finished dataset folder, as prepare_data.py would leave it."""
    root.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    hr = rng.integers(0, 256, (count, hr_size, hr_size, 3), dtype=np.uint8)
    lr = np.stack([degrade(crop, scale, "bicubic") for crop in hr])
    np.save(root / f"{split}_hr.npy", hr)
    np.save(root / f"{split}_lr.npy", lr)
    manifest = {"scale": scale, "hr_size": hr_size, "counts": {"train": 0, "val": 0, split: count},
                "format_version": 1}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return hr, lr


def test_dataset_returns_float_pairs_from_the_arrays(tmp_path):
    hr, lr = _write_dataset(tmp_path / "set")
    dataset = SRPairDataset(tmp_path / "set")
    assert len(dataset) == 6 and dataset.manifest["hr_size"] == 16
    lr_tensor, hr_tensor = dataset[2]
    assert lr_tensor.dtype == torch.float32 and lr_tensor.shape == (3, 4, 4) and hr_tensor.shape == (3, 16, 16)
    assert 0 <= float(hr_tensor.min()) and float(hr_tensor.max()) <= 1
    assert np.array_equal(tensor_to_uint8(hr_tensor), hr[2]) and np.array_equal(tensor_to_uint8(lr_tensor), lr[2])
    assert np.array_equal(tensor_to_uint8(dataset[-1][1]), hr[-1])
    with pytest.raises(IndexError):
        dataset[6]


def test_dataset_pickles_without_its_arrays_and_works_with_a_sampler(tmp_path):
    hr, _ = _write_dataset(tmp_path / "set", count=6)
    dataset = SRPairDataset(tmp_path / "set")
    dataset[0]  # opens the memory maps in this process
    clone = pickle.loads(pickle.dumps(dataset))
    assert len(pickle.dumps(dataset)) < 5000  # the arrays stay on disk, not in the pickle
    sampler = DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=False)
    batches = list(DataLoader(clone, batch_size=3, sampler=sampler))
    assert len(batches) == 1 and batches[0][1].shape == (3, 3, 16, 16)
    assert np.array_equal(tensor_to_uint8(batches[0][1][0]), hr[1])  # rank 1 gets rows 1, 3, 5


def test_bad_dataset_folders_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        SRPairDataset(tmp_path / "nothing")
    _write_dataset(tmp_path / "set")
    with pytest.raises(ValueError, match="split"):
        SRPairDataset(tmp_path / "set", split="test")
    with pytest.raises(FileNotFoundError, match="val_hr.npy"):
        SRPairDataset(tmp_path / "set", split="val")

    manifest_path = tmp_path / "set" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "counts": {"train": 7}}))
    with pytest.raises(ValueError, match=r"train_hr.npy holds uint8 \(6, 16, 16, 3\)"):
        SRPairDataset(tmp_path / "set")
    manifest_path.write_text(json.dumps({**manifest, "scale": 2}))
    with pytest.raises(ValueError, match="train_lr.npy"):
        SRPairDataset(tmp_path / "set")
    manifest_path.write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ValueError, match="dataset format 99"):
        SRPairDataset(tmp_path / "set")
    for foreign in ("[]", "null", "{not json"):
        manifest_path.write_text(foreign)
        with pytest.raises(ValueError, match="not a valid dataset manifest"):
            SRPairDataset(tmp_path / "set")
    manifest_path.write_text("{not json")
    with pytest.raises(ValueError, match="not a valid dataset manifest"):
        SRPairDataset(tmp_path / "set")
    manifest_path.write_text(json.dumps(manifest))
    (tmp_path / "set" / "train_lr.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="train_lr.npy"):
        SRPairDataset(tmp_path / "set")


def test_real_photo_degradations_are_what_they_claim(make_photo):
    from perceptual_sr.data.degradations import NOISE_SIGMA, degrade_to_image
    from perceptual_sr.inference.auto_cleanup import jpeg_quality

    hr = make_photo(64, 48)
    clean = degrade(hr, 4, "bicubic").astype(np.float64)
    jpeg = degrade_to_image(hr, 4, "jpeg75")
    assert jpeg.format == "JPEG" and jpeg_quality(jpeg) == 75 and jpeg.size == (16, 12)
    noisy = degrade_to_image(hr, 4, "noise")
    assert noisy.format == "JPEG" and jpeg_quality(noisy) == 90
    # On a smooth image (where JPEG 90 itself changes little) most of the sigma of 5 levels is left.
    smooth = np.broadcast_to(np.linspace(60, 190, 256)[None, :, None], (192, 256, 3)).astype(np.uint8)
    added = np.asarray(degrade_to_image(smooth, 4, "noise"), np.float64) - degrade(smooth, 4, "bicubic")
    assert 0.6 * NOISE_SIGMA < added.std() < 1.2 * NOISE_SIGMA
    for kind in ("jpeg75", "noise", "realistic"):
        first, again = degrade(hr, 4, kind), degrade(hr, 4, kind)
        assert first.shape == (12, 16, 3) and first.dtype == np.uint8 and np.array_equal(first, again)
        assert not np.array_equal(first, clean.astype(np.uint8))
