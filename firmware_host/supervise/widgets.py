"""Widgets of the office app: the fleet table (redrawn in batches, row by row), value and alarm panels, history."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Label, Sparkline

from .fleet import BusView, Fleet
from .i18n import Words

COLUMNS = ("bus", "status", "seen", "stop", "shore", "soc", "link", "backlog", "kiosk", "visitors", "alarms")
# Fixed widths (fits 140 columns): the layout does not jump as values change, and nothing is measured per update
# (Textual re-measures a whole column when an auto-width cell changes). Longer values end with an ellipsis.
WIDTHS = {
    "bus": 10,
    "status": 14,
    "seen": 11,
    "stop": 14,
    "shore": 7,
    "soc": 8,
    "link": 9,
    "backlog": 7,
    "kiosk": 10,
    "visitors": 9,
    "alarms": 20,
}
DASH = "—"


def seen_at(ts: float | None, now: float) -> str:
    """Clock time of the last message (date too when not today): stable text, so a row changes only on news."""
    if ts is None:
        return DASH
    when = dt.datetime.fromtimestamp(ts)
    if when.date() == dt.datetime.fromtimestamp(now).date():
        return when.strftime("%H:%M:%S")
    return when.strftime("%d/%m %H:%M")


def hhmm(ts: float | None, now: float) -> str:
    """A time of day (with the date when not today), for "since" texts."""
    if ts is None:
        return DASH
    when = dt.datetime.fromtimestamp(ts)
    today = when.date() == dt.datetime.fromtimestamp(now).date()
    return when.strftime("%H:%M" if today else "%d/%m %H:%M")


def status_text(view: BusView, words: Words, now: float) -> Text:
    """The bus's connection in a few words: a link that is merely down is said calmly, never as a fault."""
    state, since = view.connectivity(now)
    if state == "up":
        return Text(words("online"), style="green")
    if state == "down":
        return Text(words("link.down_since", since=hhmm(since, now)), style="yellow")
    if state == "silent":
        return Text(words("link.silent_since", since=hhmm(since, now)), style="bold red")
    return Text(words("unknown"))


def bars(value: Any) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        return ""
    level = max(0, min(5, value))
    return "▮" * level + "▯" * (5 - level)


def yes_no(words: Words, value: Any) -> str:
    return words("unknown") if value is None else words("yes") if value else words("no")


def kiosk_text(words: Words, view: BusView) -> str:
    if "kiosk" not in view.state:
        return DASH
    if view.value("kiosk", "locked"):
        return words("value.locked")
    is_open = view.value("kiosk", "open")
    return words("unknown") if is_open is None else words("open") if is_open else words("closed")


def row_cells(view: BusView, words: Words, now: float) -> tuple[Any, ...]:
    """The fleet table's cells for one bus; problems in colour so they can be seen from across the room."""
    problems = view.problems(now)
    status = status_text(view, words, now)
    soc = view.value("power", "soc")
    soc_text = Text(f"{soc:.0f} %" if isinstance(soc, (int, float)) else DASH)
    if "low_soc" in problems:
        soc_text.stylize("bold red")
    link = view.value("modem", "link")
    signal = bars(view.value("modem", "signal_bars"))
    link_text = Text(DASH if link is None else f"{words('up') if link == 'up' else words('down')} {signal}".strip())
    if link not in (None, "up"):
        link_text.stylize("yellow")
    visitors = view.visitors_today(now)
    if visitors is None:  # no summary from the bus today: its kiosk's own count, if it has a kiosk
        visitors = view.value("kiosk", "sessions_today")
    backlog = view.backlog()
    alarms = view.alarms
    worst = view.worst_severity
    if alarms:
        alarm_text = Text(f"{len(alarms)} · {words('alarm.' + worst) if worst else ''}".rstrip(" ·"))
        alarm_text.stylize("bold red" if worst in ("critical", "alarm") else "yellow")
    elif "stale" in problems:
        alarm_text = Text(words("stale"), style="yellow")
    else:
        alarm_text = Text(DASH)
    return (
        Text(view.id, style="bold"),
        status,
        seen_at(view.last_seen, now),
        view.stop or DASH,
        yes_no(words, view.value("shore", "connected")) if "shore" in view.state else DASH,
        soc_text,
        link_text,
        Text(str(backlog)) if backlog else Text(DASH),
        kiosk_text(words, view),
        str(visitors) if isinstance(visitors, int) else DASH,
        alarm_text,
    )


