"""The web demo's launcher: `python app.py` (the Hugging Face Space entry point) and `perceptual-sr demo`.

Environment variables:
    PERCEPTUAL_SR_MODEL      Hub repo id or local folder written by save_pretrained
                             (default: the weights bundled with the package; nothing is downloaded).
    PERCEPTUAL_SR_MAX_PIXELS largest accepted input, width x height (default 1048576 = 1024 x 1024).
    PERCEPTUAL_SR_CONCURRENCY upscales running at once (default 1); more requests wait in the queue.
    PERCEPTUAL_SR_MAX_VIDEO_SECONDS longest clip the Video tab takes (default 5).
    PERCEPTUAL_SR_MAX_VIDEO_PIXELS  largest frame of a clip, width x height (default 57600 = 320 x 180).
    PERCEPTUAL_SR_DEVICE     cpu, cuda, cuda:N or mps (default: CUDA when present, then MPS, then CPU).
    GRADIO_SERVER_NAME       host to bind (default 127.0.0.1; Spaces set 0.0.0.0).
    GRADIO_SERVER_PORT       port (default 7860).
    GRADIO_SHARE             "1"/"true" for a temporary public gradio.live link.
    GRADIO_CACHE_MODE        "eager" (default: examples computed at start-up) or "lazy" (on first click).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _int_env(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool_env(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def main() -> None:
    try:
        host = os.environ.get("GRADIO_SERVER_NAME", "").strip() or "127.0.0.1"
        port = _int_env("GRADIO_SERVER_PORT", 7860)
        if port > 65535:
            raise ValueError(f"GRADIO_SERVER_PORT must be a port number from 1 to 65535, got {port}")
        share = _bool_env("GRADIO_SHARE")
        max_pixels = _int_env("PERCEPTUAL_SR_MAX_PIXELS", 1024 * 1024)
        concurrency = _int_env("PERCEPTUAL_SR_CONCURRENCY", 1)
        max_video_seconds = _int_env("PERCEPTUAL_SR_MAX_VIDEO_SECONDS", 5)
        max_video_pixels = _int_env("PERCEPTUAL_SR_MAX_VIDEO_PIXELS", 320 * 180)

        from perceptual_sr import SRPipeline
        from perceptual_sr.utils.runtime import choose_device, reuse_freed_memory

        reuse_freed_memory()  # a third faster on CPU; this process exists to upscale

        try:
            device = choose_device(os.environ.get("PERCEPTUAL_SR_DEVICE", "").strip() or None)
        except ValueError as error:
            raise ValueError(f"PERCEPTUAL_SR_DEVICE must be a device this machine has: {error}") from None
        model = SRPipeline.from_pretrained(os.environ.get("PERCEPTUAL_SR_MODEL") or None)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"app.py: {error}")
    from perceptual_sr.app.demo import build_demo, model_fingerprint  # imports gradio: after the checks
    from perceptual_sr.utils.interrupts import sigterm_as_interrupt

    # Cached example outputs belong to one set of weights: keep each model's cache apart.
    os.environ.setdefault(
        "GRADIO_EXAMPLES_CACHE", str(Path(".gradio") / "cached_examples" / model_fingerprint(model))
    )
    demo = build_demo(model, max_input_pixels=max_pixels, concurrency_limit=concurrency, device=device,
                      max_video_seconds=max_video_seconds, max_video_frame_pixels=max_video_pixels)
    try:
        # SIGTERM (a container stop, `kill`) as Ctrl-C: the server closes and the visitors' results
        # in the temporary output folder are removed at exit, as they are after Ctrl-C.
        with sigterm_as_interrupt():
            demo.launch(server_name=host, server_port=port, share=share, max_file_size="50mb")
    except OSError as error:  # e.g. the port is in use: one line, not Gradio's traceback
        sys.exit(f"app.py: cannot serve on {host}:{port} ({error}); set GRADIO_SERVER_PORT to a free port")

