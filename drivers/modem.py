"""Satellite/cellular modem over AT: command-table profiles (3GPP, Iridium), the polled driver and its simulator.

Wiring, with the simulator standing in for the modem (the demo and the tests do exactly this)::

    sim = ModemSimulator("3gpp")
    sim.start_pty("/tmp/allervers-modem")          # or: port = sim.start_tcp("127.0.0.1")
    modem = Modem("/tmp/allervers-modem")          # or: Modem(f"socket://127.0.0.1:{port}")
    await modem.open()
    print(await modem.poll())   # {'link': 'up', 'registered': True, 'registration': 'home', 'signal_bars': 4, ...}
    sim.set(reg_stat=2)         # a +CREG URC reaches the driver; modem.on_change(component) fires
    await modem.close(); sim.stop()

Standalone: ``python -m drivers.modem sim --pty /tmp/modem --profile iridium`` or
``python -m drivers.modem poll /dev/ttyUSB2 --profile 3gpp``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import heapq
import itertools
import logging
import os
import random
import re
import selectors
import signal
import socket
import sys
import threading
import time
import tty
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from drivers.at import (
    ATChannel,
    ATParseError,
    CommandFailed,
    parse_cereg,
    parse_cgpaddr,
    parse_ciev,
    parse_cops,
    parse_creg,
    parse_csq,
    parse_csqf,
    parse_sbdreg,
)
from drivers.base import DeviceError, DeviceGone, DeviceTimeout
from drivers.modem_recovery import HangRecovery, RecoverySchedule
from drivers.registry import DeviceProfile

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------------------
# Status model shared by the profiles

REGISTRATION = {0: "not_registered", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming",
                6: "home", 7: "roaming", 8: "not_registered", 9: "home", 10: "roaming"}  # fmt: skip
REGISTERED = {"home", "roaming"}
# Which of +CREG/+CEREG to believe when they disagree: the one closer to service.
REGISTRATION_RANK = {"home": 5, "roaming": 4, "searching": 3, "denied": 2, "not_registered": 1, "unknown": 0}
SBDREG_REGISTRATION = {0: "not_registered", 1: "not_registered", 2: "home", 3: "denied"}

# 3GPP rssi -> bars, by dBm (rssi n = -113 + 2n dBm), close to ModemManager's/Android's GSM levels:
#   0..1 (<= -111 dBm) 0 bars, 2..5 (-109..-103) 1, 6..9 (-101..-95) 2, 10..14 (-93..-85) 3,
#   15..19 (-83..-75) 4, 20..31 (>= -73 dBm) 5; 99 (unknown) and out-of-range values 0 bars.
CSQ_BAR_FLOORS = ((20, 5), (15, 4), (10, 3), (6, 2), (2, 1))


def bars_3gpp(rssi: int | None) -> int:
    if rssi is None or not 0 <= rssi <= 31:
        return 0
    return next((bars for floor, bars in CSQ_BAR_FLOORS if rssi >= floor), 0)


@dataclass
class ModemStatus:
    """What the driver knows, from polls and URCs; turned into the component by the profile."""

    rssi: int | None = None
    creg: int | None = None
    cereg: int | None = None
    operator: str | None = None
    ip: str | None = None
    sbdreg: int | None = None
    service: bool | None = None
    antenna_fault: bool | None = None


@dataclass(frozen=True)
class Step:
    """One init command; ``required=False`` tolerates an error result (optional features)."""

    command: str
    required: bool = True
    hardware_only: bool = False  # needs real RTS/CTS wiring (Modem(rtscts=True))


Ask = Callable[..., Awaitable[list[str]]]


async def _ask_one(ask: Ask, command: str, prefix: str, parser: Callable[[str], Any], timeout_s: float) -> Any:
    lines = await ask(command, timeout_s, prefix)
    if not lines:
        raise DeviceError("modem", f"{command}: no {prefix} line in the answer")
    try:
        return parser(lines[0])
    except ATParseError as exc:
        raise DeviceError("modem", f"{command}: {exc}") from exc


class Profile:
    """A modem family: its init table, how to poll it, how to read its URCs, how to build the component."""

    name: ClassVar[str]
    init: ClassVar[tuple[Step, ...]]
    slow_timeout_s: ClassVar[float]  # for the one command allowed to be slow (+CSQ)
    reset_command: ClassVar[str | None]  # reboots the modem (the first step of hang recovery); None: none

    async def poll(self, ask: Ask, status: ModemStatus, timeout_s: float, slow_timeout_s: float) -> None:
        raise NotImplementedError

    def on_urc(self, line: str, status: ModemStatus) -> bool:
        """Update ``status`` from a URC; True when something changed."""
        raise NotImplementedError

    def component(self, status: ModemStatus) -> dict[str, Any]:
        raise NotImplementedError


class ThreeGppProfile(Profile):
    """TS 27.007 terminals: cellular modems and IP satellite terminals."""

    name = "3gpp"
    init = (
        Step("ATE0"),
        Step("ATV1"),
        Step("AT+CMEE=1", required=False),
        Step("AT+CREG=2", required=False),
        Step("AT+CEREG=2", required=False),
    )
    slow_timeout_s = 5.0  # unused: every 3GPP command is quick
    reset_command = "AT+CFUN=1,1"  # full functionality, then reset (TS 27.007; Quectel and Sierra honour it)

    async def poll(self, ask: Ask, status: ModemStatus, timeout_s: float, slow_timeout_s: float) -> None:
        status.rssi = (await _ask_one(ask, "AT+CSQ", "+CSQ", parse_csq, timeout_s)).rssi
        # 2G/3G report +CREG, LTE +CEREG; a modem may refuse either one, not both.
        failures = []
        for command, prefix, parser, attr in (
            ("AT+CREG?", "+CREG", parse_creg, "creg"),
            ("AT+CEREG?", "+CEREG", parse_cereg, "cereg"),
        ):
            try:
                setattr(status, attr, (await _ask_one(ask, command, prefix, parser, timeout_s)).stat)
            except CommandFailed as exc:
                setattr(status, attr, None)
                failures.append(exc)
        if len(failures) == 2:
            raise failures[0]
        try:
            status.operator = (await _ask_one(ask, "AT+COPS?", "+COPS", parse_cops, timeout_s)).name
        except CommandFailed:
            status.operator = None
        try:
            lines = await ask("AT+CGPADDR", timeout_s, "+CGPADDR")
        except CommandFailed:  # e.g. +CME ERROR when no PDP context is defined yet
            lines = []
        try:
            addresses = [a for line in lines for a in parse_cgpaddr(line).addresses]
        except ATParseError as exc:
            raise DeviceError("modem", f"AT+CGPADDR: {exc}") from exc
        # Prefer IPv4: it is what the uplink routes; an IPv6-only context still counts.
        status.ip = next((a for a in addresses if ":" not in a), addresses[0] if addresses else None)

    def on_urc(self, line: str, status: ModemStatus) -> bool:
        for prefix, parser, attr in (("+CREG:", parse_creg, "creg"), ("+CEREG:", parse_cereg, "cereg")):
            if line.startswith(prefix):
                stat = parser(line).stat
                changed = getattr(status, attr) != stat
                setattr(status, attr, stat)
                return changed
        return False

    def component(self, status: ModemStatus) -> dict[str, Any]:
        names = [REGISTRATION.get(s, "unknown") for s in (status.creg, status.cereg) if s is not None]
        registration = max(names, key=REGISTRATION_RANK.__getitem__, default="unknown")
        registered = registration in REGISTERED
        bars = bars_3gpp(status.rssi)
        return {
            "link": "up" if registered and bars >= 1 and status.ip else "down",
            "registered": registered,
            "registration": registration,
            "signal_bars": bars,
            "signal_raw": None if status.rssi in (None, 99) else status.rssi,
            "operator": status.operator,
            "ip": status.ip,
        }


class IridiumProfile(Profile):
    """Iridium SBD transceivers (9602/9603/9523): bars from +CSQ, registration from +SBDREG, no IP."""

    name = "iridium"
    init = (
        Step("ATE0"),
        Step("ATV1"),
        Step("AT&K3", required=False, hardware_only=True),
        Step("AT+CIER=1,1,1,1", required=False),
    )
    slow_timeout_s = 60.0  # +CSQ waits for a satellite while acquiring
    reset_command = None  # the 9602/9603 have no software reboot: only their supply or ON/OFF line restarts them

    async def poll(self, ask: Ask, status: ModemStatus, timeout_s: float, slow_timeout_s: float) -> None:
        try:
            status.rssi = (await _ask_one(ask, "AT+CSQ", "+CSQ", parse_csq, slow_timeout_s)).rssi
        except (CommandFailed, DeviceTimeout) as exc:
            # +CSQF answers at once with the last known value; good enough until the next poll.
            log.info("%s; falling back to AT+CSQF", exc)
            status.rssi = (await _ask_one(ask, "AT+CSQF", "+CSQF", parse_csqf, timeout_s)).rssi
        try:
            status.sbdreg = await _ask_one(ask, "AT+SBDREG?", "+SBDREG", parse_sbdreg, timeout_s)
        except CommandFailed:
            status.sbdreg = None

    def on_urc(self, line: str, status: ModemStatus) -> bool:
        if not line.startswith("+CIEV:"):
            return False
        ind = parse_ciev(line)
        attr, value = {
            0: ("rssi", ind.value),
            1: ("service", bool(ind.value)),
            2: ("antenna_fault", bool(ind.value)),
        }.get(ind.indicator, (None, None))
        if attr is None:
            return False
        changed = getattr(status, attr) != value
        setattr(status, attr, value)
        return changed

    def component(self, status: ModemStatus) -> dict[str, Any]:
        registration = SBDREG_REGISTRATION.get(status.sbdreg, "unknown")
        registered = status.sbdreg == 2
        bars = min(max(status.rssi or 0, 0), 5)
        return {
            "link": "up" if (registered or status.service) and bars >= 1 else "down",
            "registered": registered,
            "registration": registration,
            "signal_bars": bars,
            "signal_raw": status.rssi,
            "operator": "Iridium" if registered else None,
            "ip": None,
            "iridium_service": status.service,
            "antenna_fault": status.antenna_fault,
        }


PROFILES: dict[str, type[Profile]] = {p.name: p for p in (ThreeGppProfile, IridiumProfile)}

# ---------------------------------------------------------------------------------------------------------------
# Driver


class Modem:
    """The ``modem`` component: a PolledDevice over an AT port (device path or pyserial URL).

    ``on_change`` (optional) is called on the event loop with the new component dict whenever a URC changes
    it between polls, so the controller can publish at once.
    """

    def __init__(
        self,
        port: str,
        baudrate: int = 115200,
        profile: str = "3gpp",
        *,
        name: str = "modem",
        timeout_s: float = 5.0,
        slow_timeout_s: float | None = None,
        resync_s: float = 2.0,
        rtscts: bool = False,
        on_change: Callable[[dict[str, Any]], None] | None = None,
        recovery: HangRecovery | None = None,
    ):
        if profile not in PROFILES:
            raise ValueError(f"{name}: profile must be one of {', '.join(sorted(PROFILES))}, got {profile!r}")
        if not port:
            raise ValueError(f"{name}: port must be a device path or a pyserial URL")
        for option, value in (("timeout_s", timeout_s), ("slow_timeout_s", slow_timeout_s), ("resync_s", resync_s)):
            if value is not None and not 0 < value <= 600:
                raise ValueError(f"{name}: {option} must be in (0, 600] s, got {value}")
        if not 50 <= baudrate <= 4_000_000:
            raise ValueError(f"{name}: baudrate must be in 50..4000000, got {baudrate}")
        self.name = name
        self.port = port
        self.profile = PROFILES[profile]()
        self.timeout_s = timeout_s
        self.slow_timeout_s = slow_timeout_s or self.profile.slow_timeout_s
        self.rtscts = rtscts
        self.on_change = on_change
        self.status = ModemStatus()
        self._last: dict[str, Any] | None = None
        self._polling = False
        self._channel = ATChannel(
            port, baudrate, device=name, rtscts=rtscts, urc_handler=self._on_urc, resync_s=resync_s
        )
        self.recovery = recovery
        # The poller's backstop (DevicePoller): above any one attempt, so a silent modem fails on its own
        # command timeout and the recovery step (up to a power cut) runs inside the attempt.
        self.poll_timeout_s = self.slow_timeout_s + 6 * timeout_s
        if recovery is not None:
            self.poll_timeout_s += recovery.schedule.power_off_s + recovery.schedule.usb_rebind_s
            recovery.port = recovery.port or port
            recovery.reset = self._send_reset

    def component(self) -> dict[str, Any]:
        """The component as currently known (last poll plus URCs since)."""
        return self.profile.component(self.status)

    async def open(self) -> None:
        """Open the port and run the profile's init table; safe to call again after a failure or unplug."""
        await self._recovering(self._open())

    async def poll(self) -> dict[str, Any]:
        return await self._recovering(self._poll())

    async def _recovering(self, attempt: Awaitable[Any]) -> Any:
        # Silence (no answer, or the port gone) feeds the hang escalation; any answer, even an error, ends it.
        try:
            result = await attempt
        except (DeviceTimeout, DeviceGone) as exc:
            if self.recovery is None:
                raise
            await self._channel.close()
            step = await self.recovery.silent()
            if step is None:
                raise
            raise type(exc)(self.name, f"{exc.detail}; recovery: {step}") from exc
        except CommandFailed:
            if self.recovery is not None:
                self.recovery.answered()
            raise
        if self.recovery is not None:
            self.recovery.answered()
        return result

    async def _send_reset(self) -> str | None:
        """Write the profile's reset command without waiting: a hung modem never answers it."""
        command = self.profile.reset_command
        if command is None:
            return None
        await self._channel.open()
        try:
            await self._channel.send_blind(command)
        finally:
            await self._channel.close()
        return command

    async def _open(self) -> None:
        self.status = ModemStatus()  # after a re-plug the modem has rebooted: forget everything
        self._last = None
        await self._channel.open()
        try:
            for step in self.profile.init:
                if step.hardware_only and not self.rtscts:
                    continue
                try:
                    await self._ask(step.command, self.timeout_s)
                except CommandFailed as exc:
                    if step.required:
                        raise
                    log.info("%s (optional, ignored)", exc)
        except BaseException:
            await self._channel.close()
            raise

    async def _poll(self) -> dict[str, Any]:
        self._polling = True
        try:
            await self.profile.poll(self._ask, self.status, self.timeout_s, self.slow_timeout_s)
        finally:
            self._polling = False
        self._last = self.component()
        return dict(self._last)

    async def close(self) -> None:
        await self._channel.close()

    async def _ask(self, command: str, timeout_s: float, prefix: str | None = None) -> list[str]:
        return await self._channel.command(command, timeout_s, prefix)

    def _on_urc(self, line: str) -> None:
        try:
            changed = self.profile.on_urc(line, self.status)
        except ATParseError as exc:
            log.warning("%s: ignored URC: %s", self.name, exc)
            return
        # Before the first poll the component is mostly unknown, and during a poll its result is coming anyway.
        if not changed or self._last is None or self._polling:
            return
        component = self.component()
        if component == self._last:
            return
        self._last = component
        if self.on_change is not None:
            try:
                self.on_change(dict(component))
            except Exception:
                log.exception("%s: on_change callback failed", self.name)


