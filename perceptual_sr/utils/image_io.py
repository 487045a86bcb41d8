"""Reading and writing images faithfully: modes, bit depth, alpha, ICC profile and EXIF.

This module owns reading and writing image files (pixel values between kinds are `pixels.py`'s). `decode_pil` turns
any Pillow image into a `DecodedImage`: float32 RGB in [0, 1] (HWC here because it is an edge), an
alpha plane split off or flattened onto white, and what is needed to write the result back in the
same kind (mode, bit depth, ICC profile, EXIF). `encode_pil` does the reverse; `load_rgb8` is the
uint8 RGB reader of training and evaluation; `save_image` writes atomically.

`resize_bicubic` is the one bicubic kernel of every table and colour fix (Pillow's, a = -0.5, as
MATLAB's imresize). Greyscale is `perceptual_sr.utils.color.rgb_to_grey`. Nothing here knows about the
network.

What is kept and what cannot be:
- EXIF orientation is applied on reading; the EXIF block is written back with orientation reset to 1.
- Greyscale (1, L, LA, I;16, I) stays greyscale; alpha is returned separately so it can be upscaled
  on its own and reattached, or (alpha="flatten", for training and evaluation) composited on white:
  transparent web images are designed to be seen on white pages, and black would invent dark fringes.
- Transparency given as a PNG `tRNS` colour key on L, RGB or P images counts as alpha.
- 16-bit greyscale (I;16*, and 32-bit I, which Pillow uses for 16-bit PNGs) stays 16-bit. Pillow
  has no 16-bit RGB mode, so 16-bit RGB files are decoded as 8-bit by Pillow itself; pass a uint16
  numpy array to keep 16 bits of colour.
- Palette (P, PA) and CMYK/YCbCr are converted to RGB(A) and written as RGB(A). A CMYK ICC
  profile does not describe RGB pixels, so it is dropped for CMYK input. LAB and HSV are refused.
- Animated / multi-frame files raise a ValueError: silently upscaling only the first frame would
  lose the rest. A camera JPEG's Multi-Picture preview frames (MPO) are not frames of the photo.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from perceptual_sr.utils.atomic_write import atomic_file
from perceptual_sr.utils.color import rgb_to_grey
from perceptual_sr.utils.pixels import dequantize, quantize

# Input pixels (width x height) accepted by default. 16 MP covers phone photos; the x4 output of
# such an image is 256 MP (768 MB as 8-bit RGB), which is why there is a limit at all.
DEFAULT_MAX_PIXELS = 16_000_000
EXIF_ORIENTATION_TAG = 0x0112
# The image files the package looks for in folders (CLI, evaluation, data preparation, demo).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
# What a broken, truncated or hostile file can raise while Pillow decodes it.
UNREADABLE_ERRORS = (OSError, SyntaxError, EOFError, struct.error)
ALPHA_HANDLING = ("split", "flatten")
SIXTEEN_BIT_FORMATS = ("PNG", "TIFF")  # formats Pillow writes 16-bit greyscale to
NO_ALPHA_FORMATS = ("JPEG", "BMP", "GIF")  # alpha is flattened onto white for these (GIF has 1-bit alpha only)
# The largest side each format can store (JPEG's 16-bit header fields; WebP's 14-bit ones).
FORMAT_MAX_SIDE = {"JPEG": 65535, "WEBP": 16383}
# JPEG holds EXIF in one APP1 marker segment: 65535 bytes less the length field and "Exif\0\0".
JPEG_MAX_EXIF_BYTES = 65533
# The ICC colour space that describes each output mode's pixels.
_ICC_SPACE_OF_MODE = {"RGB": "RGB", "RGBA": "RGB", "L": "GRAY", "LA": "GRAY", "I;16": "GRAY", "CMYK": "CMYK"}

_GREY_8 = ("1", "L")
_GREY_16 = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_TO_RGB = ("RGB", "P", "CMYK", "YCbCr", "RGBX")
_TO_RGBA = ("RGBA", "RGBa", "PA", "LA", "La")


class ImageTooLargeError(ValueError):
    """The image has more pixels than the configured `max_pixels` limit."""


@dataclass
class DecodedImage:
    """An image ready for the network plus what is needed to write the result back in kind.

    rgb: (H, W, 3) float32 in [0, 1] (greyscale replicated to three channels).
    alpha: (H, W) float32 in [0, 1], or None.
    mode: the Pillow mode the output should have ("RGB", "RGBA", "L", "LA" or "I;16").
    icc_profile, exif: raw bytes to carry to the output, or None.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    mode: str
    icc_profile: bytes | None = None
    exif: bytes | None = None

    @property
    def bit_depth(self) -> int:
        return 16 if self.mode == "I;16" else 8


