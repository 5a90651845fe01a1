"""The launcher app: polls ``kiosk.status`` on the kiosk socket and shows the screen the terminal is in.

The client is injected (anything with ``async call(cmd, args, timeout)``): ``KioskLink`` on the real socket, a
scripted double in the screen tests. The controller decides everything (open, locked, sessions, ends); the app
only shows it and passes on what the visitor touched.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

from textual import events, on
from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from firmware_host.api import ClientError, call_once

from .i18n import Texts
from .messages import (
    BackToWelcome,
    EndConfirmed,
    FeedbackGiven,
    LanguageToggled,
    ScanRequested,
    ServiceChosen,
    StartTouched,
    StillHere,
    ZoomCycled,
)
from .screens import (
    ClosedScreen,
    EndScreen,
    IdleScreen,
    OfflineScreen,
    OpeningScreen,
    ServicesScreen,
    SessionScreen,
    WelcomeScreen,
)

ACTIVITY_EVERY_S = 5.0  # input in the launcher counts as activity, reported at most this often
ZOOMS = (100, 125, 150, 200)  # "Agrandir le texte", in %: what kiosk.session.ZOOMS accepts (a test checks)


class KioskClient(Protocol):
    async def call(self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 10.0) -> Any: ...


class KioskLink:
    """The kiosk socket, one short connection per request (a long ``session.end`` never blocks the polling)."""

    def __init__(self, path: str):
        self.path = path

    async def call(self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        return await call_once(self.path, cmd, args, timeout)


class KioskApp(App[None]):
    CSS_PATH = "styles.tcss"
    TITLE = "allervers"
    ENABLE_COMMAND_PALETTE = False  # a public terminal: no hidden command line
    BINDINGS = [Binding("ctrl+q", "noop", show=False), Binding("ctrl+c", "noop", show=False)]

    def __init__(
        self,
        client: KioskClient,
        *,
        lang: str = "fr",
        poll_s: float = 1.0,
        back_after_s: float = 20.0,
        end_timeout_s: float = 900.0,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        self.client = client
        self.default_lang = lang
        self.texts = Texts(lang)
        self.zoom = ZOOMS[0]
        self.poll_s = poll_s
        self.back_after_s = back_after_s  # an idle services or end screen goes back to welcome
        self.end_timeout_s = end_timeout_s
        self.monotonic = monotonic
        self.status: dict[str, Any] | None = None
        self.mode = "starting"  # welcome services offline opening session ending closed
        self.vehicle_name = ""
        self._polling = False
        self._last_activity_sent = -ACTIVITY_EVERY_S
        self._last_input = monotonic()
        self._own_end = False
        self._ends_seen: int | None = None

    # --- life ---

    async def on_mount(self) -> None:
        self.theme = "textual-dark"
        await self.refresh_status()
        if self.mode == "starting":
            self._show("welcome")
        self.set_interval(self.poll_s, self.refresh_status)

    def action_noop(self) -> None:
        """Ctrl+Q / Ctrl+C do nothing: visitors must not be able to quit the terminal."""

    async def refresh_status(self) -> None:
        if self._polling:
            return
        self._polling = True
        try:
            try:
                status = await self.client.call("kiosk.status", {}, 5.0)
            except (ClientError, OSError, TimeoutError):
                status = None
            self.status = status
            if status is not None:
                self.vehicle_name = status.get("vehicle", "")
                if self._ends_seen is None:
                    self._ends_seen = (status.get("last_end") or {}).get("n", 0)
            self.route()
        finally:
            self._polling = False

    # --- which screen ---

    def route(self) -> None:
        if not self.screen_stack:
            return  # the app is closing (its screens gone) while a poll was still landing: nothing to show
        s = self.status
        if self.mode == "opening" or (self.mode == "ending" and self._own_end):
            return
        if s is None:
            self._show_closed("unreachable")
            return
        session = s.get("session")
        if session is not None and not session.get("ending"):
            if self.mode != "session":
                self._show("session")
            self._update_session(session)
            return
        if session is not None or self.mode == "session":
            # Ended elsewhere (idle, time limit, remote, the bus leaving) or ending now: the end screen follows it.
            if self.mode != "ending":
                self._show("ending", reason=(s.get("last_end") or {}).get("reason"))
            if session is not None:
                if end := self._end_screen():
                    end.show_phase(s.get("wipe_phase"))
                return
        if self.mode == "ending":
            end = self._end_screen()
            if end is None:
                return
            last = s.get("last_end") or {}
            if end.result is None and last.get("n", 0) != self._ends_seen:
                self._ends_seen = last.get("n", 0)
                end.show_result(last, ask_feedback=bool(s.get("satisfaction")))
            elif end.result is not None and not s.get("available") and s.get("closed_reason") != "wipe_failed":
                self._show_closed(s.get("closed_reason") or "closed")  # locked or closed meanwhile
            elif end.result is not None and self.monotonic() - self._last_input > self.back_after_s:
                self._show("welcome")
            return
        if not s.get("available"):
            self._show_closed(s.get("closed_reason") or "closed")
            return
        if self.mode == "closed":
            self._show("welcome")
        elif self.mode == "services" and not s.get("link_up"):
            self._show("offline")
        elif self.mode == "offline" and s.get("link_up"):
            self._show("services")
        elif self.mode in ("services", "offline") and self.monotonic() - self._last_input > self.back_after_s:
            self._show("welcome")

    def _show_closed(self, reason: str) -> None:
        if self.mode == "closed" and isinstance(self.screen, ClosedScreen):
            self.screen.show(reason)
        else:
            self._show("closed", reason=reason)

    def _show(self, mode: str, **kwargs: Any) -> None:
        services = (self.status or {}).get("services", [])
        screens: dict[str, Callable[[], Screen]] = {
            "welcome": lambda: WelcomeScreen(self),
            "services": lambda: ServicesScreen(self, services),
            "offline": lambda: OfflineScreen(self, services),
            "session": lambda: SessionScreen(self),
            "ending": lambda: EndScreen(self, kwargs.get("reason")),
            "closed": lambda: ClosedScreen(self, kwargs.get("reason", "closed")),
            "opening": lambda: OpeningScreen(self, kwargs.get("label", "")),
        }
        if mode in ("welcome", "closed") and kwargs.get("new_visitor", True):
            self.texts = Texts(self.default_lang)  # the next visitor starts in French again, at 100 %
            self.zoom = ZOOMS[0]
        self.mode = mode
        self._last_input = self.monotonic()
        while len(self.screen_stack) > 2:
            self.pop_screen()
        screen = screens[mode]()
        if len(self.screen_stack) < 2:
            self.push_screen(screen)
        else:
            self.switch_screen(screen)

    def _end_screen(self) -> EndScreen | None:
        """None only while the app closes (its screens go before its poll timer stops)."""
        return next((s for s in self.screen_stack if isinstance(s, EndScreen)), None)

    def _update_session(self, session: dict[str, Any]) -> None:
        session_screen = next((s for s in self.screen_stack if isinstance(s, SessionScreen)), None)
        if session_screen is not None and session_screen.composed:
            session_screen.show(session)
        idle = next((s for s in self.screen_stack if isinstance(s, IdleScreen)), None)
        if session.get("idle_prompt"):
            if idle is None:
                idle = IdleScreen(self)
                self.push_screen(idle)
                self.call_after_refresh(idle.show, int(session.get("idle_left_s") or 0))
            elif idle.is_mounted and idle.children:
                idle.show(int(session.get("idle_left_s") or 0))
        elif idle is not None:
            self.pop_screen()

    # --- what the visitor does ---

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, (events.Key, events.MouseDown)):
            self._last_input = self.monotonic()
            if self.mode == "session" and self.monotonic() - self._last_activity_sent >= ACTIVITY_EVERY_S:
                self._last_activity_sent = self.monotonic()
                self.run_worker(self._call_quietly("session.activity"), exclusive=False)
        await super().on_event(event)

    async def _call_quietly(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        try:
            return await self.client.call(cmd, args or {}, 10.0)
        except (ClientError, OSError, TimeoutError):
            return None

    @on(StartTouched)
    def _start_touched(self) -> None:
        s = self.status or {}
        self._show("services" if s.get("link_up", True) else "offline")

    @on(LanguageToggled)
    def _language(self) -> None:
        self.texts = Texts("en" if self.texts.lang == "fr" else "fr")
        self._show(self.mode if self.mode in ("welcome", "services", "offline") else "welcome", new_visitor=False)

    @on(ZoomCycled)
    def _zoom(self) -> None:
        self.zoom = ZOOMS[(ZOOMS.index(self.zoom) + 1) % len(ZOOMS)]
        if isinstance(self.screen, WelcomeScreen):
            self.screen.show_zoom(self.zoom)

    @on(BackToWelcome)
    def _back(self) -> None:
        self._own_end = False
        # "Retour" keeps the visitor's language; the end of a session means the next visitor.
        self._show("welcome", new_visitor=self.mode == "ending")
        self.call_after_refresh(self.refresh_status)

    @on(ServiceChosen)
    async def _service_chosen(self, message: ServiceChosen) -> None:
        service = next((s for s in (self.status or {}).get("services", []) if s["id"] == message.service), {})
        self._show("opening", label=self.texts.label(service) or message.service)
        self.run_worker(self._open(message.service), exclusive=True, group="session")

    async def _open(self, service: str) -> None:
        try:
            args = {"service": service, "lang": self.texts.lang, "zoom": self.zoom}
            await self.client.call("session.start", args, 60.0)
        except (ClientError, OSError, TimeoutError):
            screen = self.screen_stack[-1] if self.screen_stack else None
            if isinstance(screen, OpeningScreen):
                screen.failed()
            self.mode = "opening-failed"
            return
        self.mode = "session-starting"
        await self.refresh_status()

    @on(ScanRequested)
    async def _scan(self) -> None:
        await self._call_quietly("session.open_scan")

    @on(StillHere)
    async def _still_here(self) -> None:
        self._last_activity_sent = self.monotonic()
        await self._call_quietly("session.activity")
        await self.refresh_status()

    @on(EndConfirmed)
    def _end_confirmed(self) -> None:
        self._own_end = True
        reason = "visitor"
        self._show("ending", reason=reason)
        self.run_worker(self._end(), exclusive=True, group="session")

    async def _end(self) -> None:
        task = asyncio.ensure_future(self.client.call("session.end", {}, self.end_timeout_s))
        while not task.done():
            # The wipe's steps, read from the status while the end call waits.
            status = await self._call_quietly("kiosk.status")
            end = self._end_screen()
            if end and status and status.get("wipe_phase") and not task.done():
                end.show_phase(status["wipe_phase"])
            await asyncio.wait({task}, timeout=self.poll_s / 2)
        try:
            result = task.result()
            outcome = {
                "reason": result.get("reason", "visitor"),
                "ok": result.get("wipe", {}).get("ok", False),
                "pages": result.get("pages", 0),
            }
        except (ClientError, OSError, TimeoutError):
            outcome = {"reason": "visitor", "ok": False, "pages": 0}
        status = await self._call_quietly("kiosk.status")
        if status:
            self.status = status
            self._ends_seen = (status.get("last_end") or {}).get("n", self._ends_seen)
        if end := self._end_screen():
            end.show_result(outcome, ask_feedback=bool(status and status.get("satisfaction")))
        self._own_end = False

    @on(FeedbackGiven)
    async def _feedback(self, message: FeedbackGiven) -> None:
        if message.rating is not None:
            await self._call_quietly("session.feedback", {"rating": message.rating})


# --- `allervers kiosk` --------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from firmware_host.subcommands import EXIT_CONFIG, load_config

    cfg = load_config(args)
    if cfg.kiosk is None or not cfg.kiosk.enabled:
        print(f"{cfg.source}: kiosk: no [kiosk] section (or enabled = false): no public terminal", flush=True)
        return EXIT_CONFIG
    KioskApp(KioskLink(cfg.api.kiosk_socket), lang=args.lang).run()
    return 0
