"""Reading and writing clips with PyAV (FFmpeg's libraries in a wheel: the `video` extra).

`open_clip(path)` checks a file and says what it holds (`ClipInfo`); `read_clip(path)` yields its
items in file order: video frames as upright (H, W, 3) uint8 RGB with their timestamps, and the
packets of the other streams (audio, subtitles) to be copied as they are. `ClipWriter` encodes
frames (H.264 by default) with the same timestamps, so frame count, variable frame rate and
duration are kept, and muxes the copied packets between them in the order they came.

Colour: frames are converted to RGB with the matrix and range the file declares (BT.601 for SD
and BT.709 for HD where it declares none, as FFmpeg's players assume), and written back with the
input's matrix and range where declared, else BT.709 limited range for HD output (BT.601 below
720 lines). Rotation metadata is applied to the pixels, so every player shows the result upright.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

# Containers whose name we keep for the output; others (GIF, WebP, AVI, WebM...) are written as MP4,
# which takes H.264 and AAC everywhere.
KEPT_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
DEFAULT_CONTAINER_SUFFIX = ".mp4"
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif", ".mpg", ".mpeg", ".ts",
                            ".m2ts", ".mts", ".3gp", ".flv", ".wmv", ".ogv"})
DEFAULT_CODEC = "libx264"
DEFAULT_CRF = 18  # visually lossless for H.264 (x264's guide: 17-18); the network's detail survives
HD_HEIGHT = 720


class ClipError(ValueError):
    """A file that is not a readable clip, or a setting a clip cannot be written with."""


@dataclass(frozen=True)
class ClipInfo:
    """What a clip holds: upright frame size, frame count (estimated where the file does not
    say), average frame rate, duration in seconds and the streams that are copied."""

    width: int
    height: int
    frames: int
    fps: float
    duration: float
    rotation: int
    copied_streams: tuple[str, ...]

    def describe(self) -> str:
        extra = f", with {', '.join(self.copied_streams)}" if self.copied_streams else ", no audio"
        return f"{self.width}x{self.height}, {self.frames} frames at {self.fps:.3g} fps ({self.duration:.1f} s){extra}"


def _av():
    try:
        import av
    except ImportError as error:
        raise ImportError("video needs PyAV: pip install 'perceptual-sr[video]'") from error
    return av


def open_clip(path: str | Path) -> ClipInfo:
    """Probe `path`: ClipError if it holds no decodable video stream."""
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"clip {str(path)!r} does not exist")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ClipError(f"{path} holds no video stream")
            stream = container.streams.video[0]
            first = next(container.decode(stream), None)
            if first is None:
                raise ClipError(f"{path} has a video stream but no frame could be decoded")
            rotation = _rotation(first)
            width, height = (first.height, first.width) if rotation % 180 else (first.width, first.height)
            rate = stream.average_rate or stream.guessed_rate or Fraction(25)
            duration = _duration(container, stream)
            frames = stream.frames or max(1, round(duration * float(rate)))
            copied = tuple(f"{s.type} ({s.codec_context.name})" for s in container.streams
                           if s.type in ("audio", "subtitle"))
    except (av.FFmpegError, UnicodeDecodeError) as error:
        raise ClipError(f"cannot read {path} as a video: {error}") from error
    return ClipInfo(width, height, int(frames), float(rate), duration, rotation, copied)


def _duration(container, stream) -> float:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return 0.0


def _rotation(frame) -> int:
    """Degrees the pixels must turn counter-clockwise to stand upright (0, 90, 180, 270)."""
    return int(round(frame.rotation / 90)) * 90 % 360 if frame.rotation else 0


@dataclass
class Frame:
    """One decoded frame: upright RGB pixels and where it sits in time (pts in `time_base`)."""

    rgb: np.ndarray
    pts: int | None
    time_base: Fraction
    colorspace: int | None  # the matrix the file declares (FFmpeg's AVColorSpace); None: not declared
    color_range: int  # FFmpeg's AVColorRange: 1 limited (MPEG), 2 full (JPEG)


def read_clip(path: str | Path) -> Iterator[Frame | object]:
    """The clip's video frames (`Frame`) and the packets of its audio and subtitle streams, in the
    order the file interleaves them. Stream the file: nothing is read ahead."""
    av = _av()
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        video.thread_type = "AUTO"  # frame-threaded decoding: a share of the other core
        others = [s for s in container.streams if s.type in ("audio", "subtitle")]
        for packet in container.demux(video, *others):
            if packet.stream is video:
                for frame in packet.decode():
                    yield _to_frame(frame, video.time_base)
            elif packet.dts is not None:  # the demuxer's empty flush packets carry nothing
                yield packet


def _to_frame(frame, time_base: Fraction) -> Frame:
    declared = frame.colorspace if frame.colorspace not in (0, 2) else None  # RGB, unspecified
    color_range = frame.color_range or 1  # unspecified: limited (MPEG), as players assume
    rgb = frame.reformat(format="rgb24", src_colorspace=declared or _standard_matrix(frame.height),
                         src_color_range=color_range).to_ndarray()
    turns = _rotation(frame) // 90
    if turns:
        rgb = np.ascontiguousarray(np.rot90(rgb, turns))
    return Frame(rgb, frame.pts, frame.time_base or time_base, declared, color_range)


def _standard_matrix(height: int) -> int:
    """FFmpeg's AVColorSpace a player assumes for an undeclared frame: BT.709 (1) for HD, else BT.601 (5)."""
    return 1 if height >= HD_HEIGHT else 5


