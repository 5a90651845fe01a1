"""The config schema language: Key, Table, ArrayOf and ConfigError, shared by config.py and each feature's section.

A feature module declares its own section with these (checklist, console, kiosk) without importing config.py,
which gathers the sections and validates a file against them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config problem, formatted as ``<file>: <key.path>: <what is wrong>``."""

    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


@dataclass(frozen=True)
class Key:
    """One scalar or list option. ``kind`` is str, int, float, bool, "path", "list[str]", "list[int]"."""

    kind: Any
    default: Any = None
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    required: bool = False
    check: Callable[[Any], str | None] | None = None  # returns a problem or None

    def validate(self, value: Any, where: Callable[[str], ConfigError], base_dir: Path) -> Any:
        kind = self.kind
        if kind in ("list[str]", "list[int]"):
            item_kind = str if kind == "list[str]" else int
            if not isinstance(value, list):
                raise where(f"must be a list, got {type_name(value)}")
            for i, item in enumerate(value):
                if not _is_kind(item, item_kind):
                    raise where(f"item {i} must be {item_kind.__name__}, got {type_name(item)}")
            result: Any = list(value)
        elif kind == "path":
            if not isinstance(value, str) or not value:
                raise where(f"must be a non-empty path string, got {type_name(value)}")
            result = resolve_path(value, base_dir)
        else:
            if not _is_kind(value, kind):
                raise where(f"must be {kind.__name__}, got {type_name(value)} {value!r}")
            result = float(value) if kind is float else value
        if self.choices is not None and result not in self.choices:
            raise where(f"must be one of {', '.join(repr(c) for c in self.choices)}, got {result!r}")
        if self.min is not None or self.max is not None:
            items = result if isinstance(result, list) else [result]
            for item in items:
                if (self.min is not None and item < self.min) or (self.max is not None and item > self.max):
                    raise where(f"must be {_fmt(self.min)}..{_fmt(self.max)}, got {_fmt(item)}")
        if self.pattern is not None and not re.fullmatch(self.pattern, result):
            raise where(f"must match {self.pattern}, got {result!r}")
        if self.check is not None and (problem := self.check(result)):
            raise where(problem)
        return result


@dataclass(frozen=True)
class Table:
    """A TOML table with a fixed set of keys; unknown keys are errors. Optional tables may be absent."""

    keys: dict[str, Any]
    optional: bool = False
    check: Callable[[dict[str, Any]], tuple[str, str] | None] | None = None  # -> (key, problem)
    # A device section: the value of its ``profile`` key adds (or re-defaults) that profile's own keys.
    variants: dict[str, dict[str, Any]] | None = None

    def keys_for(self, raw: dict[str, Any], where: Callable[[str], ConfigError], base_dir: Path) -> dict[str, Any]:
        """The keys this table accepts, given the raw values (the chosen profile's keys join the shared ones)."""
        if self.variants is None:
            return self.keys
        spec = self.keys["profile"]
        chosen = spec.validate(raw["profile"], where, base_dir) if "profile" in raw else spec.default
        return {**self.keys, **self.variants[chosen]}


@dataclass(frozen=True)
class ArrayOf:
    """An array of tables (``[[section]]``); ``default`` is used when the array is absent."""

    table: Table
    default: list[dict[str, Any]] = field(default_factory=list)
    unique: str | None = None  # a key whose values must be unique across the array


def _is_kind(value: Any, kind: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _fmt(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def resolve_path(value: str, base_dir: Path) -> str:
    """Expand ``~`` and make relative paths relative to the config file's folder (not the cwd)."""
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (base_dir / p).resolve())
