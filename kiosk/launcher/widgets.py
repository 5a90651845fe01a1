"""The launcher's widgets: whole-width buttons with big padded text, service tiles, the three faces."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Static


class BigButton(Button):
    """A whole-width target, several rows tall: easy to hit with a finger or a shaky mouse."""

    DEFAULT_CSS = """
    BigButton {
        width: 100%;
        height: auto;
        min-height: 5;
        padding: 1 2;
        margin: 1 0 0 0;
        text-style: bold;
        border: none;
    }
    """


class ServiceTile(BigButton):
    """One service: its name in bold and a plain-words line under it."""

    DEFAULT_CSS = """
    ServiceTile {
        min-height: 5;
        content-align: left middle;
        text-align: left;
    }
    ServiceTile.-unusable {
        text-style: none;
    }
    """

    def __init__(self, service: dict[str, Any], label: str, hint: str, *, usable: bool = True):
        text = f"{label}\n{hint}" if hint else label
        super().__init__(text, id=f"service-{service['id']}", classes="" if usable else "-unusable")
        self.service_id = service["id"]
        self.disabled = not usable


class Faces(Horizontal):
    """The one-tap satisfaction question: three faces and "Passer" in one row, each a big target."""

    DEFAULT_CSS = """
    Faces {
        height: auto;
        width: 100%;
    }
    Faces BigButton {
        width: 1fr;
        margin: 1 1 0 0;
    }
    """

    def __init__(self, labels: dict[str, str], skip: str):
        super().__init__(id="faces")
        self.labels = labels
        self.skip = skip

    def compose(self) -> ComposeResult:
        for rating, label in self.labels.items():
            yield BigButton(label, id=f"face-{rating}", classes="face")
        yield BigButton(self.skip, id="skip", classes="secondary")


class Title(Static):
    DEFAULT_CSS = """
    Title {
        width: 100%;
        text-style: bold;
        content-align: center middle;
        text-align: center;
        padding: 1 0;
    }
    """


class Notice(Static):
    """A sentence to read: plain, wrapped, centred."""

    DEFAULT_CSS = """
    Notice {
        width: 100%;
        text-align: center;
        padding: 1 2;
    }
    """
