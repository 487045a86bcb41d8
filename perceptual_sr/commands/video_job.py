"""The video side of `perceptual-sr upscale`: one clip, with a progress bar of frames, fps and ETA.
Imports PyAV (the `video` extra) only when a clip is met, so image users never need it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from perceptual_sr.inference.image_pipeline import ImagePipeline


def upscale_clip_file(model: ImagePipeline, path: Path, target: Path, args: argparse.Namespace, outscale: float,
                      options: dict[str, Any]) -> str:
    """Upscale the clip `path` into `target` as the command's flags say; returns the summary line."""
    from perceptual_sr.video import upscale_video

    if args.restore_only:
        raise ValueError("--restore-only works on images; a clip is always upscaled")
    with tqdm(desc=path.name, unit="frame", leave=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = max(total, done)
            bar.update(done - bar.n)

        result = upscale_video(model, path, target, detail=args.detail, cleanup=args.cleanup, outscale=outscale,
                               crf=args.crf, codec=args.codec, progress=progress, **options)
    return f"{path.name}: {result.describe()}"