# ---------------------------------------------------------------------------------------------------------------
# Simulator


@dataclass
class SimState:
    """What the simulated modem reports. Change it with ``ModemSimulator.set(key=value, ...)``.

    rssi: 3GPP 0..31 or 99 (unknown); Iridium 0..5 bars.   ber: 0..7 or 99.
    reg_stat: +CREG/+CEREG stat 0..5.   lac, ci, act: cell identity in +CREG/+CEREG (n=2) and +COPS.
    operator: long name, None when not registered.   ip: PDP address of context 1, None for none.
    sbdreg: Iridium +SBDREG 0..3.   service: Iridium network service indicator.   antenna_fault: Iridium.
    """

    rssi: int = 17
    ber: int = 99
    reg_stat: int = 1
    lac: str = "1A2B"
    ci: str = "01C3D4E5"
    act: int = 7
    operator: str | None = "Allervers Mobile"
    ip: str | None = "10.64.12.7"
    sbdreg: int = 2
    service: bool = True
    antenna_fault: bool = False

    @classmethod
    def for_profile(cls, profile: str) -> SimState:
        return cls(rssi=4, operator=None, ip=None) if profile == "iridium" else cls()


@dataclass
class _Settings:
    """Modem settings that a power cycle resets."""

    echo: bool = True
    verbose: bool = True
    cmee: int = 0
    creg_n: int = 0
    cereg_n: int = 0
    cier: tuple[int, int, int, int] = (0, 0, 0, 0)


