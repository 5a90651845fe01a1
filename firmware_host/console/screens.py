"""The console's screens: login/lock, the main screen (road, checklist, open), override, unscheduled stop, interlock."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Container, Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import Button, Input, Static

from ..tour import unscheduled_stop
from .messages import StopChosen
from .widgets import MODE_NAMES, AlarmRow, KeyBar, StatusBar, StepRow

if TYPE_CHECKING:
    from .app import ConsoleApp


# Every screen and view is given the console it shows (its state, its words in ``console_app.i18n``, its
# commands) when it is made: none reaches for ``self.app``, whose type Textual does not know.
#
# The app tells screens of news (state, alarms, the language) as it comes, and news can land between the push of a
# screen and the making of its widgets (under load, or the moment the idle lock pushes the login screen). So every
# method the app calls on a screen does nothing while the widgets are not there, and each screen builds itself
# from the console's current state when it is composed: it never misses what came in between.


def composed(node: Widget) -> bool:
    """Its widgets are there: false from the push or mount until compose has made them (true in on_mount)."""
    return bool(node.children)


# --- login and lock --------------------------------------------------------------------------------------------


class LoginScreen(Screen):
    """Who is driving (it signs the ticked steps), and the PIN when the console has one."""

    BINDINGS = [Binding("f2", "app.toggle_language", "English/Français")]

    def __init__(self, console: ConsoleApp, **kwargs: Any):
        super().__init__(**kwargs)
        self.console_app = console
        self.name_value: str | None = None  # the name field's text when (re)composed; None: the last driver

    def compose(self) -> ComposeResult:
        c = self.console_app
        t = c.i18n.t
        name = self.name_value if self.name_value is not None else (c.driver or c.last_driver or "")
        with Center(id="login-box"):
            yield Static(Content(f"{t('login.title')} - {c.vehicle_name}"), id="login-title")
            yield Static(t("login.name"), classes="field-label")
            yield Input(value=name, id="name", max_length=64)
            if c.pin is not None:
                yield Static(t("login.pin"), classes="field-label")
                yield Input(password=True, id="pin", max_length=8, restrict=r"[0-9]*")
            yield Static("", id="login-error")
            with Horizontal(classes="actions"):
                yield Button(t("login.go"), id="login-go", variant="primary")
                yield Button(t("lang.switch"), id="login-lang")
        yield KeyBar("keys.login", self.console_app.i18n)

    def on_mount(self) -> None:
        name = self.query_one("#name", Input)
        if name.value and self.console_app.pin is not None:
            self.query_one("#pin", Input).focus()
        else:
            name.focus()

    def offer_name(self, name: str | None) -> None:
        """The controller told us the last driver: prefill, unless the driver already typed something (kept for
        compose when the field is not made yet)."""
        if not name:
            return
        fields = list(self.query("#name").results(Input))
        for field in fields:
            if not field.value:
                field.value = name
        if not fields and not self.name_value:
            self.name_value = name

    @on(Input.Submitted)
    @on(Button.Pressed, "#login-go")
    def submit(self, event: Any) -> None:
        if isinstance(event, Input.Submitted) and event.input.id == "name" and self.console_app.pin is not None:
            self.query_one("#pin", Input).focus()
            return
        c = self.console_app
        error = self.query_one("#login-error", Static)
        name = " ".join(self.query_one("#name", Input).value.split())
        if not name:
            error.update(c.i18n.t("login.need_name"))
            self.query_one("#name", Input).focus()
            return
        if c.pin is not None:
            pin_field = self.query_one("#pin", Input)
            wait = c.pin.wait_s()
            if wait > 0:
                pin_field.value = ""
                error.update(c.i18n.t("login.wait", seconds=math.ceil(wait)))
                return
            if not c.pin.check(pin_field.value):
                pin_field.value = ""
                wait = c.pin.wait_s()
                error.update(c.i18n.t("login.wait", seconds=math.ceil(wait)) if wait > 0 else c.i18n.t("login.bad_pin"))
                pin_field.focus()
                return
        c.logged_in(name)

    @on(Button.Pressed, "#login-lang")
    def switch_language(self) -> None:
        self.console_app.action_toggle_language()

    def relabel(self) -> None:
        for field in self.query("#name").results(Input):
            self.name_value = field.value  # what the driver typed (or cleared) survives the new words
        self.refresh(recompose=True)


# --- the main screen ---------------------------------------------------------------------------------------------


class RoadView(Vertical):
    """On the road: the day's stops from the schedule; pressing one confirms the arrival there."""

    def __init__(self, console: ConsoleApp, **kwargs: Any):
        super().__init__(**kwargs)
        self.console_app = console

    def compose(self) -> ComposeResult:
        c = self.console_app
        t = c.i18n.t
        tour = c.tour or {}
        stops = tour.get("stops", [])
        yield Static(t("road.title"), classes="title")
        day = Text(t("road.today", date=c.i18n.date(tour["date"])) if tour.get("date") else "", "bold")
        if tour and not tour.get("clock_synced", True):
            day.append("   " + t("road.clock"), "bold yellow")
        errors = (tour.get("schedule") or {}).get("errors") or []
        if errors:
            day.append("\n" + t("road.errors", n=len(errors)), "yellow")  # the rows themselves: allervers tour
        yield Static(day, id="road-day")
        with VerticalScroll(id="stops"):
            if not (tour.get("schedule") or {}).get("path"):
                yield Static(t("road.no_schedule"), classes="note")
            elif not stops:
                yield Static(t("road.none"), classes="note")
            for i, stop in enumerate(stops):
                label = f"{stop['arrive']}-{stop['depart']}  {stop['commune']}"
                if stop.get("place"):
                    label += f", {stop['place']}"
                if stop["key"] == tour.get("suggested"):
                    label += f"   ({t('road.suggested')})"
                elif stop.get("visited"):
                    label += f"   ({t('road.visited')})"
                classes = "stop" + (" suggested" if stop["key"] == tour.get("suggested") else "")
                yield Button(Content(label), id=f"stop-{i}", classes=classes)
        yield Static("", id="stop-detail")
        with Horizontal(classes="actions"):
            yield Button(t("road.prev_day"), id="prev-day")
            yield Button(t("road.next_day"), id="next-day")
            yield Button(t("road.other"), id="other-stop", variant="primary")

    def on_mount(self) -> None:
        c = self.console_app
        refocus, c.refocus = c.refocus, None
        # Browsing days: stay on the button pressed; else the suggested stop, the first one, "another stop".
        for selector in (f"#{refocus}" if refocus else "", ".suggested", ".stop", "#other-stop"):
            if selector and (found := self.query(selector)):
                found.first().focus()
                return

    def _stop(self, button_id: str | None) -> dict[str, Any] | None:
        if not button_id or not button_id.startswith("stop-"):
            return None
        stops = (self.console_app.tour or {}).get("stops", [])
        index = int(button_id.removeprefix("stop-"))
        return stops[index] if index < len(stops) else None

    def on_descendant_focus(self, event: Any) -> None:
        stop = self._stop(getattr(event.widget, "id", None))
        detail = self.query_one("#stop-detail", Static)
        if stop and stop.get("contact"):
            detail.update(Content(self.console_app.i18n.t("road.contact", contact=stop["contact"])))
        else:
            detail.update("")

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        event.stop()
        button_id = event.button.id or ""
        stop = self._stop(button_id)
        if stop is not None:
            self.post_message(StopChosen(stop["key"]))
        elif button_id == "prev-day":
            self.console_app.shift_day(-1)
        elif button_id == "next-day":
            self.console_app.shift_day(1)
        elif button_id == "other-stop":
            self.console_app.ask_unscheduled_stop()


