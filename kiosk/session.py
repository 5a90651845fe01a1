"""The public terminal on the controller side: sessions, their ends and wipes, the kiosk state and its commands.

Life of a session: ``session.start {service}`` writes the intent to wipe (durable) before anything else, makes a
fresh home, writes the service's browser policy and starts the browser as the session user. It ends by the
visitor, the idle timeout (after "Êtes-vous toujours là ?"), the time limit, a remote ``kiosk.end_session``, the
driver closing or supervision locking the terminal, the ignition, shore power lost with a low battery, or the
browser dying. Every end runs the wipe and records one anonymous statistics row; only a verified wipe lets the
next visitor in. After a crash or a power cut the intent is still there: the wipe runs at start-up, before the
terminal can open.

Timers use an injectable monotonic clock: tests replace ``monotonic`` and call ``tick()`` after advancing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firmware_host.alarms import kiosk_rules
from firmware_host.api import ApiError, Connection, SocketServer

from . import flags as flag_store
from . import policies, stats
from .browser import Browser, UnitBrowser, browser_env, build_command
from .launch import LAUNCH_MODES, DirectLaunch, UnitLaunch
from .printing import Cups, PrintError, PrintWatch, SessionPrinting
from .scan import MAX_PAGES, SCAN_ENV, ScanSettings
from .wipe import KioskError, SessionUser, Wiper, WipeResult, user_processes

if TYPE_CHECKING:
    from firmware_host.controller import Controller

log = logging.getLogger("allervers.kiosk")

WARNINGS = ((60.0, "1min"), (300.0, "5min"))  # time left -> warning shown by the launcher and the session bar
FEEDBACK_WINDOW_S = 600.0  # the satisfaction answer is accepted this long after the end
LANGS = ("fr", "en")
ZOOMS = (100, 125, 150, 200)  # % of the browser's text and pages: "Agrandir le texte" cycles through them


@dataclass
class Session:
    id: str
    service: Any  # the config Section of the first service
    home: Path
    lang: str
    started_wall: float
    started_mono: float
    deadline_mono: float
    last_activity_mono: float
    date: str
    start_hour: int
    stop_key: str
    stop_label: str
    services: list[str] = field(default_factory=list)
    zoom: int = 100  # the session's page zoom in %; the bar's extension applies it to every page
    idle_prompt_since: float | None = None
    browser: Browser | UnitBrowser | None = None
    bar: SocketServer | None = None
    watcher: asyncio.Task | None = None
    scanner: str = "none"  # none (no scanner, or no bar to scan from), unknown, ready, unreachable
    scanned_pages: int = 0
    print_watch: PrintWatch | None = None
    print_task: asyncio.Task | None = None


class KioskManager:
    """One per controller when ``[kiosk]`` is enabled; ``controller.kiosk`` after ``attach``."""

    def __init__(self, controller: Controller, *, monotonic: Callable[[], float] = time.monotonic):
        self.controller = controller
        self.cfg = controller.config.kiosk
        self.monotonic = monotonic
        self.services = {s.id: s for s in self.cfg.services}
        self.phase = "starting"  # starting -> idle <-> session -> wiping -> idle
        self.wipe_phase: str | None = None
        self.driver_open = False
        self.locked = False
        self.lock_reason: str | None = None
        self.open_stop = ""  # a stop name given to kiosk.open when there is no checklist
        self.setup_error: str | None = None
        self.wipe_problems: list[str] = []
        self.last_wipe: dict[str, Any] | None = None
        self.last_end: dict[str, Any] | None = None
        self.ends = 0
        self.session: Session | None = None
        self.user: SessionUser | None = None
        self.wiper: Wiper | None = None
        self.mode: DirectLaunch | UnitLaunch | None = None
        self.bar_host: Path | None = None
        self.printing: SessionPrinting | None = None
        self.scan_settings: ScanSettings | None = None
        self.sessions_today = 0
        self._today = ""
        self._lock = asyncio.Lock()
        self._ending: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._startup: asyncio.Task | None = None
        self._feedback: tuple[int, float] | None = None  # (stats row id, monotonic deadline)
        self._published: dict[str, Any] = {}
        self._unsubscribe: Callable[[], None] | None = None

    # --- wiring -------------------------------------------------------------------------------------------

    @classmethod
    async def attach(cls, controller: Controller) -> KioskManager:
        """Join the controller: state component, commands, alarms; the start-up wipe runs in the background."""
        self = cls(controller)
        controller.state.add_component("kiosk")
        self._register_commands()
        assert controller.alarms is not None
        controller.alarms.add_rules(kiosk_rules())
        self._unsubscribe = controller.state.subscribe(self._state_changed)
        controller.on_stop.append(self.stop)
        self._prepare()
        await self._store().run(stats.create_tables)
        meta = await self._store().run(flag_store.read)
        self.driver_open = bool(meta.get("open", False))
        self.locked = bool(meta.get("locked", False))
        self.lock_reason = meta.get("lock_reason")
        self.open_stop = meta.get("open_stop", "")
        self._today = self._local_date()
        self.sessions_today = await self._store().run(lambda db: stats.count_day(db, self._today))
        self._publish()
        self._startup = asyncio.get_running_loop().create_task(self._startup_wipe(meta), name="kiosk-startup")
        return self

    def _prepare(self) -> None:
        """Resolve the session user and the printer; a problem leaves the terminal closed, the controller running."""
        cfg = self.cfg
        mode = LAUNCH_MODES[cfg.launch]
        try:
            self.user = SessionUser.lookup(cfg.session_user, we_start_it=mode.starts_browser)
        except KioskError as exc:
            self.setup_error = str(exc)
            log.error("%s", exc)
            return
        if cfg.session_bar:
            self.bar_host = policies.bar_host_path()
            if self.bar_host is None:
                log.error(
                    "kiosk.session_bar: the bar's bridge allervers-kiosk-bar is not installed next to %s"
                    " (pip install the package): sessions run without the bar",
                    sys.executable,
                )
        api_dir = Path(self.controller.config.api.kiosk_socket).parent
        self.mode = mode.of_config(cfg, self.user, self.bar_host, api_dir)
        if cfg.printer:
            self.printing = SessionPrinting(
                Cups(cfg.cups_server), cfg.printer, self.user.name, monotonic=self.monotonic
            )
        if cfg.scanner:
            self.scan_settings = ScanSettings(cfg.scanner, cfg.scan_resolution, cfg.scan_mode, tuple(cfg.scan_options))
        self.wiper = self.mode.wiper(self.printing)
        for warning in self.mode.setup_warnings():
            log.warning("%s", warning)

    def _register_commands(self) -> None:
        r = self.controller.registry
        kiosk, bar, control = ("kiosk",), ("kiosk", "bar"), ("control",)
        r.add("kiosk.status", self.cmd_status, ("control", "kiosk"), "what the public terminal shows")
        r.add("session.start", self.cmd_start, kiosk, "start a session: {service, lang}")
        r.add("session.end", self.cmd_end, bar, "end the session and wipe it (the visitor's choice)")
        r.add("session.status", self.cmd_session_status, bar, "the current session: service, time left")
        r.add("session.activity", self.cmd_activity, bar, "input seen: resets the idle timeout")
        r.add("session.scan", self.cmd_scan, bar, "the bar's bridge: {scanner: ready|unreachable, pages: saved}")
        r.add("session.open_scan", self.cmd_open_scan, kiosk, "show the scanning page in the session's browser")
        r.add("session.zoom", self.cmd_zoom, bar, "larger text: {zoom} in %, or the next step of " + str(ZOOMS))
        r.add("session.feedback", self.cmd_feedback, kiosk, "the optional satisfaction answer: good/neutral/bad")
        r.add("kiosk.open", self.cmd_open, control, "open the terminal to the public {stop?}")
        r.add("kiosk.close", self.cmd_close, control, "close the terminal (ends any session)")
        r.add("kiosk.lock", self.cmd_lock, control, "lock the terminal remotely {reason?} (ends any session)")
        r.add("kiosk.unlock", self.cmd_unlock, control, "unlock the terminal")
        r.add("kiosk.end_session", self.cmd_end_session, control, "end the current session remotely")

    async def stop(self) -> None:
        """Controller shutdown: end and wipe a running session (the next start would do it anyway)."""
        if self._startup is not None and not self._startup.done():
            self._startup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._startup
        if self.session is not None or self._ending is not None:
            with contextlib.suppress(Exception):
                await self.end("closed", wait_print=False)
        if self._timer is not None:
            self._timer.cancel()
        if self._unsubscribe is not None:
            self._unsubscribe()

    def _store(self) -> Any:
        assert self.controller.store is not None
        return self.controller.store

    def _emit(self, etype: str, **data: Any) -> asyncio.Future:
        return self._store().append_event(etype, **data)

    # --- what the terminal is allowed to do ---------------------------------------------------------------

    def _local_date(self) -> str:
        return dt.datetime.fromtimestamp(self.controller.clock()).date().isoformat()

    def link_up(self) -> bool:
        if self.controller.config.modem is None:
            return True  # no modem to ask: the bus's link is someone else's business (fixed line, tethering)
        state = self.controller.state
        return state.is_fresh("modem") and state.value("modem", "link") == "up"

    def hazard(self) -> str | None:
        """A reason no session may run now, from the vehicle and the batteries."""
        state = self.controller.state
        if state.value("vehicle", "ignition"):
            return "ignition"
        soc = state.value("power", "soc")
        if state.value("shore", "connected") is False and soc is not None and soc < self.cfg.low_battery_soc:
            return "low_battery"
        return None

    @property
    def effectively_open(self) -> bool:
        return self.driver_open and self.phase != "starting" and not self.wipe_problems and self.setup_error is None

    def closed_reason(self) -> str | None:
        """Why no new session can start (None: it can)."""
        if self.setup_error:
            return "unavailable"
        if self.phase == "starting":
            return "starting"
        if self.wipe_problems:
            return "wipe_failed"
        if self.locked:
            return "locked"
        if not self.driver_open:
            return "closed"
        return self.hazard()

    # --- the state model --------------------------------------------------------------------------------

    def _publish(self) -> None:
        s = self.session
        values = {
            "open": self.effectively_open,
            "locked": self.locked,
            "session_active": s is not None and self._ending is None,
            "session_service": s.service.id if s is not None else None,
            "session_started": s.started_wall if s is not None else None,
            "sessions_today": self.sessions_today,
            "last_wipe": self.last_wipe,
            "wipe_ok": not self.wipe_problems,
            "wipe_error": "; ".join(self.wipe_problems) or None,
            "setup_error": self.setup_error,
        }
        self.controller.state.update("kiosk", values)
        before, self._published = self._published, values
        if before:
            transitions = (("open", "kiosk.opened", "kiosk.closed"), ("locked", "kiosk.locked", "kiosk.unlocked"))
            for key, on, off in transitions:
                if before.get(key) != values[key]:
                    extra = {"reason": self.lock_reason} if key == "locked" and values[key] else {}
                    self._emit(on if values[key] else off, **extra)

    def _state_changed(self, component: str, changed: dict[str, Any], full: dict[str, Any]) -> None:
        if component not in ("vehicle", "shore", "power"):
            return
        reason = self.hazard()
        if reason is not None and self.session is not None and self._ending is None:
            self._request_end(reason)

    # --- start-up ---------------------------------------------------------------------------------------

    async def _startup_wipe(self, meta: dict[str, Any]) -> None:
        intent = meta.get("intent")
        if self.wiper is None:
            self.phase = "idle"
            self._publish()
            return
        if intent and self.printing is not None and isinstance(intent.get("print_after"), int):
            self.printing.after = intent["print_after"]
        result = await self._wipe(print_wait_s=0.0, session_ids=(), trigger="startup")
        if intent:
            # A session a crash or a power cut interrupted: it still counts, with what is known of it.
            row = {
                "date": intent.get("date", self._local_date()),
                "start_hour": intent.get("start_hour", 0),
                "duration_s": intent.get("duration_s"),
                "stop_key": intent.get("stop_key", ""),
                "stop_label": intent.get("stop_label", ""),
                "services": intent.get("services", []),
                "pages": result.pages,
                "scanned_pages": intent.get("scanned_pages", 0),
                "ended_by": intent.get("ended_by") or "interrupted",
                "clock_synced": self.controller.clock_synced(),
            }
            await self._store().run(lambda db: stats.record_session(db, row, clear_intent=result.ok))
            await self._emit("kiosk.session_ended", **self._public_row(row))
        self.phase = "idle"
        self._publish()

    async def _wipe(
        self,
        *,
        print_wait_s: float,
        session_ids: tuple[int, ...],
        trigger: str,
        host_report: dict[str, Any] | None = None,
    ) -> WipeResult:
        assert self.wiper is not None
        self.wipe_phase = "stopping"

        def on_phase(name: str) -> None:
            self.wipe_phase = name

        result = await self.wiper.wipe(
            session_ids=session_ids, print_wait_s=print_wait_s, on_phase=on_phase, host_report=host_report
        )
        with contextlib.suppress(OSError):
            policies.remove_policy(self.cfg.policy_dir)
        self.wipe_phase = None
        self.wipe_problems = list(result.problems)
        self.last_wipe = result.summary()
        await self._emit(
            "kiosk.wipe",
            trigger=trigger,
            ok=result.ok,
            duration_s=round(result.duration_s, 3),
            files_removed=result.files_removed,
            processes_killed=result.processes_killed,
            print_jobs=result.print_jobs,
            problems=result.problems,
        )
        return result

    # --- sessions ---------------------------------------------------------------------------------------

    def _stop_tag(self) -> tuple[str, str]:
        """(key, label) of the current stop: the checklist's when there is one, else kiosk.open's."""
        if "checklist" in self.controller.state.components:
            stop = self.controller.state.value("checklist", "stop")
            if isinstance(stop, dict) and stop:
                label = stop.get("commune") or stop.get("key") or ""
                if stop.get("place"):
                    label = f"{label} ({stop['place']})"
                return str(stop.get("key") or label), str(label)
        return self.open_stop, self.open_stop

    async def start_session(self, service_id: str, lang: str = "fr", zoom: int = 100) -> Session:
        async with self._lock:
            reason = self.closed_reason()
            if reason is not None:
                raise ApiError(f"the terminal is not available ({reason})")
            if self.session is not None or self._ending is not None:
                raise ApiError("a session is already running")
            service = self.services.get(service_id)
            if service is None or not service.enabled:
                known = ", ".join(s.id for s in self.cfg.services if s.enabled)
                raise ApiError(f"unknown service {service_id!r} (offered: {known})")
            if service.needs_link and not self.link_up():
                raise ApiError(f"service {service_id!r} needs the Internet link, which is down")
            if lang not in LANGS:
                raise ApiError(f"lang must be one of {', '.join(LANGS)}")
            check_zoom(zoom)
            assert self.user is not None and self.wiper is not None
            await self._refuse_if_visitor_running()
            print_after = None
            if self.printing is not None:
                try:
                    print_after = await asyncio.to_thread(self.printing.mark)
                except PrintError as exc:
                    raise ApiError(f"the terminal is not available (printing: {exc})") from None
            now_wall, now_mono = self.controller.clock(), self.monotonic()
            when = dt.datetime.fromtimestamp(now_wall)
            stop_key, stop_label = self._stop_tag()
            limit_min = service.time_limit_min or self.cfg.default_time_limit_min
            session = Session(
                id=secrets.token_hex(8),
                service=service,
                home=Path(self.cfg.sessions_dir),
                lang=lang,
                started_wall=now_wall,
                started_mono=now_mono,
                deadline_mono=now_mono + limit_min * 60,
                last_activity_mono=now_mono,
                date=when.date().isoformat(),
                start_hour=when.hour,
                stop_key=stop_key,
                stop_label=stop_label,
                services=[service.id],
                zoom=zoom,
            )
            self._feedback = None
            # The intent to wipe is durable before the first file of the session exists.
            intent = {
                "date": session.date,
                "start_hour": session.start_hour,
                "stop_key": stop_key,
                "stop_label": stop_label,
                "services": session.services,
                "print_after": print_after,  # every later job is the session's, even after a power cut
            }
            await self._store().run(lambda db: flag_store.write(db, {"intent": intent}))
            try:
                await self._launch(session)
            except (KioskError, OSError) as exc:
                await self._abort_start(session, str(exc))
                raise ApiError(f"the browser could not start: {exc}") from None
            self.session = session
            self.phase = "session"
            if self.scan_settings is not None and session.bar is not None:
                session.scanner = "unknown"  # until the bar's bridge has tried it
            if self.printing is not None:
                session.print_watch = PrintWatch(self.printing, monotonic=self.monotonic)
                session.print_task = asyncio.get_running_loop().create_task(session.print_watch.run())
            if session.date != self._today:
                self._today = session.date
                self.sessions_today = await self._store().run(lambda db: stats.count_day(db, session.date))
            self.sessions_today += 1
            self._publish()
            self._emit("kiosk.session_started", service=service.id, lang=lang)
            session.watcher = asyncio.get_running_loop().create_task(self._watch_browser(session))
            self._arm()
            return session

    async def _refuse_if_visitor_running(self) -> None:
        """No session while a process of the session user runs (a leftover could read the next visitor's files):
        the terminal stays closed with the wipe's alarm until a wipe (kiosk.open) verifies again."""
        assert self.user is not None
        if self.user.is_self:
            return  # the controller's own user: its processes are not the visitor's
        running = await asyncio.to_thread(user_processes, self.user.uid)
        if running:
            self.wipe_problems = [
                f"{len(running)} process(es) of {self.user.name} running before a session (pid {running[0]})"
            ]
            self._publish()
            raise ApiError(f"the terminal is not available (wipe_failed: {self.wipe_problems[0]})")

    async def _launch(self, session: Session) -> None:
        cfg = self.cfg
        assert self.user is not None and self.mode is not None
        session.home, session.bar = await self.mode.prepare(session.id, self.controller.registry)
        home = session.home
        idle_min = int((cfg.idle_timeout_s + cfg.idle_grace_s) // 60) + 2
        policy = policies.build_policy(
            url=session.service.url,
            allow=session.service.allow,
            downloads_dir=str(home / "Downloads"),
            session_bar=cfg.session_bar and self.bar_host is not None,
            idle_timeout_min=idle_min,
        )
        await asyncio.to_thread(policies.write_policy, cfg.policy_dir, policy)
        bar_socket = Path(session.bar.path) if session.bar is not None else None
        argv = build_command(
            cfg.browser_command,
            url=session.service.url,
            home=home,
            lang=session.lang,
            session_bar=bar_socket is not None,
        )
        env = browser_env(self.user, home, session.lang, cfg.browser_env, bar_socket)
        if self.scan_settings is not None and bar_socket is not None:
            env[SCAN_ENV] = self.scan_settings.to_env()  # the bar's bridge scans, as the visitor (kiosk/scan.py)
        session.browser = self.mode.browser(argv, home, env, with_bar=bar_socket is not None)
        await session.browser.start()
        log.info("kiosk: browser ready in %.2f s", session.browser.started_s or 0)

    async def _abort_start(self, session: Session, error: str) -> None:
        log.error("kiosk: session start failed: %s", error)
        if session.bar is not None:
            await session.bar.stop()
        sids = (session.browser.session_id,) if session.browser and session.browser.session_id else ()
        result = await self._wipe(print_wait_s=0.0, session_ids=sids, trigger="start_failed")
        if result.ok:
            await self._store().run(lambda db: flag_store.write(db, {}, delete=("intent",)))
        self._publish()

    async def _watch_browser(self, session: Session) -> None:
        assert session.browser is not None
        code = await session.browser.wait()
        if self.session is session and self._ending is None:
            log.warning("kiosk: the browser exited (status %s) during a session", code)
            self._request_end("browser_exited")

    def _request_end(self, reason: str) -> None:
        if self._ending is None and self.session is not None:
            asyncio.get_running_loop().create_task(self.end(reason))

    async def end(self, reason: str, *, wait_print: bool = True) -> dict[str, Any] | None:
        """End the current session for ``reason`` and wipe it; returns the end summary (None: no session)."""
        if self._ending is None:
            if self.session is None:
                return None
            self._ending = asyncio.get_running_loop().create_task(self._end(reason, wait_print), name="kiosk-end")
        task = self._ending
        return await asyncio.shield(task)

    async def _end(self, reason: str, wait_print: bool) -> dict[str, Any]:
        try:
            async with self._lock:
                session = self.session
                assert session is not None
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                duration = round(self.monotonic() - session.started_mono)
                self.phase = "wiping"
                self._publish()
                # Written before wiping: a power cut during the wipe still records how the session ended.
                intent_update = {
                    "date": session.date,
                    "start_hour": session.start_hour,
                    "stop_key": session.stop_key,
                    "stop_label": session.stop_label,
                    "services": session.services,
                    "ended_by": reason,
                    "duration_s": duration,
                    "scanned_pages": session.scanned_pages,
                }
                await self._store().run(lambda db: flag_store.write(db, {"intent": intent_update}))
                if session.bar is not None:
                    await session.bar.stop()
                if session.print_task is not None:
                    session.print_task.cancel()
                sids: tuple[int, ...] = ()
                host_report = None
                if session.browser is not None:
                    sids = (session.browser.session_id,) if session.browser.session_id else ()
                    await session.browser.kill()
                    host_report = session.browser.host_report
                wait_s = self.cfg.print_wait_s if wait_print and reason not in ("ignition",) else 0.0
                result = await self._wipe(
                    print_wait_s=wait_s, session_ids=sids, trigger=reason, host_report=host_report
                )
                row = {**intent_update, "pages": result.pages, "clock_synced": self.controller.clock_synced()}
                row_id = await self._store().run(lambda db: stats.record_session(db, row, clear_intent=result.ok))
                await self._emit("kiosk.session_ended", **self._public_row(row))
                self.ends += 1
                self.last_end = {
                    "n": self.ends,
                    "reason": reason,
                    "ok": result.ok,
                    "pages": result.pages,
                    "service": session.service.id,
                }
                self._feedback = (row_id, self.monotonic() + FEEDBACK_WINDOW_S) if result.ok else None
                self.session = None
                self.phase = "idle"
                return {"ended": True, "reason": reason, "wipe": result.summary(), "pages": result.pages}
        except Exception as exc:
            # Whatever broke, the terminal must not take the next visitor on an unverified wipe.
            log.exception("kiosk: session end failed")
            self.wipe_problems = [f"the end of the session failed: {type(exc).__name__}: {exc}"]
            self.session = None
            self.phase = "idle"
            raise
        finally:
            self._ending = None
            self._publish()

    @staticmethod
    def _public_row(row: dict[str, Any]) -> dict[str, Any]:
        keys = ("date", "start_hour", "duration_s", "stop_key", "stop_label", "services", "pages", "scanned_pages")
        keys += ("ended_by",)
        return {k: row.get(k) for k in keys}

    # --- timers -----------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Check the time limit and the idle timeout now (the loop calls it at the next deadline)."""
        self._timer = None
        s = self.session
        if s is None or self._ending is not None:
            return
        now = self.monotonic()
        if now >= s.deadline_mono:
            self._request_end("time_limit")
            return
        if s.idle_prompt_since is None and now - s.last_activity_mono >= self.cfg.idle_timeout_s:
            s.idle_prompt_since = now
        if s.idle_prompt_since is not None and now - s.idle_prompt_since >= self.cfg.idle_grace_s:
            self._request_end("idle")
            return
        self._arm()

    def _arm(self) -> None:
        s = self.session
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if s is None:
            return
        if s.idle_prompt_since is None:
            idle_due = s.last_activity_mono + self.cfg.idle_timeout_s
        else:
            idle_due = s.idle_prompt_since + self.cfg.idle_grace_s
        due = min(s.deadline_mono, idle_due)
        delay = max(0.05, due - self.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self.tick)

    def activity(self) -> None:
        s = self.session
        if s is None or self._ending is not None:
            return
        s.last_activity_mono = self.monotonic()
        s.idle_prompt_since = None
        self._arm()

    # --- views ------------------------------------------------------------------------------------------

    def session_view(self) -> dict[str, Any] | None:
        s = self.session
        if s is None:
            return None
        now = self.monotonic()
        left = max(0.0, s.deadline_mono - now)
        warning = next((name for limit, name in WARNINGS if left <= limit), None)
        idle_left = None
        if s.idle_prompt_since is not None:
            idle_left = max(0.0, s.idle_prompt_since + self.cfg.idle_grace_s - now)
        return {
            "service": s.service.id,
            "label": s.service.label,
            "label_en": s.service.label_en,
            "lang": s.lang,
            "url": s.service.url,  # where our "page unavailable" page sends the visitor back to
            "zoom": s.zoom,
            "started": s.started_wall,
            "time_left_s": round(left),
            "warning": warning,
            "idle_prompt": s.idle_prompt_since is not None,
            "idle_left_s": None if idle_left is None else round(idle_left),
            "ending": self._ending is not None,
            "scanner": s.scanner,
            "scanned_pages": s.scanned_pages,
            "printing": s.print_watch.view() if s.print_watch is not None else None,
        }

    def status(self) -> dict[str, Any]:
        link = self.link_up()
        reason = self.closed_reason()
        return {
            "vehicle": self.controller.config.vehicle.name,
            "available": reason is None,
            "closed_reason": reason,
            "open": self.effectively_open,
            "locked": self.locked,
            "lock_reason": self.lock_reason,
            "link_up": link,
            "phase": self.phase,
            "wipe_phase": self.wipe_phase,
            "session": self.session_view(),
            "last_end": self.last_end,
            "last_wipe": self.last_wipe,
            "satisfaction": self.cfg.satisfaction and self._feedback is not None,
            "sessions_today": self.sessions_today,
            "services": [
                {
                    "id": s.id,
                    "label": s.label,
                    "label_en": s.label_en,
                    "hint": s.hint,
                    "hint_en": s.hint_en,
                    "needs_link": s.needs_link,
                    "time_limit_min": s.time_limit_min or self.cfg.default_time_limit_min,
                    "usable": link or not s.needs_link,
                }
                for s in self.cfg.services
                if s.enabled
            ],
        }

    # --- API handlers -----------------------------------------------------------------------------------

    def cmd_status(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        return self.status()

    async def cmd_start(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        service = args.get("service")
        if not isinstance(service, str):
            raise ApiError('needs {"service": "<id>"}')
        lang = args.get("lang", "fr")
        session = await self.start_session(service, lang if isinstance(lang, str) else "", args.get("zoom", 100))
        return {
            "session": session.id,
            "home": str(session.home),
            "service": session.service.id,
            "time_limit_s": round(session.deadline_mono - session.started_mono),
        }

    async def cmd_end(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        if self.session is None:
            raise ApiError("no session is running")
        if conn.socket_name == "bar":
            # The bar's bridge dies with the browser: ask for the end, do not wait on a connection about to drop.
            self._request_end("visitor")
            return {"ending": True}
        result = await self.end("visitor")
        return result or {"ended": False}

    def cmd_session_status(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        view = self.session_view()
        return {"active": view is not None, **(view or {})}

    def cmd_activity(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        if self.session is None:
            raise ApiError("no session is running")
        self.activity()
        return {"time_left_s": self.session_view()["time_left_s"]}  # type: ignore[index]

    def cmd_scan(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        s = self.session
        if s is None or s.scanner == "none":
            raise ApiError("no session with a scanner is running")
        state, pages = args.get("scanner"), args.get("pages", 0)
        if state not in ("ready", "unreachable"):
            raise ApiError("scanner must be ready or unreachable")
        if not isinstance(pages, int) or isinstance(pages, bool) or not 0 <= pages <= MAX_PAGES:
            raise ApiError(f"pages must be the page count of the saved document (0 to {MAX_PAGES})")
        if state != s.scanner:
            self._emit("kiosk.scanner", state=state)
        s.scanner, s.scanned_pages = state, s.scanned_pages + pages
        return {"scanned_pages": s.scanned_pages}

    async def cmd_open_scan(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        s = self.session
        if s is None or s.browser is None or s.browser.cdp is None or s.scanner == "none":
            raise ApiError("no session with a scanner is running")
        await s.browser.cdp.send("Target.createTarget", {"url": policies.scan_page_url()})
        return {"opened": True}

    def cmd_zoom(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        s = self.session
        if s is None:
            raise ApiError("no session is running")
        if "zoom" in args:
            s.zoom = check_zoom(args["zoom"])
        else:
            s.zoom = ZOOMS[(ZOOMS.index(s.zoom) + 1) % len(ZOOMS)]
        return {"zoom": s.zoom}

    async def cmd_feedback(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        rating = args.get("rating")
        if rating not in stats.SATISFACTION:
            raise ApiError(f"rating must be one of {', '.join(stats.SATISFACTION)}")
        target = self._feedback
        if target is None or self.monotonic() > target[1]:
            raise ApiError("no finished session is waiting for an answer")
        self._feedback = None
        await self._store().run(lambda db: stats.set_satisfaction(db, target[0], rating))
        await self._emit("kiosk.satisfaction", rating=rating)
        return {"recorded": rating}

    async def _save_flags(self) -> None:
        flags = {
            "open": self.driver_open,
            "locked": self.locked,
            "lock_reason": self.lock_reason,
            "open_stop": self.open_stop,
        }
        await self._store().run(lambda db: flag_store.write(db, flags))

    async def _retry_failed_wipe(self) -> None:
        if self.wipe_problems and self.session is None and self._ending is None and self.wiper is not None:
            async with self._lock:
                result = await self._wipe(print_wait_s=0.0, session_ids=(), trigger="retry")
                if result.ok:
                    await self._store().run(lambda db: flag_store.write(db, {}, delete=("intent",)))

    async def cmd_open(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        return await self.open_public(args.get("stop", self.open_stop))

    async def cmd_close(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        return await self.close_public()

    async def open_public(self, stop: object) -> dict[str, Any]:
        """Open the terminal to the public at ``stop`` (its name); ApiError naming why when it stays closed."""
        if self.setup_error:
            raise ApiError(self.setup_error)
        if not isinstance(stop, str) or len(stop) > 100:
            raise ApiError("stop must be the stop's name (text, up to 100 characters)")
        self.driver_open, self.open_stop = True, stop
        await self._save_flags()
        await self._retry_failed_wipe()
        self._publish()
        if self.wipe_problems:
            raise ApiError(f"the terminal stays closed: wipe not verified ({'; '.join(self.wipe_problems)})")
        return {"open": self.effectively_open, "closed_reason": self.closed_reason()}

    async def close_public(self) -> dict[str, Any]:
        """Close the terminal to the public, ending (and wiping) any session."""
        self.driver_open = False
        await self._save_flags()
        ended = await self.end("closed")
        self._publish()
        return {"open": False, "ended_session": ended is not None, "last_wipe": self.last_wipe}

    async def cmd_lock(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        return await self.lock(args.get("reason"))

    async def cmd_unlock(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        return await self.unlock()

    async def cmd_end_session(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        return await self.end_session_remotely()

    async def lock(self, reason: object = None) -> dict[str, Any]:
        """Lock the terminal (ending any session), with an optional short reason shown to nobody but staff."""
        if reason is not None and (not isinstance(reason, str) or len(reason) > 200):
            raise ApiError("reason must be a short text")
        self.locked, self.lock_reason = True, reason
        await self._save_flags()
        ended = await self.end("locked")
        self._publish()
        return {"locked": True, "ended_session": ended is not None}

    async def unlock(self) -> dict[str, Any]:
        self.locked, self.lock_reason = False, None
        await self._save_flags()
        await self._retry_failed_wipe()
        self._publish()
        return {"locked": False, "open": self.effectively_open}

    async def end_session_remotely(self) -> dict[str, Any]:
        ended = await self.end("remote")
        if ended is None:
            return {"ended": False, "reason": "no session was running"}
        return ended


def check_zoom(value: Any) -> int:
    """A session's zoom: one of ZOOMS (in %), else an error naming the argument."""
    if isinstance(value, bool) or value not in ZOOMS:
        raise ApiError(f"zoom must be one of {', '.join(map(str, ZOOMS))} (%), not {value!r}")
    return int(value)
