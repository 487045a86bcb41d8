import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from perceptual_sr.utils.image_io import (
    DecodedImage,
    ImageTooLargeError,
    decode_pil,
    encode_pil,
    open_image,
    save_image,
)


def _gradient(width=12, height=8):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 20, y * 30, (x + y) * 10], axis=2).astype(np.uint8)


@pytest.mark.parametrize(
    "mode, out_mode, has_alpha",
    [("RGB", "RGB", False), ("RGBA", "RGBA", True), ("L", "L", False), ("LA", "LA", True),
     ("P", "RGB", False), ("CMYK", "RGB", False), ("1", "L", False), ("I;16", "I;16", False)],
)
def test_decode_encode_keeps_mode_and_size(mode, out_mode, has_alpha):
    image = Image.fromarray(_gradient()).convert(mode)
    decoded = decode_pil(image)
    assert decoded.rgb.shape == (8, 12, 3) and decoded.rgb.dtype == np.float32
    assert decoded.mode == out_mode and (decoded.alpha is not None) == has_alpha
    out = encode_pil(decoded.rgb, decoded.alpha, decoded)
    assert out.mode == out_mode and out.size == image.size


def test_16_bit_grey_keeps_16_bits():
    values = (np.arange(96, dtype=np.uint16).reshape(8, 12) * 673)
    decoded = decode_pil(Image.fromarray(values))
    assert decoded.bit_depth == 16
    out = np.asarray(encode_pil(decoded.rgb, None, decoded))
    assert out.dtype == np.uint16 and np.abs(out.astype(int) - values).max() <= 1
    assert (out % 257 != 0).any()  # not squeezed through 8 bits


def test_palette_with_transparency_becomes_rgba():
    image = Image.fromarray(_gradient()).convert("P")
    image.info["transparency"] = 0
    assert decode_pil(image).mode == "RGBA"


def test_exif_orientation_applied_and_reset(tmp_path):
    image = Image.fromarray(_gradient(12, 8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif.tobytes())
    decoded = decode_pil(open_image(path))
    assert decoded.rgb.shape[:2] == (12, 8)  # width and height swapped
    out = encode_pil(decoded.rgb, None, decoded)
    saved = tmp_path / "out.jpg"
    save_image(out, saved)
    assert Image.open(saved).getexif()[0x0112] == 1


def test_icc_profile_carried_to_output(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = Image.fromarray(_gradient())
    image.info["icc_profile"] = icc
    decoded = decode_pil(image)
    out = encode_pil(decoded.rgb, None, decoded)
    assert out.info["icc_profile"] == icc
    save_image(out, tmp_path / "out.png")
    assert Image.open(tmp_path / "out.png").info["icc_profile"] == icc


def test_multi_frame_is_a_clear_error(tmp_path):
    frames = [Image.fromarray(_gradient()).convert("P") for _ in range(2)]
    frames[1] = Image.fromarray(255 - _gradient()).convert("P")
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError, match="frames"):
        decode_pil(open_image(path))


def test_corrupt_empty_missing_and_huge_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        open_image(tmp_path / "empty.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 this is not a jpeg at all" * 10)
    with pytest.raises(ValueError, match="corrupt"):
        open_image(tmp_path / "bad.jpg")
    buffer = io.BytesIO()
    Image.fromarray(_gradient(64, 64)).save(buffer, format="PNG")
    (tmp_path / "truncated.png").write_bytes(buffer.getvalue()[:60])
    with pytest.raises(ValueError):
        open_image(tmp_path / "truncated.png")
    with pytest.raises(FileNotFoundError):
        open_image(tmp_path / "missing.png")
    Image.fromarray(_gradient(64, 64)).save(tmp_path / "big.png")
    with pytest.raises(ImageTooLargeError, match="max_pixels"):
        open_image(tmp_path / "big.png", max_pixels=1000)


def test_jpeg_output_flattens_alpha(tmp_path):
    decoded = decode_pil(Image.fromarray(_gradient()).convert("RGBA"))
    save_image(encode_pil(decoded.rgb, decoded.alpha, decoded), tmp_path / "out.jpg")
    assert Image.open(tmp_path / "out.jpg").mode == "RGB"


def test_unsupported_mode_is_a_value_error():
    with pytest.raises(ValueError, match="unsupported image mode"):
        decode_pil(Image.new("F", (4, 4)))


@pytest.mark.parametrize("suffix", [".webp", ".gif", ".jpg", ".bmp", ".png", ".tif"])
def test_sixteen_bit_grey_survives_every_output_format(tmp_path, suffix):
    from perceptual_sr.utils.image_io import save_image

    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    path = tmp_path / f"grey{suffix}"
    save_image(Image.fromarray(ramp), path)
    with Image.open(path) as saved:
        values = np.asarray(saved.convert("L") if not saved.mode.startswith("I") else saved, dtype=float)
    scale = 65535.0 if saved.mode.startswith("I") else 255.0
    assert abs(values.mean() / scale - 0.5) < 0.03  # not all white, not all black


def test_training_evaluation_and_upscale_read_every_kind_of_file_to_the_same_pixels(tmp_path):
    """One decoder: prepare_data (training), evaluate and upscale see the same RGB values."""
    from perceptual_sr.data import prepare
    from perceptual_sr.utils.image_io import decode_pil, load_rgb8, open_image
    from perceptual_sr.utils.pixels import quantize

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    files = {
        "grey16.png": Image.fromarray((rng.integers(0, 65536, (24, 20))).astype(np.uint16)),
        "palette.png": Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16),
        "la.png": Image.fromarray(np.dstack([rgb[..., 0], np.full((24, 20), 255, np.uint8)]), "LA"),
        "cmyk.tif": Image.fromarray(np.dstack([rgb, rgb[..., :1]]), "CMYK"),
    }
    rotated = Image.fromarray(rgb)
    exif = rotated.getexif()
    exif[0x0112] = 6
    for name, image in files.items():
        image.save(tmp_path / name)
    rotated.save(tmp_path / "rotated.png", exif=exif.tobytes())
    from perceptual_sr.evaluation import evaluate

    # One function reads files for training and evaluation alike...
    assert prepare.load_rgb8 is load_rgb8 and evaluate.load_rgb8 is load_rgb8
    for path in sorted(tmp_path.iterdir()):
        training = load_rgb8(path)
        assert training.dtype == np.uint8 and training.shape[2] == 3
        # ... and upscale() decodes through the same decoder: the same pixels reach the network.
        decoded = decode_pil(open_image(path))
        assert np.array_equal(quantize(decoded.rgb, np.uint8), training), path.name
    assert load_rgb8(tmp_path / "rotated.png").shape == (20, 24, 3)  # EXIF orientation applied by both


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif", ".bmp", ".gif"])
@pytest.mark.parametrize("mode", ["L", "LA", "I;16", "RGB", "RGBA"])
def test_every_mode_survives_every_output_format(tmp_path, suffix, mode):
    rng = np.random.default_rng(0)
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (8, 9)).astype(np.uint16))
    else:
        pixels = rng.integers(0, 256, (8, 9, channels[mode]), dtype=np.uint8)
        image = Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)
    path = tmp_path / f"out{suffix}"
    save_image(image, path)
    with Image.open(path) as saved:
        saved.load()
        assert saved.size == (9, 8)
        keeps_alpha = suffix in (".png", ".webp", ".tif")
        if mode in ("LA", "RGBA"):
            assert ("A" in saved.getbands()) == keeps_alpha  # kept, or flattened onto white: never dropped raw
        if mode == "I;16" and suffix in (".png", ".tif"):
            assert saved.mode in ("I;16", "I")


