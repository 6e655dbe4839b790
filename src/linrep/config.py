"""TOML configuration: loading, typed dataclass sections, ``--set`` overrides.

A config file is a TOML document whose top-level tables are *sections* (``[latent]``, ``[model]``,
``[train]``, ...). Each section is read into a typed dataclass with :func:`section_from_dict`, which
rejects unknown keys (suggesting the closest valid one) and values of the wrong type, so a typo never
silently falls back to a default. Numbers are checked where they are read, naming the key: every
float must be finite (TOML allows ``nan`` and ``inf``), every integer must fit in 64 bits, and every
key whose name ends in ``seed`` must be a seed in 0 … 2³²−1 (:mod:`linrep.limits`). Every room of the package declares its own section dataclass next
to the code that uses it (``LatentConfig`` in :mod:`linrep.latent.config`, ...).
"""

from __future__ import annotations

import ast
import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError, InputError, did_you_mean
from .limits import check_int64, check_seed

__all__ = ["load_toml", "section_from_dict", "apply_overrides", "parse_value", "check_sections"]

T = TypeVar("T")

MAX_CONFIG_BYTES = 16 * 2**20
"""A config file is a few kB; anything above this is the wrong file."""


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning I/O and syntax problems into one-line :class:`ConfigError` s."""
    from .io import read_text

    path = Path(path)
    try:
        text = read_text(path, "config file", max_bytes=MAX_CONFIG_BYTES)
    except InputError as e:
        raise ConfigError(f"{e}; pass the path of a .toml file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file '{path}' is not valid TOML: {e}; fix the syntax") from None
    except RecursionError:
        raise ConfigError(
            f"config file '{path}' nests tables or arrays too deeply; flatten it"
        ) from None


def check_sections(raw: Mapping[str, Any], allowed: Iterable[str], where: str = "config") -> None:
    """Reject top-level sections not in ``allowed`` (with a spelling suggestion)."""
    allowed = list(allowed)
    for key, value in raw.items():
        if key not in allowed:
            raise ConfigError(f"unknown section [{key}] in {where}{did_you_mean(key, allowed)}")
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{key}' in {where} must be a table ([{key}]), got {value!r}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` against the annotation ``tp`` (a small subset of typing)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(
            f"'{key}' = {value!r} has the wrong type; expected {' or '.join(_type_name(a) for a in args)}"
        )
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(
            f"'{key}' = {value!r} is not allowed{did_you_mean(str(value), [str(a) for a in args])}"
        )
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{key}' must be a list, got {value!r}")
        inner = args[0] if args else Any
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{key}' must be a table, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"'{key}' must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if not (isinstance(value, float) and value.is_integer()):
                raise ConfigError(f"'{key}' must be an integer, got {value!r}")
            value = int(value)
        if key.split(".")[-1].split("[")[0].endswith("seed"):
            return check_seed(value, key)
        return check_int64(value, key)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"'{key}' must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"'{key}' = {value!r} must be a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{key}' must be a string, got {value!r}")
        return value
    return value


def section_from_dict(cls: type[T], raw: Mapping[str, Any] | None, section: str) -> T:
    """Build dataclass ``cls`` from the table ``raw`` of section ``[section]``.

    Unknown keys raise a :class:`ConfigError` naming the section and the closest valid key; values are
    type-checked against the dataclass annotations. Cross-field checks belong in the dataclass's
    ``__post_init__`` (raise :class:`ConfigError` there too).
    """
    raw = dict(raw or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in raw:
        if key not in names:
            raise ConfigError(f"unknown key '{key}' in [{section}]{did_you_mean(key, names)}")
    kwargs = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in raw.items()}
    return cls(**kwargs)


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value: TOML/Python literal if possible (``1e-3``, ``[1, 2]``, ``true``), else str."""
    low = text.strip()
    if low in ("true", "false"):
        return low == "true"
    try:
        return tomllib.loads(f"v = {low}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    except RecursionError:
        raise ConfigError(f"--set value '{low[:40]}...' nests too deeply; flatten it") from None
    try:
        return ast.literal_eval(low)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def apply_overrides(
    raw: dict[str, Any], overrides: Iterable[str], known: Mapping[str, Iterable[str]]
) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (from ``--set``) to a raw config dict, in place.

    Args:
        raw: the parsed TOML document.
        overrides: strings like ``"train.lr=0.5"``.
        known: for each section, its valid keys (so a misspelt ``--set`` key fails loudly).

    Returns:
        ``raw``, modified.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"--set '{item}' must look like section.key=value (e.g. train.lr=0.5)"
            )
        path, value = item.split("=", 1)
        if "." not in path:
            raise ConfigError(
                f"--set '{item}' must name a section: section.key=value (e.g. train.lr=0.5)"
            )
        section, key = path.strip().split(".", 1)
        if section not in known:
            raise ConfigError(f"--set: unknown section '{section}'{did_you_mean(section, known)}")
        if key not in known[section]:
            raise ConfigError(
                f"--set: unknown key '{key}' in [{section}]{did_you_mean(key, known[section])}"
            )
        raw.setdefault(section, {})[key] = parse_value(value)
    return raw