class ChecklistView(Vertical):
    """An arrival or departure run: the steps, live, and the big button that ends it."""

    def __init__(self, console: ConsoleApp, status: dict[str, Any]):
        super().__init__()
        self.console_app = console
        self.run_status = status
        self.was_pending = False

    def compose(self) -> ComposeResult:
        c = self.console_app
        t = c.i18n.t
        run = self.run_status["run"]
        stop = self.run_status.get("stop") or {}
        where = stop.get("commune", "?") + (f" ({stop['place']})" if stop.get("place") else "")
        yield Static(Content(t(f"run.{run['kind']}", where=where)), classes="title")
        yield Static("", id="summary")
        with VerticalScroll(id="steps"):
            for step in run["steps"]:
                yield StepRow(step, c.i18n)
        with Horizontal(classes="actions"):
            yield Button(t(f"run.finish.{run['kind']}"), id="finish", variant="success")
            if run["kind"] == "arrival":
                yield Button(t("run.change_stop"), id="change-stop")
            yield Button(t(f"run.cancel.{run['kind']}"), id="cancel-run", variant="error")

    def on_mount(self) -> None:
        self.show(self.run_status)
        rows = list(self.query(StepRow))
        first = next((r for r in rows if not r.step["done"]), None)
        (first or self.query_one("#finish", Button)).focus()

    def show(self, status: dict[str, Any]) -> None:
        self.run_status = status
        if not composed(self):
            return  # on_mount shows the latest
        run = status["run"]
        for step in run["steps"]:
            for row in self.query(f"#step-{step['id']}").results(StepRow):
                row.show(step)
        t = self.console_app.i18n.t
        pending = run["pending_required"]
        summary = self.query_one("#summary", Static)
        if pending:
            summary.update(Text(t("run.pending", n=len(pending)), "bold yellow"))
        else:
            summary.update(Text(t("run.ready"), "bold green"))
        finish = self.query_one("#finish", Button)
        finish.variant = "success" if not pending else "warning"
        if self.was_pending and not pending and isinstance(self.app.focused, StepRow):
            finish.focus()  # the driver ticked the last step: Enter now ends the list
        self.was_pending = bool(pending)

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        event.stop()
        c = self.console_app
        if event.button.id == "finish":
            c.finish_run()
        elif event.button.id == "change-stop":
            c.change_stop()
        elif event.button.id == "cancel-run":
            c.cancel_run()


