"""The ``[checklist]`` config section: the schedule file and the arrival and departure steps."""

from __future__ import annotations

from typing import Any

from ..conditions import condition_problem
from ..schema import ArrayOf, Key, Table
from .steps import DEFAULT_ARRIVAL, DEFAULT_DEPARTURE


def _step_check(step: dict[str, Any]) -> tuple[str, str] | None:
    if step["kind"] == "auto" and step["condition"] is None:
        return "condition", 'is required for kind = "auto" (e.g. condition = "shore.connected")'
    if step["kind"] == "manual" and step["condition"] is not None:
        return "condition", 'only auto steps have a condition (set kind = "auto")'
    return None


def _not_blank(value: str) -> str | None:
    return "must not be blank" if not value.strip() else None


def checklist_schema() -> Any:
    """The ``[checklist]`` section for config.SCHEMA (optional: no console checklist without it)."""
    text = {"fr": Key(str, required=True, check=_not_blank), "en": Key(str, None)}
    step = Table(
        {
            "id": Key(str, required=True, pattern=r"[a-z][a-z0-9_]{0,39}"),
            "label": Table(text),
            "kind": Key(str, "manual", choices=("manual", "auto")),
            "condition": Key(str, None, check=condition_problem),
            "required": Key(bool, True),
            "help": Table({"fr": Key(str, ""), "en": Key(str, None)}, optional=True),
        },
        check=_step_check,
    )
    return Table(
        {
            "schedule": Key("path", None),
            "arrival": ArrayOf(step, default=DEFAULT_ARRIVAL, unique="id"),
            "departure": ArrayOf(step, default=DEFAULT_DEPARTURE, unique="id"),
        },
        optional=True,
    )
