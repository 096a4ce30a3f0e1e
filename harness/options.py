"""Options declared once: a dataclass field carries its command-line flags and help, and the parser, the reading
of the parsed arguments and the (de)serialization for a child process are derived from the dataclasses.

argparse alone cannot do this (it knows flags, not the typed objects the code passes around), and a library that
does (e.g. simple-parsing) would be one more dependency for ~100 lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")
_FLAGS = "flags"  # metadata key: a list of (flag names, add_argument keyword arguments), all with the field's dest


def flag(*names: str, default: Any = None, help: str, **argparse_kwargs: Any) -> Any:
    """A dataclass field set by the command-line flag ``names`` (the first long one names the parsed value).
    ``argparse_kwargs`` go to ``add_argument`` (type, choices, action...); the parser's default is the field's."""
    return dataclasses.field(default=default, metadata={_FLAGS: [(names, {"help": help, **argparse_kwargs})]})


def also(field: Any, *names: str, help: str, **argparse_kwargs: Any) -> Any:
    """``field`` with one more flag setting the same value (``--no-packing`` beside ``--packing``)."""
    field.metadata[_FLAGS].append((names, {"help": help, **argparse_kwargs}))
    return field


def dest(field: dataclasses.Field) -> str:
    """The attribute of the parsed arguments a flagged field reads: its first long flag, as argparse names it."""
    names = field.metadata[_FLAGS][0][0]
    return next(n for n in names if n.startswith("--"))[2:].replace("-", "_")


def require_at_least_one(options: Any, *names: str) -> None:
    """One ConfigError naming the flag (the declared one, else ``--name``) of the first of ``names`` that is set
    and below 1."""
    from harness.errors import ConfigError

    fields = {f.name: f for f in dataclasses.fields(options)}
    for name in names:
        value = getattr(options, name)
        if value is not None and value < 1:
            declared = fields[name].metadata.get(_FLAGS)
            flag_name = declared[0][0][0] if declared else f"--{name.replace('_', '-')}"
            raise ConfigError(f"{flag_name} must be >= 1, got {value}")


def flagged_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if _FLAGS in f.metadata]


def nested_fields(cls: type) -> list[tuple[dataclasses.Field, type]]:
    """The fields of ``cls`` that are option dataclasses themselves, with their class."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)
            if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name])]


def add_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type) -> None:
    """Add the flags of ``cls``'s own fields to ``parser`` (those of its nested option dataclasses: call again with
    each, to put them in groups of their own)."""
    for field in flagged_fields(cls):
        for names, kwargs in field.metadata[_FLAGS]:
            parser.add_argument(*names, dest=dest(field), **{"default": field.default, **kwargs})


def from_args(cls: type[T], args: argparse.Namespace, **given: Any) -> T:
    """``cls`` with the values of its flags (and of its nested option dataclasses) read from ``args``; a flag the
    parser lacks keeps the field's default; ``given`` wins over both."""
    values: dict[str, Any] = {}
    for field in flagged_fields(cls):
        if hasattr(args, dest(field)):
            values[field.name] = getattr(args, dest(field))
    for field, nested in nested_fields(cls):
        values[field.name] = from_args(nested, args)
    return cls(**{**values, **given})


def to_flags(cls: type, values: dict[str, Any]) -> list[str]:
    """The command-line flags that give ``cls``'s flagged fields these ``values`` (a recorded :func:`to_dict`); a
    value equal to the field's default, or absent, gives none."""
    argv: list[str] = []
    for field in flagged_fields(cls):
        value = values.get(field.name, field.default)
        if isinstance(value, list):
            value = tuple(value)
        if value == field.default:
            continue
        for names, kwargs in field.metadata[_FLAGS]:
            action = kwargs.get("action")
            if action == "store_true" and value is True or action == "store_false" and value is False or (
                    action == "store_const" and value == kwargs["const"]):
                argv.append(names[0])
                break
            if action is None and value is not None:
                argv += [names[0], ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
                break
    return argv


def to_dict(options: Any) -> dict:
    """An option dataclass as JSON-ready data (:func:`from_dict` rebuilds it)."""
    return dataclasses.asdict(options)


def from_dict(cls: type[T], data: dict, types: dict[str, type] | None = None) -> T:
    """An option dataclass from :func:`to_dict`'s data (after a JSON round trip: lists become tuples again where
    the field is a tuple). ``types``: the class of a field declared with a base class (an engine's options)."""
    hints = {**typing.get_type_hints(cls), **(types or {})}
    values = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue
        value, hint = data[field.name], hints[field.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            value = from_dict(hint, value)
        elif isinstance(value, list) and _is_tuple(hint):
            value = tuple(value)
        values[field.name] = value
    return cls(**values)


def _is_tuple(hint: Any) -> bool:
    if typing.get_origin(hint) is tuple or hint is tuple:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_is_tuple(arg) for arg in typing.get_args(hint))
    return False
