"""Video against the image path on the same frames, and the video path's peak memory.

Speed, side by side in one process (alternating, median of --repeats): a clip of `--frames`
frames of `--size` (a pan over a synthetic photo, with an AAC track) is upscaled
- as images: its decoded frames, each through `pipeline.run` (what a script over frames does);
- as a clip: `upscale_video` (decode, network, steadying, H.264 encode and the audio copy).
Both at cleanup 0 and detail 1. Prints output MP/s of each and the ratio clip / images (issue #35's
bar: at least 0.8).

Memory (--memory): peak resident memory of child processes, as the command line runs them:
one frame upscaled as an image, and clips of the same frame size and N and 4N frames. A bounded
window shows as a peak that does not grow with the clip's length.

    python benchmarks/bench_video.py [--size 160x120] [--frames 48] [--repeats 3] [--memory]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from perceptual_sr import SRPipeline
from perceptual_sr.video import upscale_video
from perceptual_sr.video.clip import Frame, read_clip
from perceptual_sr.video.sample_clips import camera_frames, write_clip


def make_clip(path: Path, size: tuple[int, int], frames: int) -> Path:
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 255, (size[1] // 2, size[0] // 2, 3), dtype=np.uint8)
    photo = np.asarray(Image.fromarray(coarse).resize((size[0] * 8, size[1] * 8), Image.Resampling.BICUBIC))
    lows = [lr for _, lr in camera_frames(photo, frames, size, pan=(96 / frames, 48 / frames))]
    return write_clip(path, lows, audio_seconds=frames / 24)


def child_peak(code: str) -> float:
    """Peak resident memory (MB) of a child Python process running `code`."""
    script = code + "\nimport resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    return int(output.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory", action="store_true")
    args = parser.parse_args()
    size = tuple(map(int, args.size.split("x")))
    pipeline = SRPipeline.from_pretrained()
    with tempfile.TemporaryDirectory() as folder:
        clip = make_clip(Path(folder) / "clip.mp4", size, args.frames)
        frames = [item.rgb for item in read_clip(clip) if isinstance(item, Frame)]
        output_mp = len(frames) * size[0] * size[1] * pipeline.scale ** 2 / 1e6

        def as_images() -> None:
            for frame in frames:
                pipeline.run(frame, detail=1.0, cleanup=0.0)

        def as_clip() -> None:
            upscale_video(pipeline, clip, Path(folder) / "out.mp4", detail=1.0, cleanup=0.0)

        as_images()  # warm-up
        times = {"images": [], "clip": []}
        for _ in range(args.repeats):
            for name, run in (("images", as_images), ("clip", as_clip)):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        rates = {name: output_mp / statistics.median(values) for name, values in times.items()}
        print(f"{len(frames)} frames of {size[0]}x{size[1]} -> x{pipeline.scale}: images {rates['images']:.2f} output "
              f"MP/s, clip {rates['clip']:.2f} output MP/s; clip / images {rates['clip'] / rates['images']:.2f}")
        if args.memory:
            frame_path = Path(folder) / "frame.png"
            Image.fromarray(frames[0]).save(frame_path)
            common = ("from perceptual_sr import SRPipeline; from perceptual_sr.utils.runtime import reuse_freed_memory; "
                      "reuse_freed_memory(); p = SRPipeline.from_pretrained()\n")
            image_peak = child_peak(common + f"p.upscale({str(frame_path)!r}, cleanup=0.0)")
            peaks = []
            for count in (args.frames, 4 * args.frames):
                longer = make_clip(Path(folder) / f"clip{count}.mp4", size, count)
                peaks.append(child_peak(common + "from perceptual_sr.video import upscale_video\n"
                                        f"upscale_video(p, {str(longer)!r}, {str(Path(folder) / 'o.mp4')!r}, cleanup=0.0)"))
            print(f"peak RSS: one frame as an image {image_peak:.0f} MB; clip of {args.frames} frames {peaks[0]:.0f} MB, "
                  f"of {4 * args.frames} frames {peaks[1]:.0f} MB")


if __name__ == "__main__":
    main()
