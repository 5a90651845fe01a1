"""Messages of the office app (Textual), as dataclasses in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message


@dataclass
class LinkChanged(Message):
    """The office's connection to the broker came up or went down."""

    connected: bool
    error: str | None = None


@dataclass
class CommandAnswered(Message):
    """A command's reply (or its failure to arrive)."""

    bus: str
    command: str
    reply: dict[str, Any] | None
    error: str | None = None


@dataclass
class CommandRequested(Message):
    """The user asked for a command on a bus (after confirmation for the ones that act)."""

    bus: str
    command: str
    args: dict[str, Any] = field(default_factory=dict)
