"""The Gradio demo: a photo in; a bicubic-vs-model slider, a 1:1 detail crop and a full-resolution PNG out.

`build_demo(model)` returns the `gr.Blocks` app that `app.py` launches (locally or as a
Hugging Face Space); `Upscaler` is its prediction function, usable without a server. The API
endpoint is `/upscale` (inputs: image file, colour fix, tile size, detail, clean-up strength,
whether to choose it automatically, and the output size; outputs: the slider's two WebP
previews, the full-resolution PNG path, a Markdown line with sizes, timing and the settings used,
the two 1:1 detail crops, and the clean-up strength it ran at).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Literal

import gradio as gr
import numpy as np
import torch
from PIL import Image, ImageOps

from perceptual_sr.app.video_tab import (
    DEFAULT_MAX_FRAME_PIXELS,
    DEFAULT_MAX_SECONDS,
    build_video_tab,
    video_available,
)
from perceptual_sr.inference.pipeline import SRPipeline
from perceptual_sr.inference.tiling import work_pixels
from perceptual_sr.inference.upscale import COLOR_FIXES, DEFAULT_COLOR_FIX, DEFAULT_TILE_OVERLAP, ImageTooLargeError
from perceptual_sr.networks.upscaler import PerceptualSR
from perceptual_sr.utils.image_io import IMAGE_SUFFIXES, grey_to_8_bits, header_size, open_image, save_image

# A 1024 x 1024 input becomes a 4096 x 4096 output: about what a 2-vCPU, 16 GB Space handles
# in tiles in about 10 s (README, "Speed"). Larger inputs get a friendly message, not an OOM.
DEFAULT_MAX_INPUT_PIXELS = 1024 * 1024
# 0 = let `upscale` choose the tile size for the device (tiles bound peak memory; untiled, a
# 1024 x 1024 input would need several (1, 64, 4096, 4096) float32 activations: 4 GiB each).
DEFAULT_TILE_SIZE = 0
MAX_TILE_SIZE = 1024
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
PREVIEW_MAX_SIDE = 2048  # pixels on the slider's long side; the download keeps every pixel
PREVIEW_QUALITY = 90
PREVIEW_METHOD = 2  # WebP effort 0-6: 2 encodes a 2048-px preview 2.3x faster than 4, a few % larger
# zlib level 1 writes the 4096 x 4096 download in a quarter of the default level's time (0.9 s
# against 3.4 s on a 2-core Xeon), for a 25% larger file: a visitor waits on the CPU, not on bytes.
DOWNLOAD_COMPRESS_LEVEL = 1
CROP_SIDE = 256  # output pixels of the 1:1 detail crop: the 4x gain, shown without downscaling
NO_COLOR_FIX = "off"  # the UI/API value for COLOR_FIXES' None (a radio button needs a string)
_COLOR_FIX_LABELS = {"histogram": "Histogram match", "luma": "Luma only", None: "Off"}
_OUTPUT_MAX_AGE_S = 15 * 60  # Gradio copies outputs into its own cache right after each call


def _color_fix_value(name: str | None) -> str:
    return NO_COLOR_FIX if name is None else name


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.3g} MP"


def model_fingerprint(model: SRPipeline | PerceptualSR) -> str:
    """A short hash of the weights, so cached example outputs of one model are never shown for another."""
    return _as_pipeline(model).fingerprint()


def _as_pipeline(model: SRPipeline | PerceptualSR) -> SRPipeline:
    return model if isinstance(model, SRPipeline) else SRPipeline.from_network(model)


def _too_large_message(size: tuple[int, int] | None, max_input_pixels: int) -> str:
    side = int(max_input_pixels ** 0.5)
    what = "This image is too large" if size is None else (
        f"This image is {size[0]} x {size[1]} pixels ({_megapixels(size[0] * size[1])}"
        + (f"; a strip this thin costs as much as {_megapixels(work_pixels(*size))})"
           if work_pixels(*size) > size[0] * size[1] else ")"))
    return (
        f"{what}; this demo upscales inputs up to {_megapixels(max_input_pixels)} (for example "
        f"{side} x {side}). Please downscale or crop it first, or run perceptual_sr on your own "
        "machine, where the limit is configurable."
    )


def _displayable(image: Image.Image) -> Image.Image:
    """`image` in a mode browsers show as it looks: 16-bit grey scaled to 8 bits (not clipped to white)."""
    if image.mode.startswith("I"):
        return grey_to_8_bits(image)
    if image.mode in ("RGB", "RGBA", "L"):
        return image
    return image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")


def _preview_size(size: tuple[int, int]) -> tuple[int, int]:
    factor = min(1.0, PREVIEW_MAX_SIDE / max(size))
    return max(1, round(size[0] * factor)), max(1, round(size[1] * factor))


def _slider_previews(input_path: str | Path, result: Image.Image, folder: Path, stem: str) -> tuple[Path, Path]:
    """WebP previews for the slider, at most PREVIEW_MAX_SIDE pixels long: bicubic ("before") and
    the network's output ("after"). A 4096x4096 PNG pair is about 30 MB to send to a 640-px viewer."""
    size = _preview_size(result.size)
    after = _displayable(result)
    after = after if after.size == size else after.resize(size, Image.Resampling.LANCZOS)
    with Image.open(input_path) as source:
        before = _displayable(ImageOps.exif_transpose(source))
        if before.mode != after.mode:
            before = before.convert(after.mode)
        # PIL premultiplies alpha when resizing RGBA, so transparent pixels don't bleed colour.
        before = before.resize(size, Image.Resampling.BICUBIC)
    paths = folder / f"{stem}_bicubic_preview.webp", folder / f"{stem}_preview.webp"
    for image, path in zip((before, after), paths):
        image.save(path, "WEBP", quality=PREVIEW_QUALITY, method=PREVIEW_METHOD)
    return paths


