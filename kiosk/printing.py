"""The bus's printer through CUPS: a small IPP client (Get-Jobs, Cancel-Job with purge) to count and purge jobs,
and what the visitor is told after "Imprimer" (printing, printed, or the printer's problem).

IPP is a binary request/response carried over HTTP POST. cupsd speaks it on its Unix socket (/run/cups/cups.sock,
where root is recognised by its peer credentials and may cancel anyone's job) or on TCP (host:port). We need only
three operations, so the encoding is done here rather than through a C binding.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Operations, attribute-group and value tags (RFC 8011, section 5.4 and 5.1; CUPS's purge-job extension).
OP_CANCEL_JOB = 0x0008
OP_GET_JOBS = 0x000A
OP_GET_PRINTER_ATTRIBUTES = 0x000B
GROUP_OPERATION, GROUP_END = 0x01, 0x03
GROUP_TAGS = {0x01: "operation", 0x02: "job", 0x04: "printer", 0x05: "unsupported"}
TAG_INTEGER, TAG_BOOLEAN, TAG_ENUM = 0x21, 0x22, 0x23
TAG_NAME, TAG_KEYWORD, TAG_URI, TAG_CHARSET, TAG_LANGUAGE = 0x42, 0x44, 0x45, 0x47, 0x48
JOB_STATES = {3: "pending", 4: "held", 5: "processing", 6: "stopped", 7: "canceled", 8: "aborted", 9: "completed"}
FINISHED_STATES = ("canceled", "aborted", "completed")
PRINTER_STOPPED = 5

PRINTER_ATTRIBUTES = ("printer-state", "printer-state-reasons", "printer-is-accepting-jobs")
JOB_ATTRIBUTES = (
    "job-id",
    "job-state",
    "job-originating-user-name",
    "job-impressions",
    "job-impressions-completed",
    "job-media-sheets-completed",
    "job-printer-uri",
)


class PrintError(RuntimeError):
    """CUPS could not be reached or refused an operation (names the server, the queue and the operation)."""


@dataclass(frozen=True)
class Job:
    id: int
    state: str
    user: str
    pages: int  # impressions printed so far (what funders call pages); 0 when unknown
    printer: str = ""  # the queue's name

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES


# --- encoding -------------------------------------------------------------------------------------------------


def _value(tag: int, value: Any) -> bytes:
    if tag in (TAG_INTEGER, TAG_ENUM):
        return struct.pack(">i", value)
    if tag == TAG_BOOLEAN:
        return b"\x01" if value else b"\x00"
    return str(value).encode()


def encode_request(op: int, request_id: int, attributes: Iterable[tuple[int, str, Any]]) -> bytes:
    """One IPP/1.1 request with operation attributes only; a list value becomes a 1setOf."""
    out = bytearray(struct.pack(">bbhi", 1, 1, op, request_id))
    out.append(GROUP_OPERATION)
    for tag, name, value in attributes:
        values = value if isinstance(value, list) else [value]
        for i, item in enumerate(values):
            key = name.encode() if i == 0 else b""
            data = _value(tag, item)
            out += struct.pack(">bh", tag, len(key)) + key + struct.pack(">h", len(data)) + data
    out.append(GROUP_END)
    return bytes(out)


def decode_response(data: bytes) -> tuple[int, list[tuple[str, dict[str, Any]]]]:
    """(status-code, [(group name, {attribute: value or [values]})]) of an IPP response."""
    if len(data) < 9:
        raise ValueError(f"IPP response too short ({len(data)} bytes)")
    status = struct.unpack(">h", data[2:4])[0]
    groups: list[tuple[str, dict[str, Any]]] = []
    pos, current, last = 8, None, None
    while pos < len(data):
        tag = data[pos]
        pos += 1
        if tag == GROUP_END:
            break
        if tag < 0x10:
            current = {}
            groups.append((GROUP_TAGS.get(tag, f"group-{tag}"), current))
            continue
        name_len = struct.unpack(">h", data[pos : pos + 2])[0]
        name = data[pos + 2 : pos + 2 + name_len].decode("utf-8", "replace")
        pos += 2 + name_len
        value_len = struct.unpack(">h", data[pos : pos + 2])[0]
        raw = data[pos + 2 : pos + 2 + value_len]
        pos += 2 + value_len
        if tag in (TAG_INTEGER, TAG_ENUM) and value_len == 4:
            value: Any = struct.unpack(">i", raw)[0]
        elif tag == TAG_BOOLEAN:
            value = raw != b"\x00"
        elif tag < 0x20:  # out-of-band: unknown, no-value, unsupported
            value = None
        else:
            value = raw.decode("utf-8", "replace")
        if current is None:
            raise ValueError("IPP attribute outside any group")
        if name:
            current[name] = value
            last = name
        elif last is not None:  # an additional value of the previous attribute (1setOf)
            prev = current[last]
            current[last] = [*prev, value] if isinstance(prev, list) else [prev, value]
    return status, groups


# --- transport ------------------------------------------------------------------------------------------------


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Cups:
    """Blocking IPP client for one cupsd: ``server`` is a socket path or ``host:port``."""

    _ids = itertools.count(1)

    def __init__(self, server: str, *, user: str = "root", timeout: float = 5.0):
        self.server = server
        self.user = user
        self.timeout = timeout

    def _connection(self) -> http.client.HTTPConnection:
        if self.server.startswith("/"):
            return _UnixHTTPConnection(self.server, self.timeout)
        host, _, port = self.server.rpartition(":")
        if not host or not port.isdigit():
            raise PrintError(f"cups_server {self.server!r}: expected a socket path or host:port")
        return http.client.HTTPConnection(host, int(port), timeout=self.timeout)

    def request(
        self, op: int, path: str, attributes: list[tuple[int, str, Any]], what: str
    ) -> list[tuple[str, dict[str, Any]]]:
        base = [
            (TAG_CHARSET, "attributes-charset", "utf-8"),
            (TAG_LANGUAGE, "attributes-natural-language", "en"),
        ]
        body = encode_request(op, next(self._ids), base + attributes)
        conn = self._connection()
        try:
            conn.request("POST", path, body, {"Content-Type": "application/ipp"})
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise PrintError(f"CUPS at {self.server}: {what}: {exc}") from None
        finally:
            conn.close()
        if response.status != 200:
            raise PrintError(f"CUPS at {self.server}: {what}: HTTP {response.status} {response.reason}")
        try:
            status, groups = decode_response(data)
        except (ValueError, struct.error) as exc:
            raise PrintError(f"CUPS at {self.server}: {what}: undecodable reply: {exc}") from None
        if status >= 0x0400:
            message = next((g.get("status-message") for n, g in groups if n == "operation"), None)
            raise PrintError(f"CUPS at {self.server}: {what}: IPP status 0x{status:04x} {message or ''}".rstrip())
        return groups

    def printer_uri(self, printer: str) -> str:
        return f"ipp://localhost/printers/{printer}"

    def printer_state(self, printer: str) -> dict[str, Any]:
        groups = self.request(
            OP_GET_PRINTER_ATTRIBUTES,
            f"/printers/{printer}",
            [
                (TAG_URI, "printer-uri", self.printer_uri(printer)),
                (TAG_NAME, "requesting-user-name", self.user),
                (TAG_KEYWORD, "requested-attributes", list(PRINTER_ATTRIBUTES)),
            ],
            f"printer {printer!r}: Get-Printer-Attributes",
        )
        return next((g for n, g in groups if n == "printer"), {})

    def get_jobs(self, printer: str | None, which: str = "all") -> list[Job]:
        """The jobs of one queue, or of every queue the server has (``printer=None``)."""
        groups = self.request(
            OP_GET_JOBS,
            f"/printers/{printer}" if printer else "/",
            [
                (TAG_URI, "printer-uri", self.printer_uri(printer) if printer else "ipp://localhost/"),
                (TAG_NAME, "requesting-user-name", self.user),
                (TAG_KEYWORD, "which-jobs", which),
                (TAG_KEYWORD, "requested-attributes", list(JOB_ATTRIBUTES)),
            ],
            f"printer {printer!r}: Get-Jobs" if printer else "every queue: Get-Jobs",
        )
        jobs = []
        for name, attrs in groups:
            if name != "job" or "job-id" not in attrs:
                continue
            completed = max(_int(attrs.get("job-impressions-completed")), _int(attrs.get("job-media-sheets-completed")))
            jobs.append(
                Job(
                    id=attrs["job-id"],
                    state=JOB_STATES.get(_int(attrs.get("job-state")), "unknown"),
                    user=str(attrs.get("job-originating-user-name") or ""),
                    pages=completed,
                    printer=str(attrs.get("job-printer-uri") or "").rsplit("/", 1)[-1],
                )
            )
        return jobs

    def cancel_job(self, printer: str, job_id: int, *, purge: bool = True) -> None:
        self.request(
            OP_CANCEL_JOB,
            "/jobs",
            [
                (TAG_URI, "job-uri", f"ipp://localhost/jobs/{job_id}"),  # whichever queue holds it
                (TAG_NAME, "requesting-user-name", self.user),
                (TAG_BOOLEAN, "purge-job", purge),
            ],
            f"printer {printer!r}: Cancel-Job {job_id}",
        )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# --- what the session needs ----------------------------------------------------------------------------------


@dataclass
class SpoolReport:
    pages: int
    jobs: int
    purged: int


class SessionPrinting:
    """The session's jobs: wait for them to print on the bus's printer, count their pages, purge them.

    A session's job is any job on any queue submitted since the session started (CUPS numbers jobs in order, so
    every id above ``after``), whatever user name the client claimed (``lp -U`` claims any), and any job in the
    session user's name."""

    def __init__(self, cups: Cups, printer: str, user: str, *, monotonic: Any = time.monotonic):
        self.cups = cups
        self.printer = printer
        self.user = user
        self.monotonic = monotonic
        self.after: int | None = None  # the last job id before the session (None: unknown, the user's jobs only)

    def mark(self) -> int:
        """At a session's start: every job from now on is the session's."""
        self.after = max((j.id for j in self.cups.get_jobs(None, "all")), default=0)
        return self.after

    def session_jobs(self) -> list[Job]:
        after = self.after
        return [
            j for j in self.cups.get_jobs(None, "all") if j.user == self.user or (after is not None and j.id > after)
        ]

    def printer_jobs(self) -> list[Job]:
        """The session's jobs on the bus's printer: what the visitor waits for (paper and the bar's feedback)."""
        return [j for j in self.session_jobs() if j.printer == self.printer]

    async def wait_printed(self, timeout_s: float, poll_s: float = 0.25) -> list[Job]:
        """Let the session's jobs on the bus's printer finish (a visitor who taps "Terminer" right after printing
        keeps the paper); jobs on any other queue are purged without waiting."""
        deadline = self.monotonic() + timeout_s
        while True:
            jobs = await asyncio.to_thread(self.printer_jobs)
            if all(j.finished for j in jobs) or self.monotonic() >= deadline:
                return jobs
            state = await asyncio.to_thread(self.cups.printer_state, self.printer)
            if state.get("printer-state") == PRINTER_STOPPED:
                return jobs  # paused or out of order: waiting would only keep the next visitor out
            await asyncio.sleep(poll_s)

    async def purge(self, timeout_s: float = 10.0, poll_s: float = 0.1) -> SpoolReport:
        """Cancel every job of the session and remove it from the spool and the job history.

        A job being printed is cancelled asynchronously (cupsd first stops its filters and backend), so the
        purge is repeated until the session has no job left or ``timeout_s`` has passed.
        """
        jobs = await asyncio.to_thread(self.session_jobs)
        # Pages are read before the purge: a purged job leaves no trace to count.
        report = SpoolReport(pages=sum(j.pages for j in jobs), jobs=len(jobs), purged=0)
        deadline = self.monotonic() + timeout_s
        remaining = jobs
        while remaining:
            for job in remaining:
                with contextlib.suppress(PrintError):  # already gone, or still stopping: checked again below
                    await asyncio.to_thread(self.cups.cancel_job, job.printer, job.id, purge=True)
            if self.monotonic() >= deadline:
                break
            await asyncio.sleep(poll_s)
            remaining = await asyncio.to_thread(self.session_jobs)
        report.purged = report.jobs - len(remaining)
        return report


