"""Messages of the console app, as dataclasses: what the controller link and the widgets tell the app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class Connected(Message):
    """The link (re)connected; ``snapshot`` is the whole state model."""

    snapshot: dict[str, Any]


@dataclass
class Disconnected(Message):
    """The controller went away (restart, crash); the link retries by itself."""

    reason: str  # one of link.DOWN_REASONS
    detail: str  # the technical text (English), for the technical details only


@dataclass
class StateChanged(Message):
    """One component changed; ``values`` is its whole dict."""

    component: str
    values: dict[str, Any]


@dataclass
class StepChosen(Message):
    """The driver ticked or unticked a step row."""

    step_id: str


@dataclass
class StopChosen(Message):
    """The driver confirmed a stop: a schedule key, or a typed unscheduled stop."""

    stop: str | dict[str, Any]


@dataclass
class AlarmChosen(Message):
    """The driver acknowledged one alarm from its row."""

    alarm_id: str
