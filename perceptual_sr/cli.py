"""The `perceptual-sr` command: `upscale` photos and `eval` on benchmark folders."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perceptual-sr", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("upscale", help="upscale image files or folders")
    commands.add_parser("eval", help="PSNR-Y / SSIM-Y / LPIPS against bicubic on folders of HR images")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(f"perceptual-sr {args.command}: not implemented yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