def check_pixel_count(width: int, height: int, max_pixels: int | None, what: str = "image") -> None:
    """Raise ValueError for an empty image and ImageTooLargeError above `max_pixels`."""
    if width <= 0 or height <= 0:
        raise ValueError(f"{what} is empty ({width}x{height} pixels)")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{what} is {width}x{height} = {width * height:,} pixels, more than max_pixels={max_pixels:,}; "
            "pass a larger max_pixels (--max-pixels) if you have the memory for a "
            "scale^2 times larger output, or downscale it first"
        )


def check_image_file(path: str | Path, what: str = "image file") -> Path:
    """`path` if it is a regular file; otherwise FileNotFoundError (nothing there) or ValueError
    saying what is there instead: a folder, or a pipe or device, which would block a read or give
    up after one pass."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a folder; pass the file itself")
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} is a pipe or device, not a regular file; save it to a file first")
    return path


def open_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image file; clear errors for missing, empty, corrupt or huge files,
    and for pipes and folders."""
    path = check_image_file(path)
    if path.stat().st_size == 0:
        raise ValueError(f"image file {str(path)!r} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check replaces Pillow's decompression-bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
            # Check the header's size before decoding, so a huge file fails before it allocates.
            check_pixel_count(image.width, image.height, max_pixels, what=f"image {str(path)!r}")
            image.load()
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(f"image {str(path)!r} is too large to decode safely: {error}") from error
    except UNREADABLE_ERRORS as error:  # UnidentifiedImageError is an OSError
        raise ValueError(f"cannot read image {str(path)!r}: it is corrupt or not an image ({error})") from error
    return image


def load_rgb8(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """An image file as upright (H, W, 3) uint8 RGB, alpha flattened on white: what training and
    evaluation read. 16-bit greyscale is rounded to 8 bits (65535 -> 255). ValueError names the path."""
    try:
        decoded = decode_pil(open_image(path, max_pixels=max_pixels), max_pixels=max_pixels, alpha="flatten")
    except ValueError as error:
        message = str(error)
        raise type(error)(message if str(path) in message else f"image {str(path)!r}: {message}") from error
    return quantize(decoded.rgb, np.uint8)


def decode_pil(image: Image.Image, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               alpha: str = "split") -> DecodedImage:
    """Any Pillow image -> DecodedImage (EXIF orientation applied).

    alpha: "split" returns transparency as its own plane (mode RGBA / LA); "flatten" composites
    the image on white and returns no alpha (mode RGB / L).
    """
    if alpha not in ALPHA_HANDLING:
        raise ValueError(f"alpha must be one of {ALPHA_HANDLING}, got {alpha!r}")
    decoded = _decode(image, max_pixels)
    if alpha == "flatten" and decoded.alpha is not None:
        coverage = decoded.alpha[..., None]
        rgb = decoded.rgb * coverage + (1.0 - coverage)  # over a white background
        decoded = DecodedImage(rgb.astype(np.float32), None, "L" if decoded.mode == "LA" else "RGB",
                               decoded.icc_profile, decoded.exif)
    return decoded


def _decode(image: Image.Image, max_pixels: int | None) -> DecodedImage:
    check_loaded(image)
    if image.format == "MPO":
        # A camera JPEG with its preview (or a stereo pair) in Multi-Picture frames: the first is the photo.
        image.seek(0)
    elif getattr(image, "n_frames", 1) > 1:
        raise ValueError(
            f"image has {image.n_frames} frames (animated or multi-page); upscale supports single-frame "
            "images only: save the frame you want as its own file first"
        )
    check_pixel_count(image.width, image.height, max_pixels)
    icc_profile = image.info.get("icc_profile") or None
    exif = _exif_without_orientation(image)
    try:
        image = ImageOps.exif_transpose(image)  # a new image; the caller's is left as it was
    except Exception as error:  # a malformed EXIF block must not crash reading the pixels
        raise ValueError(f"image has an unreadable EXIF orientation: {error}") from error
    mode = image.mode
    if mode == "CMYK":
        icc_profile = None  # a CMYK profile does not describe the RGB pixels we write
    if "transparency" in image.info and mode in ("P", "L", "RGB"):
        # A colour key (PNG tRNS) or palette transparency: real transparency, so make it alpha.
        image = image.convert("LA" if mode == "L" else "RGBA")
        mode = image.mode
    if mode in _GREY_8:
        grey = dequantize(np.asarray(image.convert("L")))
        return DecodedImage(_replicate(grey), None, "L", icc_profile, exif)
    if mode in _GREY_16:
        values = np.asarray(image, dtype=np.float64)
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low < 0 or high > 65535:  # a 32-bit integer image ("I"): clipping would silently change it
            raise ValueError(f"32-bit integer image with values from {low:g} to {high:g}; upscale reads 0-65535 "
                             "(16-bit): scale it into that range first")
        grey = (values / 65535.0).astype(np.float32)
        return DecodedImage(_replicate(grey), None, "I;16", icc_profile, exif)
    if mode in ("LA", "La"):
        la = dequantize(np.asarray(image.convert("LA")))
        return DecodedImage(_replicate(la[..., 0]), np.ascontiguousarray(la[..., 1]), "LA", icc_profile, exif)
    if mode in _TO_RGBA:
        rgba = dequantize(np.asarray(image.convert("RGBA")))
        return DecodedImage(np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3]),
                            "RGBA", icc_profile, exif)
    if mode in _TO_RGB:
        rgb = dequantize(np.asarray(image.convert("RGB")))
        return DecodedImage(rgb, None, "RGB", icc_profile, exif)
    raise ValueError(f"unsupported image mode {image.mode!r}; convert it to RGB, RGBA, L or I;16 first")


