"""The demo's Video tab: a short clip in, the upscaled clip out (playable, with a download), its sound kept.

Clips cost the network's time per frame (a 320x180 frame, 1280x720 out: 0.35 s on a 2-core Xeon with
AMX, about 1.8 s on a 2-core AMD EPYC without AVX-512),
so the tab takes short, small clips: `max_seconds` and `max_frame_pixels` (the environment's
PERCEPTUAL_SR_MAX_VIDEO_SECONDS and PERCEPTUAL_SR_MAX_VIDEO_PIXELS, see `serve.py`). A clip over
a limit gets a message before any frame is upscaled. Gradio's progress bar counts the frames.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import gradio as gr

from perceptual_sr.inference.image_pipeline import ImagePipeline
from perceptual_sr.utils.image_io import ImageTooLargeError

DEFAULT_MAX_SECONDS = 5.0
DEFAULT_MAX_FRAME_PIXELS = 320 * 180  # a 320x180 frame becomes 1280x720
_OUTPUT_MAX_AGE_S = 15 * 60  # Gradio copies outputs into its own cache right after each call


class VideoUpscaler:
    """The tab's prediction function, usable without a server: (clip path, detail, automatic
    clean-up) -> (upscaled MP4 path, a Markdown summary)."""

    def __init__(self, pipeline: ImagePipeline, *, max_seconds: float = DEFAULT_MAX_SECONDS,
                 max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS, output_root: Path | None = None,
                 device: str | None = "cpu") -> None:
        self.pipeline, self.max_seconds, self.max_frame_pixels = pipeline, max_seconds, max_frame_pixels
        self.device = device
        self._outputs = Path(tempfile.mkdtemp(prefix="perceptual-sr-video-", dir=output_root))
        weakref.finalize(self, shutil.rmtree, self._outputs, True)  # at exit too

    def __call__(self, clip_path: str | None, detail: float | None = None, automatic_cleanup: bool = True,
                 progress: Any = None) -> tuple[str, str]:
        from perceptual_sr.video import upscale_video
        from perceptual_sr.video.clip import ClipError

        if not clip_path:
            raise gr.Error("Upload a clip first.", print_exception=False)
        source = Path(clip_path)
        for old in self._outputs.iterdir():  # earlier visitors' results, long since copied by Gradio
            if time.time() - old.stat().st_mtime > _OUTPUT_MAX_AGE_S:
                shutil.rmtree(old, ignore_errors=True)
        destination = Path(tempfile.mkdtemp(dir=self._outputs)) / f"{source.stem}_x{self.pipeline.scale}.mp4"

        def report(done: int, total: int) -> None:
            if progress is not None:
                progress((done, total), desc="Upscaling frames", unit="frames")

        try:
            result = upscale_video(self.pipeline, source, destination, detail=detail,
                                   cleanup="auto" if automatic_cleanup else 0.0, max_seconds=self.max_seconds,
                                   max_pixels=self.max_frame_pixels, progress=report, device=self.device)
        except ImageTooLargeError:
            raise gr.Error(f"The clip's frames are larger than this demo takes ({self.max_frame_pixels:,} pixels a "
                           "frame): shrink it first, or run perceptual-sr on your own machine.",
                           print_exception=False) from None
        except (ClipError, ValueError, OSError) as error:
            raise gr.Error(f"Could not upscale this clip: {error}", print_exception=False) from None
        info = result.info
        summary = (f"{info.width}x{info.height} -> {result.size[0]}x{result.size[1]}, {result.frames} frames "
                   f"({info.duration:.1f} s) in {result.seconds:.0f} s; {result.describe().split('; ', 1)[1]}")
        return str(destination), summary


def build_video_tab(pipeline: ImagePipeline, *, max_seconds: float, max_frame_pixels: int,
                    concurrency_limit: int, device: str | None = "cpu") -> None:
    """The tab's components and its `/upscale_video` endpoint, inside the caller's `gr.Blocks`."""
    upscaler = VideoUpscaler(pipeline, max_seconds=max_seconds, max_frame_pixels=max_frame_pixels, device=device)

    def predict(clip_path: str | None, detail: float | None = None, automatic_cleanup: bool = True,
                progress: gr.Progress = gr.Progress()) -> tuple[str, str]:
        return upscaler(clip_path, detail, automatic_cleanup, progress)

    gr.Markdown(f"Short clips: up to {max_seconds:g} s and {max_frame_pixels:,} pixels a frame. "
                "Sound is kept; the invented detail holds still where the scene does.")
    with gr.Row():
        with gr.Column(scale=1):
            clip = gr.Video(label="Short clip", sources=["upload"], elem_id="input-video")
            run = gr.Button(f"Upscale clip {pipeline.scale}x", variant="primary", elem_id="video-button")
            detail = gr.Slider(minimum=0.0, maximum=1.0, step=0.05, value=1.0, label="Fidelity ↔ Detail",
                               visible=pipeline.has_axis("detail"), elem_id="video-detail")
            automatic_cleanup = gr.Checkbox(value=True, label="Clean up noise automatically",
                                            visible=pipeline.has_axis("cleanup"), elem_id="video-cleanup")
        with gr.Column(scale=2):
            result = gr.Video(label="Upscaled clip", interactive=False, elem_id="result-video")
            summary = gr.Markdown(elem_id="video-summary")
    run.click(predict, inputs=[clip, detail, automatic_cleanup], outputs=[result, summary], api_name="upscale_video",
              concurrency_limit=concurrency_limit, concurrency_id="upscale")


def video_available() -> bool:
    """Whether PyAV is installed (the `video` extra): without it the tab is hidden."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True
