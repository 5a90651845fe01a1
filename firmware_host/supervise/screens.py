"""Screens of the office app: the fleet, one bus in detail, and the confirmation before a command that acts."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Label, RichLog, Select, Static

from .fleet import BusView, CommandFailed
from .messages import CommandAnswered, CommandRequested
from .widgets import DASH, FleetTable, HistoryChart, Panel, bars, hhmm, kiosk_text, seen_at, status_text, yes_no

if TYPE_CHECKING:
    from .app import SuperviseApp

# Each screen is given the office app it shows (the fleet, the link, its words) when it is made.
REFRESH_S = 0.5  # the screens redraw at most this often, however many messages arrive
HISTORY_HOURS = 8
ACTING = ("kiosk.lock", "kiosk.unlock", "kiosk.end_session", "inverter.mode")  # asked twice before sending
MODES = ("on", "off", "charger_only", "inverter_only")
BUTTONS = ("ping", "refresh", "kiosk.lock", "kiosk.unlock", "kiosk.end_session", "inverter.mode")


def button_id(command: str) -> str:
    return "cmd-" + command.replace(".", "-")


class FleetScreen(Screen):
    """Every bus seen, problems first."""

    BINDINGS = [
        Binding("l", "app.toggle_language", "FR/EN"),
        Binding("q", "app.quit", "Quitter"),
    ]

    def __init__(self, office: SuperviseApp):
        super().__init__()
        self.office = office

    def compose(self) -> ComposeResult:
        app = self.office
        yield Label(app.words("title"), id="title")
        yield FleetTable(app.fleet, app.words, clock=app.clock, id="fleet")
        yield Label("", id="status")
        yield Label(app.words("help.fleet"), id="help")

    def on_mount(self) -> None:
        self.set_interval(REFRESH_S, self.tick)
        self.tick()

    @property
    def table(self) -> FleetTable:
        return self.query_one(FleetTable)

    def tick(self) -> None:
        self.table.sync()
        self.show_status()

    def show_status(self) -> None:
        app = self.office
        link = app.link
        w = app.words
        if link.connected:
            now = app.clock()
            problems = sum(1 for v in app.fleet.buses.values() if v.rank(now) > 5)
            text = w("broker.connected", address=link.options.address, buses=len(app.fleet.buses), problems=problems)
        elif link.error:
            text = w("broker.lost", error=link.error)
        else:
            text = w("broker.connecting", address=link.options.address)
        if app.fleet.errors:
            text += f"  ·  {app.fleet.errors[-1]}"
        self.query_one("#status", Label).update(text)

    def relabel(self) -> None:
        app = self.office
        self.query_one("#title", Label).update(app.words("title"))
        self.query_one("#help", Label).update(app.words("help.fleet"))
        self.table.set_columns()
        self.show_status()

    @on(DataTable.RowSelected)
    def open_bus(self, event: DataTable.RowSelected) -> None:
        bus = event.row_key.value
        if bus is not None:
            self.office.push_screen(BusScreen(self.office, bus))


class ConfirmScreen(ModalScreen[bool]):
    """ "Lock the kiosk on bus-03?" with two big buttons: a remote action is never one stray key press away."""

    BINDINGS = [Binding("escape", "cancel", "Annuler")]

    def __init__(self, question: str, yes: str, no: str):
        super().__init__()
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Label(self.question, id="question")
            with Horizontal(id="confirm-buttons"):
                yield Button(self.yes, id="yes", variant="warning")
                yield Button(self.no, id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def answer(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_cancel(self) -> None:
        self.dismiss(False)


class BusScreen(Screen):
    """One bus: its values, alarms, recent events, 8 hours of battery history, and the commands."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Retour"),
        Binding("p", "command('ping')", "Ping"),
        Binding("r", "command('refresh')", "Rafraîchir"),
    ]

    def __init__(self, office: SuperviseApp, bus_id: str):
        super().__init__()
        self.office = office
        self.bus_id = bus_id
        self._shown_version = -1
        self.replies: list[str] = []

    @property
    def view(self) -> BusView:
        app = self.office
        return app.fleet.bus(self.bus_id)

    def compose(self) -> ComposeResult:
        w = self.office.words
        yield Label(w("detail.title", bus=self.bus_id), id="bus-title")
        with Horizontal(id="detail"):
            with VerticalScroll(id="left"):
                yield Panel(w("detail.today"), Static(id="today"))
                yield Panel(w("detail.values"), Static(id="values"))
                yield Panel(w("detail.alarms"), Static(id="alarms"))
                yield Panel(w("detail.events"), Static(id="events"))
            with VerticalScroll(id="right"):
                yield Panel(
                    w("detail.history"),
                    Static(w("detail.loading"), id="history-note"),
                    HistoryChart(w("value.soc"), "%", id="chart-soc"),
                    HistoryChart(w("value.battery_v"), "V", id="chart-battery"),
                )
                yield Panel(w("detail.replies"), RichLog(id="replies", max_lines=50, wrap=True))
        with Horizontal(id="commands"):
            for name in BUTTONS:
                if name == "inverter.mode":
                    yield Select(
                        [(w(f"mode.{m}"), m) for m in MODES], prompt=w("cmd.inverter.mode"), id="mode", allow_blank=True
                    )
                yield Button(w("cmd.apply_mode" if name == "inverter.mode" else f"cmd.{name}"), id=button_id(name))
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(REFRESH_S, self.redraw)
        self.redraw()
        self.load_history()

    # --- drawing ---

    def redraw(self) -> None:
        view = self.view
        if view.version == self._shown_version:
            return
        self._shown_version = view.version
        app = self.office
        w = app.words
        now = app.clock()
        status = status_text(view, w, now).plain
        seen = f"{w('col.seen')} {seen_at(view.last_seen, now)}"
        self.query_one("#bus-title", Label).update(f"{w('detail.title', bus=self.bus_id)}  ·  {status}  ·  {seen}")
        self.query_one("#today", Static).update(self.today_text(view, now))
        self.query_one("#values", Static).update(self.values_text(view))
        alarms = view.alarms
        self.query_one("#alarms", Static).update(
            "\n".join(f"{a.get('severity', '?'):<9} {a.get('id', '?')}: {a.get('message', '')}" for a in alarms)
            or w("no_alarm")
        )
        events = list(view.events)[-12:]
        self.query_one("#events", Static).update(
            "\n".join(self.event_line(e) for e in reversed(events)) or w("detail.no_events")
        )

    def today_text(self, view: BusView, now: float) -> str:
        """The link (why the bus is quiet, what it still has to send) and today's stops with their visitors."""
        w = self.office.words
        state, since = view.connectivity(now)
        lines = [f"{w('value.link')} : {w(f'link.{state}_detail', since=hhmm(since, now))}" if state != "unknown"
                 else f"{w('value.link')} : {w('unknown')}"]  # fmt: skip
        down_since = view.link.get("down_since")
        if state == "up" and isinstance(down_since, (int, float)):
            lines.append(w("link.outage", since=hhmm(down_since, now)))
        backlog = view.backlog()
        if backlog:
            lines.append(w("link.backlog", count=backlog))
        stops = view.today(now)
        if not stops:
            lines.append(w("detail.no_day"))
            return "\n".join(lines)
        for stop in stops:
            planned = stop["planned"] or w("today.unplanned")
            reached = w("today.reached", at=hhmm(stop["at"], now)) if stop["at"] else w("today.not_reached")
            commune = stop["label"] if len(stop["label"]) <= 22 else stop["label"][:21] + "…"
            lines.append(f"{planned:<11}  {commune:<22}  {reached:<12}  {w('today.visitors', count=stop['visitors'])}")
        lines.append(w("today.total", count=view.visitors_today(now) or 0))
        return "\n".join(lines)

    def values_text(self, view: BusView) -> str:
        w = self.office.words
        soc, volts = view.value("power", "soc"), view.value("power", "battery_v")
        link = view.value("modem", "link")
        stowed = view.value("vehicle", "antenna_stowed")
        rows = [
            (w("value.stop"), view.stop or DASH),
            (w("value.soc"), f"{soc:.0f} %" if isinstance(soc, (int, float)) else DASH),
            (w("value.battery_v"), f"{volts:.2f} V" if isinstance(volts, (int, float)) else DASH),
            (w("value.shore"), yes_no(w, view.value("shore", "connected"))),
            (w("value.link"), DASH if link is None else w("up") if link == "up" else w("down")),
            (w("value.bars"), bars(view.value("modem", "signal_bars")) or DASH),
            (w("value.ignition"), yes_no(w, view.value("vehicle", "ignition"))),
            (
                w("value.antenna"),
                DASH if stowed is None else w("value.stowed") if stowed else w("value.raised"),
            ),
            (w("value.kiosk"), kiosk_text(w, view)),
            (w("value.sessions"), str(view.value("kiosk", "sessions_today") or DASH)),
        ]
        return "\n".join(f"{label:<22} {value}" for label, value in rows)

    @staticmethod
    def event_line(event: dict[str, Any]) -> str:
        ts = event.get("ts")
        when = dt.datetime.fromtimestamp(ts).strftime("%H:%M:%S") if isinstance(ts, (int, float)) else "--:--:--"
        mark = "" if event.get("clock_synced") else "~"  # the bus's clock was not synced: the time is a guess
        extra = {k: v for k, v in event.items() if k not in ("seq", "ts", "clock_synced", "type")}
        detail = json.dumps(extra, ensure_ascii=False)[:60] if extra else ""
        return f"{event.get('seq', '?'):>6} {mark}{when} {event.get('type', '?')} {detail}"

    # --- history ---

    @work(exclusive=True, group="history")
    async def load_history(self) -> None:
        app = self.office
        w = app.words
        note = self.query_one("#history-note", Static)
        end = time.time()
        try:
            series = await app.link.history(
                self.bus_id, ["power.soc", "power.battery_v"], end - HISTORY_HOURS * 3600, end, step_min=5
            )
        except CommandFailed as exc:
            note.update(str(exc))
            return
        note.update("")
        self.query_one("#chart-soc", HistoryChart).show(series["power.soc"], w("detail.no_history"))
        self.query_one("#chart-battery", HistoryChart).show(series["power.battery_v"], w("detail.no_history"))

    # --- commands ---

    @on(Button.Pressed, "#commands Button")
    def pressed(self, event: Button.Pressed) -> None:
        by_id = {button_id(name): name for name in BUTTONS}
        name = by_id.get(event.button.id or "")
        if name is not None:
            self.action_command(name)

    def action_command(self, name: str) -> None:
        args: dict[str, Any] = {}
        if name == "inverter.mode":
            mode = self.query_one("#mode", Select).value
            if mode is Select.BLANK or mode is None:
                self.query_one("#mode", Select).focus()  # a mode must be chosen first
                return
            args = {"mode": mode}
        if name in ACTING:
            w = self.office.words
            question = w("confirm.question", command=w(f"cmd.{name}"), bus=self.bus_id)

            def confirmed(yes: bool | None) -> None:
                if yes:
                    self.post_message(CommandRequested(self.bus_id, name, args))

            self.office.push_screen(ConfirmScreen(question, w("confirm.yes"), w("confirm.no")), confirmed)
        else:
            self.post_message(CommandRequested(self.bus_id, name, args))

    @on(CommandRequested)
    def send(self, message: CommandRequested) -> None:
        self.log_reply(self.office.words("cmd.sent", command=message.command))
        self.run_command(message.command, message.args)

    @work(group="commands")
    async def run_command(self, name: str, args: dict[str, Any]) -> None:
        app = self.office
        try:
            reply = await app.link.command(self.bus_id, name, args)
        except CommandFailed as exc:
            self.post_message(CommandAnswered(self.bus_id, name, None, str(exc)))
        else:
            self.post_message(CommandAnswered(self.bus_id, name, reply))

    @on(CommandAnswered)
    def answered(self, message: CommandAnswered) -> None:
        w = self.office.words
        if message.reply is None:
            self.log_reply(w("cmd.failed", command=message.command, error=message.error))
        elif message.reply.get("ok"):
            self.log_reply(w("cmd.ok", command=message.command))
            if message.command == "refresh":
                self.load_history()
        else:
            self.log_reply(w("cmd.refused", command=message.command, error=message.reply.get("error")))

    def log_reply(self, text: str) -> None:
        self.replies.append(text)
        self.query_one("#replies", RichLog).write(f"{time.strftime('%H:%M:%S')}  {text}")