# In the browser: bring the result into view, unless it already is (on a wide screen it sits beside the button).
_SCROLL_TO_RESULT = """() => {
    const result = document.querySelector('#result-slider');
    const box = result && result.getBoundingClientRect();
    if (box && (box.top > window.innerHeight || box.bottom < 0)) result.scrollIntoView({block: 'start'});
}"""


def _show_automatic_strength(automatic: bool, ran_at: float | None) -> gr.Slider | dict:
    """The strength slider after an upscale: the automatic choice while the box is ticked, else
    left as the visitor set it."""
    return gr.Slider(value=float(ran_at)) if automatic and isinstance(ran_at, (int, float)) else gr.skip()


def _button_label(factor: float) -> str:
    return f"Upscale {factor:g}x"


def _upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as the photo is shown: EXIF orientations 5-8 turn it a quarter."""
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # an unreadable EXIF block: decoding has already refused it, or ignores it
        orientation = 1
    return (image.height, image.width) if orientation in (5, 6, 7, 8) else image.size


def _busiest_window(image: Image.Image, side: int) -> tuple[int, int]:
    """Top-left corner of the `side` x `side` window of `image` with the most luma gradient energy:
    where the upscaling is worth looking at, not a patch of sky."""
    luma = np.asarray(image.convert("L"), dtype=np.float32)
    energy = np.zeros_like(luma)
    energy[:, 1:] += np.abs(np.diff(luma, axis=1))
    energy[1:, :] += np.abs(np.diff(luma, axis=0))
    height, width = luma.shape
    side_y, side_x = min(side, height), min(side, width)
    table = np.pad(energy.cumsum(0, dtype=np.float64).cumsum(1), ((1, 0), (1, 0)))  # summed-area table, exact
    sums = (table[side_y:, side_x:] - table[:-side_y, side_x:] - table[side_y:, :-side_x] + table[:-side_y, :-side_x])
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y), int(x)


def _detail_crops(input_path: str | Path, result: Image.Image, folder: Path, stem: str, scale: int) -> tuple[Path, Path]:
    """The same CROP_SIDE-pixel window of the bicubic and the network output at 1:1 pixels, from
    the input's most detailed region, as lossless WebP (small: 256 x 256 pixels each)."""
    with Image.open(input_path) as source:
        source = _displayable(ImageOps.exif_transpose(source))
        side = max(1, CROP_SIDE // scale)  # input pixels
        y, x = _busiest_window(source, side)
        window = source.crop((x, y, min(x + side, source.width), min(y + side, source.height)))
    box = (x * scale, y * scale, x * scale + window.width * scale, y * scale + window.height * scale)
    after = _displayable(result).crop(box)
    before = window.resize(after.size, Image.Resampling.BICUBIC)
    if before.mode != after.mode:
        before = before.convert(after.mode)
    paths = folder / f"{stem}_bicubic_crop.webp", folder / f"{stem}_crop.webp"
    for image, path in zip((before, after), paths):
        image.save(path, "WEBP", lossless=True)
    return paths


def _prune(folder: Path, max_age_s: float) -> None:
    """Remove per-request output folders older than `max_age_s` (Gradio has copied them by then)."""
    cutoff = time.time() - max_age_s
    for child in folder.iterdir():
        try:
            if child.stat().st_mtime < cutoff:
                shutil.rmtree(child, ignore_errors=True)
        except FileNotFoundError:
            pass  # removed by a concurrent request


class Upscaler:
    """The demo's prediction function: (file path, colour fix, tile size, detail, clean-up strength,
    automatic clean-up, output size) -> the slider's previews, the PNG, the summary, the 1:1 crops."""

    def __init__(
        self,
        model: SRPipeline | PerceptualSR,
        *,
        max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS,
        device: str | torch.device = "cpu",
        output_dir: str | Path | None = None,
    ) -> None:
        if max_input_pixels < 1:
            raise ValueError(f"max_input_pixels must be positive, got {max_input_pixels!r}")
        self.pipeline = _as_pipeline(model)
        self.max_input_pixels = max_input_pixels
        self.device = torch.device(device)
        self.output_dir = Path(output_dir or tempfile.mkdtemp(prefix="perceptual_sr_demo_"))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if output_dir is None:  # a folder of our own: removed when the app exits (or this is collected)
            weakref.finalize(self, shutil.rmtree, str(self.output_dir), True)

    def __call__(
        self, image_path: str | None, color_fix: str | None = None, tile_size: float | None = DEFAULT_TILE_SIZE,
        detail: float | None = None, cleanup: float | None = None, automatic_cleanup: bool = True,
        outscale: float | None = None,
    ) -> tuple[tuple[str, str], str, str, tuple[str, str]]:
        """The app's outputs: the slider's two previews, the PNG's path, the summary line, the two crops."""
        return self.run(image_path, color_fix, tile_size, detail, cleanup, automatic_cleanup, outscale)[0]

    def run(
        self, image_path: str | None, color_fix: str | None = None, tile_size: float | None = DEFAULT_TILE_SIZE,
        detail: float | None = None, cleanup: float | None = None, automatic_cleanup: bool = True,
        outscale: float | None = None,
    ) -> tuple[tuple[tuple[str, str], str, str, tuple[str, str]], float]:
        """`__call__`'s outputs and the clean-up strength the upscale ran at (what "auto" chose)."""
        if not image_path:
            raise gr.Error("Please upload, paste or take a photo first (or click an example).", title="No image")
        color_fix = _color_fix_value(DEFAULT_COLOR_FIX) if color_fix is None else color_fix
        fixes = {_color_fix_value(name): name for name in COLOR_FIXES}
        if color_fix not in fixes:
            raise gr.Error(f"Unknown colour fix {color_fix!r}; choose one of {sorted(fixes)}.", title="Bad option")
        tile = tile_size or 0
        if (isinstance(tile, bool) or not isinstance(tile, (int, float, np.integer, np.floating))
                or not np.isfinite(tile) or tile != int(tile) or not 0 <= tile <= MAX_TILE_SIZE):
            raise gr.Error(f"Tile size must be a whole number from 0 (automatic) to {MAX_TILE_SIZE}, "
                           f"got {tile_size!r}.", title="Bad option")
        tile = int(tile)
        if not isinstance(automatic_cleanup, (bool, np.bool_)):  # "false" would read as true
            raise gr.Error(f"The automatic clean-up switch must be true or false, got {automatic_cleanup!r}.",
                           title="Bad option")
        can_clean_up = self.pipeline.has_axis("cleanup")
        try:  # the pipeline owns the settings' ranges; the app only says which control was wrong
            detail, cleanup, outscale = self.pipeline.check_settings(
                detail, "auto" if automatic_cleanup and can_clean_up else (cleanup or 0.0), outscale)
        except ValueError as error:
            raise gr.Error(f"{error}.", title="Bad option") from error
        if not outscale.is_integer() or not 1 <= outscale <= self.pipeline.scale:
            raise gr.Error(f"Output size must be a whole factor from 1 to {self.pipeline.scale}, got {outscale:g}.",
                           title="Bad option")
        outscale = int(outscale)
        size = header_size(image_path)
        # A thin strip costs what its padded size does (1 x 1,048,576 px: minutes, blocking the queue).
        if size is not None and work_pixels(*size) > self.max_input_pixels:
            raise gr.Error(_too_large_message(size, self.max_input_pixels), title="Image too large")
        started = time.perf_counter()
        try:
            # Small tiles get a proportionally smaller overlap (it must stay under half a tile).
            overlap = min(DEFAULT_TILE_OVERLAP, tile // 4) if tile else DEFAULT_TILE_OVERLAP
            image = open_image(image_path, max_pixels=self.max_input_pixels)  # a JPEG keeps its tables
            run = self.pipeline.run(image, detail=detail, cleanup=cleanup, outscale=outscale,
                                    color_fix=fixes[color_fix], tile_size=tile or None, tile_overlap=overlap,
                                    max_pixels=self.max_input_pixels, device=self.device)
            result = run.image
        except ImageTooLargeError as error:  # e.g. a decompression bomb with a lying header
            raise gr.Error(_too_large_message(size, self.max_input_pixels), title="Image too large") from error
        except ValueError as error:  # messages are meant for users; show the file's name, not our temp path
            message = str(error).replace(repr(str(image_path)), repr(Path(image_path).name))
            raise gr.Error(message, title="Can't upscale this image") from error
        seconds = time.perf_counter() - started
        _prune(self.output_dir, _OUTPUT_MAX_AGE_S)
        folder = Path(tempfile.mkdtemp(dir=self.output_dir))
        stem = Path(image_path).stem or "image"
        output_path = folder / f"{stem}_x{outscale}.png"
        # The download (PNG keeps every pixel, the alpha channel, ICC and EXIF) is written on a
        # second thread while the previews are made: zlib and the WebP encoder release the GIL.
        with ThreadPoolExecutor(max_workers=1) as writer:
            download = writer.submit(save_image, result, output_path, compress_level=DOWNLOAD_COMPRESS_LEVEL)
            bicubic_path, preview_path = _slider_previews(image_path, result, folder, stem)
            bicubic_crop, crop = _detail_crops(image_path, result, folder, stem, outscale)
            download.result()  # its errors are this call's errors
        width, height = _upright_size(image)
        cleanup_note = f"; {run.describe()}" if can_clean_up else ""
        summary = (
            f"**{width} x {height} → "
            f"{result.width} x {result.height} px** "
            f"(x{outscale}, {result.mode}) in **{seconds:.2f} s** on {self.device.type.upper()}"
            f"{f', {tile} px tiles' if tile else ''}; colour fix: {color_fix}"
            f"{f'; detail {detail:g}' if self.pipeline.has_axis('detail') else ''}{cleanup_note}."
        )
        outputs = (str(bicubic_path), str(preview_path)), str(output_path), summary, (str(bicubic_crop), str(crop))
        return outputs, run.cleanup


def _friendly_read_errors(component: gr.Image) -> gr.Image:
    """Make `component` turn unreadable uploads into a helpful `gr.Error` instead of a bare "Error".

    Gradio decodes the upload's header in `preprocess`, before our function runs. This wraps the
    instance's method rather than subclassing: Gradio writes a `.pyi` stub next to the module of
    every `Component` subclass it sees.
    """
    preprocess = component.preprocess

    def checked_preprocess(payload: Any) -> Any:
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            name = getattr(payload, "orig_name", None) or "the uploaded file"
            raise gr.Error(  # the underlying message would only show our temporary file path
                f"Could not read {name} as an image: it is damaged or not an image format this demo "
                "reads. Please upload a PNG, JPEG, WebP, BMP, TIFF or GIF photo.",
                title="Unsupported or damaged file",
            ) from error

    component.preprocess = checked_preprocess  # type: ignore[method-assign]
    return component


def on_zero_gpu(function: Callable) -> Callable:
    """`function` under `spaces.GPU` where the `spaces` package is installed (Hugging Face ZeroGPU
    Spaces, where a GPU is attached only inside such a call; elsewhere the decorator does nothing),
    else `function` itself: the same app runs on CPU, a dedicated GPU and ZeroGPU."""
    try:
        import spaces
    except ImportError:
        return function
    return spaces.GPU(function)


def example_paths(examples_dir: str | Path = EXAMPLES_DIR) -> list[Path]:
    """The bundled example photos, sorted by name (empty if the folder is missing)."""
    folder = Path(examples_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _fits(path: Path, max_input_pixels: int) -> bool:
    size = header_size(path)
    return size is not None and size[0] * size[1] <= max_input_pixels


def build_demo(
    model: SRPipeline | PerceptualSR,
    *,
    max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS,
    default_tile_size: int = DEFAULT_TILE_SIZE,
    concurrency_limit: int = 1,
    queue_size: int = 16,
    examples_dir: str | Path | None = EXAMPLES_DIR,
    cache_examples: bool = True,
    cache_mode: Literal["eager", "lazy"] | None = None,
    device: str | torch.device = "cpu",
    max_video_seconds: float = DEFAULT_MAX_SECONDS,
    max_video_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
) -> gr.Blocks:
    """The demo app around `model`, queued with at most `concurrency_limit` upscales at a time.

    Examples are cached with Gradio's `cache_examples`; `cache_mode` None means Gradio's
    default ("eager": all examples computed at launch, or `GRADIO_CACHE_MODE=lazy`: on first
    click). Cached outputs live under `GRADIO_EXAMPLES_CACHE` (default `.gradio/cached_examples`).
    The Video tab (where PyAV is installed) takes clips up to `max_video_seconds` long with frames
    of up to `max_video_frame_pixels`.
    """
    if not 0 <= default_tile_size <= MAX_TILE_SIZE:
        raise ValueError(f"default_tile_size must be in [0, {MAX_TILE_SIZE}], got {default_tile_size!r}")
    if concurrency_limit < 1:
        raise ValueError(f"concurrency_limit must be at least 1, got {concurrency_limit!r}")
    upscaler = Upscaler(model, max_input_pixels=max_input_pixels, device=device)
    scale = upscaler.pipeline.scale
    side = int(max_input_pixels ** 0.5)

    @on_zero_gpu
    def predict(image_path: str | None, color_fix: str | None = None, tile_size: float | None = DEFAULT_TILE_SIZE,
                detail: float | None = None, cleanup: float | None = None, automatic_cleanup: bool = True,
                outscale: float | None = None) -> tuple[Any, ...]:
        """The outputs, then the clean-up strength the upscale ran at."""
        outputs, ran_at = upscaler.run(image_path, color_fix, tile_size, detail, cleanup, automatic_cleanup, outscale)
        return (*outputs, ran_at)

    def predict_example(image_path: str) -> tuple[Any, ...]:
        return predict(image_path, _color_fix_value(DEFAULT_COLOR_FIX), default_tile_size)

    with gr.Blocks(title=f"perceptual_sr: {scale}x photo super-resolution", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            f"# perceptual_sr: {scale}x photo super-resolution\n"
            "A feed-forward network trained on a perceptual (VGG-16 feature) loss, after Johnson et al., "
            "[*Perceptual Losses for Real-Time Style Transfer and Super-Resolution*]"
            "(https://arxiv.org/abs/1603.08155) (ECCV 2016). Drop in a small photo and drag the slider "
            f"to compare plain bicubic upscaling (left) with the network (right). Inputs up to "
            f"{_megapixels(max_input_pixels)} (about {side} x {side}); transparency is kept."
        )
        with gr.Tab("Photo", id="photo"):
            with gr.Row():
                with gr.Column(scale=1):
                    # filepath + image_mode None: Gradio only reads the header; `upscale` decodes it.
                    image = _friendly_read_errors(gr.Image(
                        label="Low-resolution photo", type="filepath", image_mode=None,
                        sources=["upload", "clipboard", "webcam"], format="png", elem_id="input-image"))
                    # Right under the photo: on a phone (390 x 844) it stays on the first screen.
                    run = gr.Button(_button_label(scale), variant="primary", elem_id="upscale-button")
                    detail = gr.Slider(
                        minimum=0.0, maximum=1.0, step=0.05, value=1.0, label="Fidelity ↔ Detail",
                        info="0: faithful and smooth, for documents, screenshots and faces. "
                             "1: sharpest, with invented texture, for photos.",
                        visible=upscaler.pipeline.has_axis("detail"), elem_id="detail-slider",
                    )
                    with gr.Group(visible=upscaler.pipeline.has_axis("cleanup")):
                        automatic_cleanup = gr.Checkbox(
                            value=True, label="Clean up JPEG blocks and noise automatically",
                            info="Measures the photo (its JPEG quality and grain) and picks the strength below.",
                            elem_id="cleanup-auto")
                        cleanup = gr.Slider(
                            minimum=0.0, maximum=1.0, step=0.05, value=0.0, label="Clean-up strength",
                            info="0: keep the photo as it is (for clean images). 1: remove JPEG blocks, "
                                 "noise and blur (for phone and web photos).", elem_id="cleanup-slider",
                            interactive=False)  # while the automatic choice is on, the slider is ignored
                    color_fix = gr.Radio(
                        choices=[(_COLOR_FIX_LABELS.get(name, str(name)), _color_fix_value(name))
                                 for name in COLOR_FIXES],
                        value=_color_fix_value(DEFAULT_COLOR_FIX), label="Colour fix",
                        info="Corrects colour shifts of the network output using the input's colours.",
                    )
                    with gr.Accordion("Advanced", open=False):
                        outscale = gr.Radio(
                            choices=[(f"{factor}x", factor) for factor in range(2, scale + 1)], value=scale,
                            label="Output size", info=f"Smaller than {scale}x: the {scale}x result resized with Lanczos.",
                            elem_id="outscale")
                        tile_size = gr.Slider(
                            minimum=0, maximum=MAX_TILE_SIZE, step=32, value=default_tile_size,
                            label="Tile size (input pixels)",
                            info="Images are upscaled in overlapping tiles to bound memory; 0 = automatic.",
                        )
                with gr.Column(scale=2):
                    slider = gr.ImageSlider(label="Bicubic (left) vs perceptual_sr (right)", type="filepath",
                                            format="webp", interactive=False, max_height=640, elem_id="result-slider")
                    summary = gr.Markdown(elem_id="result-summary")
                    download = gr.File(label="Full-resolution PNG", interactive=False,
                                       elem_id="result-file")
                    # The caption as its own line: a label inside the slider sits under its toolbar icons
                    # on a phone-sized screen.
                    gr.Markdown(f"**1:1 detail** ({CROP_SIDE} x {CROP_SIDE} output pixels from the busiest part of the "
                                "photo): bicubic (left) vs perceptual_sr (right)", elem_id="detail-crop-caption")
                    crop = gr.ImageSlider(label="1:1 detail", show_label=False, type="filepath", format="webp",
                                          interactive=False, max_height=CROP_SIDE, elem_id="detail-crop")
            # The clean-up strength the upscale ran at: an output (so API clients learn what "auto" chose,
            # and a cached example carries it; a gr.State comes back empty from the example cache),
            # shown through the slider rather than on its own.
            ran_at_cleanup = gr.Number(visible=False, elem_id="cleanup-used")
            outputs = [slider, download, summary, crop, ran_at_cleanup]
            paths = example_paths(examples_dir) if examples_dir is not None else []
            # Examples larger than this app accepts would fail at start-up (cached) or on click: left out.
            paths = [path for path in paths if _fits(path, max_input_pixels)]
            if paths:
                gr.Examples(
                    examples=[[str(path)] for path in paths], inputs=[image], outputs=outputs,
                    fn=predict_example, cache_examples=cache_examples, cache_mode=cache_mode,
                    examples_per_page=12, label="Examples (default settings): click one",
                )
            automatic_cleanup.change(lambda automatic: gr.Slider(interactive=not automatic), inputs=automatic_cleanup,
                                     outputs=cleanup, queue=False, api_visibility="private")
            run.click(predict, inputs=[image, color_fix, tile_size, detail, cleanup, automatic_cleanup, outscale],
                      outputs=outputs, api_name="upscale", concurrency_limit=concurrency_limit, concurrency_id="upscale")
            # On a phone the result sits 2.5 screens below the button: without a scroll, a tap seems to do
            # nothing. The page moves to the result (its progress shows there) where it is out of view.
            # (Gradio's scroll_to_output left a 390 x 844 page where it was.)
            run.click(None, js=_SCROLL_TO_RESULT, queue=False, api_visibility="private")
            # After an automatic upscale (or an example) the greyed slider shows the strength chosen:
            # a visitor sees it, and unticking the box starts from it. A manual strength stays.
            ran_at_cleanup.change(_show_automatic_strength, inputs=[automatic_cleanup, ran_at_cleanup], outputs=cleanup,
                                  queue=False, api_visibility="private")
            # A photo the visitor brings (upload, paste, webcam, or clearing it) has not been measured
            # yet: back to automatic, the slider at rest. Not on `change`, which an example's click
            # also fires, racing the strength its cached result shows.
            image.input(lambda _: (gr.Checkbox(value=True), gr.Slider(value=0.0, interactive=False)), inputs=image,
                        outputs=[automatic_cleanup, cleanup], queue=False, api_visibility="private")
            outscale.change(lambda factor: gr.Button(value=_button_label(factor)), inputs=outscale, outputs=run,
                            queue=False, api_visibility="private")
        with gr.Tab("Video", id="video", visible=video_available()):
            build_video_tab(upscaler.pipeline, max_seconds=max_video_seconds, max_frame_pixels=max_video_frame_pixels,
                            concurrency_limit=concurrency_limit, device=str(device))
    demo.queue(max_size=queue_size, default_concurrency_limit=concurrency_limit)
    return demo