class OpenView(Vertical):
    """Open to the public: where, the public terminal, and the way out (closing, then the departure list)."""

    def __init__(self, console: ConsoleApp, **kwargs: Any):
        super().__init__(**kwargs)
        self.console_app = console

    def compose(self) -> ComposeResult:
        c = self.console_app
        t = c.i18n.t
        stop = (c.status or {}).get("stop") or {}
        where = stop.get("commune", "?") + (f" ({stop['place']})" if stop.get("place") else "")
        yield Static(Content(t("open.title", where=where)), classes="title")
        planned = next((s for s in (c.tour or {}).get("stops", []) if s["key"] == stop.get("key")), None)
        lines = []
        if planned is not None and planned.get("depart"):
            lines.append(t("open.until", time=planned["depart"]))
        if planned is not None and planned.get("contact"):
            lines.append(t("road.contact", contact=planned["contact"]))
        yield Static(Content("\n".join(lines)), id="open-info", classes="info")
        note = ""
        if c.kiosk_outcome == "not_configured":
            note = t("open.kiosk_none")
        elif c.kiosk_outcome == "error":
            note = t("open.kiosk_error")
        yield Static(Content(note), id="kiosk-note", classes="info")
        with Horizontal(classes="actions"):
            yield Button(t("open.close"), id="close-open", variant="primary")
            if c.kiosk_outcome == "error":
                yield Button(t("open.kiosk_retry"), id="kiosk-retry")

    def on_mount(self) -> None:
        self.query_one("#close-open", Button).focus()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "close-open":
            self.console_app.start_departure()
        elif event.button.id == "kiosk-retry":
            self.console_app.retry_kiosk()


