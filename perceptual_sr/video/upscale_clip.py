"""Upscaling a clip: frames streamed through the pipeline, steadied, and encoded with their sound.

    from perceptual_sr import SRPipeline
    from perceptual_sr.video import upscale_video
    upscale_video(SRPipeline.from_pretrained(), "clip.mp4", "clip_x4.mp4")

Three threads share the work: one decodes (PyAV), the caller's runs the network, one encodes and
muxes. Bounded queues between them (`WINDOW` frames each) keep memory at a few frames whatever
the clip's length, and let decoding and encoding overlap the network. The output is written to a
staging file and renamed into place when complete: an error, Ctrl-C or SIGTERM leaves no partial
file (`atomic_write`).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any, Callable

import numpy as np
from PIL import Image

from perceptual_sr.inference import auto_cleanup
from perceptual_sr.inference.auto_cleanup import InputQuality
from perceptual_sr.inference.image_pipeline import ImagePipeline
from perceptual_sr.utils.atomic_write import atomic_file
from perceptual_sr.utils.image_io import DEFAULT_MAX_PIXELS, check_pixel_count
from perceptual_sr.video.clip import (
    DEFAULT_CODEC,
    DEFAULT_CRF,
    KEPT_CONTAINERS,
    ClipError,
    ClipInfo,
    ClipWriter,
    Frame,
    check_codec,
    even_size,
    open_clip,
    read_clip,
)
from perceptual_sr.video.steady import SteadyDetail, SteadySettings

WINDOW = 4  # frames queued between the decoder, the network and the encoder
AUTO_SAMPLE_FRAMES = 8  # frames `cleanup="auto"` measures, spread over the clip
_DONE = object()


@dataclass(frozen=True)
class VideoResult:
    """What `upscale_video` wrote and the settings it ran at (`quality`: what auto read; None
    when the cleanup was given)."""

    destination: Path
    info: ClipInfo
    frames: int
    size: tuple[int, int]
    seconds: float
    detail: float
    cleanup: float
    quality: InputQuality | None
    copied_streams: tuple[str, ...]
    dropped_streams: tuple[str, ...] = ()

    def describe(self) -> str:
        cleanup = (f"cleanup {self.cleanup:.2f} (auto: noise ~{self.quality.noise_sigma:.1f}/255 over "
                   f"{AUTO_SAMPLE_FRAMES} frames)" if self.quality is not None else f"cleanup {self.cleanup:.2f}")
        rate = self.frames / self.seconds if self.seconds else 0.0
        # A truncated stream decodes as far as it goes, as players show it: say so rather than hide it.
        short = (f" (of the {self.info.frames} the file announces: the rest did not decode)"
                 if self.frames < self.info.frames - 1 else "")
        dropped = (f"; left out (the container cannot hold them): {', '.join(self.dropped_streams)}"
                   if self.dropped_streams else "")
        return (f"{self.frames} frames{short} at {self.size[0]}x{self.size[1]} in {self.seconds:.1f} s "
                f"({rate:.2f} frames/s); detail {self.detail:g}, {cleanup}; copied: "
                f"{', '.join(self.copied_streams) or 'no other streams'}{dropped}")


def sample_frames(source: str | Path, info: ClipInfo, count: int = AUTO_SAMPLE_FRAMES) -> list[np.ndarray]:
    """Up to `count` frames spread evenly over the clip (one decoding pass, keeping only those)."""
    every, kept, index = max(1, info.frames // count), [], 0
    for item in read_clip(source):
        if isinstance(item, Frame):
            if index % every == 0 and len(kept) < count:
                kept.append(item.rgb)
            index += 1
    return kept


def measure_clip(pipeline: ImagePipeline, source: str | Path, info: ClipInfo | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> InputQuality:
    """`cleanup="auto"` for a clip: the median over `AUTO_SAMPLE_FRAMES` frames spread over it
    of what `assess` reads (noise; a frame carries no JPEG tables)."""
    return _median_quality(pipeline, sample_frames(source, info or open_clip(source)), max_pixels)


def _median_quality(pipeline: ImagePipeline, frames: list[np.ndarray], max_pixels: int | None) -> InputQuality:
    qualities = [pipeline.assess(frame, max_pixels) for frame in frames]
    return InputQuality(None, median(q.noise_sigma for q in qualities), median(q.cleanup for q in qualities))


def upscale_video(pipeline: ImagePipeline, source: str | Path, destination: str | Path, *,
                  detail: float | None = None, cleanup: float | str | None = "auto", outscale: float | None = None,
                  crf: int = DEFAULT_CRF, codec: str = DEFAULT_CODEC, steady: SteadySettings = SteadySettings(),
                  max_pixels: int | None = DEFAULT_MAX_PIXELS, max_seconds: float | None = None,
                  progress: Callable[[int, int], None] | None = None, **options: Any) -> VideoResult:
    """Upscale the clip `source` into `destination` (an .mp4, .mov or .mkv file).

    detail, cleanup, outscale: as for `upscale` ("auto" measured once over the clip).
    crf: the encoder's quality (x264/x265: 0 lossless ... 51; 18 visually lossless).
    steady: how the invented detail holds still (`steady.SteadySettings`; hold 0 turns it off).
    max_pixels: largest frame accepted (width x height); max_seconds: longest clip (checked
    against the header and again against each frame's time, for files that do not say).
    progress: called with (frames done, frames expected) after each frame.
    options: the fields of `UpscaleOptions` (colour fix, tiles, device, ...).
    Frame count, timestamps (variable frame rate included) and duration are kept; audio and
    subtitle streams are copied where the container takes them (`VideoResult.dropped` names the others).
    """
    source, destination = Path(source), Path(destination)
    if not isinstance(crf, int) or isinstance(crf, bool) or not 0 <= crf <= 51:
        raise ValueError(f"crf must be a whole number from 0 to 51, got {crf!r}")
    if destination.suffix.lower() not in KEPT_CONTAINERS:
        raise ValueError(f"write the clip as {', '.join(sorted(KEPT_CONTAINERS))}, got {destination.name!r}")
    if destination.exists() and destination.resolve() == source.resolve():
        raise ValueError(f"{destination} is the input clip; choose another output name")
    detail, cleanup, outscale = pipeline.check_settings(detail, cleanup, outscale)
    check_codec(codec)
    info = open_clip(source)
    check_pixel_count(info.width, info.height, max_pixels)
    if max_seconds is not None and info.duration > max_seconds:
        raise ClipError(f"the clip lasts {info.duration:.1f} s; at most {max_seconds:g} s are accepted here")
    # One pass over a sample of frames: what auto chooses, and the noise the steadying must see past.
    samples = sample_frames(source, info) if cleanup == "auto" or steady.hold else []
    quality = _median_quality(pipeline, samples, max_pixels) if cleanup == "auto" else None
    strength = quality.cleanup if quality is not None else cleanup
    if quality is not None and pipeline.has_axis("cleanup"):
        noise = quality.noise_sigma  # the same median of the same frames' readings: not read twice
    else:  # a model without a cleanup reports no noise to auto, but the steadying still needs it
        noise = median(auto_cleanup.assess(frame).noise_sigma for frame in samples) if samples else 0.0
    size = even_size(info.width * outscale, info.height * outscale)
    started = time.perf_counter()
    with atomic_file(destination) as staging, ClipWriter(
            staging, source, size, info.colour, codec=codec, crf=crf,
            container_format=KEPT_CONTAINERS[destination.suffix.lower()]) as writer:
        frames = _run(pipeline, source, writer, size, info, (detail, strength), SteadyDetail(steady, noise),
                      progress, max_seconds, {**options, "max_pixels": max_pixels})
    return VideoResult(destination, info, frames, size, time.perf_counter() - started, detail, strength, quality,
                       writer.copied, writer.dropped)


def _run(pipeline: ImagePipeline, source: Path, writer: ClipWriter, size: tuple[int, int], info: ClipInfo,
         settings: tuple[float, float], steadier: SteadyDetail, progress: Callable[[int, int], None] | None,
         max_seconds: float | None, options: dict[str, Any]) -> int:
    """Decode on one thread, upscale here, encode on another; returns the frames written. Every
    wait is bounded and checks `stop`, so an error or an interrupt anywhere ends all three."""
    detail, strength = settings
    decoded: queue.Queue = queue.Queue(WINDOW)
    encoded: queue.Queue = queue.Queue(WINDOW)
    stop = threading.Event()
    failures: list[BaseException] = []
    reader = threading.Thread(target=_decode, args=(source, decoded, stop, failures), daemon=True)
    encoder = threading.Thread(target=_encode, args=(writer, encoded, stop, failures), daemon=True)
    reader.start()
    encoder.start()
    done, start = 0, None
    try:
        while not failures:
            item = _get(decoded, stop, failures)
            if item is _DONE:
                break
            if isinstance(item, Frame):
                start = item.seconds if start is None else start  # a stream may start later than 0
                if max_seconds is not None and item.seconds - start > max_seconds:
                    raise ClipError(f"the clip runs past {max_seconds:g} s; at most {max_seconds:g} s are accepted "
                                    "here")
                upscaled = pipeline.run(item.rgb, detail=detail, cleanup=strength, **options).image
                if upscaled.shape[1::-1] != size:  # outscale, or an even size from an odd one
                    upscaled = np.asarray(Image.fromarray(upscaled).resize(size, Image.Resampling.LANCZOS))
                item.rgb = steadier(item.rgb, upscaled)
                done += 1
                if progress is not None:
                    progress(done, info.frames)
            _put(encoded, item, stop)
        _put(encoded, _DONE, stop)
        while encoder.is_alive() and not failures:
            encoder.join(timeout=0.1)
    finally:
        stop.set()  # both threads leave at their next step; the staging file is then removed
        _drain(decoded)
        reader.join()
        encoder.join()  # before the writer closes the file under it
    if failures:
        raise failures[0]
    return done


def _get(channel: queue.Queue, stop: threading.Event, failures: list[BaseException]) -> object:
    """The next item, or _DONE once the other threads have stopped or failed."""
    while not stop.is_set() and not failures:
        try:
            return channel.get(timeout=0.1)
        except queue.Empty:
            continue
    return _DONE


def _put(channel: queue.Queue, item: object, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            channel.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _drain(channel: queue.Queue) -> None:
    while True:
        try:
            channel.get_nowait()
        except queue.Empty:
            return


def _decode(source: Path, decoded: queue.Queue, stop: threading.Event, failures: list[BaseException]) -> None:
    try:
        for item in read_clip(source):
            if stop.is_set():
                return
            _put(decoded, item, stop)
        _put(decoded, _DONE, stop)
    except BaseException as error:  # noqa: BLE001 - handed to the main thread, which raises it
        failures.append(ClipError(f"decoding {source.name} failed: {error}"))


def _encode(writer: ClipWriter, encoded: queue.Queue, stop: threading.Event, failures: list[BaseException]) -> None:
    try:
        while not stop.is_set():
            try:
                item = encoded.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _DONE:
                return
            if isinstance(item, Frame):
                writer.write_frame(item.rgb, item.pts, item.time_base)
            else:
                writer.copy_packet(item)
    except BaseException as error:  # noqa: BLE001 - handed to the main thread, which raises it
        failures.append(error)
        stop.set()