def video_output_path(source: Path, folder: Path, suffix: str) -> Path:
    """Where a clip's result goes: `<folder>/<stem>_<suffix><container>`, the container the
    input's where it takes H.264 and copied audio (MP4, MOV, MKV), else MP4."""
    extension = source.suffix.lower() if source.suffix.lower() in KEPT_CONTAINERS else DEFAULT_CONTAINER_SUFFIX
    return folder / f"{source.stem}_{suffix}{extension}"


def even_size(width: float, height: float) -> tuple[int, int]:
    """The nearest even size, at least 2x2: 4:2:0 chroma needs both sides even."""
    return max(2, 2 * round(width / 2)), max(2, 2 * round(height / 2))


class ClipWriter:
    """Writes frames of one size with given timestamps, and copies packets of `source`'s other
    streams. Use as a context manager; `close` flushes the encoder and finishes the file."""

    def __init__(self, destination: Path, source_path: Path, size: tuple[int, int], *, codec: str = DEFAULT_CODEC,
                 crf: int = DEFAULT_CRF, container_format: str | None = None) -> None:
        av = _av()
        if codec not in av.codecs_available:
            raise ClipError(f"codec {codec!r} is not in this PyAV build; try libx264, libx265 or mpeg4")
        self._source = av.open(str(source_path))  # for the stream templates of the copied streams
        self._output = av.open(str(destination), "w", format=container_format
                               or KEPT_CONTAINERS.get(destination.suffix.lower(), "mp4"))
        video_in = self._source.streams.video[0]
        self.time_base = video_in.time_base or Fraction(1, 1000)
        rate = video_in.average_rate or video_in.guessed_rate or Fraction(25)
        try:
            self._video = self._output.add_stream(codec, rate=rate)
        except (av.FFmpegError, ValueError) as error:
            self._close_files()
            raise ClipError(f"cannot encode {codec!r} into {destination.suffix}: {error}") from error
        self._video.width, self._video.height = size
        self._video.pix_fmt = "yuv420p"
        self._video.time_base = self.time_base
        self._video.codec_context.time_base = self.time_base
        if codec in ("libx264", "libx265"):
            self._video.options = {"crf": str(crf), "preset": "medium"}
        self._size = size
        self._copies = {}
        for stream in self._source.streams:
            if stream.type not in ("audio", "subtitle"):
                continue
            try:
                self._copies[stream.index] = self._output.add_stream_from_template(stream)
            except (av.FFmpegError, ValueError):
                pass  # a stream this container cannot hold (e.g. a GIF has none; PGS subtitles in MP4)
        self._colour: tuple[int, int] | None = None
        self.copied = tuple(s.type for s in self._copies.values())
        self.frames_written = 0

    def write_frame(self, rgb: np.ndarray, pts: int | None, time_base: Fraction, colorspace: int | None,
                    color_range: int) -> None:
        """Encode one (H, W, 3) uint8 frame of this writer's size at `pts` (in `time_base`)."""
        av = _av()
        height, width = rgb.shape[:2]
        if (width, height) != self._size:
            raise ValueError(f"frame is {width}x{height}, the clip is {self._size[0]}x{self._size[1]}")
        if self._colour is None:
            # The input's matrix where it declared one, else the standard one for the output's size
            # (an SD clip upscaled to HD is written as BT.709), declared in the file either way.
            self._colour = (colorspace or _standard_matrix(height), color_range)
            context = self._video.codec_context
            context.colorspace, context.color_range = self._colour
            context.color_primaries = context.color_trc = 1 if self._colour[0] == 1 else 6  # BT.709 / SMPTE 170M
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame = frame.reformat(format="yuv420p", dst_colorspace=self._colour[0], dst_color_range=self._colour[1])
        frame.pts = None if pts is None else int(round(pts * time_base / self.time_base))
        frame.time_base = self.time_base
        for packet in self._video.encode(frame):
            self._output.mux(packet)
        self.frames_written += 1

    def copy_packet(self, packet) -> None:
        """Mux a packet of one of the source's audio or subtitle streams unchanged."""
        stream = self._copies.get(packet.stream.index)
        if stream is None:
            return
        packet.stream = stream
        self._output.mux(packet)

    def close(self) -> None:
        try:
            for packet in self._video.encode(None):
                self._output.mux(packet)
        finally:
            self._close_files()

    def _close_files(self) -> None:
        self._output.close()
        self._source.close()

    def __enter__(self) -> "ClipWriter":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self._close_files()


def is_clip(path: Path) -> bool:
    """Whether `path` is for the video path: a video file by its suffix, or an animated GIF or WebP
    (a still one is an image)."""
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES | {".webp"}:
        return False
    if suffix not in (".gif", ".webp"):
        return True
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return getattr(image, "n_frames", 1) > 1  # Pillow's plugins without frames have none
    except (OSError, UnidentifiedImageError):
        return suffix == ".gif"  # let the video path report what is wrong with it


def is_complete_clip(path: Path) -> bool:
    """Whether `path` is a finished clip (a killed run leaves none, but a foreign file may be there)."""
    try:
        open_clip(path)
    except (ValueError, OSError):
        return False
    return True