@dataclass(eq=False)
class _Session:
    kind: str  # "pty" or "tcp"
    fileobj: Any  # pty master fd or connected socket
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    queue: deque = field(default_factory=deque)
    busy: bool = False
    closed: bool = False


FAULTS = ("garbage", "silent", "cme", "hung")
MUTE = ("silent", "hung")  # faults under which nothing is answered
POWER_WATCH_S = 0.05  # how often the simulator looks at its power pin and its sysfs bind file
CFUN_REBOOT_S = 0.3  # AT+CFUN=1,1: OK, then the port drops and comes back
BASIC_COMMANDS = re.compile(r"^AT(E[01]?|V[01]?|Z|I|&K[03]|\+CMEE(=\d|\?)?)?$")
_MAX_COMMAND = 1024
_MAX_OUTBUF = 64 * 1024


class ModemSimulator:
    """A modem that answers AT commands on a pty (udev-like symlink) and/or TCP, from ``state``.

    Runs its own thread, so it works standalone and inside an asyncio program. Settable at any time:
    ``set(key=value)`` (keys: see SimState), ``fault`` ("garbage", "silent", "cme", "hung" or None),
    ``csq_delay_s`` (Iridium +CSQ latency), ``urc_rate`` (chance of a URC between an answer and its OK).
    ``unplug()`` closes the pty (and TCP) like a USB unplug; ``replug()`` brings a fresh one (new /dev/pts
    number, same symlink). ``commands`` lists every command line the modem executed.

    "hung" is the field failure of Quectel/Sierra modems: nothing answers, ``AT+CFUN=1,1`` is never read, a
    USB re-enumeration (``replug()``, or a bind through ``start_sysfs``) brings the port back still hung; only
    a power cycle cures it: ``power(False)`` then ``power(True)``, or the gpiozero pin given to
    ``attach_power_pin`` going low and high (the controller's ``modem.power_pin`` on a MockFactory).
    """

    def __init__(
        self, profile: str = "3gpp", *, csq_delay_s: float = 3.0, urc_rate: float = 0.0, boot_s: float = 0.0, seed=None
    ):
        if profile not in PROFILES:
            raise ValueError(f"modem simulator: profile must be one of {', '.join(sorted(PROFILES))}")
        self.profile = profile
        self.csq_delay_s = csq_delay_s
        self.urc_rate = urc_rate
        self._fault: str | None = None
        self._state = SimState.for_profile(profile)
        self._settings = _Settings()
        self._rng = random.Random(seed)
        self._log: list[str] = []
        self._log_lock = threading.Lock()
        self._sessions: list[_Session] = []
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._posted: deque[Callable[[], None]] = deque()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._running = False
        self._link_path: str | None = None
        self._pty: tuple[int, int] | None = None  # master, slave
        self._pty_name: str | None = None
        self._after_ok: list[str] = []  # URCs a command triggers right after its OK
        self._tcp_addr: tuple[str, int] | None = None
        self._listener: socket.socket | None = None
        self.powered = True
        self.boot_s = boot_s  # from power-up to the port enumerating (a Quectel EG25 takes about 13 s)
        self._power_pin: Any = None
        self._sysfs: str | None = None
        self._bind_seen: tuple[int, int] | None = None  # (mtime_ns, size) of the sysfs bind file
        self.power_cycles = 0
        self.reenumerations = 0

    # -- public API (any thread) -----------------------------------------------------------------------------------

    @property
    def state(self) -> SimState:
        return self._call(lambda: dataclasses.replace(self._state))

    @property
    def commands(self) -> list[str]:
        with self._log_lock:
            return list(self._log)

    @property
    def fault(self) -> str | None:
        return self._fault

    @fault.setter
    def fault(self, fault: str | None) -> None:
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"modem simulator: fault must be one of {', '.join(FAULTS)} or None, got {fault!r}")
        self._fault = fault

    @property
    def link_path(self) -> str | None:
        return self._link_path

    def set(self, **changes: Any) -> None:
        """Change the reported state; emits the URCs a real modem would (if the driver enabled them)."""
        known = {f.name for f in dataclasses.fields(SimState)}
        for key in changes:
            if key not in known:
                raise KeyError(f"modem simulator: unknown state key {key!r}; keys are {', '.join(sorted(known))}")
        self._call(lambda: self._apply(changes))

    def start_pty(self, link_path: str) -> str:
        """Serve on a new pty; ``link_path`` becomes a symlink to its slave. Returns the slave's name."""
        self._link_path = link_path
        self._ensure_thread()
        return self._call(self._open_pty)

    def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve on TCP (like ser2net); returns the bound port for ``socket://host:port``."""
        self._ensure_thread()
        return self._call(lambda: self._listen(host, port))

    def unplug(self) -> None:
        """Vanish like an unplugged USB modem: pty master closed, symlink removed, TCP closed."""
        self._call(self._unplug)

    def replug(self) -> None:
        """Come back as a freshly powered modem on a new pty (and the same TCP port)."""
        self._call(self._replug)

    def power(self, on: bool) -> None:
        """Cut or restore the modem's supply: off vanishes like an unplug and cures a hang; on boots it."""
        self._call(lambda: self._set_power(on))

    def attach_power_pin(self, pin: Any) -> None:
        """Follow a gpiozero pin (``device.pin`` of the controller's power output): low cuts the supply."""
        self._call(lambda: setattr(self, "_power_pin", pin))
        self._wake()

    def start_sysfs(self, root: str) -> None:
        """Lay out a sysfs tree under ``root`` in which the pty is a USB serial port of device ``1-1``.

        Writing ``1-1`` to ``bus/usb/drivers/usb/bind`` (what the driver's USB step does) re-enumerates the
        modem: a new pty behind the same symlink, its firmware state (a hang) unchanged.
        """

        def setup() -> None:
            self._sysfs = root
            device = os.path.join(root, "devices", "platform", "usb1", "1-1")
            os.makedirs(os.path.join(device, "1-1:1.2"), exist_ok=True)
            with open(os.path.join(device, "idVendor"), "w") as f:
                f.write("2c7c\n")  # Quectel's USB vendor id
            driver = os.path.join(root, "bus", "usb", "drivers", "usb")
            os.makedirs(driver, exist_ok=True)
            for name in ("bind", "unbind"):
                open(os.path.join(driver, name), "a").close()
            self._bind_seen = self._bind_stamp()
            self._link_tty()

        self._call(setup)
        self._wake()

    def stop(self) -> None:
        if self._thread is not None:
            self._call(self._unplug)
            self._running = False
            self._wake()
            self._thread.join(5)
            self._thread = None
        with contextlib.suppress(OSError):
            self._sel.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def serve_forever(self) -> None:
        """Block until stop() (for the standalone command)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    # -- thread plumbing -------------------------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._running = True
            self._thread = threading.Thread(target=self._run, name="modem-sim", daemon=True)
            self._thread.start()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the simulator thread (where all state lives) and return its result."""
        if self._thread is None or threading.current_thread() is self._thread:
            return fn()
        done = threading.Event()
        box: list = []

        def run() -> None:
            try:
                box.append((True, fn()))
            except BaseException as exc:
                box.append((False, exc))
            done.set()

        self._posted.append(run)
        self._wake()
        if not done.wait(5):
            raise TimeoutError("modem simulator thread is not responding")
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def _later(self, delay_s: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay_s, next(self._seq), fn))

    def _run(self) -> None:
        while self._running:
            timeout = max(0.0, self._timers[0][0] - time.monotonic()) if self._timers else None
            if self._power_pin is not None or self._sysfs is not None:
                timeout = POWER_WATCH_S if timeout is None else min(timeout, POWER_WATCH_S)
                self._watch_power_and_bus()
            for key, mask in self._sel.select(timeout):
                try:
                    self._on_event(key, mask)
                except Exception:
                    log.exception("modem simulator: event handling failed")
            while self._timers and self._timers[0][0] <= time.monotonic():
                heapq.heappop(self._timers)[2]()
            while self._posted:
                self._posted.popleft()()

    def _on_event(self, key: selectors.SelectorKey, mask: int) -> None:
        if key.data == "wake":
            with contextlib.suppress(OSError):
                os.read(self._wake_r, 4096)
        elif key.data == "listener":
            conn, _ = self._listener.accept()
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._add_session(_Session("tcp", conn))
        else:
            session: _Session = key.data
            if mask & selectors.EVENT_WRITE:
                self._flush(session)
            if mask & selectors.EVENT_READ and not session.closed:
                try:
                    data = os.read(session.fileobj, 4096) if session.kind == "pty" else session.fileobj.recv(4096)
                except BlockingIOError:
                    return
                except OSError:
                    data = b""
                if not data:
                    if session.kind == "tcp":
                        self._close_session(session)
                    return
                self._on_input(session, data)

    # -- transports --------------------------------------------------------------------------------------------------

    def _add_session(self, session: _Session) -> None:
        self._sessions.append(session)
        self._sel.register(session.fileobj, selectors.EVENT_READ, session)

    def _close_session(self, session: _Session) -> None:
        if session.closed:
            return
        session.closed = True
        self._sessions.remove(session)
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(session.fileobj)
        with contextlib.suppress(OSError):
            if session.kind == "pty":
                os.close(session.fileobj)
            else:
                session.fileobj.close()

    def _open_pty(self) -> str:
        previous = self._pty_name
        spare = None
        master, slave = os.openpty()
        if previous is not None and os.ttyname(slave) == previous:
            # Real re-enumeration gives a new device number; hold this one so the kernel hands out another.
            spare, (master, slave) = (master, slave), os.openpty()
        if spare is not None:
            for fd in spare:
                os.close(fd)
        tty.setraw(master)  # applies to the pair: no echo or line editing between driver and simulator
        os.set_blocking(master, False)
        self._pty = (master, slave)  # keeping the slave open means reading the master never sees EIO
        self._pty_name = os.ttyname(slave)
        tmp = f"{self._link_path}.tmp{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(self._pty_name, tmp)
        os.replace(tmp, self._link_path)
        self._add_session(_Session("pty", master))
        return self._pty_name

    def _listen(self, host: str, port: int) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(4)
        listener.setblocking(False)
        self._listener = listener
        self._tcp_addr = listener.getsockname()[:2]
        self._sel.register(listener, selectors.EVENT_READ, "listener")
        return self._tcp_addr[1]

    def _unplug(self) -> None:
        for session in list(self._sessions):
            self._close_session(session)
        if self._pty is not None:
            with contextlib.suppress(OSError):
                os.close(self._pty[1])
            self._pty = None
            with contextlib.suppress(FileNotFoundError):
                if self._link_path and os.path.islink(self._link_path):
                    os.unlink(self._link_path)
        if self._listener is not None:
            self._sel.unregister(self._listener)
            self._listener.close()
            self._listener = None
        self._timers.clear()

    def _watch_power_and_bus(self) -> None:
        if self._power_pin is not None:
            on = bool(self._power_pin.state)
            if on != self.powered:
                self._set_power(on)
        if self._sysfs is not None:
            stamp = self._bind_stamp()
            if stamp != self._bind_seen:
                self._bind_seen = stamp
                if self.powered:
                    self.reenumerations += 1
                    self._replug()

    def _bind_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(os.path.join(self._sysfs or "", "bus", "usb", "drivers", "usb", "bind"))
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _link_tty(self) -> None:
        # /sys/class/tty/<pts number>/device -> the USB interface, as for a /dev/ttyUSBn
        if self._sysfs is None or self._pty_name is None:
            return
        tty_dir = os.path.join(self._sysfs, "class", "tty", os.path.basename(self._pty_name))
        os.makedirs(tty_dir, exist_ok=True)
        link = os.path.join(tty_dir, "device")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        os.symlink(os.path.join(self._sysfs, "devices", "platform", "usb1", "1-1", "1-1:1.2"), link)

    def _set_power(self, on: bool) -> None:
        if on == self.powered:
            return
        self.powered = on
        if on:
            self._later(self.boot_s, lambda: self._replug() if self.powered else None)
            return
        self.power_cycles += 1
        if self._fault == "hung":
            self._fault = None  # the firmware restarts from scratch with its supply
        self._unplug()

    def _replug(self) -> None:
        self._unplug()
        self._settings = _Settings()  # re-enumeration means a power cycle: echo back on, URCs off
        if self._link_path:
            self._pty = None
            self._open_pty()
            self._link_tty()
        if self._tcp_addr:
            self._listen(*self._tcp_addr)

    # -- output ------------------------------------------------------------------------------------------------------

    def _send(self, session: _Session, data: bytes) -> None:
        if session.closed:
            return
        if len(session.outbuf) + len(data) > _MAX_OUTBUF:
            return  # nobody reading (pty not opened yet): drop, as a UART would
        session.outbuf += data
        self._flush(session)

    def _flush(self, session: _Session) -> None:
        while session.outbuf and not session.closed:
            try:
                if session.kind == "pty":
                    n = os.write(session.fileobj, session.outbuf)
                else:
                    n = session.fileobj.send(session.outbuf)
            except BlockingIOError:
                break
            except OSError:
                if session.kind == "tcp":
                    self._close_session(session)
                else:
                    session.outbuf.clear()
                return
            del session.outbuf[:n]
        if not session.closed:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if session.outbuf else 0)
            self._sel.modify(session.fileobj, events, session)

    def _frame(self, line: str) -> bytes:
        return f"\r\n{line}\r\n".encode() if self._settings.verbose else f"{line}\r\n".encode()

    def _final(self, result: str) -> bytes:
        if self._settings.verbose:
            return f"\r\n{result}\r\n".encode()
        codes = {"OK": "0", "ERROR": "4"}
        return f"{codes.get(result, '4')}\r".encode()

    def _garbage(self) -> bytes:
        if self._fault != "garbage":
            return b""
        pieces = [
            bytes(self._rng.randrange(0x80, 0x100) for _ in range(self._rng.randrange(1, 24))) + b"\r\n",
            b"~" * (self._rng.randrange(600, 3000)) + b"\r\n",  # overlong line
            b"\x00\x01\x1b[0m#",  # control characters, no terminator: glued to the next framing
            b"+C",  # a partial line
        ]
        return b"".join(self._rng.sample(pieces, self._rng.randrange(1, len(pieces) + 1)))

    def _broadcast(self, lines: list[str]) -> None:
        for session in self._sessions:
            self._send(session, b"".join(self._frame(line) for line in lines))

    # -- state and URCs ----------------------------------------------------------------------------------------------

    def _apply(self, changes: dict[str, Any]) -> None:
        old = dataclasses.replace(self._state)
        for key, value in changes.items():
            setattr(self._state, key, value)
        self._broadcast([u for key in changes if getattr(old, key) != changes[key] for u in self._urcs_for(key)])

    def _registration_urcs(self) -> list[str]:
        s, st = self._settings, self._state
        urcs = []
        for command, n in (("+CREG", s.creg_n), ("+CEREG", s.cereg_n)):
            if n == 1:
                urcs.append(f"{command}: {st.reg_stat}")
            elif n == 2:
                urcs.append(f'{command}: {st.reg_stat},"{st.lac}","{st.ci}",{st.act}')
        return urcs

    def _urcs_for(self, key: str) -> list[str]:
        if self.profile == "3gpp":
            return self._registration_urcs() if key in ("reg_stat", "lac", "ci", "act") else []
        mode, sig, svc, ant = self._settings.cier
        indicator = {"rssi": (0, sig, self._state.rssi), "service": (1, svc, int(self._state.service)),
                     "antenna_fault": (2, ant, int(self._state.antenna_fault))}.get(key)  # fmt: skip
        if mode and indicator and indicator[1]:
            return [f"+CIEV:{indicator[0]},{indicator[2]}"]
        return []

    def _chatter(self) -> list[str]:
        """A URC slipped between an answer and its final result, when ``urc_rate`` says so."""
        if self._rng.random() >= self.urc_rate:
            return []
        if self.profile == "3gpp":
            return self._registration_urcs()[:1] or ["RING"]
        return self._urcs_for("rssi") or ["SBDRING"]

    # -- command interpreter -----------------------------------------------------------------------------------------

    def _on_input(self, session: _Session, data: bytes) -> None:
        if self._fault in MUTE:
            return
        if self._settings.echo:
            self._send(session, data)
        for byte in data:
            if byte == 0x0D:
                line = session.inbuf.decode("ascii", errors="replace").strip()
                session.inbuf.clear()
                if line:
                    session.queue.append(line)
            elif byte != 0x0A and len(session.inbuf) < _MAX_COMMAND:
                session.inbuf.append(byte)
        self._next(session)

    def _next(self, session: _Session) -> None:
        while session.queue and not session.busy and not session.closed:
            line = session.queue.popleft()
            if self._fault in MUTE:
                continue
            with self._log_lock:
                self._log.append(line)
            info, result, delay_s = self._execute(line)
            if delay_s:
                session.busy = True

                def answer(session=session, line=line) -> None:
                    session.busy = False
                    # Decide after the wait: a slow +CSQ sees the service state at the time it answers.
                    info, result, _ = self._execute(line, delayed=True)
                    self._answer(session, info, result)
                    self._next(session)

                self._later(delay_s, answer)
            else:
                self._answer(session, info, result)

    def _answer(self, session: _Session, info: list[str], result: str) -> None:
        if self._fault in MUTE:
            return
        out = bytearray(self._garbage())
        out += b"".join(self._frame(line) for line in info)
        out += b"".join(self._frame(urc) for urc in self._chatter()) + self._garbage()
        out += self._final(result)
        self._send(session, bytes(out))
        if result == "OK" and self._after_ok:
            self._broadcast(self._after_ok)
        self._after_ok = []

    def _cme(self, code: int = 10, text: str = "SIM not inserted") -> str:
        return {0: "ERROR", 1: f"+CME ERROR: {code}", 2: f"+CME ERROR: {text}"}[self._settings.cmee]

    def _execute(self, line: str, delayed: bool = False) -> tuple[list[str], str, float]:
        """(information lines, final result, delay before answering) for one command line."""
        cmd = line.upper()
        s, iridium = self._settings, self.profile == "iridium"
        if self._fault == "cme" and not BASIC_COMMANDS.match(cmd):
            return [], self._cme(), 0.0
        if cmd in ("AT", "AT&K0", "AT&K3", "AT+SBDMTA=0", "AT+SBDMTA=1"):
            return [], "OK", 0.0
        if m := re.fullmatch(r"ATE([01]?)", cmd):
            s.echo = m.group(1) == "1"
            return [], "OK", 0.0
        if m := re.fullmatch(r"ATV([01]?)", cmd):
            s.verbose = m.group(1) == "1"
            return [], "OK", 0.0
        if cmd == "ATZ":
            self._settings = _Settings()
            return [], "OK", 0.0
        if cmd in ("ATI", "AT+CGMI", "AT+CGMM", "AT+CGMR", "AT+CGSN"):
            answer = {"ATI": "Allervers modem simulator", "AT+CGMI": "Allervers", "AT+CGSN": "300234010753370",
                      "AT+CGMM": "IRIDIUM 9603" if iridium else "SIM-LTE", "AT+CGMR": "1.0"}  # fmt: skip
            return [answer[cmd]], "OK", 0.0
        if m := re.fullmatch(r"AT\+CMEE=([012])", cmd):
            s.cmee = int(m.group(1))
            return [], "OK", 0.0
        if cmd == "AT+CMEE?":
            return [f"+CMEE: {s.cmee}"], "OK", 0.0
        if iridium:
            return self._execute_iridium(cmd, delayed)
        return self._execute_3gpp(cmd)

    def _execute_3gpp(self, cmd: str) -> tuple[list[str], str, float]:
        s, st = self._settings, self._state
        if cmd == "AT+CFUN=1,1":
            self._later(CFUN_REBOOT_S, self._replug)  # after the OK: the modem reboots and re-enumerates
            return [], "OK", 0.0
        if cmd == "AT+CFUN?":
            return ["+CFUN: 1"], "OK", 0.0
        if cmd == "AT+CSQ":
            return [f"+CSQ: {st.rssi},{st.ber}"], "OK", 0.0
        if m := re.fullmatch(r"AT\+C(E?)REG=([012])", cmd):
            setattr(s, "cereg_n" if m.group(1) else "creg_n", int(m.group(2)))
            return [], "OK", 0.0
        if m := re.fullmatch(r"AT\+C(E?)REG\?", cmd):
            name, n = ("+CEREG", s.cereg_n) if m.group(1) else ("+CREG", s.creg_n)
            cell = f',"{st.lac}","{st.ci}",{st.act}' if n == 2 and st.reg_stat in (1, 5) else ""
            return [f"{name}: {n},{st.reg_stat}{cell}"], "OK", 0.0
        if cmd == "AT+COPS?":
            if st.operator and st.reg_stat in (1, 5):
                return [f'+COPS: 0,0,"{st.operator}",{st.act}'], "OK", 0.0
            return ["+COPS: 0"], "OK", 0.0
        if cmd in ("AT+CGPADDR", "AT+CGPADDR=1"):
            return [f'+CGPADDR: 1,"{st.ip}"' if st.ip else "+CGPADDR: 1"], "OK", 0.0
        return [], "ERROR", 0.0

    def _execute_iridium(self, cmd: str, delayed: bool) -> tuple[list[str], str, float]:
        s, st = self._settings, self._state
        if cmd == "AT+CSQ":
            if not delayed and self.csq_delay_s > 0:
                return [], "", self.csq_delay_s
            return ([f"+CSQ:{st.rssi}"], "OK", 0.0) if st.service else ([], "ERROR", 0.0)
        if cmd == "AT+CSQF":
            return [f"+CSQF:{st.rssi}"], "OK", 0.0
        if m := re.fullmatch(r"AT\+CIER=([01]),([01]),([01])(?:,([01]))?", cmd):
            s.cier = (int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4) or 0))
            # The transceiver reports the current value of each indicator it was asked for.
            self._after_ok = [u for key in ("rssi", "service", "antenna_fault") for u in self._urcs_for(key)]
            return [], "OK", 0.0
        if cmd == "AT+CIER?":
            return ["+CIER:{},{},{},{}".format(*s.cier)], "OK", 0.0
        if cmd == "AT+SBDREG?":
            return [f"+SBDREG:{st.sbdreg}"], "OK", 0.0
        return [], "ERROR", 0.0


