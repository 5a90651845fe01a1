"""AT command line protocol: byte framing, result classification, answer parsers and an asyncio AT channel."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

import serial

from drivers.base import DeviceError, DeviceGone, DeviceTimeout

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 512  # longer than any real answer; anything beyond is noise and is dropped whole

# ---------------------------------------------------------------------------------------------------------------
# Framing


class LineFramer:
    """Turns a byte stream into text lines, whatever the chunking.

    CR and LF both end a line and empty lines vanish, so ``\\r\\n``, a bare ``\\r`` after an echoed command and
    ``\\n`` from sloppy firmware all frame the same way. A line longer than ``max_line`` bytes is dropped whole
    (line noise), and bytes that are not UTF-8 decode to U+FFFD instead of raising.
    """

    def __init__(self, max_line: int = MAX_LINE_BYTES):
        self.max_line = max_line
        self._partial = bytearray()
        self._overlong = False

    def feed(self, data: bytes) -> list[str]:
        lines: list[str] = []
        start = 0
        for match in re.finditer(rb"[\r\n]", data):
            self._partial += data[start : match.start()]
            start = match.end()
            self._finish(lines)
        self._partial += data[start:]
        if len(self._partial) > self.max_line:
            # Keep only the fact that this line is too long, not its bytes: a noisy line never grows memory.
            self._overlong = True
            self._partial.clear()
        return lines

    def reset(self) -> None:
        self._partial.clear()
        self._overlong = False

    def _finish(self, lines: list[str]) -> None:
        raw, overlong = bytes(self._partial), self._overlong or len(self._partial) > self.max_line
        self._partial.clear()
        self._overlong = False
        if overlong:
            return
        text = raw.decode("utf-8", errors="replace").strip(" \t\x00")
        if text:
            lines.append(text)


# ---------------------------------------------------------------------------------------------------------------
# Result classification

FINAL_OK = ("OK", "0")
FINAL_ERRORS = ("ERROR", "4", "NO CARRIER", "3", "BUSY", "7", "NO ANSWER", "8", "NO DIALTONE", "6")
FINAL_ERROR_PREFIXES = ("+CME ERROR:", "+CMS ERROR:", "COMMAND NOT SUPPORT")

# URCs matched first (as ModemManager does), so they never end up among a command's information lines.
# +CREG/+CEREG/+CGREG are URCs only in their unsolicited shape: <stat> alone or followed by a quoted lac/tac;
# the query answer has an unquoted <n>,<stat> pair.
URC_PATTERNS = tuple(
    re.compile(p)
    for p in (
        r'^\+C(?:E|G)?REG:\s*\d+\s*(?:,\s*"[^"]*".*)?$',
        r"^\+CIEV:",
        r"^RING$",
        r"^\+CRING:",
        r"^SBDRING$",
        r"^\+CGEV:",
        r"^\+CMTI:",
        r"^\+CUSD:",
        r"^\+CLIP:",
        r"^\^[A-Z]+:",
    )
)

CME_ERRORS = {
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    15: "SIM wrong",
    30: "no network service",
    31: "network timeout",
    100: "unknown",
}


def is_urc(line: str) -> bool:
    return any(p.match(line) for p in URC_PATTERNS)


def is_final(line: str) -> bool:
    return line in FINAL_OK or line in FINAL_ERRORS or line.startswith(FINAL_ERROR_PREFIXES)


def describe_result(line: str) -> str:
    """The final result as the error text, with the meaning of a numeric +CME ERROR appended."""
    m = re.fullmatch(r"\+CME ERROR:\s*(\d{1,5})", line)
    if m and int(m.group(1)) in CME_ERRORS:
        return f"{line} ({CME_ERRORS[int(m.group(1))]})"
    return line


# ---------------------------------------------------------------------------------------------------------------
# Answer parsers: pure functions, each raising ATParseError (a ValueError) on anything they cannot decode.


class ATParseError(ValueError):
    """An answer line that does not have the shape its command promises; names the command and the text."""

    def __init__(self, command: str, text: str, why: str = "unexpected format"):
        super().__init__(f"cannot parse {command} answer {text!r}: {why}")
        self.command = command
        self.text = text


def split_fields(command: str, text: str, whole: str | None = None) -> list[tuple[str, bool]]:
    """Split an answer's parameters at commas outside quotes; each field comes with 'was quoted'.

    ``whole`` is the full answer line, for the error message.
    """
    whole = text if whole is None else whole
    fields: list[tuple[str, bool]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise ATParseError(command, whole, "unterminated quote")
            fields.append((text[i + 1 : end], True))
            i = end + 1
            while i < n and text[i] == " ":
                i += 1
            if i < n and text[i] != ",":
                raise ATParseError(command, whole, "text after a quoted field")
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            fields.append((text[i:end].strip(" "), False))
            i = end
        if i >= n:
            return fields
        i += 1  # the comma


def _body(command: str, text: str) -> str:
    """The parameters after ``<command>:``; the space after the colon is optional (Iridium omits it)."""
    if not text.startswith(command + ":"):
        raise ATParseError(command, text, f"does not start with {command}:")
    return text[len(command) + 1 :].strip(" ")


def _int(command: str, text: str, field: tuple[str, bool], lo: int = 0, hi: int = 65535) -> int:
    value, quoted = field
    # ASCII digits only and bounded length: int() would accept '٣', '1_0' and choke on 5000-digit noise.
    if quoted or not re.fullmatch(r"[0-9]{1,6}", value):
        raise ATParseError(command, text, f"{value!r} is not a number")
    number = int(value)
    if not lo <= number <= hi:
        raise ATParseError(command, text, f"{number} is outside {lo}..{hi}")
    return number


@dataclass(frozen=True)
class SignalQuality:
    rssi: int
    ber: int | None  # Iridium answers only the rssi


def parse_csq(text: str, command: str = "+CSQ") -> SignalQuality:
    """``+CSQ: 17,99`` (3GPP), ``+CSQ:3`` (Iridium bars); also ``+CSQF:3`` with ``command="+CSQF"``."""
    fields = split_fields(command, _body(command, text), text)
    if len(fields) not in (1, 2):
        raise ATParseError(command, text, "expected <rssi>[,<ber>]")
    rssi = _int(command, text, fields[0], 0, 255)
    ber = _int(command, text, fields[1], 0, 255) if len(fields) == 2 else None
    return SignalQuality(rssi, ber)


def parse_csqf(text: str) -> SignalQuality:
    return parse_csq(text, "+CSQF")


@dataclass(frozen=True)
class Registration:
    stat: int
    n: int | None = None  # only in the query answer
    lac: str | None = None
    ci: str | None = None
    act: int | None = None


def parse_creg(text: str, command: str = "+CREG") -> Registration:
    """Query form ``+CREG: <n>,<stat>[,<lac>,<ci>[,<AcT>...]]`` or URC form ``+CREG: <stat>[,<lac>,<ci>[,<AcT>]]``.

    The forms differ in the second field: an unquoted number (stat) in the query answer, a quoted lac in the
    URC. +CEREG (``command="+CEREG"``) has the same shape with extra trailing fields we ignore.
    """
    fields = split_fields(command, _body(command, text), text)
    query = len(fields) >= 2 and not fields[1][1]
    n = None
    if query:
        n = _int(command, text, fields[0], 0, 5)
        fields = fields[1:]
    stat = _int(command, text, fields[0], 0, 10)
    lac = ci = act = None
    if len(fields) == 2:
        raise ATParseError(command, text, "lac without ci")
    if len(fields) >= 3:
        if not (fields[1][1] and fields[2][1]):
            raise ATParseError(command, text, "lac and ci must be quoted")
        lac, ci = fields[1][0] or None, fields[2][0] or None
        for value in (lac, ci):
            if value is not None and not re.fullmatch(r"[0-9A-Fa-f]{1,8}", value):
                raise ATParseError(command, text, f"{value!r} is not a hex cell identifier")
    if len(fields) >= 4 and fields[3][0] != "":
        act = _int(command, text, fields[3], 0, 15)
    return Registration(stat, n, lac, ci, act)


def parse_cereg(text: str) -> Registration:
    return parse_creg(text, "+CEREG")


@dataclass(frozen=True)
class Operator:
    mode: int
    format: int | None = None
    name: str | None = None
    act: int | None = None


def parse_cops(text: str) -> Operator:
    """``+COPS: <mode>[,<format>,"<oper>"[,<AcT>]]``; ``+COPS: 0`` when there is no operator."""
    command = "+COPS"
    fields = split_fields(command, _body(command, text), text)
    if len(fields) not in (1, 3, 4):
        raise ATParseError(command, text, "expected <mode>[,<format>,<oper>[,<AcT>]]")
    mode = _int(command, text, fields[0], 0, 4)
    if len(fields) == 1:
        return Operator(mode)
    fmt = _int(command, text, fields[1], 0, 2)
    name = fields[2][0].strip()
    if any(ch < " " or "\x7f" <= ch < "\xa0" for ch in name):
        raise ATParseError(command, text, "operator name has control characters")
    if fmt == 2 and name and not re.fullmatch(r"[0-9]{5,6}", name):
        raise ATParseError(command, text, "numeric operator must be 5 or 6 digits")
    act = _int(command, text, fields[3], 0, 15) if len(fields) == 4 else None
    return Operator(mode, fmt, name or None, act)


@dataclass(frozen=True)
class PdpAddress:
    cid: int
    addresses: tuple[str, ...]  # normalised, IPv4 and/or IPv6; empty when the context has no address


def _address(command: str, text: str, value: str) -> str | None:
    if value in ("", "0.0.0.0", "0:0:0:0:0:0:0:0", "::"):
        return None
    parts = value.split(".")
    if len(parts) == 16:
        # Some modems print an IPv6 address as 16 dotted decimal bytes.
        try:
            return str(ipaddress.IPv6Address(bytes(int(p) for p in parts)))
        except ValueError as exc:
            raise ATParseError(command, text, f"{value!r} is not an address") from exc
    try:
        address = ipaddress.ip_address(value)
    except ValueError as exc:
        raise ATParseError(command, text, f"{value!r} is not an address") from exc
    return None if address.is_unspecified else str(address)


def parse_cgpaddr(text: str) -> PdpAddress:
    """One line of ``+CGPADDR: <cid>[,"<addr>"[,"<ipv6>"]]``."""
    command = "+CGPADDR"
    fields = split_fields(command, _body(command, text), text)
    if not 1 <= len(fields) <= 3:
        raise ATParseError(command, text, "expected <cid>[,<addr>[,<addr>]]")
    cid = _int(command, text, fields[0], 0, 255)
    addresses = tuple(a for f in fields[1:] if (a := _address(command, text, f[0])) is not None)
    return PdpAddress(cid, addresses)


def parse_sbdreg(text: str) -> int:
    """``+SBDREG:<status>`` (0 detached, 1 not registered, 2 registered, 3 denied), optionally ``,<error>``."""
    command = "+SBDREG"
    fields = split_fields(command, _body(command, text), text)
    if len(fields) not in (1, 2):
        raise ATParseError(command, text, "expected <status>[,<error>]")
    if len(fields) == 2:
        _int(command, text, fields[1], 0, 255)
    return _int(command, text, fields[0], 0, 3)


@dataclass(frozen=True)
class Indicator:
    indicator: int  # 0 signal (0..5), 1 service available, 2 antenna fault
    value: int


def parse_ciev(text: str) -> Indicator:
    """``+CIEV:<indicator>,<value>``."""
    command = "+CIEV"
    fields = split_fields(command, _body(command, text), text)
    if len(fields) != 2:
        raise ATParseError(command, text, "expected <indicator>,<value>")
    indicator = _int(command, text, fields[0], 0, 9)
    value = _int(command, text, fields[1], 0, 255)
    limit = 5 if indicator == 0 else 1 if indicator in (1, 2) else 255
    if value > limit:
        raise ATParseError(command, text, f"indicator {indicator} value {value} is above {limit}")
    return Indicator(indicator, value)


# ---------------------------------------------------------------------------------------------------------------
# Channel


class CommandFailed(DeviceError):
    """The modem answered a command with an error final result (ERROR, +CME ERROR, ...)."""

    def __init__(self, device: str, command: str, result: str):
        super().__init__(device, f"{command}: {describe_result(result)}")
        self.command = command
        self.result = result


def _is_device_path(port: str) -> bool:
    return "://" not in port


class ATChannel:
    """One AT command at a time over a pyserial port, without blocking the event loop.

    A reader thread does the blocking reads (the same code works for a tty path and for socket:// URLs) and
    hands bytes to the loop with ``call_soon_threadsafe``; framing, URC routing and command completion all
    happen on the loop. Writes go through the default executor. ``urc_handler`` is called on the loop.
    """

    READ_SLICE_S = 0.1  # how long the reader blocks; bounds how long close() waits for the thread

    def __init__(
        self,
        port: str,
        baudrate: int = 115200,
        *,
        device: str = "modem",
        rtscts: bool = False,
        urc_handler: Callable[[str], None] | None = None,
        resync_s: float = 2.0,
    ):
        self.port = port
        self.baudrate = baudrate
        self.device = device
        self.rtscts = rtscts
        self.urc_handler = urc_handler
        self.resync_s = resync_s
        self._serial: serial.SerialBase | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._framer = LineFramer()
        self._lock = asyncio.Lock()
        self._pending: _Pending | None = None
        self._lost: str | None = None
        # Commands that timed out and whose final result has not arrived yet: their late OK must be swallowed.
        self._orphans = 0
        self._orphan_drained: asyncio.Event | None = None

    @property
    def is_open(self) -> bool:
        return self._serial is not None and self._lost is None

    async def open(self) -> None:
        await self.close()
        self._loop = asyncio.get_running_loop()
        self._lost = None
        self._orphans = 0
        self._orphan_drained = asyncio.Event()
        self._framer.reset()
        kwargs: dict = {"baudrate": self.baudrate, "timeout": self.READ_SLICE_S, "write_timeout": 5.0}
        if _is_device_path(self.port):
            kwargs["exclusive"] = True
        if self.rtscts:
            kwargs["rtscts"] = True
        try:
            self._serial = await self._loop.run_in_executor(None, lambda: serial.serial_for_url(self.port, **kwargs))
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceGone(self.device, f"{self.port}: cannot open: {exc}") from exc
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._read_forever,
            args=(self._serial, self._stop, self._loop),
            name=f"{self.device}-reader",
            daemon=True,
        )
        self._thread.start()

    async def close(self) -> None:
        port, thread = self._serial, self._thread
        self._serial = self._thread = None
        self._stop.set()
        if self._pending is not None:
            self._pending.fail(DeviceGone(self.device, f"{self._pending.command}: port closed"))
        if port is not None:
            with contextlib.suppress(Exception):
                port.cancel_read()  # wakes a posix reader at once; socket:// has none and just times out
        if thread is not None:
            await asyncio.to_thread(thread.join, 2.0)
        if port is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(port.close)  # socket:// close() sleeps 0.3 s: not on the loop

    def _read_forever(self, port: serial.SerialBase, stop: threading.Event, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while not stop.is_set():
                data = port.read(1)
                # socket:// reports in_waiting as 0/1, so keep draining to hand the loop one chunk, not bytes.
                while data and len(data) < 4096 and (waiting := port.in_waiting):
                    data += port.read(min(waiting, 4096))
                if data and not stop.is_set():
                    loop.call_soon_threadsafe(self._on_bytes, port, data)
        except Exception as exc:  # SerialException on unplug, OSError/TypeError when closed under our feet
            if not stop.is_set():
                with contextlib.suppress(RuntimeError):  # the loop may already be closed
                    loop.call_soon_threadsafe(self._on_lost, f"{type(exc).__name__}: {exc}", port)

    # -- on the loop --------------------------------------------------------------------------------------------

    def _on_lost(self, why: str, port: serial.SerialBase | None = None) -> None:
        if port is not None and port is not self._serial:
            return  # a reader of a port closed since: its news is stale
        if self._lost is None:
            self._lost = why
            log.warning("%s: %s: device gone: %s", self.device, self.port, why)
        if self._pending is not None:
            self._pending.fail(DeviceGone(self.device, f"{self._pending.command}: device gone ({why})"))

    def _on_bytes(self, port: serial.SerialBase, data: bytes) -> None:
        if port is not self._serial:
            return
        for line in self._framer.feed(data):
            try:
                self._on_line(line)
            except Exception:  # a buggy URC handler must not stop framing
                log.exception("%s: error handling line %r", self.device, line)

    def _on_line(self, line: str) -> None:
        pending = self._pending
        if is_urc(line):
            if self.urc_handler is not None:
                self.urc_handler(line)
            return
        if pending is None or pending.done:
            if is_final(line) and self._orphans:
                self._orphans -= 1
                log.debug("%s: discarded late %r of a timed-out command", self.device, line)
                if not self._orphans and self._orphan_drained is not None:
                    self._orphan_drained.set()
            else:
                log.debug("%s: discarded unsolicited %r", self.device, line)
            return
        if is_final(line):
            pending.finish(line)
        elif not pending.lines and pending.command.upper() in line.upper():
            pass  # echo (possibly behind line noise) before the answer proper
        elif pending.prefix is None or line.startswith(pending.prefix):
            pending.lines.append(line)
        else:
            log.debug("%s: %s: ignored stray line %r", self.device, pending.command, line)

    async def command(self, command: str, timeout_s: float = 5.0, prefix: str | None = None) -> list[str]:
        """Send one command line; return its information lines (only those starting with ``prefix`` if given).

        Raises CommandFailed on an error result, DeviceTimeout when no final result comes within ``timeout_s``
        and DeviceGone when the port went away.
        """
        async with self._lock:
            if self._serial is None or self._lost is not None:
                raise DeviceGone(self.device, f"{command}: port not open ({self._lost or 'closed'})")
            if self._orphans:
                await self._resync(command)
            pending = _Pending(command, prefix, self._loop.create_future())
            self._pending = pending
            try:
                await self._write(command, (command + "\r").encode("ascii", errors="replace"))
                try:
                    result = await asyncio.wait_for(asyncio.shield(pending.future), timeout_s)
                except TimeoutError:
                    self._orphans += 1
                    self._orphan_drained.clear()
                    raise DeviceTimeout(self.device, f"{command}: no answer within {timeout_s} s") from None
            finally:
                pending.done = True
                self._pending = None
            if result not in FINAL_OK:
                raise CommandFailed(self.device, command, result)
            return pending.lines

    async def send_blind(self, command: str) -> None:
        """Write one command line and not wait for its result (a reset the modem may never acknowledge)."""
        async with self._lock:
            if self._serial is None or self._lost is not None:
                raise DeviceGone(self.device, f"{command}: port not open ({self._lost or 'closed'})")
            await self._write(command, (command + "\r").encode("ascii", errors="replace"))

    async def _write(self, command: str, data: bytes) -> None:
        port = self._serial
        try:
            await self._loop.run_in_executor(None, port.write, data)
        except serial.SerialTimeoutException as exc:
            raise DeviceTimeout(self.device, f"{command}: write blocked for {port.write_timeout} s") from exc
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            # TypeError/AttributeError: pyserial's fd or socket set to None by a concurrent close
            self._on_lost(f"write failed: {exc}")
            raise DeviceGone(self.device, f"{command}: write failed: {exc}") from exc

    async def _resync(self, next_command: str) -> None:
        """Make sure no late final result of a timed-out command can complete ``next_command``.

        First give the late answer ``resync_s`` to arrive while nothing is pending (then it is simply
        discarded); if it never comes, the modem dropped the command: a bare ``AT`` proves the modem is
        listening again, and a short quiet period absorbs a final result that was still in flight.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._orphan_drained.wait(), self.resync_s)
        if not self._orphans:
            return
        pending = _Pending("AT", None, self._loop.create_future())
        self._pending = pending
        try:
            await self._write("AT", b"AT\r")
            try:
                await asyncio.wait_for(asyncio.shield(pending.future), self.resync_s)
            except TimeoutError:
                raise DeviceTimeout(
                    self.device, f"{next_command}: modem not answering AT (resync after a timeout)"
                ) from None
            self._orphans = 0
            self._orphan_drained.clear()
            # A late OK that raced our AT leaves one more OK in flight; it lands as an orphan and is discarded.
            pending.done = True
            self._pending = None
            self._orphans = 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._orphan_drained.wait(), min(0.2, self.resync_s))
            self._orphans = 0
        finally:
            pending.done = True
            self._pending = None


@dataclass
class _Pending:
    command: str
    prefix: str | None
    future: asyncio.Future
    done: bool = False

    def __post_init__(self) -> None:
        self.lines: list[str] = []

    def finish(self, result: str) -> None:
        if not self.future.done():
            self.future.set_result(result)

    def fail(self, exc: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(exc)
