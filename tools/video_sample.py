"""The README's video sample: a camera panning over a photo, bicubic (left) against the video path (right).

    python tools/video_sample.py ../shared/data/benchmarks/Set14/baboon.png docs/images/video_sample.gif

Renders a pan over the photo at a quarter of its resolution with sensor noise (sigma 2/255) in
each frame (`sample_clips.camera_frames`), writes it as an H.264 clip with a sound track, upscales
that clip with `upscale_video` at its defaults, and lays the decoded result beside bicubic
upscaling of the same frames as an animated GIF.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from perceptual_sr import SRPipeline
from perceptual_sr.video import upscale_video
from perceptual_sr.video.clip import Frame, read_clip
from perceptual_sr.video.sample_clips import camera_frames, write_clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photo", type=Path)
    parser.add_argument("out", type=Path, help="the .gif to write")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", default="80x60", help="LR frame size")
    args = parser.parse_args()
    size = tuple(map(int, args.size.split("x")))
    photo = np.asarray(Image.open(args.photo).convert("RGB"))
    pipeline = SRPipeline.from_pretrained()
    lows = [lr for _, lr in camera_frames(photo, args.frames, size, pan=(2.0, 0.5), noise_sigma=2.0)]
    with tempfile.TemporaryDirectory() as folder:
        clip = write_clip(Path(folder) / "clip.mp4", lows, audio_seconds=args.frames / 24)
        result = upscale_video(pipeline, clip, Path(folder) / "clip_x4.mp4")
        print(result.describe())
        upscaled = [item.rgb for item in read_clip(result.destination) if isinstance(item, Frame)]
    panels = []
    for low, high in zip(lows, upscaled):
        bicubic = Image.fromarray(low).resize(high.shape[1::-1], Image.Resampling.BICUBIC)
        panel = Image.new("RGB", (2 * high.shape[1] + 4, high.shape[0]), "white")
        panel.paste(bicubic, (0, 0))
        panel.paste(Image.fromarray(high), (high.shape[1] + 4, 0))
        draw = ImageDraw.Draw(panel)
        for x, label in ((4, "bicubic"), (high.shape[1] + 8, "perceptual_sr video")):
            draw.rectangle((x - 2, 2, x + 6 * len(label) + 2, 14), fill="black")
            draw.text((x, 2), label, fill="white")
        panels.append(panel.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    panels[0].save(args.out, save_all=True, append_images=panels[1:], duration=1000 // 12, loop=0, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
