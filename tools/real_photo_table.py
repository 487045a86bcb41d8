"""LPIPS and PSNR-Y of a model folder on clean and real-photo inputs, at cleanup 0, 1 and auto.

    python tools/real_photo_table.py --model perceptual_sr/pretrained/perceptual-sr-x4 \
        --data ../shared/data/benchmarks/{Set5,Set14,BSD68} --max-images 10 --out docs/eval/real_photos

For each LR degradation of `degradations.degrade_to_image` (bicubic, jpeg75, noise, realistic) and each
cleanup setting, every set is evaluated as `perceptual-sr eval` does (x4, colour fix luma, fp32);
the table gives the model's LPIPS-alex as a multiple of plain bicubic upscaling's on the same LR
(lower is better), PSNR-Y, and the cross-hatch score (`metrics.hatch_score`). Writes `<out>.md` and `<out>.csv`.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import sys
from pathlib import Path

from perceptual_sr.evaluation.evaluate import evaluate
from perceptual_sr.evaluation.metrics import LPIPSMetric
from perceptual_sr.inference.pipeline import SRPipeline
from perceptual_sr.utils.atomic_write import write_text

DEGRADATIONS = ("bicubic", "jpeg75", "noise", "realistic")
CLEANUPS = (0.0, 1.0, "auto")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder (with real-photo weights for cleanup 1/auto)")
    parser.add_argument("--data", nargs="+", type=Path, required=True, help="folders of HR images")
    parser.add_argument("--max-images", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True, help="output path without suffix")
    parser.add_argument("--degradations", nargs="+", default=DEGRADATIONS, choices=DEGRADATIONS)
    parser.add_argument("--cleanups", nargs="+", default=[str(c) for c in CLEANUPS],
                        help="cleanup settings: numbers from 0 to 1 or auto")
    args = parser.parse_args()
    try:
        pipeline = SRPipeline.from_pretrained(args.model)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    cleanups = tuple(c if c == "auto" else float(c) for c in args.cleanups) if pipeline.has_axis("cleanup") else (0.0,)
    lpips_metric = LPIPSMetric()
    rows = []
    for degradation in args.degradations:
        for cleanup in cleanups:
            network_for = functools.partial(pipeline.components_for, cleanup=cleanup)
            for result in evaluate(network_for, args.data, scale=pipeline.scale, degradation=degradation,
                                   max_images=args.max_images, color_fix="luma", fast=False,
                                   lpips_metric=lpips_metric, progress=True):
                means = result.means
                rows.append({"set": result.name, "degradation": degradation, "cleanup": cleanup,
                             "lpips_vs_bicubic": means["model"]["lpips"] / means["bicubic"]["lpips"],
                             "model_lpips": means["model"]["lpips"], "bicubic_lpips": means["bicubic"]["lpips"],
                             "model_psnr": means["model"]["psnr"], "bicubic_psnr": means["bicubic"]["psnr"],
                             "model_hatch": means["model"]["hatch"]})
                print(f"{result.name} {degradation} cleanup {cleanup}: LPIPS {rows[-1]['lpips_vs_bicubic']:.2f}x "
                      f"bicubic, PSNR-Y {means['model']['psnr']:.2f} dB, hatch {means['model']['hatch']:.2f}",
                      flush=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(args.out.with_suffix(".csv"), buffer.getvalue())
    write_text(args.out.with_suffix(".md"), markdown(rows, args.degradations, cleanups))
    print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.csv')}")


def markdown(rows: list[dict], degradations: tuple, cleanups: tuple) -> str:
    """One row per set, one column per (degradation, cleanup): LPIPS as a multiple of bicubic's."""
    columns = [(degradation, cleanup) for degradation in degradations for cleanup in cleanups]
    header = "| set | " + " | ".join(f"{d}, cleanup {c}" for d, c in columns) + " |"
    lines = [header, "| --- |" + " --- |" * len(columns)]
    for name in dict.fromkeys(row["set"] for row in rows):
        cells = {(row["degradation"], row["cleanup"]): row for row in rows if row["set"] == name}
        lines.append(f"| {name} | " + " | ".join(f"{cells[key]['lpips_vs_bicubic']:.2f}" for key in columns) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