class FleetTable(DataTable):
    """One row per bus, problems first. ``sync()`` folds in what changed since the last call: new buses are added,
    changed cells updated in place, and the rows re-sorted (a re-index, not a rebuild) when the order changed."""

    DEFAULT_CSS = """
    FleetTable { height: 1fr; }
    """

    def __init__(self, fleet: Fleet, words: Words, *, clock: Callable[[], float] = time.time, **kwargs: Any):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.fleet = fleet
        self.words = words
        self.clock = clock
        self.syncs = 0
        self.reorders = 0
        self.rows_added = 0
        self.cell_updates = 0
        self._order: list[str] = []
        self._cells: dict[str, tuple[Any, ...]] = {}

    def on_mount(self) -> None:
        self.set_columns()

    def set_columns(self) -> None:
        """(Re)build the table from scratch: at start and when the language changes."""
        self.clear(columns=True)
        for key in COLUMNS:
            self.add_column(self.words(f"col.{key}"), key=key, width=WIDTHS[key])
        self._order, self._cells = [], {}
        self.sync(force=True)

    @property
    def selected_bus(self) -> str | None:
        if self.row_count == 0 or not 0 <= self.cursor_row < self.row_count:
            return None
        return self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value

    def sync(self, *, force: bool = False) -> bool:
        """Bring the table up to date; returns True if anything was redrawn."""
        dirty = self.fleet.take_dirty()
        if force:
            dirty |= set(self.fleet.buses)
        if not dirty:
            return False
        self.syncs += 1
        now = self.clock()
        selected = self.selected_bus
        for bus in sorted(dirty):
            cells = row_cells(self.fleet.buses[bus], self.words, now)
            old = self._cells.get(bus)
            if old is None:
                self.add_row(*cells, key=bus)
                self.rows_added += 1
            else:
                for key, new_value, old_value in zip(COLUMNS, cells, old, strict=True):
                    if new_value != old_value:
                        self.update_cell(bus, key, new_value)
                        self.cell_updates += 1
            self._cells[bus] = cells
        order = self.fleet.order()
        if order != self._order:
            position = {bus: i for i, bus in enumerate(order)}
            self.sort("bus", key=lambda cell: position[cell.plain])
            self._order = order
            self.reorders += 1
            if selected is not None:
                self.move_cursor(row=position[selected], animate=False)  # the cursor stays on its bus
        return True


class Panel(Vertical):
    """A titled box around its children."""

    DEFAULT_CSS = """
    Panel { border: round $primary; height: auto; padding: 0 1; }
    Panel > .panel-title { text-style: bold; }
    """

    def __init__(self, title: str, *children: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.title_label = Label(title, classes="panel-title")
        self.children_to_mount = children

    def compose(self) -> ComposeResult:
        yield self.title_label
        yield from self.children_to_mount


class HistoryChart(Vertical):
    """A sparkline of one metric's per-bucket means, with its range."""

    DEFAULT_CSS = """
    HistoryChart { height: auto; }
    HistoryChart Sparkline { height: 3; }
    """

    def __init__(self, label: str, unit: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.label_text = label
        self.unit = unit
        self.caption = Label(label)
        self.spark = Sparkline([], summary_function=max)

    def compose(self) -> ComposeResult:
        yield self.caption
        yield self.spark

    def show(self, series: list[tuple[int, list[float] | None]], empty_text: str) -> None:
        means = [agg[2] for _minute, agg in series if agg]
        self.spark.data = means
        if not means:
            self.caption.update(f"{self.label_text}: {empty_text}")
        else:
            low, high, last = min(means), max(means), means[-1]
            self.caption.update(
                f"{self.label_text}: {last:.1f} {self.unit}  (min {low:.1f}, max {high:.1f}, {len(means)} points)"
            )