# Colour spaces whose pixels are not RGB and that Pillow cannot convert to it: refused, never
# passed on with their profile attached to RGB pixels.
UNSUPPORTED_MODES = ("LAB", "HSV")


def check_loaded(image: Image.Image) -> None:
    """ValueError, in one clear line, for a Pillow image whose pixels cannot be read: closed, cut
    short (decoded lazily, so the damage shows only now) or in a colour space we cannot convert."""
    if image.mode in UNSUPPORTED_MODES:
        raise ValueError(f"image is in the {image.mode} colour space, which cannot be converted to RGB here; "
                         "convert it to RGB first")
    try:
        image.load()
    except (ValueError, AttributeError, AssertionError) as error:  # Pillow's ways of saying "closed"
        raise ValueError("the image was closed before it was read (opened in a `with` block that has ended?); "
                         "pass an open image, or its path") from error
    except UNREADABLE_ERRORS as error:
        raise ValueError(f"cannot read the image's pixels: it is corrupt or cut short ({error})") from error


def encode_pil(rgb: np.ndarray, alpha: np.ndarray | None, like: DecodedImage) -> Image.Image:
    """Upscaled RGB (H, W, 3), float in [0, 1] or uint8 / uint16 (+ float alpha) -> a Pillow image
    of `like`'s mode, ICC and EXIF."""
    if like.mode in ("I;16", "L", "LA"):
        grey = rgb_to_grey(quantize(rgb, np.float32))
    if like.mode == "I;16":
        out = Image.fromarray(quantize(grey, np.uint16))  # a uint16 array becomes mode "I;16"
    elif like.mode in ("L", "LA"):
        out = Image.fromarray(quantize(grey, np.uint8))
        if like.mode == "LA":
            out = Image.merge("LA", (out, Image.fromarray(quantize(_require_alpha(alpha), np.uint8))))
    else:
        out = Image.fromarray(quantize(rgb, np.uint8))
        if like.mode == "RGBA":
            out.putalpha(Image.fromarray(quantize(_require_alpha(alpha), np.uint8)))
    if like.icc_profile:
        out.info["icc_profile"] = like.icc_profile
    if like.exif:
        out.info["exif"] = like.exif
    return out


