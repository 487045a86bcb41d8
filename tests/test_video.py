"""Video: clips the tests make with PyAV, upscaled with their sound, timing, rotation and colour kept."""

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

av = pytest.importorskip("av")
pytestmark = pytest.mark.slow  # each test encodes and upscales a clip: seconds, not milliseconds

from perceptual_sr.commands.cli import main  # noqa: E402
from perceptual_sr.video import (  # noqa: E402
    measure_clip,
    upscale_clip,  # noqa: E402
    upscale_video,
)
from perceptual_sr.video.clip import ClipError, is_clip, open_clip  # noqa: E402
from perceptual_sr.video.sample_clips import camera_frames, write_clip  # noqa: E402


@pytest.fixture(scope="module")
def photo(make_photo):
    return make_photo(400, 300, seed=5)


def _frames(photo, count, size=(32, 24), **motion):
    return [lr for _, lr in camera_frames(photo, count, size, **motion)]


def _streams(path: Path) -> dict[str, dict]:
    with av.open(str(path)) as container:
        out = {}
        for stream in container.streams:
            out[stream.type] = {"duration": float(stream.duration * stream.time_base) if stream.duration else None,
                                "frames": stream.frames, "rate": stream.average_rate if stream.type == "video" else None,
                                "size": (stream.codec_context.width, stream.codec_context.height)
                                if stream.type == "video" else None}
        return out


def _pts(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(frame.pts * frame.time_base) for frame in container.decode(video=0)]


def test_a_48_frame_clip_with_sound_keeps_frames_rate_duration_and_audio(bundled_pipeline, photo, tmp_path):
    source = write_clip(tmp_path / "clip.mp4", _frames(photo, 48, pan=(1.0, 0.5)), fps=24, audio_seconds=2.0)
    result = upscale_video(bundled_pipeline, source, tmp_path / "clip_x4.mp4")
    before, after = _streams(source), _streams(result.destination)
    assert after["video"]["size"] == (128, 96) and result.frames == 48
    assert after["video"]["frames"] == 48 and after["video"]["rate"] == 24
    assert abs(after["video"]["duration"] - before["video"]["duration"]) <= 1 / 24
    assert abs(after["audio"]["duration"] - before["audio"]["duration"]) < 0.05 and result.copied_streams == ("audio",)
    assert _pts(result.destination) == _pts(source)


def test_variable_frame_rate_timestamps_are_kept(bundled_pipeline, photo, tmp_path):
    stamps = [0, 1, 2, 5, 6, 10, 11, 12, 20, 21]  # in 1/24 s: gaps, as a phone's clip has
    source = write_clip(tmp_path / "vfr.mp4", _frames(photo, len(stamps)), fps=24, timestamps=stamps)
    result = upscale_video(bundled_pipeline, source, tmp_path / "vfr_x4.mp4", cleanup=0.0)
    assert _pts(result.destination) == _pts(source) == [s / 24 for s in stamps]


def test_rotation_metadata_is_applied_to_the_pixels(bundled_pipeline, tmp_path):
    frame = np.full((24, 32, 3), 40, np.uint8)
    frame[:8, :8] = (250, 30, 30)  # a red mark at the stored top left
    source = write_clip(tmp_path / "phone.mp4", [frame] * 3, rotation=90)
    assert open_clip(source).rotation == 90 and (open_clip(source).width, open_clip(source).height) == (24, 32)
    result = upscale_video(bundled_pipeline, source, tmp_path / "phone_x4.mp4", cleanup=0.0)
    with av.open(str(result.destination)) as container:
        decoded = next(container.decode(video=0))
        assert decoded.rotation == 0
        pixels = decoded.to_ndarray(format="rgb24")
    assert pixels.shape == (128, 96, 3)
    upright = np.rot90(frame, 1)  # 90 degrees counter-clockwise: the mark goes to the bottom left
    corner = pixels[-24:, :24].reshape(-1, 3).mean(0)
    assert np.argmax(upright[-6:, :6].reshape(-1, 3).mean(0)) == 0 and corner[0] > 150 > corner[1]


@pytest.mark.parametrize("outscale, size", [(2.0, (66, 50)), (3.0, (100, 76))])
def test_odd_sizes_and_outscale_give_even_frames(bundled_pipeline, photo, tmp_path, outscale, size):
    source = write_clip(tmp_path / "odd.mkv", _frames(photo, 4, size=(33, 25)), pix_fmt="yuv444p")
    result = upscale_video(bundled_pipeline, source, tmp_path / "odd_x.mkv", outscale=outscale, cleanup=0.0)
    assert _streams(result.destination)["video"]["size"] == size and "audio" not in _streams(result.destination)


