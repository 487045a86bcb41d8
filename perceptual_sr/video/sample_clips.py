"""Clips whose truth is known, for the steadiness measurement, the benchmark and the tests.

`camera_frames` renders a camera over a photo: the true HR frames (a window that pans and zooms)
and the LR frames a camera of a quarter the resolution would record (Pillow bicubic x1/4, then
fresh sensor noise in each frame). A window that holds still gives the static noisy scene of
issue #35. `write_clip` encodes frames with PyAV (H.264 by default), optionally with a sine-wave
AAC audio track, display rotation, or explicit (variable) timestamps.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image


def camera_frames(photo: np.ndarray, count: int, lr_size: tuple[int, int], *, scale: int = 4,
                  pan: tuple[float, float] = (0.0, 0.0), zoom: float = 1.0, noise_sigma: float = 2.0,
                  seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(HR, LR) uint8 frame pairs of a camera over `photo` ((H, W, 3) uint8): an HR window of
    `lr_size` x `scale` pixels moving by `pan` HR pixels and scaling by `zoom` per frame, its LR
    by bicubic downscaling plus Gaussian noise of `noise_sigma` 8-bit levels, fresh per frame."""
    rng = np.random.default_rng(seed)
    width, height = lr_size[0] * scale, lr_size[1] * scale
    source = Image.fromarray(photo)
    for index in range(count):
        span = zoom ** index
        box_width, box_height = width * span, height * span
        left = (photo.shape[1] - box_width) / 2 + pan[0] * index
        top = (photo.shape[0] - box_height) / 2 + pan[1] * index
        if left < 0 or top < 0 or left + box_width > photo.shape[1] or top + box_height > photo.shape[0]:
            raise ValueError(f"frame {index} leaves the photo: use a larger photo, a smaller size or less motion")
        hr = source.resize((width, height), Image.Resampling.BICUBIC,
                           box=(left, top, left + box_width, top + box_height))
        lr = np.asarray(hr.resize(lr_size, Image.Resampling.BICUBIC), np.float64)
        lr = np.clip(np.rint(lr + rng.normal(0.0, noise_sigma, lr.shape)), 0, 255).astype(np.uint8)
        yield np.asarray(hr), lr


def write_clip(path: str | Path, frames: Sequence[np.ndarray], *, fps: int = 24, codec: str = "libx264",
               crf: int = 12, audio_seconds: float | None = None, rotation: int = 0,
               timestamps: Sequence[int] | None = None, pix_fmt: str = "yuv420p") -> Path:
    """Encode (H, W, 3) uint8 frames as a clip at `fps` (timestamps: explicit pts in 1/`fps`
    units instead, for variable frame rate); with `audio_seconds` of a 440 Hz AAC tone;
    `rotation`: display rotation metadata in degrees counter-clockwise (the pixels stay as given);
    `pix_fmt` "yuv444p" for odd sizes (4:2:0 needs even ones)."""
    import av

    path = Path(path)
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = pix_fmt
        if codec == "libx264":
            video.options = {"crf": str(crf)}
        if rotation:
            video.set_display_rotation(rotation)
        video.codec_context.time_base = Fraction(1, fps)
        audio = container.add_stream("aac", rate=48000) if audio_seconds else None
        if audio is not None:
            audio.layout = "mono"
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            frame.pts = timestamps[index] if timestamps is not None else index
            frame.time_base = Fraction(1, fps)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if audio is not None:
            samples = int(48000 * audio_seconds)
            tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48000)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = tone[start:start + 1024]
                frame = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 48000, start
                for packet in audio.encode(frame):
                    container.mux(packet)
            for packet in audio.encode(None):
                container.mux(packet)
    return path
