"""The modem simulator: a 3GPP or Iridium modem answering AT commands on a pty and/or TCP, with faults and power.

Standalone: ``python -m drivers.modem_sim sim --pty /tmp/modem --profile iridium`` or, against a real modem,
``python -m drivers.modem_sim poll /dev/ttyUSB2 --profile 3gpp``.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.modem import PROFILES, Modem

log = logging.getLogger(__name__)


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
USB_DEVICE = os.path.join("devices", "platform", "usb1", "1-1")  # the modem's USB device in the modelled sysfs
POWER_WATCH_S = 0.05  # how often the simulator looks at its power pin and its sysfs authorized file
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
    USB re-enumeration (``replug()``, or ``authorized`` written 0 then 1 in the tree of ``start_sysfs``) brings
    the port back still hung; only a power cycle cures it: ``power(False)`` then ``power(True)``, or the gpiozero
    pin given to ``attach_power_pin`` going low and high (the controller's ``modem.power_pin`` on a MockFactory).
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
        self._authorized_seen: tuple[int, int] | None = None  # (mtime_ns, size) of the sysfs authorized file
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

        As the kernel's ABI (Documentation/ABI/testing/sysfs-bus-usb, Documentation/usb/authorization):
        ``bus/usb/devices/1-1`` links to the device, whose ``authorized`` attribute reads 1; writing 0 removes its
        interfaces (the tty goes), writing 1 back probes them again: a new pty behind the same symlink, its
        firmware state (a hang) unchanged.
        """

        def setup() -> None:
            self._sysfs = root
            device = os.path.join(root, USB_DEVICE)
            os.makedirs(os.path.join(device, "1-1:1.2"), exist_ok=True)
            with open(os.path.join(device, "idVendor"), "w") as f:
                f.write("2c7c\n")  # Quectel's USB vendor id
            with open(os.path.join(device, "authorized"), "w") as f:
                f.write("1\n")
            devices = os.path.join(root, "bus", "usb", "devices")
            os.makedirs(devices, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.symlink(device, os.path.join(devices, "1-1"))
            self._authorized_seen = self._authorized_stamp()
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
            stamp = self._authorized_stamp()
            if stamp != self._authorized_seen:
                self._authorized_seen = stamp
                if stamp is not None and self._authorized_value() == "0":
                    self._unplug()  # de-authorised: the interfaces, and the tty, are gone
                elif self.powered:
                    # Authorised again (a write of 0 then 1 faster than this watch still changed the file).
                    self.reenumerations += 1
                    self._replug()

    def _authorized_path(self) -> str:
        return os.path.join(self._sysfs or "", USB_DEVICE, "authorized")

    def _authorized_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self._authorized_path())
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _authorized_value(self) -> str | None:
        """Read only when the file changed: the watch runs every POWER_WATCH_S."""
        try:
            with open(self._authorized_path()) as f:
                return f.read().strip()
        except OSError:
            return None

    def _link_tty(self) -> None:
        # /sys/class/tty/<pts number>/device -> the USB interface, as for a /dev/ttyUSBn
        if self._sysfs is None or self._pty_name is None:
            return
        tty_dir = os.path.join(self._sysfs, "class", "tty", os.path.basename(self._pty_name))
        os.makedirs(tty_dir, exist_ok=True)
        link = os.path.join(tty_dir, "device")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        os.symlink(os.path.join(self._sysfs, USB_DEVICE, "1-1:1.2"), link)

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
# Command line: run the simulator, or poll a real modem once


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m drivers.modem_sim", description=__doc__.splitlines()[0])
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
