"""Seeded fuzzing of what users feed in: every result is a correct-size image of the right kind, or a
ValueError/OSError with a message; never another exception. 200 examples, a few seconds."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from perceptual_sr import PerceptualSR, SRConfig
from perceptual_sr.commands.cli import main
from perceptual_sr.inference.pipeline import WEIGHT_SETS, SRPipeline
from perceptual_sr.inference.upscale import upscale
from perceptual_sr.utils.image_io import save_image


def _random_input(rng: np.random.Generator, tmp_path, index: int):
    height, width = (int(v) for v in rng.choice([0, 1, 2, 3, 5, 8, 17], 2))
    kind = rng.choice(["array", "pil", "tensor", "file"])
    if kind == "array":
        dtype = rng.choice(["uint8", "uint16", "float32", "float64", "int32", "bool", "int8"])
        channels = rng.choice([0, 1, 2, 3, 4, 5])
        shape = (height, width) if channels == 0 else (height, width, int(channels))
        array = (rng.random(shape) * rng.choice([1, 255, 70000, -3])).astype(dtype)
        if array.dtype.kind == "f" and array.size and rng.random() < 0.2:
            array.flat[0] = np.nan
        return array
    if kind == "tensor":
        tensor = torch.rand(int(rng.choice([1, 2, 3, 4])), height, width) * float(rng.choice([1, 2, -1]))
        return tensor[None] if rng.random() < 0.3 else tensor
    if kind == "pil":
        image = Image.new(str(rng.choice(["RGB", "RGBA", "L", "LA", "P", "I;16", "1", "CMYK", "F", "I"])), (width, height))
        if rng.random() < 0.3 and image.width and image.height:
            exif = image.getexif()
            exif[0x0112] = int(rng.integers(1, 9))  # any EXIF orientation
            image.info["exif"] = exif.tobytes()
        return image
    photo = Image.fromarray(rng.integers(0, 256, (max(height, 1), max(width, 1), 3), dtype=np.uint8))
    buffer = io.BytesIO()
    photo.save(buffer, str(rng.choice(["PNG", "JPEG", "WEBP"])))
    data = buffer.getvalue()
    if rng.random() < 0.5:
        data = data[: int(len(data) * rng.random())]  # truncated, possibly to nothing
    path = tmp_path / f"fuzz{index}.img"
    path.write_bytes(data if rng.random() < 0.9 else b"plain text, not an image")
    return path


def _expected_size(image) -> tuple[int, int] | None:
    """(height, width) of the input, or None when it has no such shape (a file)."""
    if isinstance(image, np.ndarray):
        return image.shape[:2]
    if isinstance(image, torch.Tensor):
        return tuple(image.shape[-2:])
    if isinstance(image, Image.Image):
        return None  # EXIF orientation may swap the sides
    return None


@pytest.mark.slow  # 200 upscales and saves
def test_upscale_and_save_never_fail_with_anything_but_a_clear_error(model, tmp_path):
    rng = np.random.default_rng(2026)
    outcomes = {"image": 0, "refused": 0}
    for index in range(200):
        image = _random_input(rng, tmp_path, index)
        color_fix = rng.choice(["luma", "histogram", "none"])
        try:
            out = upscale(model, image, color_fix=None if color_fix == "none" else str(color_fix))
        except (ValueError, OSError) as error:
            assert str(error), f"an empty message for {type(image).__name__}"
            outcomes["refused"] += 1
            continue
        outcomes["image"] += 1
        size = _expected_size(image)
        if isinstance(image, np.ndarray):
            assert isinstance(out, np.ndarray) and out.shape[:2] == (4 * size[0], 4 * size[1])
            assert not (out.dtype.kind == "f" and np.isnan(out).any())
        elif isinstance(image, torch.Tensor):
            assert isinstance(out, torch.Tensor) and tuple(out.shape[-2:]) == (4 * size[0], 4 * size[1])
        else:
            assert isinstance(out, Image.Image) and out.width % 4 == 0 and out.height % 4 == 0
            target = tmp_path / f"saved{index}.{rng.choice(['png', 'jpg', 'webp', 'tif', 'bmp', 'gif'])}"
            save_image(out, target)
            with Image.open(target) as saved:
                saved.load()
                assert saved.size == out.size
    assert outcomes["image"] > 40 and outcomes["refused"] > 40  # both paths were really exercised


def test_a_batch_with_a_tiny_image_and_three_bad_files(model, tmp_path, capsys):
    folder = tmp_path / "batch"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(folder / "pixel.png")
    for k in range(6):
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(folder / f"good{k}.png")
    whole = (folder / "good0.png").read_bytes()
    (folder / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (folder / "notes.jpg").write_text("this is a text file")
    (folder / "empty.png").write_bytes(b"")
    model.save_pretrained(tmp_path / "model")
    assert main(["upscale", str(folder), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "model")]) == 1
    captured = capsys.readouterr()
    assert "upscaled 7, skipped 0 existing, failed 3 of 10 images" in captured.out
    for name in ("truncated.png", "notes.jpg", "empty.png"):
        assert name in captured.err
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == sorted(
        [f"good{k}_x4.png" for k in range(6)] + ["pixel_x4.png"])


def _random_photo_file(rng: np.random.Generator, tmp_path, index: int):
    """Files as cameras, editors and converters write them: many modes, bit depths and headers."""
    height, width = (int(v) for v in rng.integers(1, 24, 2))
    kind = rng.choice(["png16", "grey_jpeg", "cmyk_jpeg", "palette_alpha", "lying_header", "jpeg_q10", "tiff_float"])
    suffix = {"png16": "png", "palette_alpha": "png", "lying_header": "png", "tiff_float": "tif"}.get(kind, "jpg")
    path = tmp_path / f"photo{index}.{suffix}"
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if kind == "png16":
        Image.fromarray((pixels[..., 0].astype(np.uint16) * 257)).save(path)
    elif kind == "grey_jpeg":
        Image.fromarray(pixels[..., 0]).save(path, quality=int(rng.integers(5, 100)))
    elif kind == "cmyk_jpeg":
        Image.fromarray(pixels).convert("CMYK").save(path)
    elif kind == "palette_alpha":
        image = Image.fromarray(pixels).convert("P")
        image.info["transparency"] = 0
        image.save(path, transparency=0)
    elif kind == "lying_header":  # a PNG whose header claims 100,000 x 100,000 pixels
        Image.fromarray(pixels).save(path)
        data = bytearray(path.read_bytes())
        data[16:24] = (100_000).to_bytes(4, "big") * 2
        path.write_bytes(bytes(data))
    elif kind == "jpeg_q10":
        Image.fromarray(pixels).save(path, quality=10)
    else:
        Image.fromarray(pixels[..., 0].astype(np.float32) / 255).save(path)
    return path


def _good_or_bad(rng: np.random.Generator, good: list, bad: list):
    return bad[rng.integers(len(bad))] if rng.random() < 0.1 else good[rng.integers(len(good))]


@pytest.mark.slow  # 150 upscales through the four-set pipeline
def test_the_pipeline_with_any_controls_gives_an_image_or_one_clear_error(tmp_path):
    """detail, cleanup and outscale, good and bad, on any input: the right size, or a message."""
    torch.manual_seed(1)
    config = SRConfig(channels=4, residual_blocks=1)
    pipeline = SRPipeline({name: PerceptualSR(config) for name in WEIGHT_SETS})
    rng = np.random.default_rng(7)
    outcomes = {"image": 0, "refused": 0}
    for index in range(150):
        image = (_random_input(rng, tmp_path, index) if rng.random() < 0.5
                 else _random_photo_file(rng, tmp_path, index))
        detail = _good_or_bad(rng, [None, 0.0, 0.3, 1.0], [-0.5, 1.5, float("nan"), "x"])
        cleanup = _good_or_bad(rng, ["auto", 0.0, 0.5, 1.0, None], [-1.0, 2.0, float("nan"), "strong"])
        outscale = _good_or_bad(rng, [None, 4, 2, 2.5, 1], [0.5, 5, float("nan"), "2"])
        try:
            out = pipeline.upscale(image, detail=detail, cleanup=cleanup, outscale=outscale, max_pixels=4096)
        except (ValueError, OSError) as error:
            assert str(error), f"an empty message for {image!r}"
            outcomes["refused"] += 1
            continue
        outcomes["image"] += 1
        factor = 4 if outscale is None else outscale
        size = _expected_size(image)
        if isinstance(image, np.ndarray):
            assert isinstance(out, np.ndarray)
            assert all(abs(got - factor * side) <= 1 for got, side in zip(out.shape[:2], size))
        elif isinstance(image, torch.Tensor):
            assert isinstance(out, torch.Tensor) and tuple(out.shape[-2:]) == (4 * size[0], 4 * size[1])
        else:
            assert isinstance(out, Image.Image) and min(out.size) >= 1
    assert outcomes["image"] > 30 and outcomes["refused"] > 30  # both paths were really exercised