class NoteView(Vertical):
    """A plain message in place of the body (no checklist configured, controller unreachable)."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        yield Static(Content(self.text), classes="note")


class MainScreen(Screen):
    """The header, a banner for link trouble, and the body of the current phase."""

    BINDINGS = [
        Binding("f2", "app.toggle_language", show=False),
        Binding("f4", "app.show_alarms", show=False),
        Binding("f5", "app.reload", show=False),
        Binding("f9", "app.lock", show=False),
    ]

    def __init__(self, console: ConsoleApp) -> None:
        super().__init__()
        self.console_app = console
        self.body_key: tuple[Any, ...] | None = None
        self.body_lock = asyncio.Lock()  # the app and its workers redraw the body: one swap at a time

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Static("", id="banner")
        yield Container(id="body")
        yield KeyBar("keys.main", self.console_app.i18n)

    async def on_mount(self) -> None:
        self.show_header()
        await self.show_body()

    async def on_screen_resume(self) -> None:
        self.show_header()  # back from the login, a dialog or the interlock warning: catch up
        await self.show_body()

    def show_header(self) -> None:
        bars = self.query(StatusBar)
        if not bars:
            return  # messages may arrive before the screen is composed: on_mount catches up
        c = self.console_app
        bars.first().show(c.snapshot, c.i18n, stale_s=c.stale_for_s())
        self.query_one(KeyBar).relabel()
        banner = self.query_one("#banner", Static)
        banner.update(Content(c.banner or ""))
        banner.display = bool(c.banner)

    def _body_for(self) -> tuple[tuple[Any, ...], Any]:
        c = self.console_app
        lang = c.i18n.language
        if c.no_checklist:
            return ("none", lang), NoteView(c.i18n.t("no_checklist"))
        status = c.status
        if status is None:
            return ("wait", lang, c.banner), NoteView(c.banner or c.i18n.t("link.connecting"))
        phase = status["phase"]
        if status.get("run"):
            return ("run", status["run"]["id"], lang, (status.get("stop") or {}).get("key")), ChecklistView(c, status)
        if phase == "open":
            return ("open", lang, c.kiosk_outcome, c.kiosk_error, (status.get("stop") or {}).get("key")), OpenView(c)
        tour = c.tour or {}
        stops = tuple((s["key"], s.get("visited")) for s in tour.get("stops", []))
        return ("road", lang, tour.get("date"), tour.get("suggested"), stops, tour.get("clock_synced")), RoadView(c)

    async def show_body(self, force: bool = False) -> None:
        async with self.body_lock:
            await self._show_body(force)

    async def _show_body(self, force: bool) -> None:
        if not self.query("#body"):
            return
        key, view = self._body_for()
        body = self.query_one("#body", Container)
        if key == self.body_key and not force:
            if isinstance(view, ChecklistView):
                for current in body.query(ChecklistView):
                    current.show(view.run_status)
            return
        self.body_key = key
        await body.remove_children()
        await body.mount(view)

    def relabel(self) -> None:
        self.show_header()
        self.app.call_later(self.show_body, True)


# --- modal screens -----------------------------------------------------------------------------------------------


class OverrideScreen(ModalScreen[str | None]):
    """Required steps not done: going on anyway needs a typed reason, which is logged with each step."""

    BINDINGS = [Binding("escape", "back", "Retour")]

    def __init__(self, console: ConsoleApp, pending_labels: list[str]):
        super().__init__()
        self.console_app = console
        self.pending_labels = pending_labels

    def compose(self) -> ComposeResult:
        t = self.console_app.i18n.t
        with Vertical(id="override-box", classes="dialog"):
            yield Static(t("override.title"), classes="title")
            yield Static(Content("\n".join(f"  - {label}" for label in self.pending_labels)), id="override-steps")
            yield Static(t("override.text"))
            yield Input(placeholder=t("override.reason"), id="reason", max_length=300)
            with Horizontal(classes="actions"):
                yield Button(t("override.ok"), id="override-ok", variant="warning", disabled=True)
                yield Button(t("cancel"), id="override-back")

    def on_mount(self) -> None:
        self.query_one("#reason", Input).focus()

    @on(Input.Changed, "#reason")
    def typed(self, event: Input.Changed) -> None:
        self.query_one("#override-ok", Button).disabled = len(event.value.strip()) < 3

    @on(Input.Submitted, "#reason")
    @on(Button.Pressed, "#override-ok")
    def confirm(self) -> None:
        reason = " ".join(self.query_one("#reason", Input).value.split())
        if len(reason) >= 3:
            self.dismiss(reason)

    @on(Button.Pressed, "#override-back")
    def action_back(self) -> None:
        self.dismiss(None)


class UnscheduledStopScreen(ModalScreen[dict[str, Any] | None]):
    """A stop that is not in the schedule: commune required, INSEE code and place optional."""

    BINDINGS = [Binding("escape", "back", "Retour")]

    def __init__(self, console: ConsoleApp, **kwargs: Any):
        super().__init__(**kwargs)
        self.console_app = console

    def compose(self) -> ComposeResult:
        t = self.console_app.i18n.t
        with Vertical(id="stop-box", classes="dialog"):
            yield Static(t("stop.title"), classes="title")
            yield Static(t("stop.commune"), classes="field-label")
            yield Input(id="commune", max_length=120)
            yield Static(t("stop.insee"), classes="field-label")
            yield Input(id="insee", max_length=5)
            yield Static(t("stop.place"), classes="field-label")
            yield Input(id="place", max_length=120)
            yield Static("", id="stop-error")
            with Horizontal(classes="actions"):
                yield Button(t("stop.ok"), id="stop-ok", variant="primary")
                yield Button(t("cancel"), id="stop-back")

    def on_mount(self) -> None:
        self.query_one("#commune", Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#stop-ok")
    def confirm(self) -> None:
        values = {k: self.query_one(f"#{k}", Input).value.strip() for k in ("commune", "insee", "place")}
        values = {k: v for k, v in values.items() if v}
        try:
            unscheduled_stop(values, dt.date.today())  # the same check the controller makes, shown at once
        except ValueError as exc:
            field = str(exc).partition(":")[0]  # errors start with the field they are about
            t = self.console_app.i18n.t
            text = t(f"stop.bad.{field}" if field in ("commune", "insee", "place") else "stop.bad.other")
            self.query_one("#stop-error", Static).update(Text(text, "bold red"))
            return
        self.dismiss(values)

    @on(Button.Pressed, "#stop-back")
    def action_back(self) -> None:
        self.dismiss(None)


class InterlockScreen(ModalScreen[None]):
    """Full-screen red: ignition on with the dish raised or the cable plugged in. Stays until resolved."""

    BINDINGS = [Binding("escape", "noop", show=False)]  # not dismissible: only the cause going away ends it

    def __init__(self, console: ConsoleApp, **kwargs: Any):
        super().__init__(**kwargs)
        self.console_app = console

    def compose(self) -> ComposeResult:
        t = self.console_app.i18n.t
        with Vertical(id="interlock-box"):
            yield Static(t("interlock.title"), id="interlock-title")
            yield Static("", id="interlock-text")
            yield Static("", id="interlock-acked")
            with Center():
                yield Button(t("interlock.ack"), id="interlock-ack", variant="default")

    def on_mount(self) -> None:
        self.show()
        self.query_one("#interlock-ack", Button).focus()

    def clear(self) -> None:
        """The cause went away while another screen covers this one: show through, and go once uncovered."""
        self.add_class("-cleared")

    def on_screen_resume(self) -> None:
        if self.has_class("-cleared"):
            self.dismiss()

    def show(self) -> None:
        self.remove_class("-cleared")  # back before it was uncovered: it stays
        if not composed(self):
            return  # on_mount shows the alarms of the moment
        c = self.console_app
        alarms = c.interlocks()
        text = "\n\n".join(c.i18n.alarm(a) for a in alarms)
        self.query_one("#interlock-text", Static).update(Content(text))
        unacked = [a for a in alarms if not a.get("acknowledged")]
        button = self.query_one("#interlock-ack", Button)
        button.display = bool(unacked)
        self.query_one("#interlock-acked", Static).update(c.i18n.t("interlock.acked") if not unacked else "")

    def action_noop(self) -> None:
        pass

    @on(Button.Pressed, "#interlock-ack")
    def acknowledge(self) -> None:
        self.console_app.acknowledge_interlocks()

    def relabel(self) -> None:
        self.refresh(recompose=True)
        self.call_after_refresh(self.show)


class InverterModeScreen(ModalScreen[str | None]):
    """A checklist step waits on the inverter's mode: set it from here (only offered with allow_writes)."""

    BINDINGS = [Binding("escape", "back", "Retour")]

    def __init__(self, console: ConsoleApp, modes: list[str]):
        super().__init__()
        self.console_app = console
        self.modes = modes

    def compose(self) -> ComposeResult:
        i18n = self.console_app.i18n
        t = i18n.t
        with Vertical(id="mode-box", classes="dialog"):
            yield Static(t("mode.title"), classes="title")
            yield Static(t("mode.text"))
            with Horizontal(classes="actions"):
                for mode in self.modes:
                    label = t("mode.set", mode=MODE_NAMES[i18n.language].get(mode, mode))
                    yield Button(label, id=f"mode-{mode}", variant="primary")
                yield Button(t("cancel"), id="mode-back")

    def on_mount(self) -> None:
        self.query(Button).first().focus()

    @on(Button.Pressed)
    def chosen(self, event: Button.Pressed) -> None:
        event.stop()
        button_id = event.button.id or ""
        self.dismiss(button_id.removeprefix("mode-") if button_id != "mode-back" else None)

    def action_back(self) -> None:
        self.dismiss(None)


