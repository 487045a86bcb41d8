"""How steady the video path's invented detail is, on clips whose truth is known (issue #35).

    python tools/video_steadiness.py ../shared/data/bsds500/test --images 3 --out docs/eval/video_steadiness

For each photo: a static scene (a still camera, fresh sensor noise of sigma 2 in every LR frame)
and a pan (with zoom), rendered by `sample_clips.camera_frames`. Reported per setting:
- flicker: the mean absolute frame-to-frame difference of the output on the static scene, as a
  multiple of bicubic upscaling's on the same frames (1.0: no more flicker than the noise itself);
- on the pan, LPIPS-alex and PSNR-Y against the true HR frames, averaged over the frames.
Frames go through `SRPipeline.run` and `SteadyDetail` as `upscale_video` sends them (no encoding),
so the numbers are the method's, not the codec's.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from perceptual_sr import SRPipeline
from perceptual_sr.evaluation.metrics import LPIPSMetric, psnr_y
from perceptual_sr.utils.atomic_write import write_text
from perceptual_sr.video.sample_clips import camera_frames
from perceptual_sr.video.steady import SteadyDetail, SteadySettings

NOISE_SIGMA = 2.0  # sensor noise of the clips, 8-bit levels (issue #35's static scene)
SETTINGS = [  # (label, detail, cleanup, steady hold)
    ("image path, detail 1", 1.0, 0.0, 0.0),
    ("image path, detail 0", 0.0, 0.0, 0.0),
    ("image path, cleanup 1", 1.0, 1.0, 0.0),
    ("video path, detail 1", 1.0, 0.0, SteadySettings().hold),
    ("video path, detail 0.5", 0.5, 0.0, SteadySettings().hold),
]


def run(pipeline: SRPipeline, frames: list[np.ndarray], detail: float, cleanup: float, hold: float,
        noise_sigma: float = NOISE_SIGMA) -> list[np.ndarray]:
    steadier = SteadyDetail(SteadySettings(hold=hold), noise_sigma=noise_sigma)
    return [steadier(lr, pipeline.run(lr, detail=detail, cleanup=cleanup).image) for lr in frames]


def flicker(frames: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(b.astype(np.float64) - a).mean() for a, b in zip(frames, frames[1:])]))


def bicubic(frames: list[np.ndarray], scale: int) -> list[np.ndarray]:
    return [np.asarray(Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.Resampling.BICUBIC))
            for f in frames]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", type=Path, help="a folder of photos (e.g. ../shared/data/bsds500/test)")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--noise-sigma", type=float, default=NOISE_SIGMA, help="sensor noise, 8-bit levels")
    parser.add_argument("--out", type=Path, required=True, help="output path without suffix (.md and .csv)")
    args = parser.parse_args()
    pipeline, lpips = SRPipeline.from_pretrained(), LPIPSMetric()
    rows = []
    for path in sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:args.images]:
        photo = np.asarray(Image.open(path).convert("RGB"))
        static = [lr for _, lr in camera_frames(photo, args.frames, (64, 64), noise_sigma=args.noise_sigma, seed=1)]
        pan_pairs = list(camera_frames(photo, args.frames, (64, 48), pan=(1.5, 0.75), zoom=0.995,
                                       noise_sigma=args.noise_sigma))
        pan_truth, pan_lr = [hr for hr, _ in pan_pairs], [lr for _, lr in pan_pairs]
        reference = flicker(bicubic(static, pipeline.scale))
        for label, detail, cleanup, hold in SETTINGS:
            if cleanup and not pipeline.has_axis("cleanup"):
                continue
            panned = run(pipeline, pan_lr, detail, cleanup, hold, args.noise_sigma)
            to_tensor = lambda images: torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255  # noqa: E731
            rows.append({"photo": path.name, "setting": label,
                         "flicker_vs_bicubic": flicker(run(pipeline, static, detail, cleanup, hold, args.noise_sigma)) / reference,
                         "pan_lpips": float(lpips(to_tensor(panned), to_tensor(pan_truth)).mean()),
                         "pan_psnr_y": float(np.mean([psnr_y(a, b) for a, b in zip(panned, pan_truth)]))})
            print(f"{path.name} {label}: flicker {rows[-1]['flicker_vs_bicubic']:.2f}x bicubic, pan LPIPS "
                  f"{rows[-1]['pan_lpips']:.4f}, PSNR-Y {rows[-1]['pan_psnr_y']:.2f} dB", flush=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(args.out.with_suffix(".csv"), buffer.getvalue())
    lines = ["| setting | flicker on a still noisy scene (x bicubic), mean / worst | pan: LPIPS | pan: LPIPS above the "
             "image path at detail 1, worst photo | pan: PSNR-Y (dB) |", "| --- | --- | --- | --- | --- |"]
    reference = {row["photo"]: row["pan_lpips"] for row in rows if row["setting"] == SETTINGS[0][0]}
    for label, *_ in SETTINGS:
        mine = [row for row in rows if row["setting"] == label]
        if mine:
            flickers = [r["flicker_vs_bicubic"] for r in mine]
            worst = max(r["pan_lpips"] - reference[r["photo"]] for r in mine)
            lines.append(f"| {label} | {np.mean(flickers):.2f} / {max(flickers):.2f} | "
                         f"{np.mean([r['pan_lpips'] for r in mine]):.4f} | {worst:+.4f} | "
                         f"{np.mean([r['pan_psnr_y'] for r in mine]):.2f} |")
    write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