def save_image(image: Image.Image, path: str | Path, format: str | None = None, *,
               compress_level: int | None = None) -> None:
    """Save atomically, with the ICC profile and EXIF kept, converting modes the target format cannot
    hold (16-bit grey to 8 bits, alpha flattened on white for JPEG/BMP/GIF). The format comes from
    `format` or the suffix; the parent folder is created. `compress_level` (PNG only, 0-9; None:
    Pillow's 6) trades file size for time: 1 writes a 16-megapixel photo 4x faster, 25% larger."""
    path = Path(path)
    format = (format or Image.registered_extensions().get(path.suffix.lower(), "")).upper()
    if not format:
        raise ValueError(f"cannot tell the image format of {str(path)!r}; use a known suffix or pass a format")
    if image.mode.startswith("I") and format not in SIXTEEN_BIT_FORMATS:
        image = grey_to_8_bits(image)
    if format in NO_ALPHA_FORMATS and image.mode in ("RGBA", "LA"):
        # No (full) alpha channel in the format: flatten onto white, as a viewer would show it on a page.
        background = Image.new("RGB", image.size, "white")
        background.paste(image.convert("RGBA"), mask=image.getchannel("A"))
        image = _with_metadata_of(image, background.convert("L") if image.mode == "LA" else background)
    if format == "JPEG" and image.mode not in ("RGB", "L", "CMYK"):
        image = image.convert("RGB")
    check_fits_format(image.width, image.height, format)
    icc_profile = image.info.get("icc_profile")
    # Only a profile that describes these pixels; None also stops Pillow reading it from `info`.
    fits = bool(icc_profile) and icc_color_space(icc_profile) == _ICC_SPACE_OF_MODE.get(image.mode)
    options = {"icc_profile": icc_profile if fits else None}
    exif = image.info.get("exif")
    if exif and format in ("JPEG", "PNG", "WEBP", "TIFF"):
        if format == "JPEG" and len(exif) > JPEG_MAX_EXIF_BYTES:
            warnings.warn(f"{path.name}: its {len(exif):,} bytes of EXIF do not fit in a JPEG (at most "
                          f"{JPEG_MAX_EXIF_BYTES:,}); the image is written without them (PNG keeps them)",
                          stacklevel=2)
        else:
            options["exif"] = exif
    if format == "JPEG":
        options["quality"] = 95
    if compress_level is not None:
        if format != "PNG" or not (isinstance(compress_level, int) and 0 <= compress_level <= 9):
            raise ValueError(f"compress_level is a whole number 0-9 for PNG, got {compress_level!r} for {format}")
        options["compress_level"] = compress_level
    with atomic_file(path) as staging:  # a run killed mid-write leaves no truncated file
        image.save(staging, format=format, **options)


def header_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from the file's header without decoding pixels; None if unreadable or not a
    regular file (the decoder then says why, in its own words); never blocks on a pipe."""
    if not Path(path).is_file():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def check_fits_format(width: int, height: int, format: str) -> None:
    """ValueError if a `width` x `height` image cannot be stored in `format` (e.g. JPEG over 65,535
    pixels on a side): said before the work, naming a format that can."""
    limit = FORMAT_MAX_SIDE.get(format.upper())
    if limit is not None and max(width, height) > limit:
        raise ValueError(f"a {width}x{height} image is too large for {format.upper()} (at most {limit:,} pixels on "
                         "a side); write PNG instead (--format png)")


def icc_color_space(profile: bytes) -> str | None:
    """The colour space an ICC profile describes ("RGB", "GRAY", "CMYK", ...), or None if unreadable."""
    from PIL import ImageCms

    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(profile)).profile.xcolor_space.strip()
    except (OSError, ValueError, TypeError, AttributeError, ImageCms.PyCMSError):
        return None


def is_complete_image(path: str | Path) -> bool:
    """Whether `path` holds an image that decodes fully (a truncated or empty file does not)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
        return True
    except (*UNREADABLE_ERRORS, ValueError, Image.DecompressionBombError):
        return False


