"""Typed, frozen config sections read from plain YAML values, with one-line errors.

A section is a frozen dataclass whose fields say their type and, through ``setting(...)``, their
bounds and what they mean. ``parse(Section, raw, "key.path")`` checks a mapping against it: no
unknown keys, every key present (config.yaml is the one home of every default), types, bounds,
finite numbers. The error names the key, the value and what would be accepted.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from functools import lru_cache
from typing import Any

NAME_PATTERN = r"[a-z0-9][a-z0-9_.-]{0,63}"  # names that become folders, wildcards or tags
_INTEGER = re.compile(r"[-+]?\d+")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(nan|inf|infinity)", re.IGNORECASE)


class ConfigError(ValueError):
    """A configuration problem, stated in one line that names the key and the fix."""


def setting(meaning: str = "", *, min: float | None = None, above: float | None = None,
            max: float | None = None, below: float | None = None, choices: tuple | None = None,
            pattern: str | None = None, min_items: int = 0) -> Any:
    """A dataclass field with its meaning and bounds (min <= v, above < v, v <= max, v < below)."""
    return dataclasses.field(metadata=dict(meaning=meaning, min=min, above=above, max=max, below=below,
                                           choices=choices, pattern=pattern, min_items=min_items))


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def parse(cls: type, raw: Any, key: str, partial: bool = False):
    """``cls`` from a mapping (``partial``: a dict of just the keys given, each checked)."""
    names = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(raw, dict):
        raise ConfigError(f"config key '{key or '(top level)'}': expected a mapping with keys {', '.join(names)}; got {raw!r}")
    sub = (lambda name: f"{key}.{name}" if key else str(name))
    unknown = sorted(set(raw) - set(names), key=str)
    if unknown:
        raise ConfigError(f"config key '{sub(unknown[0])}': unknown key (accepted keys: {', '.join(names)})")
    if not partial:
        missing = [name for name in names if name not in raw]
        if missing:
            raise ConfigError(f"config key '{sub(missing[0])}': missing; every key is required (config.yaml in "
                              f"the repository has each one with the paper's value)")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            values[f.name] = _convert(_hints(cls)[f.name], raw[f.name], sub(f.name), f.metadata,
                                      partial=partial)
    return values if partial else cls(**values)


def _fail(key: str, problem: str, meta: dict) -> ConfigError:
    meaning = meta.get("meaning")
    return ConfigError(f"config key '{key}': {problem}" + (f" ({meaning})" if meaning else ""))


def _convert(hint: Any, value: Any, key: str, meta: dict, partial: bool = False) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _convert(inner, value, key, meta, partial)
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, key, partial=partial)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _fail(key, f"expected a list, got {value!r}", meta)
        if len(args) == 2 and args[1] is Ellipsis:
            items = [_convert(args[0], item, f"{key}[{i}]", meta) for i, item in enumerate(value)]
            if len(items) < meta.get("min_items", 0):
                raise _fail(key, f"needs at least {meta['min_items']} item(s), got {list(value)}", meta)
            return tuple(items)
        if len(value) != len(args):
            raise _fail(key, f"expected a list of {len(args)} values, got {list(value)}", meta)
        return tuple(_convert(arg, item, f"{key}[{i}]", meta) for i, (arg, item) in enumerate(zip(args, value)))
    return _scalar(hint, value, key, meta)


def _from_text(hint: Any, value: str) -> Any:
    """A number or a boolean written as text, read as one; otherwise the text itself.

    Snakemake's ``--config key={...}`` reads nested values with YAML's BaseLoader, so they arrive
    as strings ("100", "0.1", "false"); PyYAML itself reads 1e6 (no dot) as a string.
    """
    text = value.strip()
    if hint is bool and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if hint is int and _INTEGER.fullmatch(text):
        return int(text)
    if hint is float and _NUMBER.fullmatch(text):
        return float(text)
    return value


def _scalar(hint: Any, value: Any, key: str, meta: dict) -> Any:
    if isinstance(value, str) and hint in (bool, int, float):
        value = _from_text(hint, value)
    if hint is bool:
        if not isinstance(value, bool):
            raise _fail(key, f"expected true or false, got {value!r}", meta)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(key, f"expected an integer, got {value!r}", meta)
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(key, f"expected a number, got {value!r}", meta)
        if not math.isfinite(value):
            raise _fail(key, f"expected a finite number, got {value!r}", meta)
        value = float(value)
    elif hint is str:
        if not isinstance(value, str) or not value:
            raise _fail(key, f"expected a non-empty string, got {value!r}", meta)
        if meta.get("pattern") and not re.fullmatch(meta["pattern"], value):
            raise _fail(key, f"{value!r} is not a valid name: lower-case letters, digits, '.', '_' and '-' "
                             f"only, starting with a letter or digit, at most 64 characters", meta)
    else:  # pragma: no cover - a section declared a type this parser does not know
        raise TypeError(f"{key}: unsupported setting type {hint!r}")
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise _fail(key, f"{value!r} is not one of: {', '.join(map(str, meta['choices']))}", meta)
    for bound, holds, words in (("min", lambda v, b: v >= b, "at least"), ("above", lambda v, b: v > b, "above"),
                                ("max", lambda v, b: v <= b, "at most"), ("below", lambda v, b: v < b, "below")):
        if meta.get(bound) is not None and not holds(value, meta[bound]):
            raise _fail(key, f"must be {words} {meta[bound]:g}, got {value!r}", meta)
    return value


def check_name(value: Any, key: str) -> str:
    """A name that becomes a folder, a wildcard or a tag (a scale preset, a model, an experiment)."""
    return _scalar(str, value, key, {"pattern": NAME_PATTERN})


def to_plain(section: Any) -> Any:
    """A section as plain JSON values (tuples become lists), the inverse of ``parse``."""
    if dataclasses.is_dataclass(section):
        return {f.name: to_plain(getattr(section, f.name)) for f in dataclasses.fields(section)}
    if isinstance(section, (list, tuple)):
        return [to_plain(item) for item in section]
    return section