# --- what the visitor is told after "Imprimer" -----------------------------------------------------------------

# printer-state-reasons keywords (RFC 8011 5.4.12, without their -report/-warning/-error suffix) -> the problem the
# visitor is told about in plain words (keys of the bar's and the launcher's texts).
PROBLEMS = {
    "media-empty": "paper",
    "media-needed": "paper",
    "media-jam": "jam",
    "toner-empty": "ink",
    "marker-supply-empty": "ink",
    "door-open": "cover",
    "cover-open": "cover",
    "interlock-open": "cover",
    "offline": "offline",
    "connecting-to-device": "offline",
    "timed-out": "offline",
    "shutdown": "offline",
    "paused": "stopped",
}
PRINTED_SHOWN_S = 60.0  # "Imprimé" stays on the bar this long after the last job ended
WATCH_POLL_S = 1.0


def printer_problem(attrs: dict[str, Any]) -> str | None:
    """The printer's problem, worst first: a reason the printer gives, else a stopped or refusing queue."""
    reasons = attrs.get("printer-state-reasons") or []
    for reason in reasons if isinstance(reasons, list) else [reasons]:
        key = str(reason)
        for suffix in ("-report", "-warning", "-error"):
            key = key.removesuffix(suffix)
        if key in PROBLEMS:
            return PROBLEMS[key]
    if attrs.get("printer-state") == PRINTER_STOPPED or attrs.get("printer-is-accepting-jobs") is False:
        return "stopped"
    return None