# ---------------------------------------------------------------------------------------------------------------
# Registry: the profiles as the config names them


def _build(section: Any, name: str) -> Modem:
    recovery = HangRecovery(
        RecoverySchedule(
            at_reset_s=section.recovery_at_reset_s,
            usb_reset_s=section.recovery_usb_reset_s,
            power_cut_s=section.recovery_power_cut_s,
            power_off_s=section.power_off_s,
        ),
        usb_device=section.usb_device,
        sysfs=section.sysfs,
    )
    return Modem(
        section.port,
        baudrate=section.baudrate,
        profile=section.profile,
        name=name,
        timeout_s=section.timeout_s,
        recovery=recovery,
    )


def _iridium_alarm_rules(device: str) -> list[Any]:
    from firmware_host.alarms import AlarmRule, AlarmText

    def antenna_fault(state: Any) -> AlarmText | None:
        if state.value("modem", "antenna_fault") and state.is_fresh("modem"):
            return AlarmText("the Iridium modem reports an antenna fault: check the antenna cable and connector", {})
        return None

    return [AlarmRule(f"{device}.antenna_fault", "alarm", antenna_fault)]


DEVICE_PROFILES = (
    DeviceProfile("modem", "3gpp", "3GPP TS 27.007 modem (cellular, IP satellite terminal)", build=_build),
    DeviceProfile(
        "modem", "iridium", "Iridium SBD transceiver (9602/9603/9523)", build=_build, alarm_rules=_iridium_alarm_rules
    ),
)

