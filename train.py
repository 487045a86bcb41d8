"""Train perceptual_sr on a dataset written by prepare_data.py (the reference recipe by default).

    python train.py --data DATA_DIR --output-dir runs/x4 [--val-dir ../shared/data/benchmarks/Set5]
    torchrun --nproc-per-node 2 train.py --data DATA_DIR ...      # DistributedDataParallel
    python train.py --data DATA_DIR --output-dir runs/x4 --resume  # continue after an interruption

Every field of SRConfig (architecture) and TrainConfig (run settings) is a flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing

from perceptual_sr.model import SRConfig
from perceptual_sr.training import TrainConfig, TrainingDiverged, train


def _flag_type(annotation: str) -> tuple[type, bool]:
    """(python type, optional?) from a dataclass field's string annotation such as 'int | None'."""
    parts = [part.strip() for part in annotation.split("|")]
    optional = "None" in parts
    name = next(part for part in parts if part != "None")
    return {"int": int, "float": float, "str": str, "bool": bool}[name], optional


def _none_or(kind: type):
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)
    parse.__name__ = kind.__name__
    return parse


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, title: str) -> None:
    group = parser.add_argument_group(title)
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        kind, optional = _flag_type(str(field.type))
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
        else:
            group.add_argument(flag, type=_none_or(kind) if optional else kind, default=field.default,
                               help=f"(default: {field.default})")


def parse_args(argv: list[str] | None = None) -> tuple[SRConfig, TrainConfig]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_flags(parser, SRConfig, "architecture (SRConfig, saved to config.json)")
    add_dataclass_flags(parser, TrainConfig, "run (TrainConfig, saved with checkpoints)")
    args = vars(parser.parse_args(argv))
    pick = lambda cls: {f.name: args[f.name] for f in dataclasses.fields(cls)}  # noqa: E731
    if not args["data"]:
        parser.error("--data is required: a folder written by prepare_data.py")
    return SRConfig(**pick(SRConfig)), TrainConfig(**pick(TrainConfig))


def main(argv: list[str] | None = None) -> int:
    try:
        model_config, train_config = parse_args(argv)
        train(model_config, train_config)
    except KeyboardInterrupt:
        print("interrupted: checkpoint saved; continue with --resume", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, TrainingDiverged, RuntimeError) as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 1
    print(f"model saved to {train_config.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
