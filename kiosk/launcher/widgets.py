"""The launcher's widgets: whole-width buttons with big padded text, service tiles, the three faces."""

from __future__ import annotations

import textwrap
from typing import Any

from textual.app import ComposeResult, RenderResult
from textual.containers import Container, Horizontal
from textual.content import Content
from textual.geometry import Size
from textual.layout import Layout
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


CELL_W_PX, CELL_H_PX = 17.6, 35.0  # one cell of foot at the shipped font size: tiles are sized in pixels, not cells
MIN_TILE_W, MIN_TILE_H = 20, 3  # cells: "Assurance Maladie" on one line with a margin; a label between two rows
GUTTER_W, GUTTER_H = 2, 1
MAX_HINT_LINES = 3  # more is a wall of text under the name: the hint is shortened instead


def grid_shape(count: int, width: int, height: int) -> tuple[int, int]:
    """Columns and rows that show ``count`` tiles in ``width`` x ``height`` cells, each as big as can be.

    The shape whose tiles have the largest short side on the glass wins (a cell is twice as tall as it is wide),
    among those whose tiles keep a readable size; when none does (a very small terminal), the one that comes
    closest, so that every tile is still on the screen."""
    best: tuple[tuple[bool, float, int], tuple[int, int]] | None = None
    for columns in range(1, max(count, 1) + 1):
        rows = -(-max(count, 1) // columns)
        tile_w = (width - GUTTER_W * (columns - 1)) / columns
        tile_h = (height - GUTTER_H * (rows - 1)) / rows
        readable = tile_w >= MIN_TILE_W and tile_h >= MIN_TILE_H
        key = (readable, min(tile_w * CELL_W_PX, tile_h * CELL_H_PX), -columns)
        if best is None or key > best[0]:
            best = (key, (columns, rows))
    assert best is not None
    return best[1]


def tile_lines(label: str, hint: str, width: int, height: int) -> tuple[list[str], list[str]]:
    """The label whole (a word too long for the tile is split rather than lost), then as much of the hint as fits
    in ``height`` lines of ``width`` and MAX_HINT_LINES: all of it, or its first clauses ("Allocations familiales,
    aide au logement" -> "Allocations familiales") with no word cut, or nothing."""
    wrap_width = max(width, 1)
    label_lines = textwrap.wrap(label, wrap_width) or [""]
    clauses = [c.strip() for c in hint.split(",") if c.strip()]
    for keep in range(len(clauses), 0, -1):
        hint_lines = textwrap.wrap(", ".join(clauses[:keep]), wrap_width, break_long_words=False)
        fits = len(label_lines) + len(hint_lines) <= height and len(hint_lines) <= MAX_HINT_LINES
        if fits and all(len(line) <= wrap_width for line in hint_lines):
            return label_lines, hint_lines
    return label_lines, []


class ServiceTile(BigButton):
    """One service: its name in bold and, when there is room, a plain-words line under it."""

    DEFAULT_CSS = """
    ServiceTile {
        width: 1fr;
        height: 1fr;
        min-height: 3;
        padding: 0 1;
        content-align: center middle;
        text-align: center;
    }
    """

    def __init__(self, service: dict[str, Any], label: str, hint: str, *, usable: bool = True):
        super().__init__(label, id=f"service-{service['id']}")
        self.service_id = service["id"]
        self.service_label = label
        self.hint = hint
        self.disabled = not usable

    def worded(self) -> Content:
        """The tile's text for its current size: the name in bold, the plain words under it in regular weight (the
        eye finds the names first). Worded at each paint, so no frame shows a text for another size."""
        width = self.content_size.width - 2 * self.styles.line_pad  # Button pads each line by line-pad cells
        label, hint = tile_lines(self.service_label, self.hint, width, self.content_size.height)
        return Content.assemble(("\n".join(label), "bold"), *(["\n" + "\n".join(hint)] if hint else []))

    def render(self) -> RenderResult:
        return self.worded()


class ServiceGrid(Container):
    """Every service tile at once, in as many columns as make the tiles biggest: seniors do not scroll."""

    DEFAULT_CSS = f"""
    ServiceGrid {{
        layout: grid;
        grid-gutter: {GUTTER_H} {GUTTER_W};
        height: 1fr;
    }}
    """

    def __init__(self, *tiles: ServiceTile, id: str | None = None):
        super().__init__(*tiles, id=id)
        self.columns = 1
        self.shaped_for = Size(0, 0)  # the size the columns and rows were last chosen for

    def pre_layout(self, layout: Layout) -> None:
        # Shaped just before the tiles are placed, so that no frame shows them in the wrong number of columns.
        if self.size.area and self.size != self.shaped_for:
            self.shaped_for = self.size
            count = len(self.query(ServiceTile))
            self.columns, rows = grid_shape(count, self.size.width, self.size.height)
            self.styles.grid_size_columns = self.columns
            self.styles.grid_size_rows = rows


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
    Faces #skip {
        margin: 1 0 0 0;
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