# ---------------------------------------------------------------------------------------------------------------
# Command line: run the simulator, or poll a real modem once


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m drivers.modem", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    sim_p = sub.add_parser("sim", help="run the simulator")
    sim_p.add_argument("--profile", choices=sorted(PROFILES), default="3gpp")
    sim_p.add_argument("--pty", help="symlink to create for the pty, e.g. /tmp/allervers-modem")
    sim_p.add_argument("--tcp", help="HOST:PORT to listen on")
    sim_p.add_argument("--csq-delay", type=float, default=3.0)
    poll_p = sub.add_parser("poll", help="open a modem and poll it once")
    poll_p.add_argument("port")
    poll_p.add_argument("--profile", choices=sorted(PROFILES), default="3gpp")
    poll_p.add_argument("--baudrate", type=int, default=115200)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.action == "sim":
        sim = ModemSimulator(args.profile, csq_delay_s=args.csq_delay, urc_rate=0.1)
        if args.pty:
            print(f"modem simulator on {args.pty} -> {sim.start_pty(args.pty)}")
        if args.tcp:
            host, _, port = args.tcp.rpartition(":")
            print(f"modem simulator on socket://{host}:{sim.start_tcp(host, int(port))}")
        if not (args.pty or args.tcp):
            parser.error("give --pty and/or --tcp")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so systemd/timeout stops remove the symlink
        try:
            sim.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            sim.stop()
        return

    async def poll_once() -> None:
        modem = Modem(args.port, args.baudrate, args.profile)
        try:
            await modem.open()
            print(await modem.poll())
        finally:
            await modem.close()

    asyncio.run(poll_once())


if __name__ == "__main__":
    main()
