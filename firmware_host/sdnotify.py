"""systemd integration without a library: READY/STATUS/WATCHDOG/STOPPING datagrams on $NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .controller import Controller

log = logging.getLogger("allervers.sdnotify")

# READY=1 is sent anyway after this long, with the silent devices named in STATUS=: a dead modem must not keep
# the console and the kiosk (ordered After= the controller) from starting. Below the unit's TimeoutStartSec=.
READY_TIMEOUT_S = 60.0
# STATUS= lines are cheap, but a reading that flickers must not turn into a datagram per poll.
STATUS_MIN_INTERVAL_S = 2.0
STATUS_MAX_CHARS = 200


class Notifier:
    """Sends sd_notify messages to the socket systemd named; does nothing when there is none.

    ``address`` is a filesystem path or an abstract name starting with ``@``. Sending never raises and never
    blocks: a systemd that went away must not take the controller with it.

    >>> n = Notifier.from_environ({"NOTIFY_SOCKET": "@demo", "WATCHDOG_USEC": "30000000"}, unset=False)
    >>> n.enabled, n.watchdog_interval_s
    (True, 15.0)
    """

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None):
        self.address = address
        self.watchdog_usec = watchdog_usec
        self.sent = 0
        self._sock: socket.socket | None = None
        self._last_error: str | None = None
        if address is not None and not address.startswith(("/", "@")):
            log.warning("NOTIFY_SOCKET=%r: only Unix socket paths and @abstract names are supported", address)
            self.address = None

    @classmethod
    def from_environ(
        cls, environ: MutableMapping[str, str] | None = None, *, pid: int | None = None, unset: bool = True
    ) -> Notifier:
        """Read NOTIFY_SOCKET / WATCHDOG_USEC / WATCHDOG_PID; ``unset`` hides them from child processes."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        raw_usec, raw_pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        if raw_usec is not None:
            try:
                usec = int(raw_usec)
                # systemd sets WATCHDOG_PID when the watchdog is meant for one process only: ours or not.
                if usec <= 0 or (raw_pid is not None and int(raw_pid) != (pid or os.getpid())):
                    usec = None
            except ValueError:
                log.warning("ignoring malformed WATCHDOG_USEC=%r / WATCHDOG_PID=%r", raw_usec, raw_pid)
                usec = None
        if unset:
            for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                env.pop(key, None)
        return cls(address, watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half the period systemd enforces, as sd_watchdog_enabled(3) advises."""
        return None if not self.watchdog_usec else self.watchdog_usec / 2 / 1_000_000

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; True if it left."""
        if self.address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(payload, target)
        except OSError as exc:
            problem = f"{self.address}: {exc.strerror or exc}"
            if problem != self._last_error:  # once per kind of failure, not once per watchdog ping
                log.warning("sd_notify failed: %s", problem)
                self._last_error = problem
            return False
        self._last_error = None
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={one_line(text)}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={one_line(status)}"] if status else []))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def one_line(text: str) -> str:
    """A STATUS= value: one line (a newline would start another assignment), bounded."""
    flat = " ".join(text.split())
    return flat if len(flat) <= STATUS_MAX_CHARS else flat[: STATUS_MAX_CHARS - 1] + "…"


# --- the controller side ---------------------------------------------------------------------------------


def _fmt_number(value: Any, unit: str, digits: int = 0) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return f"{value:.{digits}f} {unit}" if digits else f"{round(value)} {unit}"


def summary(snapshot: dict[str, Any], waiting_for: list[str] | None = None) -> str:
    """The one-line STATUS= text `systemctl status allervers` shows: what a driver would ask first."""
    parts: list[str] = []
    if waiting_for:
        parts.append("waiting for " + ", ".join(waiting_for))
    shore = snapshot.get("shore", {})
    if not shore.get("stale") and shore.get("connected") is not None:
        parts.append("shore " + ("connected" if shore["connected"] else "unplugged"))
    power = snapshot.get("power", {})
    if not power.get("stale"):
        battery = " ".join(
            x
            for x in (_fmt_number(power.get("soc"), "%"), _fmt_number(power.get("battery_v"), "V", 1))
            if x is not None
        )
        if battery:
            parts.append(f"battery {battery}")
    modem = snapshot.get("modem", {})
    if not modem.get("stale") and modem.get("link") is not None:
        bars = modem.get("signal_bars")
        parts.append(f"link {modem['link']}" + (f" ({bars}/5)" if isinstance(bars, int) else ""))
    stale = [
        name
        for name in ("power", "shore", "modem")
        if snapshot.get(name, {}).get("stale") and snapshot[name].get("stale_reason") != "not configured"
    ]
    if stale and not waiting_for:
        parts.append("no data: " + ", ".join(stale))
    alarms = snapshot.get("controller", {}).get("alarms") or []
    if alarms:
        parts.append(f"{len(alarms)} alarm{'s' if len(alarms) > 1 else ''}: " + ", ".join(a["id"] for a in alarms))
    else:
        parts.append("no alarm")
    return "; ".join(parts)


class ServiceNotifier:
    """Keeps systemd told about the controller (``Type=notify`` with ``WatchdogSec=``).

    - READY=1 once the first complete state is known (the controller's ``on_ready``), or after
      ``ready_timeout_s`` with the devices still silent named in STATUS=;
    - STATUS= one-line summaries when the summary changes, at most one per ``status_min_interval_s``;
    - WATCHDOG=1 every WATCHDOG_USEC/2 from a task on the controller's own event loop, so a stuck loop stops
      the pings; a store writer stuck for a whole watchdog period stops them too (nothing could be logged);
    - STOPPING=1 when the controller stops.
    """

    def __init__(
        self,
        controller: Controller,
        notifier: Notifier,
        *,
        ready_timeout_s: float | None = None,
        status_min_interval_s: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.controller = controller
        self.notifier = notifier
        self.ready_timeout_s = READY_TIMEOUT_S if ready_timeout_s is None else ready_timeout_s
        self.status_min_interval_s = STATUS_MIN_INTERVAL_S if status_min_interval_s is None else status_min_interval_s
        self.monotonic = monotonic
        self.ready_sent = False
        self.degraded_ready = False
        self.watchdog_pings = 0
        self.watchdog_skipped = 0
        self.last_status: str | None = None
        self._last_status_at = -1e9
        self._status_timer: asyncio.TimerHandle | None = None
        self._probe: asyncio.Future | None = None
        self._probe_started = 0.0
        self._unsubscribe: Callable[[], None] | None = None

    @classmethod
    def attach_if_systemd(cls, controller: Controller, **kwargs: Any) -> ServiceNotifier | None:
        """Wire a controller to systemd when it runs under one ($NOTIFY_SOCKET set); otherwise do nothing."""
        notifier = Notifier.from_environ()
        if not notifier.enabled:
            return None
        service = cls(controller, notifier, **kwargs)
        service.attach()
        return service

    def attach(self) -> None:
        """Register the hooks and start the tasks; call from ``Controller.start()`` on the running loop."""
        c = self.controller
        loop = asyncio.get_running_loop()
        c.on_ready.append(self._on_ready)
        c.on_stop.append(self._on_stop)
        self._unsubscribe = c.state.subscribe(self._state_changed)
        if self.notifier.watchdog_interval_s:
            c.tasks.append(loop.create_task(self._watchdog(), name="sd-watchdog"))
        c.tasks.append(loop.create_task(self._ready_deadline(), name="sd-ready-deadline"))
        if c.ready.is_set():  # attached after the first complete state (another feature awaited first)
            self._on_ready()
        else:
            self._send_status(force=True)

    # --- readiness ---

    def waiting_for(self) -> list[str]:
        out = []
        for name, poller in self.controller.pollers.items():
            if not poller.answered.is_set():
                out.append(f"{name} ({poller.last_error})" if poller.last_error else name)
        return out

    def _on_ready(self) -> None:
        if not self.ready_sent:
            self.ready_sent = True
            text = summary(self.controller.snapshot())
            self.notifier.ready(text)
            self._mark_status_sent(text)
            log.info("told systemd READY=1 (first complete state)")
        else:  # READY=1 went out at the deadline; now the silent devices have answered
            self.degraded_ready = False
            self._send_status(force=True)

    async def _ready_deadline(self) -> None:
        await asyncio.sleep(self.ready_timeout_s)
        if not self.ready_sent:
            self.ready_sent = self.degraded_ready = True
            text = summary(self.controller.snapshot(), self.waiting_for())
            self.notifier.ready(text)
            self._mark_status_sent(text)
            log.warning("told systemd READY=1 after %.0f s without a complete state: %s", self.ready_timeout_s, text)

    # --- STATUS= ---

    def current_status(self) -> str:
        waiting = self.waiting_for() if not self.controller.ready.is_set() else None
        text = summary(self.controller.snapshot(), waiting)
        return text if self.ready_sent or self.controller.ready.is_set() else "starting: " + text

    def _state_changed(self, component: str, changed: dict[str, Any], full: dict[str, Any]) -> None:
        if component == "controller" and set(changed) <= {"uptime_s"}:
            return
        self._send_status()

    def _send_status(self, force: bool = False) -> None:
        text = self.current_status()
        if text == self.last_status:
            return
        wait = self._last_status_at + self.status_min_interval_s - self.monotonic()
        if force or wait <= 0:
            self.notifier.status(text)
            self._mark_status_sent(text)
        elif self._status_timer is None:
            self._status_timer = asyncio.get_running_loop().call_later(wait, self._status_due)

    def _status_due(self) -> None:
        self._status_timer = None
        self._send_status()

    def _mark_status_sent(self, text: str) -> None:
        self.last_status = one_line(text)
        self._last_status_at = self.monotonic()
        if self._status_timer is not None:
            self._status_timer.cancel()
            self._status_timer = None

    # --- watchdog ---

    def healthy(self) -> bool:
        """The loop is alive (we are running on it); is the store's writer thread answering too?"""
        store = self.controller.store
        if store is None or self.notifier.watchdog_usec is None:
            return True
        now = self.monotonic()
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(store.run(_nothing))
            self._probe_started = now
            return True
        return now - self._probe_started < self.notifier.watchdog_usec / 1_000_000

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval_s
        assert interval is not None
        withheld = False
        while True:
            if self.healthy():
                self.notifier.watchdog()
                self.watchdog_pings += 1
                withheld = False
            else:
                self.watchdog_skipped += 1
                if not withheld:
                    log.error("store writer stuck: withholding WATCHDOG=1 so systemd restarts the controller")
                withheld = True
            await asyncio.sleep(interval)

    # --- stop ---

    def _on_stop(self) -> None:
        self.notifier.stopping("stopping")
        if self._status_timer is not None:
            self._status_timer.cancel()
            self._status_timer = None
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._probe is not None and not self._probe.done():
            self._probe.cancel()
        # The socket stays open: the watchdog keeps pinging until the controller cancels its tasks.


def _nothing(_db: Any) -> None:
    return None