def resize_to(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` resized to `size` with Lanczos, in its own mode (16-bit grey stays 16-bit), with its
    ICC profile and EXIF: how `--outscale` turns a x4 result into another factor."""
    if image.size == size:
        return image
    if image.mode == "I;16":  # Pillow resamples 16-bit grey only through 32-bit float
        plane = Image.fromarray(np.asarray(image, dtype=np.float32), mode="F").resize(size, Image.Resampling.LANCZOS)
        out = Image.fromarray(np.clip(np.rint(np.asarray(plane)), 0, 65535).astype(np.uint16))
    else:
        out = image.resize(size, Image.Resampling.LANCZOS)
    return _with_metadata_of(image, out)


MAX_OUTSCALE = 16


def check_outscale(outscale: float) -> float:
    """`outscale` if it is a number in (0, MAX_OUTSCALE]; ValueError naming it otherwise."""
    if (not isinstance(outscale, (int, float, np.integer, np.floating)) or isinstance(outscale, bool)
            or not 0 < outscale <= MAX_OUTSCALE):
        raise ValueError(f"outscale must be a number above 0 and at most {MAX_OUTSCALE}, got {outscale!r}")
    return float(outscale)


def resize_to_outscale(upscaled: Image.Image | np.ndarray, input_size: tuple[int, int],
                       outscale: float) -> Image.Image | np.ndarray:
    """An upscaled image (Pillow, or an (H, W[, C]) array) resized with Lanczos to `outscale` times
    the `input_size` (width, height) it came from: x2 or x3 from a x4 model, or a target size."""
    size = (max(1, round(input_size[0] * outscale)), max(1, round(input_size[1] * outscale)))
    if isinstance(upscaled, Image.Image):
        return resize_to(upscaled, size)
    planes = upscaled if upscaled.ndim == 3 else upscaled[..., None]
    resized = [np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., c], dtype=np.float32), mode="F")
                          .resize(size, Image.Resampling.LANCZOS)) for c in range(planes.shape[2])]
    stacked = np.stack(resized, axis=2)
    peak = {np.uint8: 255, np.uint16: 65535}.get(upscaled.dtype.type)
    out = np.clip(np.rint(stacked), 0, peak).astype(upscaled.dtype) if peak else np.clip(stacked, 0, 1).astype(
        upscaled.dtype)
    return out if upscaled.ndim == 3 else out[..., 0]


def grey_to_8_bits(image: Image.Image) -> Image.Image:
    """16-bit (or 32-bit integer) greyscale as 8-bit "L": divided by 257 and truncated (65535 -> 255;
    at most one level below rounding), not clipped at 255 as Pillow's own conversion does, which
    turns such images white (and GIF's black)."""
    return image.point(lambda value: value / 257).convert("L")


def _with_metadata_of(source: Image.Image, image: Image.Image) -> Image.Image:
    """`image` carrying `source`'s ICC profile and EXIF (a new Pillow image starts without them)."""
    image.info.update({key: source.info[key] for key in ("icc_profile", "exif") if source.info.get(key)})
    return image


def resize_bicubic(image: np.ndarray, scale: int) -> np.ndarray:
    """Upscale by `scale` with Pillow's bicubic kernel (a = -0.5, as MATLAB's imresize).

    (H, W, 3) uint8 RGB -> uint8, through Pillow's own 8-bit path (the baseline of every table);
    (H, W, C) float32 planes -> float32, unclipped (for the colour fix and alpha planes).
    """
    if image.dtype == np.uint8:
        height, width = image.shape[:2]
        return np.asarray(Image.fromarray(image).resize((width * scale, height * scale), Image.Resampling.BICUBIC))
    return np.stack(resize_bicubic_planes(image, scale), axis=2)


def resize_bicubic_planes(image: np.ndarray, scale: int) -> list[np.ndarray]:
    """`resize_bicubic` of (H, W, C) float32 planes, as C separate (sH, sW) float32 planes: a caller
    that reads them plane by plane saves interleaving a full-size copy."""
    height, width = image.shape[:2]
    size = (width * scale, height * scale)
    return [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32), mode="F")
                       .resize(size, Image.Resampling.BICUBIC)) for c in range(image.shape[2])]


def _replicate(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))


def _require_alpha(alpha: np.ndarray | None) -> np.ndarray:
    assert alpha is not None, "an RGBA/LA output needs an alpha plane"
    return alpha


def _exif_without_orientation(image: Image.Image) -> bytes | None:
    """The image's EXIF block with orientation reset (we apply it to the pixels), or None."""
    if "exif" not in image.info:
        return None
    try:
        # A fresh Exif object: editing `image.getexif()` would change the caller's image.
        exif = Image.Exif()
        exif.load(image.info["exif"])
        if EXIF_ORIENTATION_TAG in exif:
            exif[EXIF_ORIENTATION_TAG] = 1
        return exif.tobytes()
    except Exception:
        # A malformed EXIF block is metadata we cannot carry; the pixels are still fine.
        return None
