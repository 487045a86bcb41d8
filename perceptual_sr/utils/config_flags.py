"""Command-line flags generated from a configuration dataclass (TrainConfig, SRConfig, PrepareConfig).

One flag per field (`--field-name`), typed from the field's annotation; `X | None` fields accept
the word "none"; bools become `--flag/--no-flag`; `tuple[X, ...]` and `list[X]` fields take one or
more values (`--field a b`, or as a positional argument `a b`). Fields are declared with `setting(...)`, which
writes the metadata the flags are made from: "help", "choices", "aliases" (more flags, e.g. a
field's old name), "flag": False for a field that is not a setting, and "resumable" (a
TrainConfig setting a resumed run may change). Validation stays in the dataclass's `__post_init__`.
"""

from __future__ import annotations

import argparse
import dataclasses
import numbers
import types
import typing
from typing import Any, Callable

import numpy as np


def is_whole_number(value: Any) -> bool:
    """Whether a setting's value is a whole number: a Python or numpy integer, never a bool (JSON
    `true` is not a channel count, and `True` is not a tile size)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def setting(default: Any = dataclasses.MISSING, help: str = "", *, choices: tuple | None = None,
            aliases: tuple[str, ...] = (), resumable: bool = False, flag: bool = True,
            default_factory: Callable[[], Any] | Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its flag's metadata, e.g. `steps: int | None = setting(None, "updates to run")`.

    No `default` (and no `default_factory`) makes a required field, as with `dataclasses.field`.
    """
    metadata: dict[str, Any] = {"help": help}
    if choices:
        metadata["choices"] = choices
    if aliases:
        metadata["aliases"] = tuple(aliases)
    if resumable:
        metadata["resumable"] = True
    if not flag:
        metadata["flag"] = False
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def _base_type(annotation: Any) -> tuple[type, bool]:
    """(the non-None type, whether None is allowed) of an annotation such as `int | None`."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        return members[0], len(members) < len(typing.get_args(annotation))
    return annotation, False


def _sequence_item(kind: Any) -> type | None:
    """The item type of `tuple[X, ...]` or `list[X]`, else None."""
    if typing.get_origin(kind) in (tuple, list):
        items = [item for item in typing.get_args(kind) if item is not Ellipsis]
        if len(set(items)) == 1:
            return items[0]
        raise TypeError(f"only tuple[X, ...] and list[X] fields can be flags, got {kind}")
    return None


def _none_or(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def add_flags(parser: argparse.ArgumentParser, cls: type, title: str | None = None,
              positional: tuple[str, ...] = ()) -> None:
    """Add a flag for every field of dataclass `cls` (fields in `positional` become positional arguments)."""
    group = parser.add_argument_group(title) if title else parser
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        if not spec.metadata.get("flag", True):
            continue  # a fixed value, not a setting (e.g. SRConfig.model_type)
        kind, optional = _base_type(hints[spec.name])
        help_text = spec.metadata.get("help", "")
        item = _sequence_item(kind)
        many = {"type": item, "nargs": "+"} if item is not None else {"type": kind}
        if spec.name in positional:
            group.add_argument(spec.name, help=help_text, **many)
            continue
        default = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
        flags = ["--" + spec.name.replace("_", "-"), *spec.metadata.get("aliases", ())]
        if kind is bool:
            group.add_argument(*flags, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif item is not None:
            group.add_argument(*flags, default=default, choices=spec.metadata.get("choices"),
                               help=f"{help_text} (default: {' '.join(map(str, default or ())) or 'none'})",
                               **many)
        else:
            group.add_argument(*flags, type=_none_or(kind) if optional else kind, default=default,
                               choices=spec.metadata.get("choices"),
                               help=f"{help_text} (default: {default})".strip())


def from_flags(cls: type, values: dict[str, Any]) -> Any:
    """Build dataclass `cls` from parsed flags (`vars(args)`), taking only its own fields (argparse's
    lists become tuples for `tuple[X, ...]` fields)."""
    hints = typing.get_type_hints(cls)

    def value(name: str) -> Any:
        kind = _base_type(hints[name])[0]
        given = values[name]
        return tuple(given) if typing.get_origin(kind) is tuple and isinstance(given, list) else given

    return cls(**{spec.name: value(spec.name) for spec in dataclasses.fields(cls) if spec.name in values})


def config_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Dataclass `cls` from a dict (e.g. a parsed config.json); a key it does not know is a
    ValueError naming it, so a damaged or foreign file fails here, not as a TypeError later."""
    known = {spec.name for spec in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; expected a subset of {sorted(known)}")
    return cls(**values)
