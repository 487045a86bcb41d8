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

# Containers whose name we keep for the output; others (GIF, AVI, WebM...) are written as MP4,
# which takes H.264 and AAC everywhere.
KEPT_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
DEFAULT_CONTAINER_SUFFIX = ".mp4"
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif", ".mpg", ".mpeg", ".ts",
                            ".m2ts", ".mts", ".3gp", ".flv", ".wmv", ".ogv"})
DEFAULT_CODEC = "libx264"
# Streams copied unchanged into MP4 and MOV: the codecs their muxer takes from any source. Others
# (PCM from an AVI: the muxer lists it, then refuses the packets with EINVAL) are left out and
# named; Matroska takes everything.
MP4_COPYABLE = frozenset({"aac", "mp3", "ac3", "eac3", "opus", "alac", "flac", "mov_text"})
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
    colour: "Colour"

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
            colour = Colour.of(first)
    except (av.FFmpegError, UnicodeDecodeError) as error:
        raise ClipError(f"cannot read {path} as a video: {error}") from error
    return ClipInfo(width, height, int(frames), float(rate), duration, rotation, copied, colour)


@dataclass(frozen=True)
class Colour:
    """How a clip's pixels are to be read as colour, in FFmpeg's enums: the matrix (AVColorSpace),
    range (AVColorRange), primaries and transfer; None where the file declares none."""

    matrix: int | None
    range: int
    primaries: int | None
    transfer: int | None

    @classmethod
    def of(cls, frame) -> "Colour":
        def declared(value: int) -> int | None:
            return value if value not in (0, 2) else None  # 0: RGB / reserved, 2: unspecified

        return cls(declared(frame.colorspace), frame.color_range or 1,  # unspecified range: limited, as players
                   declared(frame.color_primaries), declared(frame.color_trc))

    def for_height(self, height: int) -> tuple[int, int, int, int]:
        """(matrix, range, primaries, transfer) to write a frame of `height` lines with: what the
        input declared, else the standard for that size (an undeclared SD clip made HD is BT.709)."""
        standard = _standard_matrix(height)
        matrix = self.matrix or standard
        primaries = self.primaries or (1 if matrix == 1 else 6)  # BT.709, or SMPTE 170M (BT.601)
        return matrix, self.range, primaries, self.transfer or (1 if matrix == 1 else 6)


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

    @property
    def seconds(self) -> float:
        return float(self.pts * self.time_base) if self.pts is not None else 0.0


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
    colour = Colour.of(frame)
    rgb = frame.reformat(format="rgb24", src_colorspace=colour.matrix or _standard_matrix(frame.height),
                         src_color_range=colour.range).to_ndarray()
    turns = _rotation(frame) // 90
    if turns:
        rgb = np.ascontiguousarray(np.rot90(rgb, turns))
    return Frame(rgb, frame.pts, frame.time_base or time_base)


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


def check_codec(codec: str) -> None:
    """ClipError unless this PyAV build can encode `codec`: checked before any frame is decoded."""
    if codec not in _av().codecs_available:
        raise ClipError(f"codec {codec!r} is not in this PyAV build; try libx264, libx265 or mpeg4")


class ClipWriter:
    """Writes frames of one size with given timestamps, and copies packets of `source`'s other
    streams. Use as a context manager; `close` flushes the encoder and finishes the file.
    `colour`: the source's (`ClipInfo.colour`), declared on the output before anything is encoded
    (a copied audio packet can reach the muxer before the first frame, and opens the encoder)."""

    def __init__(self, destination: Path, source_path: Path, size: tuple[int, int], colour: Colour, *,
                 codec: str = DEFAULT_CODEC, crf: int = DEFAULT_CRF, container_format: str | None = None) -> None:
        av = _av()
        check_codec(codec)
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
        context = self._video.codec_context
        context.time_base = self.time_base
        self._matrix, self._range, context.color_primaries, context.color_trc = colour.for_height(size[1])
        context.colorspace, context.color_range = self._matrix, self._range
        if codec in ("libx264", "libx265"):
            self._video.options = {"crf": str(crf), "preset": "medium"}
        self._size = size
        self._copies = {}
        dropped = []
        mkv = self._output.format.name == "matroska"
        for stream in self._source.streams:
            if stream.type not in ("audio", "subtitle"):
                continue
            name = stream.codec_context.name
            try:
                if not mkv and name not in MP4_COPYABLE:  # the muxer would refuse its first packet, mid-clip
                    raise ValueError(name)
                self._copies[stream.index] = self._output.add_stream_from_template(stream)
            except (av.FFmpegError, ValueError):
                dropped.append(f"{stream.type} ({name})")
        self.copied = tuple(s.type for s in self._copies.values())
        # Streams the output container cannot hold (PCM audio or PGS subtitles in MP4): named, not hidden.
        self.dropped = tuple(dropped)
        self.frames_written = 0

    def write_frame(self, rgb: np.ndarray, pts: int | None, time_base: Fraction) -> None:
        """Encode one (H, W, 3) uint8 frame of this writer's size at `pts` (in `time_base`)."""
        av = _av()
        height, width = rgb.shape[:2]
        if (width, height) != self._size:
            raise ValueError(f"frame is {width}x{height}, the clip is {self._size[0]}x{self._size[1]}")
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame = frame.reformat(format="yuv420p", dst_colorspace=self._matrix, dst_color_range=self._range)
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
    """Whether `path` is for the video path: a video file by its suffix, or an animated GIF (a
    still one is an image). Animated WebP is not: this FFmpeg does not decode it, and the image
    path refuses it with a clear message."""
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        return False
    if suffix != ".gif":
        return True
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return getattr(image, "n_frames", 1) > 1
    except (OSError, UnidentifiedImageError):
        return True  # let the video path report what is wrong with it


def is_complete_clip(path: Path) -> bool:
    """Whether `path` is a finished clip (a killed run leaves none, but a foreign file may be there)."""
    try:
        open_clip(path)
    except (ValueError, OSError):
        return False
    return True
