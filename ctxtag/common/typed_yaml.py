"""YAML mappings -> frozen dataclasses, checked against the annotations, naming the offending key."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """params.yaml is malformed: names the key and what was wrong."""


def coerce(tp: Any, value: Any, key: str) -> Any:
    """Convert a YAML value to the annotated type, failing with the offending key."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return coerce(inner, value, key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return build(tp, value, key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        inner = args[0]
        return tuple(coerce(inner, v, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is Path:
        return Path(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp in (int, float, str):
        if isinstance(value, bool) or (tp is int and isinstance(value, float)):
            raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
        try:
            return tp(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}") from exc
    return value


def build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown key(s) in {prefix or 'params'}: {sorted(unknown)}")
    kwargs = {
        name: coerce(hints[name], value, f"{prefix}.{name}" if prefix else name)
        for name, value in data.items()
    }
    return cls(**kwargs)
