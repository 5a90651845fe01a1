"""`allervers console`: the driver's Textual app over the control socket (stops, checklists, interlocks)."""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from typing import Any

from textual import events
from textual.app import App
from textual.binding import Binding
from textual.screen import ModalScreen

from ..api import ClientError
from .i18n import TEXTS, I18n
from .link import ControllerLink, link_failed
from .messages import AlarmChosen, Connected, Disconnected, StateChanged, StepChosen, StopChosen
from .screens import (
    AlarmsScreen,
    InterlockScreen,
    InverterModeScreen,
    LoginScreen,
    MainScreen,
    OverrideScreen,
    RoadView,
    UnscheduledStopScreen,
    composed,
)
from .settings import PinError, PinLock
from .widgets import MODE_NAMES


def inverter_modes(step: dict[str, Any]) -> list[str]:
    """The inverter modes that would satisfy an auto step over ``power.mode`` (the console can set them)."""
    condition = step.get("condition") or ""
    if step.get("kind") != "auto" or "power.mode" not in condition:
        return []
    return [mode for mode in MODE_NAMES["en"] if f'"{mode}"' in condition]


class StopPickerScreen(ModalScreen[None]):
    """Picking another stop while the arrival checklist runs: the day's stops, as on the road."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Retour")]

    def __init__(self, console: ConsoleApp):
        super().__init__()
        self.console_app = console

    def compose(self) -> Any:
        yield RoadView(self.console_app, id="picker")

    async def show_tour(self) -> None:
        """Another day or a new tour: a new view, whose mount puts the focus back on the button pressed (a view
        recomposed in place keeps no focus, and one still mounting lost its buttons under its own focus code)."""
        if not composed(self):
            return  # not made yet: its compose reads the new tour
        await self.remove_children()
        await self.mount(RoadView(self.console_app, id="picker"))


class ConsoleApp(App[None]):
    """The console. ``link`` is the data source (a ControllerLink on the control socket); everything the driver
    does is a command to the controller, and everything shown comes from its state stream."""

    CSS_PATH = "console.tcss"
    TITLE = "allervers"
    ENABLE_COMMAND_PALETTE = False  # the driver gets buttons and F-keys, not a command line
    BINDINGS = [Binding("ctrl+q", "quit", "Quitter", show=False)]
    MAX_ERRORS = 10  # technical texts kept for the "Détails techniques" view

    def __init__(
        self,
        link: ControllerLink,
        *,
        language: str = "fr",
        pin: PinLock | None = None,
        lock_after_s: float = 0.0,
        vehicle_name: str = "",
        inverter_writes: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        self.link = link
        self.i18n = I18n(language)
        self.pin = pin
        self.lock_after_s = lock_after_s
        self.vehicle_name = vehicle_name
        self.inverter_writes = inverter_writes  # [inverter] allow_writes: the console may set the mode
        self.monotonic = monotonic
        self.link_lost_at: float | None = None  # monotonic time the controller went away (values shown are old)
        self.errors: list[str] = []  # recent technical error texts (English), newest last
        self.refocus: str | None = None  # the button to focus again after the body is rebuilt (day browsing)
        self.snapshot: dict[str, Any] = {}
        self.status: dict[str, Any] | None = None
        self.tour: dict[str, Any] | None = None
        self.tour_date: str | None = None  # None: the controller's today
        self.driver: str | None = None
        self.last_driver: str | None = None
        self.no_checklist = False
        self.banner: str | None = None
        self.kiosk_outcome: str | None = None
        self.kiosk_error: str | None = None
        self.last_activity = monotonic()
        self.main = MainScreen(self)

    # --- start-up and the link ---

    def on_mount(self) -> None:
        self.push_screen(self.main)
        self.push_screen(LoginScreen(self))
        self.banner = self.i18n.t("link.connecting")
        self.run_worker(self.link.run(self._connected, self._state, self._down), name="link", group="link")
        if self.pin is not None and self.lock_after_s > 0:
            self.set_interval(min(5.0, self.lock_after_s / 2), self._check_idle)
        self.set_interval(1.0, self._age_tick)

    def _connected(self, snapshot: dict[str, Any]) -> None:
        self.post_message(Connected(snapshot))

    def _state(self, component: str, values: dict[str, Any]) -> None:
        self.post_message(StateChanged(component, values))

    def _down(self, reason: str, detail: str) -> None:
        self.post_message(Disconnected(reason, detail))

    def note_error(self, detail: str) -> None:
        self.errors = [*self.errors, f"{time.strftime('%H:%M:%S')} {detail}"][-self.MAX_ERRORS :]

    def stale_for_s(self) -> float | None:
        """How long the values shown have been old (the controller away), or None while they are live."""
        return None if self.link_lost_at is None else self.monotonic() - self.link_lost_at

    def _age_tick(self) -> None:
        if self.link_lost_at is not None and self.screen_stack:
            self.main.show_header()  # the age of the old values goes on counting

    async def on_connected(self, message: Connected) -> None:
        self.snapshot = message.snapshot
        self.banner = None
        self.link_lost_at = None
        self.check_interlocks()
        self.refresh_alarms()
        await self.reload()

    async def on_disconnected(self, message: Disconnected) -> None:
        self.banner = self.i18n.t("link.down", reason=self.i18n.t(f"link.{message.reason}"))
        self.note_error(message.detail)
        if self.link_lost_at is None:
            self.link_lost_at = self.monotonic()
        self.main.show_header()
        await self.main.show_body()

    async def on_state_changed(self, message: StateChanged) -> None:
        self.snapshot[message.component] = message.values
        if message.component == "controller":
            self.check_interlocks()
            self.refresh_alarms()
        self.main.show_header()
        if message.component == "checklist":
            await self.reload()

    async def reload(self) -> None:
        """Fetch the checklist status (and the day's stops when on the road), then redraw the body."""
        try:
            status = await self.link.call("checklist.status")
            self.no_checklist = False
            if status["phase"] != "open":
                self.kiosk_outcome = self.kiosk_error = None
            if status["phase"] == "on_the_road" or self.tour is None:
                self.tour = await self.link.call("checklist.tour", {"date": self.tour_date} if self.tour_date else {})
        except ClientError as exc:
            if "unknown command" in str(exc):
                self.no_checklist, status = True, None
            else:
                if link_failed(exc):
                    self.note_error(str(exc))  # the banner already says the controller is away
                else:
                    self.fail("reload", str(exc))
                return
        self.status = status
        if status is not None:
            self.last_driver = status.get("driver")
            for screen in self.screen_stack:
                if isinstance(screen, LoginScreen):
                    screen.offer_name(self.last_driver)
        self.main.show_header()
        await self.main.show_body()
        if isinstance(self.screen, StopPickerScreen):
            await self.screen.show_tour()

    async def action_reload(self) -> None:
        await self.reload()

    # --- the driver's actions: each is one command to the controller ---

    async def command(self, cmd: str, **args: Any) -> Any:
        """Send a command; a failure is told to the driver in plain words (and None returned), the technical
        reason kept for the details view; the console carries on."""
        try:
            return await self.link.call(cmd, args)
        except ClientError as exc:
            self.fail(cmd, str(exc), away=link_failed(exc))
            return None

    def fail(self, what: str, detail: str, *, away: bool = False) -> None:
        t = self.i18n.t
        self.note_error(detail)
        text = t("fail.away") if away else t(f"fail.{what}" if f"fail.{what}" in TEXTS else "fail.other")
        self.notify(f"{text} {t('fail.details')}", severity="error", timeout=10)

    def logged_in(self, name: str) -> None:
        self.driver = name
        self.last_activity = self.monotonic()
        if isinstance(self.screen, LoginScreen):
            self.pop_screen()

    def on_stop_chosen(self, message: StopChosen) -> None:
        if isinstance(self.screen, StopPickerScreen):
            self.pop_screen()
        self.run_worker(self._arrive(message.stop), group="action")

    async def _arrive(self, stop: str | dict[str, Any]) -> None:
        if await self.command("checklist.arrive", stop=stop, by=self.driver) is not None:
            self.tour_date = None
            await self.reload()

    def ask_unscheduled_stop(self) -> None:
        def chosen(values: dict[str, Any] | None) -> None:
            if values:
                if isinstance(self.screen, StopPickerScreen):
                    self.pop_screen()
                self.run_worker(self._arrive(values), group="action")

        self.push_screen(UnscheduledStopScreen(self), chosen)

    def change_stop(self) -> None:
        self.run_worker(self._pick_stop(), group="action")

    async def _pick_stop(self) -> None:
        self.tour = await self.command("checklist.tour", **({"date": self.tour_date} if self.tour_date else {}))
        if self.tour is not None:
            await self.push_screen(StopPickerScreen(self))

    def shift_day(self, days: int) -> None:
        current = dt.date.fromisoformat((self.tour or {}).get("date") or dt.date.today().isoformat())
        self.tour_date = (current + dt.timedelta(days=days)).isoformat()
        self.refocus = "next-day" if days > 0 else "prev-day"  # browsing days: the focus stays on the button
        self.run_worker(self.reload(), group="action")

    def on_step_chosen(self, message: StepChosen) -> None:
        run = (self.status or {}).get("run")
        step = next((s for s in (run or {}).get("steps", []) if s["id"] == message.step_id), None)
        if step is None:
            return
        t = self.i18n.t
        modes = inverter_modes(step)
        if step["status"] == "no" and modes:
            if self.inverter_writes:
                self.push_screen(InverterModeScreen(self, modes), self._set_mode)
            else:
                self.notify(t("mode.not_allowed"), severity="warning", timeout=10)
        elif step["status"] == "no":
            self.notify(t("tick.sensor_no"), severity="warning", timeout=8)
        elif step["status"] == "n/a":
            self.notify(t("tick.na"), timeout=5)
        elif step["by"] == "auto":
            self.notify(t("tick.auto"), timeout=5)
        else:
            self.run_worker(self._tick(step["id"], not step["done"]), group="action")

    async def _tick(self, step_id: str, done: bool) -> None:
        if await self.command("checklist.tick", step=step_id, done=done, by=self.driver) is not None:
            await self.reload()

    def finish_run(self) -> None:
        run = (self.status or {}).get("run")
        if not run:
            return
        pending = run["pending_required"]
        if not pending:
            self.run_worker(self._finish(None), group="action")
            return
        labels = [self.i18n.pick(s["label"]) for s in run["steps"] if s["id"] in pending]

        def confirmed(reason: str | None) -> None:
            if reason:
                self.run_worker(self._finish(reason), group="action")

        self.push_screen(OverrideScreen(self, labels), confirmed)

    async def _finish(self, reason: str | None) -> None:
        kind = ((self.status or {}).get("run") or {}).get("kind")
        args: dict[str, Any] = {"by": self.driver}
        if reason:
            args["reason"] = reason
        result = await self.command("checklist.finish", **args)
        if result is None:
            await self.reload()
            return
        t = self.i18n.t
        if kind == "arrival":
            self.kiosk_outcome, self.kiosk_error = result.get("kiosk"), result.get("kiosk_error")
            note = t("done.arrival")
            if self.kiosk_outcome == "not_configured":
                note += " " + t("done.kiosk_none")
            self.notify(note, timeout=6)
            if self.kiosk_outcome == "error":
                self.fail("kiosk.open", str(self.kiosk_error))
        else:
            self.notify(t("done.departure"), timeout=6)
        await self.reload()

    def cancel_run(self) -> None:
        self.run_worker(self._cancel(), group="action")

    async def _cancel(self) -> None:
        result = await self.command("checklist.cancel", by=self.driver)
        if result is not None and result.get("phase") == "open":
            self.kiosk_outcome, self.kiosk_error = result.get("kiosk"), result.get("kiosk_error")
        await self.reload()

    def start_departure(self) -> None:
        self.run_worker(self._depart(), group="action")

    async def _depart(self) -> None:
        result = await self.command("checklist.depart", by=self.driver)
        if result is not None and result.get("kiosk") == "error":
            self.fail("kiosk.close", str(result.get("kiosk_error")))
        await self.reload()

    def retry_kiosk(self) -> None:
        self.run_worker(self._retry_kiosk(), group="action")

    async def _retry_kiosk(self) -> None:
        try:
            await self.link.call("kiosk.open")
        except ClientError as exc:
            self.kiosk_error = str(exc)
            self.note_error(str(exc))
        else:
            self.kiosk_outcome, self.kiosk_error = "opened", None
        await self.main.show_body()

    # --- interlocks ---

    def interlocks(self) -> list[dict[str, Any]]:
        alarms = (self.snapshot.get("controller") or {}).get("alarms") or []
        return [a for a in alarms if str(a.get("id", "")).startswith("interlock.")]

    def check_interlocks(self) -> None:
        active = self.interlocks()
        shown = next((s for s in self.screen_stack if isinstance(s, InterlockScreen)), None)
        if active and shown is None:
            self.push_screen(InterlockScreen(self))
        elif active and shown is not None:
            shown.show()
        elif not active and shown is not None:
            if self.screen is shown:
                self.pop_screen()
            else:  # something was opened over the warning meanwhile: it goes when uncovered, unseen till then
                shown.clear()

    def acknowledge_interlocks(self) -> None:
        self.run_worker(self._acknowledge(), group="action")

    async def _acknowledge(self) -> None:
        for alarm in self.interlocks():
            if not alarm.get("acknowledged"):
                await self.command("alarms.ack", id=alarm["id"])

    # --- alarms and the inverter mode ---

    def alarms(self) -> list[dict[str, Any]]:
        return list((self.snapshot.get("controller") or {}).get("alarms") or [])

    def action_show_alarms(self) -> None:
        if not any(isinstance(s, (AlarmsScreen, LoginScreen)) for s in self.screen_stack):
            self.push_screen(AlarmsScreen(self))

    def refresh_alarms(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, AlarmsScreen):
                screen.show()

    def on_alarm_chosen(self, message: AlarmChosen) -> None:
        self.acknowledge(message.alarm_id)

    def acknowledge(self, alarm_id: str | None) -> None:
        """Acknowledge one alarm (silences its buzzer, if any; the alarm stays while its cause is there), or all."""
        self.run_worker(self._ack(alarm_id), group="action")

    async def _ack(self, alarm_id: str | None) -> None:
        if await self.command("alarms.ack", **({"id": alarm_id} if alarm_id else {})) is not None:
            self.notify(self.i18n.t("alarms.acked"), timeout=5)

    def _set_mode(self, mode: str | None) -> None:
        if mode:
            self.run_worker(self._send_mode(mode), group="action")

    async def _send_mode(self, mode: str) -> None:
        if await self.command("inverter.mode", mode=mode) is not None:
            self.notify(self.i18n.t("mode.sent", mode=MODE_NAMES[self.i18n.language].get(mode, mode)), timeout=6)

    # --- language and lock ---

    def action_toggle_language(self) -> None:
        self.i18n.toggle()
        for screen in self.screen_stack:
            relabel = getattr(screen, "relabel", None)
            if relabel is not None:
                relabel()
            else:
                screen.refresh(recompose=True)

    def action_help_quit(self) -> None:
        """Ctrl-C: Textual's own hint is English; the driver gets it in the console's language."""
        self.notify(self.i18n.t("quit.help"), timeout=5)

    def action_lock(self, *, idle: bool = False) -> None:
        if isinstance(self.screen, LoginScreen):
            return
        if self.pin is None:
            if not idle:
                self.notify(self.i18n.t("lock.no_pin"), severity="warning", timeout=8)
            return
        if self.interlocks():  # never hide the drive-away warning behind the lock
            if not idle:
                self.notify(self.i18n.t("lock.interlock"), severity="warning", timeout=8)
            return
        self.driver = None
        self.push_screen(LoginScreen(self))
        if not idle:
            self.notify(self.i18n.t("lock.done"), timeout=5)

    def _check_idle(self) -> None:
        if not self.screen_stack:
            return  # closing: Textual removes the screens before it stops the app's timers
        if self.monotonic() - self.last_activity >= self.lock_after_s:
            self.action_lock(idle=True)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, (events.Key, events.MouseDown)):
            self.last_activity = self.monotonic()
        await super().on_event(event)


def main(cfg: Any, *, language: str | None = None) -> int:
    """Run the console on the config's control socket (from `allervers console`)."""
    pin = None
    if cfg.console.pin_file is not None:
        try:
            pin = PinLock.from_file(cfg.console.pin_file)
        except PinError as exc:
            print(f"allervers console: {exc}", file=sys.stderr)
            return 2
    app = ConsoleApp(
        ControllerLink(cfg.api.control_socket),
        language=language or cfg.console.language,
        pin=pin,
        lock_after_s=cfg.console.lock_after_s,
        vehicle_name=cfg.vehicle.name,
        inverter_writes=cfg.inverter is not None and cfg.inverter.allow_writes,
    )
    app.run()
    return 0