def test_an_animated_gif_becomes_an_mp4_with_every_frame(bundled_pipeline, photo, tmp_path):
    frames = [Image.fromarray(f) for f in _frames(photo, 6, pan=(4, 0))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert is_clip(tmp_path / "anim.gif")
    frames[0].save(tmp_path / "still.gif")
    assert not is_clip(tmp_path / "still.gif")
    assert main(["upscale", str(tmp_path / "anim.gif"), "-o", str(tmp_path / "out")]) == 0
    assert _streams(tmp_path / "out" / "anim_x4.mp4")["video"]["frames"] == 6


def test_colour_range_and_matrix_survive(bundled_pipeline, tmp_path):
    flat = np.empty((24, 32, 3), np.uint8)
    flat[:] = (200, 80, 40)
    source = write_clip(tmp_path / "flat.mp4", [flat] * 3)
    result = upscale_video(bundled_pipeline, source, tmp_path / "flat_x4.mp4", cleanup=0.0)
    with av.open(str(result.destination)) as container:
        stream = container.streams.video[0]
        pixels = next(container.decode(stream)).to_ndarray(format="rgb24")
        assert stream.codec_context.color_range == 1  # limited, as the input
    assert np.abs(pixels.reshape(-1, 3).mean(0) - (200, 80, 40)).max() < 4


def test_an_interrupted_run_leaves_nothing(bundled_pipeline, photo, tmp_path):
    source = write_clip(tmp_path / "clip.mp4", _frames(photo, 12))

    def interrupt(done, total):
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        upscale_video(bundled_pipeline, source, tmp_path / "out.mp4", progress=interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_memory_is_bounded_by_a_window_of_frames(bundled_pipeline, photo, tmp_path, monkeypatch):
    source = write_clip(tmp_path / "long.mp4", _frames(photo, 40))
    passes = []  # items read, per pass over the file (the noise measurement reads it first)
    real_read = upscale_clip.read_clip

    def counting_read(path):
        passes.append([])
        for item in real_read(path):
            passes[-1].append(item)
            yield item

    monkeypatch.setattr(upscale_clip, "read_clip", counting_read)
    real_progress = []
    upscale_video(bundled_pipeline, source, tmp_path / "long_x4.mp4", cleanup=0.0,
                  progress=lambda done, total: real_progress.append(len(passes[-1]) - done))
    # Decoded but not yet upscaled: at most the queue, the frame in the reader's hand and the one being put.
    assert max(real_progress) <= upscale_clip.WINDOW + 2


def test_bad_inputs_are_clear_errors(bundled_pipeline, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(ClipError, match="cannot read"):
        upscale_video(bundled_pipeline, tmp_path / "broken.mp4", tmp_path / "o.mp4")
    with pytest.raises(ValueError, match="crf"):
        upscale_video(bundled_pipeline, tmp_path / "broken.mp4", tmp_path / "o.mp4", crf=99)
    with pytest.raises(ValueError, match="write the clip as"):
        upscale_video(bundled_pipeline, tmp_path / "broken.mp4", tmp_path / "o.avi")
    source = write_clip(tmp_path / "ok.mp4", [np.zeros((24, 32, 3), np.uint8)] * 2)
    with pytest.raises(ValueError, match="is the input clip"):
        upscale_video(bundled_pipeline, source, source)
    with pytest.raises(ClipError, match="at most 0.01 s"):
        upscale_video(bundled_pipeline, source, tmp_path / "o.mp4", max_seconds=0.01)


def test_auto_cleanup_of_a_clip_is_measured_once_over_its_frames(bundled_pipeline, photo, tmp_path):
    clean = write_clip(tmp_path / "clean.mp4", _frames(photo, 8, noise_sigma=0.0), crf=0)
    noisy = write_clip(tmp_path / "noisy.mp4", _frames(photo, 8, noise_sigma=40.0), crf=0)
    assert measure_clip(bundled_pipeline, clean).cleanup == 0.0
    assert measure_clip(bundled_pipeline, noisy).cleanup > 0


def test_auto_reads_each_sampled_frame_once_and_steadies_by_that_noise(bundled_pipeline, photo, tmp_path,
                                                                        monkeypatch):
    from perceptual_sr.inference import auto_cleanup

    noisy = write_clip(tmp_path / "noisy.mp4", _frames(photo, 8, noise_sigma=40.0), crf=0)
    reads, real_assess = [], auto_cleanup.assess
    monkeypatch.setattr(auto_cleanup, "assess", lambda frame: reads.append(1) or real_assess(frame))
    steadied, real_steady = [], upscale_clip.SteadyDetail
    monkeypatch.setattr(upscale_clip, "SteadyDetail",
                        lambda settings, noise: steadied.append(noise) or real_steady(settings, noise))
    result = upscale_video(bundled_pipeline, noisy, tmp_path / "out.mp4")
    assert len(reads) == len(upscale_clip.sample_frames(noisy, upscale_clip.open_clip(noisy)))
    assert steadied == [result.quality.noise_sigma] and result.quality.noise_sigma > 10


def test_the_cli_takes_folders_of_images_and_clips(photo, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(photo[:24, :32]).save(folder / "still.png")
    write_clip(folder / "clip.mov", _frames(photo, 5), audio_seconds=0.3)
    assert main(["upscale", str(folder), "-o", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip_x4.mov", "still_x4.png"]
    assert "clip.mov: 5 frames at 128x96" in capsys.readouterr().out
    stamp = (tmp_path / "out" / "clip_x4.mov").stat().st_mtime_ns
    assert main(["upscale", str(folder), "-o", str(tmp_path / "out"), "--skip-existing"]) == 0
    assert (tmp_path / "out" / "clip_x4.mov").stat().st_mtime_ns == stamp


def test_a_clip_without_frames_is_refused(tmp_path):
    with av.open(str(tmp_path / "audio_only.mp4"), "w") as container:
        stream = container.add_stream("aac", rate=48000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, 0, Fraction(1, 48000)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    with pytest.raises(ClipError, match="no video stream"):
        open_clip(tmp_path / "audio_only.mp4")


def test_the_apps_video_tab_upscales_a_short_clip_and_refuses_long_ones(bundled_pipeline, photo, tmp_path):
    gr = pytest.importorskip("gradio")
    from perceptual_sr.app.demo import build_demo
    from perceptual_sr.app.video_tab import VideoUpscaler

    source = write_clip(tmp_path / "clip.mp4", _frames(photo, 6), audio_seconds=0.25)
    seen = []
    upscaler = VideoUpscaler(bundled_pipeline, max_seconds=5, max_frame_pixels=32 * 24, output_root=tmp_path)
    path, summary = upscaler(str(source), 1.0, True, lambda progress, **kw: seen.append(progress))
    assert _streams(Path(path))["video"]["size"] == (128, 96) and "audio" in _streams(Path(path))
    assert "32x24 -> 128x96, 6 frames" in summary and seen[-1] == (6, 6)
    with pytest.raises(gr.Error, match="larger than this demo takes"):
        VideoUpscaler(bundled_pipeline, max_frame_pixels=100)(str(source))
    with pytest.raises(gr.Error, match="at most 0.1 s"):
        VideoUpscaler(bundled_pipeline, max_seconds=0.1)(str(source))
    demo = build_demo(bundled_pipeline, examples_dir=None)
    assert "upscale_video" in {dependency.get("api_name") for dependency in demo.config["dependencies"]}


def test_an_encoder_failure_ends_the_run_with_its_error_and_no_file(bundled_pipeline, photo, tmp_path, monkeypatch):
    from perceptual_sr.video import clip as clip_module

    source = write_clip(tmp_path / "clip.mp4", _frames(photo, 20))

    def broken(self, rgb, pts, time_base):
        raise OSError("disk full")

    monkeypatch.setattr(clip_module.ClipWriter, "write_frame", broken)
    with pytest.raises(OSError, match="disk full"):
        upscale_video(bundled_pipeline, source, tmp_path / "out.mp4", cleanup=0.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_colour_tags_survive_a_clip_with_sound(bundled_pipeline, tmp_path):
    frames = [np.full((24, 32, 3), (200, 80, 40), np.uint8)] * 3
    source = write_clip(tmp_path / "tagged.mp4", frames, audio_seconds=0.2)
    result = upscale_video(bundled_pipeline, source, tmp_path / "tagged_x4.mp4", cleanup=0.0)
    with av.open(str(result.destination)) as container:
        decoded = next(container.decode(video=0))
        assert (decoded.colorspace, decoded.color_range) == (5, 1)  # BT.601 (SD, undeclared), limited


def test_audio_the_container_cannot_hold_is_named_not_fatal(bundled_pipeline, tmp_path):
    frames = [np.full((24, 32, 3), 90, np.uint8)] * 4
    source = tmp_path / "old.avi"
    with av.open(str(source), "w") as container:
        video = container.add_stream("mpeg4", rate=24)
        video.width, video.height, video.pix_fmt = 32, 24, "yuv420p"
        audio = container.add_stream("pcm_s16le", rate=8000)
        audio.layout = "mono"
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        sound = av.AudioFrame.from_ndarray(np.zeros((1, 1333), np.int16), format="s16", layout="mono")
        sound.sample_rate, sound.pts = 8000, 0
        for packet in [*audio.encode(sound), *audio.encode(None)]:
            container.mux(packet)
    result = upscale_video(bundled_pipeline, source, tmp_path / "old_x4.mp4", cleanup=0.0)
    assert result.frames == 4 and result.dropped_streams == ("audio (pcm_s16le)",)
    assert "left out (the container cannot hold them): audio (pcm_s16le)" in result.describe()


def test_a_clip_without_a_duration_is_still_held_to_the_limit(bundled_pipeline, photo, tmp_path, monkeypatch):
    import dataclasses

    source = write_clip(tmp_path / "clip.mkv", _frames(photo, 12))
    real_open = upscale_clip.open_clip
    monkeypatch.setattr(upscale_clip, "open_clip", lambda path: dataclasses.replace(real_open(path), duration=0.0))
    with pytest.raises(ClipError, match="runs past 0.2 s"):
        upscale_video(bundled_pipeline, source, tmp_path / "out.mkv", max_seconds=0.2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]