class PrintWatch:
    """The session's print jobs as the visitor sees them, polled from CUPS while a session runs.

    ``view()``: None (nothing printed yet, or long enough ago), or ``{"state", "pages", "problem"}`` with state
    "printing" (pages: counted so far: CUPS knows a PDF's pages only as its filters pass them), "printed",
    "problem" (the printer's problem holds a job back) or "failed" (a job was cancelled or aborted)."""

    def __init__(self, printing: SessionPrinting, *, monotonic: Any = time.monotonic):
        self.printing = printing
        self.monotonic = monotonic
        self._view: dict[str, Any] | None = None
        self._ended_at: float | None = None
        self._seen: frozenset[tuple[int, str]] = frozenset()

    def update(self, jobs: list[Job], printer: dict[str, Any] | None) -> None:
        """Take a new reading (``printer``: its attributes, asked only while a job is unfinished)."""
        seen = frozenset((j.id, j.state) for j in jobs)
        if not jobs:
            self._view = None
            return
        pages = sum(j.pages for j in jobs)
        unfinished = [j for j in jobs if not j.finished]
        if unfinished:
            self._ended_at = None
            problem = printer_problem(printer or {})
            pending = sum(j.pages for j in unfinished)
            self._view = {"state": "problem" if problem else "printing", "pages": pending, "problem": problem}
        else:
            if seen != self._seen or self._ended_at is None:
                self._ended_at = self.monotonic()
            failed = (
                max(jobs, key=lambda j: j.id).state != "completed"
            )  # the last "Imprimer" is what the visitor awaits
            self._view = {"state": "failed" if failed else "printed", "pages": pages, "problem": None}
        self._seen = seen

    def view(self) -> dict[str, Any] | None:
        if self._ended_at is not None and self.monotonic() - self._ended_at > PRINTED_SHOWN_S:
            return None
        return self._view

    async def poll(self) -> None:
        """One reading from CUPS; a CUPS that does not answer shows nothing (the wipe reports it if it lasts)."""
        try:
            jobs = await asyncio.to_thread(self.printing.printer_jobs)
            printer = None
            if any(not j.finished for j in jobs):
                printer = await asyncio.to_thread(self.printing.cups.printer_state, self.printing.printer)
        except PrintError:
            self._view = None
            return
        self.update(jobs, printer)

    async def run(self, poll_s: float = WATCH_POLL_S) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(poll_s)