class AlarmsScreen(ModalScreen[None]):
    """The active alarms in plain words: acknowledge one (Enter on its row) or all; the technical text on request."""

    BINDINGS = [Binding("escape", "back", "Retour"), Binding("f4", "back", show=False)]

    def __init__(self, console: ConsoleApp) -> None:
        super().__init__()
        self.console_app = console
        self.details = False

    def compose(self) -> ComposeResult:
        t = self.console_app.i18n.t
        with Vertical(id="alarms-box", classes="dialog"):
            yield Static(t("alarms.title"), classes="title")
            yield VerticalScroll(id="alarm-rows")
            yield Static("", id="alarm-details", classes="info")
            with Horizontal(classes="actions"):
                yield Button(t("alarms.ack_all"), id="ack-all", variant="warning")
                yield Button(t("alarms.details"), id="alarm-details-toggle")
                yield Button(t("cancel"), id="alarms-back")

    async def on_mount(self) -> None:
        await self.show_rows()
        rows = list(self.query(AlarmRow))
        first = next((r for r in rows if not r.alarm.get("acknowledged")), rows[0] if rows else None)
        (first or self.query_one("#alarms-back", Button)).focus()

    def show(self) -> None:
        self.app.call_later(self.show_rows)

    async def show_rows(self) -> None:
        if not composed(self):
            return  # on_mount shows the alarms of the moment
        c = self.console_app
        alarms = c.alarms()
        box = self.query_one("#alarm-rows", VerticalScroll)
        rows = {r.alarm["id"]: r for r in box.query(AlarmRow)}
        if list(rows) == [a["id"] for a in alarms]:
            for alarm in alarms:
                rows[alarm["id"]].show(alarm)
        else:
            focused_id = getattr(c.focused, "alarm", {}).get("id") if isinstance(c.focused, AlarmRow) else None
            await box.remove_children()
            await box.mount_all([AlarmRow(a, c.i18n) for a in alarms] or [Static(c.i18n.t("alarms.none"))])
            for row in box.query(AlarmRow):
                if row.alarm["id"] == focused_id:
                    row.focus()
        self.query_one("#ack-all", Button).display = any(not a.get("acknowledged") for a in alarms)
        detail = self.query_one("#alarm-details", Static)
        detail.display = self.details
        if self.details:
            t = c.i18n.t
            lines = [t("alarms.tech")] + [f"  {a['id']}: {a.get('message', '')}" for a in alarms]
            if c.errors:
                lines += [t("alarms.errors")] + [f"  {e}" for e in c.errors]
            detail.update(Content("\n".join(lines)))

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ack-all":
            self.console_app.acknowledge(None)
        elif event.button.id == "alarm-details-toggle":
            self.details = not self.details
            t = self.console_app.i18n.t
            event.button.label = t("alarms.hide_details") if self.details else t("alarms.details")
            self.show()
        elif event.button.id == "alarms-back":
            self.dismiss(None)

    def action_back(self) -> None:
        self.dismiss(None)

    def relabel(self) -> None:
        self.refresh(recompose=True)
        self.call_after_refresh(self.show)