def test_flattening_alpha_keeps_icc_and_exif(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = Image.new("RGBA", (6, 4), (10, 20, 30, 128))
    exif = image.getexif()
    exif[0x010F] = "camera"
    image.info.update(icc_profile=icc, exif=exif.tobytes())
    for suffix in (".jpg", ".bmp"):
        save_image(image, tmp_path / f"flat{suffix}")
    with Image.open(tmp_path / "flat.jpg") as saved:
        assert saved.info.get("icc_profile") == icc and saved.getexif()[0x010F] == "camera"


def test_quantize_between_bit_depths_is_exact_integer_rounding():
    from perceptual_sr.utils.pixels import quantize

    every = np.arange(65536, dtype=np.uint16)
    assert np.array_equal(quantize(every, np.uint8), np.rint(every / 65535.0 * 255).astype(np.uint8))
    assert np.array_equal(quantize(np.arange(256, dtype=np.uint8), np.uint16), np.arange(256) * 257)
    assert quantize(every, np.float32)[-1] == 1.0 and quantize(every, np.uint16) is every


@pytest.mark.parametrize("mode", ["RGB", "L", "I;16"])
def test_encode_pil_takes_16_bit_integers_as_it_takes_floats(mode):
    rgb = np.random.default_rng(0).random((6, 5, 3), dtype=np.float32)
    like = DecodedImage(rgb=rgb, alpha=None, mode=mode)
    from_float = np.asarray(encode_pil(rgb, None, like))
    from_uint16 = np.asarray(encode_pil(np.rint(rgb * 65535).astype(np.uint16), None, like))
    assert np.abs(from_float.astype(int) - from_uint16.astype(int)).max() <= 1  # the 16-bit step only


def test_quantize_and_dequantize_agree_for_numpy_and_tensors():
    import torch

    from perceptual_sr.utils.pixels import dequantize, dequantize_tensor, quantize, quantize_tensor

    values = np.concatenate([np.linspace(-0.5, 1.5, 4001), [0.5 / 255, 1.5 / 255, 0.5 / 65535]]).astype(np.float32)
    for numpy_dtype, torch_dtype in ((np.uint8, torch.uint8), (np.uint16, torch.uint16), (np.float32, torch.float32)):
        from_numpy = quantize(values, numpy_dtype)
        from_torch = quantize_tensor(torch.from_numpy(values), torch_dtype)
        assert from_torch.dtype == torch_dtype
        assert np.array_equal(from_torch.to(torch.float64).numpy(), from_numpy.astype(np.float64)), numpy_dtype
        back = dequantize(from_numpy)
        assert back.dtype == np.float32 and back.min() == 0.0 and back.max() == 1.0
        assert np.array_equal(dequantize_tensor(from_torch).numpy(), back)
    for every in (np.arange(256, dtype=np.uint8), np.arange(65536, dtype=np.uint16)):
        assert np.array_equal(quantize(dequantize(every), every.dtype.type), every)  # integers survive exactly
    with pytest.raises(ValueError, match="unsupported pixel dtype"):
        dequantize(np.zeros(3, dtype=np.complex64))


def test_uint8_arrays_and_tensors_cross_exactly_and_leave_their_input_alone():
    import torch

    from perceptual_sr.utils.pixels import tensor_to_uint8, uint8_to_tensor

    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image.setflags(write=False)  # as a memory map or a PIL image's bytes
    tensor = uint8_to_tensor(image)
    assert tensor.shape == (3, 5, 7) and tensor.dtype == torch.float32
    assert np.array_equal(tensor_to_uint8(tensor), image)
    overshoot = tensor * 1.5 - 0.2  # out of range: clipped, and the argument is not changed
    kept = overshoot.clone()
    assert tensor_to_uint8(overshoot).min() == 0 and tensor_to_uint8(overshoot).max() == 255
    assert torch.equal(overshoot, kept)
    with pytest.raises(ValueError, match="uint8"):
        uint8_to_tensor(image.astype(np.float32))
    with pytest.raises(ValueError, match="3, H, W"):
        tensor_to_uint8(tensor[None])


def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "photo.png"
    save_image(Image.new("RGB", (4, 4), "red"), path)
    before = path.read_bytes()

    def broken_save(self, target, *args, **kwargs):
        Path(target).write_bytes(b"half a PNG")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(Image.new("RGB", (4, 4), "blue"), path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["photo.png"]


def _profile(space: bytes) -> bytes:
    """An sRGB ICC profile relabelled as describing `space` (the header's colour-space field)."""
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return srgb[:16] + space + srgb[20:]


@pytest.mark.parametrize("mode, space, kept", [("RGB", b"RGB ", True), ("RGB", b"GRAY", False),
                                               ("L", b"GRAY", True), ("L", b"RGB ", False),
                                               ("RGB", b"CMYK", False), ("RGB", b"junk", False)])
def test_an_icc_profile_is_written_only_when_it_describes_the_pixels(tmp_path, mode, space, kept):
    from perceptual_sr.utils.image_io import save_image

    image = Image.new(mode, (8, 8), 128 if mode == "L" else (10, 20, 30))
    image.info["icc_profile"] = _profile(space)
    save_image(image, tmp_path / "out.png")
    assert ("icc_profile" in Image.open(tmp_path / "out.png").info) == kept


def test_exif_too_long_for_jpeg_costs_the_metadata_not_the_image(tmp_path):
    from perceptual_sr.utils.image_io import save_image

    exif = Image.Exif()
    exif[0x010F] = "camera"
    exif[0x9286] = "x" * 70_000  # a 70 KB user comment: JPEG's EXIF segment holds 64 KB
    image = Image.new("RGB", (16, 16), (200, 100, 50))
    image.info["exif"] = exif.tobytes()
    with pytest.warns(UserWarning, match="do not fit in a JPEG"):
        save_image(image, tmp_path / "out.jpg")
    assert Image.open(tmp_path / "out.jpg").size == (16, 16)
    save_image(image, tmp_path / "out.png")  # PNG keeps them
    assert Image.open(tmp_path / "out.png").getexif()[0x010F] == "camera"


@pytest.mark.parametrize("format, side", [("JPEG", 65536), ("WEBP", 16384)])
def test_a_size_the_format_cannot_hold_is_refused_naming_png(format, side):
    from perceptual_sr.utils.image_io import check_fits_format

    check_fits_format(side - 1, 10, format)
    with pytest.raises(ValueError, match="too large for .*--format png"):
        check_fits_format(10, side, format)
    check_fits_format(side, side, "PNG")


def test_png_compress_level_keeps_every_pixel_and_bad_levels_are_refused(tmp_path):
    pixels = np.random.default_rng(3).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    save_image(Image.fromarray(pixels), tmp_path / "fast.png", compress_level=1)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "fast.png")), pixels)
    for level, name in ((10, "fast.png"), (1.5, "fast.png"), (1, "fast.jpg")):
        with pytest.raises(ValueError, match="compress_level"):
            save_image(Image.fromarray(pixels), tmp_path / name, compress_level=level)
