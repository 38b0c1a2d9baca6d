"""The machinery of the typed configuration: documented fields, validation, dotted access.

Every part of the package declares its own section (a dataclass of `config_field`s next to its code);
`dprecon_ros.config` composes them into one tree. This module knows nothing of the sections, so any part
can import it without pulling in the others.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Sequence
from dataclasses import field
from typing import Any

SCHEDULE_LENGTH = 4


class ConfigError(ValueError):
    """A configuration value has the wrong name, type or range."""


def config_field(
    default: Any,
    help: str,
    range: tuple[float, float] | None = None,
    choices: tuple[str | int, ...] = (),
    live: bool = True,
    schedule: bool = False,
    fingerprint: bool = True,
):
    """A dataclass field that carries its own documentation, validity range, and whether a running node may
    change it (`live=False`: read once at start-up, a read-only ROS parameter).

    `schedule=True` marks a list `[start_step, start_value, end_value, end_step]` (see core/schedules.py).
    `fingerprint=False` marks a field that changes how a stage runs, not what it makes (how many processes, a
    time limit): changing it refits nothing (core/pipeline.py's fingerprints leave it out).
    """
    meta = {"help": help, "range": range, "choices": choices, "live": live, "schedule": schedule, "fingerprint": fingerprint}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


_SCALARS = {"float": float, "int": int, "bool": bool, "str": str}


def leaf_type(f: dataclasses.Field) -> tuple[type, type | None]:
    """(outer type, element type for lists) from the annotation, which is a string under postponed
    evaluation of annotations."""
    hint = f.type
    if isinstance(hint, str):
        if hint.startswith("list[") and hint.endswith("]"):
            return list, _SCALARS[hint[5:-1]]
        return _SCALARS[hint], None
    if typing.get_origin(hint) is list:
        return list, typing.get_args(hint)[0]
    return hint, None


def _check_scalar(path: str, kind: type, value: Any) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected a bool, got {value!r}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an int, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        value = float(value)
    elif kind is str and not isinstance(value, str):
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    return value


def _check_bounds(path: str, f: dataclasses.Field, value: Any) -> None:
    rng = f.metadata.get("range")
    if rng is not None and not isinstance(value, str) and not (rng[0] <= value <= rng[1]):
        raise ConfigError(f"{path}: {value!r} outside [{rng[0]}, {rng[1]}]")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{path}: {value!r} not one of {list(choices)}")


def validate_leaf(path: str, f: dataclasses.Field, value: Any) -> Any:
    """The value converted to the field's type, or ConfigError."""
    kind, element = leaf_type(f)
    if kind is list:
        if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            value = list(value)  # tuples, and the array.array ROS array parameters arrive as
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        value = [_check_scalar(f"{path}[{i}]", element, v) for i, v in enumerate(value)]
        if f.metadata.get("schedule"):
            if len(value) != SCHEDULE_LENGTH or value[3] < value[0]:
                raise ConfigError(f"{path}: a schedule is [start_step, start_value, end_value, end_step], got {value!r}")
            for v in value[1:3]:
                _check_bounds(path, f, v)
        else:
            for i, v in enumerate(value):
                _check_bounds(f"{path}[{i}]", f, v)
        return value
    value = _check_scalar(path, kind, value)
    _check_bounds(path, f, value)
    return value


def is_section(f: dataclasses.Field) -> bool:
    """A nested dataclass (its factory may be the class or a function building a preset instance)."""
    return f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory())


def apply_overrides(section: Any, values: dict[str, Any], prefix: str = "") -> None:
    """Write nested `values` into the dataclass tree, validating names, types and ranges."""
    fields = {f.name: f for f in dataclasses.fields(section)}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"unknown config key {path!r}")
        f = fields[key]
        if is_section(f):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a mapping")
            apply_overrides(getattr(section, key), value, prefix=f"{path}.")
        else:
            setattr(section, key, validate_leaf(path, f, value))


def iter_leaves(section: Any, prefix: str = "") -> typing.Iterator[tuple[str, dataclasses.Field, Any]]:
    """Yield (dotted.name, field, value) for every leaf, in declaration order."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            yield from iter_leaves(value, prefix=f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, value


def set_leaf(config: Any, dotted: str, value: Any) -> None:
    """Set one leaf by its dotted name, validated like YAML input."""
    *parents, leaf = dotted.split(".")
    nested: dict[str, Any] = {leaf: value}
    for name in reversed(parents):
        nested = {name: nested}
    apply_overrides(config, nested)


def is_live(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("live", True))


def with_sizes(section: Any, sizes: Any) -> Any:
    """`section` with every field of the `sizes` dataclass (a base class of it) taken from `sizes`: the stages'
    CPU presets (`geometry.cpu`, `prior.cpu`) replace their GPU sizes this way."""
    return dataclasses.replace(section, **{f.name: getattr(sizes, f.name) for f in dataclasses.fields(sizes)})


def fingerprinted(section: Any) -> dict[str, Any]:
    """A config section as a dict, like `dataclasses.asdict`, without its `fingerprint=False` fields."""
    out = {}
    for f in dataclasses.fields(section):
        if not f.metadata.get("fingerprint", True):
            continue
        value = getattr(section, f.name)
        out[f.name] = fingerprinted(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)
    return out
