"""Printing through a real cupsd: pages counted for the statistics, every job of the session purged at the end, and
what the visitor is told after "Imprimer" (printing, printed, or the printer's problem)."""

from __future__ import annotations

import asyncio
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from firmware_host.api import call_once
from kiosk.printing import (
    PRINTED_SHOWN_S,
    TAG_BOOLEAN,
    TAG_ENUM,
    TAG_KEYWORD,
    Cups,
    Job,
    PrintError,
    PrintWatch,
    SessionPrinting,
    decode_response,
    encode_request,
)
from tests.conftest import wait_until

from .conftest import TEST_USER, FakeClock
from .cups import CupsServer, pdf


@pytest.fixture
def document(sessions_root: Path) -> str:
    path = sessions_root / "attestation.pdf"
    path.write_bytes(pdf(3))
    path.chmod(0o644)
    return str(path)


def test_ipp_encoding_round_trip() -> None:
    body = encode_request(0x000A, 7, [(TAG_KEYWORD, "requested-attributes", ["job-id", "job-state"])])
    assert body[:8] == struct.pack(">bbhi", 1, 1, 0x000A, 7)
    assert body[8] == 0x01 and body[-1] == 0x03
    assert b"requested-attributes" in body and body.count(b"job-") == 2
    # A reply: status, an operation group, a job with an enum, a boolean, a 1setOf and an out-of-band value.
    reply = bytearray(struct.pack(">bbhi", 1, 1, 0x0000, 7))
    reply += b"\x01" + b"\x47" + struct.pack(">h", 18) + b"attributes-charset" + struct.pack(">h", 5) + b"utf-8"
    reply += b"\x02" + b"\x23" + struct.pack(">h", 9) + b"job-state" + struct.pack(">h", 4) + struct.pack(">i", 9)
    reply += bytes([TAG_BOOLEAN]) + struct.pack(">h", 4) + b"flag" + struct.pack(">h", 1) + b"\x01"
    reply += bytes([TAG_KEYWORD]) + struct.pack(">h", 4) + b"list" + struct.pack(">h", 1) + b"a"
    reply += bytes([TAG_KEYWORD]) + struct.pack(">h", 0) + struct.pack(">h", 1) + b"b"
    reply += b"\x13" + struct.pack(">h", 4) + b"none" + struct.pack(">h", 0) + b"\x03"
    status, groups = decode_response(bytes(reply))
    assert status == 0
    assert groups == [
        ("operation", {"attributes-charset": "utf-8"}),
        ("job", {"job-state": 9, "flag": True, "list": ["a", "b"], "none": None}),
    ]
    assert TAG_ENUM == 0x23


def test_errors_name_the_server_the_queue_and_the_operation(cupsd: CupsServer, tmp_path: Path) -> None:
    with pytest.raises(PrintError, match=r"CUPS at 127\.0\.0\.1:\d+: printer 'nope': Get-Jobs: IPP status 0x0406"):
        Cups(cupsd.server).get_jobs("nope")
    with pytest.raises(PrintError, match=r"CUPS at /.*/missing.sock: printer 'bus': Get-Jobs: .*No such file"):
        Cups(str(tmp_path / "missing.sock")).get_jobs("bus")
    with pytest.raises(PrintError, match="expected a socket path or host:port"):
        Cups("printer.local").get_jobs("bus")


def test_pages_counted_then_jobs_purged_over_the_unix_socket(cupsd: CupsServer, visitor: Any, document: str) -> None:
    cups = Cups(cupsd.socket)
    job = cupsd.submit("bus", document, visitor.pw_uid, visitor.pw_gid)
    printing = SessionPrinting(cups, "bus", TEST_USER)
    wait = asyncio.run(printing.wait_printed(30))
    assert [j.id for j in wait] == [job] and wait[0].state == "completed" and wait[0].pages == 3
    assert any(name.endswith(f"{job:05d}") or f"{job:05d}-" in name for name in cupsd.spool_files())
    report = asyncio.run(printing.purge())
    assert (report.pages, report.jobs, report.purged) == (3, 1, 1)
    assert printing.session_jobs() == []
    assert not any(f"{job:05d}" in name for name in cupsd.spool_files())


async def test_session_end_counts_pages_and_purges_the_spool(
    run_controller: Any, kiosk_config: Any, cupsd: CupsServer, visitor: Any, document: str
) -> None:
    cfg = kiosk_config(printer="bus", cups_server=cupsd.server, print_wait_s=30.0)
    controller = await run_controller(cfg)
    await wait_until(lambda: controller.kiosk.phase == "idle")
    await call_once(cfg.api.control_socket, "kiosk.open", {})
    await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    jobs = [cupsd.submit("bus", document, visitor.pw_uid, visitor.pw_gid) for _ in range(2)]
    ended = await call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=60)
    assert ended["pages"] == 6 and ended["wipe"]["ok"] is True
    assert [j for j in Cups(cupsd.server).get_jobs("bus") if j.user == TEST_USER] == []
    assert not any(f"{job:05d}" in name for job in jobs for name in cupsd.spool_files())
    rows = await controller.store.run(lambda db: db.execute("SELECT pages FROM kiosk_sessions").fetchall())
    assert rows == [(6,)]
    event = [e for e in await controller.store.events_after(0, 500) if e["type"] == "kiosk.wipe"][-1]
    assert event["print_jobs"] == 2


async def test_a_stopped_printer_does_not_keep_the_next_visitor_waiting(
    run_controller: Any, kiosk_config: Any, cupsd: CupsServer, visitor: Any, document: str
) -> None:
    subprocess.run(["cupsdisable", "-h", cupsd.server, "bus"], check=True)
    try:
        cfg = kiosk_config(printer="bus", cups_server=cupsd.server, print_wait_s=300.0)
        controller = await run_controller(cfg)
        await wait_until(lambda: controller.kiosk.phase == "idle")
        await call_once(cfg.api.control_socket, "kiosk.open", {})
        await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
        job = cupsd.submit("bus", document, visitor.pw_uid, visitor.pw_gid)
        ended = await call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=30)
        assert ended["wipe"]["ok"] is True and ended["pages"] == 0  # never printed: cancelled and purged
        assert all(j.id != job for j in Cups(cupsd.server).get_jobs("bus"))
    finally:
        subprocess.run(["cupsenable", "-h", cupsd.server, "bus"], check=True)


async def test_cups_unreachable_fails_the_verification(
    run_controller: Any, kiosk_config: Any, tmp_path: Path, visitor: Any
) -> None:
    cfg = kiosk_config(printer="bus", cups_server=str(tmp_path / "no-cupsd.sock"))
    controller = await run_controller(cfg)
    await wait_until(lambda: controller.kiosk.phase == "idle")
    status = await call_once(cfg.api.kiosk_socket, "kiosk.status", {})
    assert status["closed_reason"] == "wipe_failed"  # the spool could not be checked at start-up
    alarm = {a["id"]: a for a in controller.alarms.as_list()}["kiosk.wipe_failed"]
    assert "print jobs not purged: CUPS at" in alarm["message"] and "no-cupsd.sock" in alarm["message"]


async def _printing_view(cfg: Any) -> dict[str, Any] | None:
    status = await call_once(cfg.api.kiosk_socket, "kiosk.status", {})
    return status["session"]["printing"]


async def _wait_printing(cfg: Any, **wanted: Any) -> dict[str, Any]:
    async def matches() -> dict[str, Any] | None:
        view = await _printing_view(cfg)
        return view if view and all(view.get(k) == v for k, v in wanted.items()) else None

    return await wait_until(matches, 20, message=f"printing feedback {wanted}")


async def test_feedback_goes_from_printing_to_printed(
    run_controller: Any, kiosk_config: Any, cupsd: CupsServer, visitor: Any, document: str
) -> None:
    cfg = kiosk_config(printer="bus", cups_server=cupsd.server)
    controller = await run_controller(cfg)
    await wait_until(lambda: controller.kiosk.phase == "idle")
    await call_once(cfg.api.control_socket, "kiosk.open", {})
    await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    assert await _printing_view(cfg) is None  # nothing printed: nothing said
    # Held, so that "en cours" is seen for sure before the job runs through the filters.
    job = cupsd.submit("bus", document, visitor.pw_uid, visitor.pw_gid, "-H", "hold")
    assert await _wait_printing(cfg, state="printing") == {"state": "printing", "pages": 0, "problem": None}
    subprocess.run(["lp", "-h", cupsd.server, "-i", str(job), "-H", "resume"], check=True, capture_output=True)
    assert await _wait_printing(cfg, state="printed") == {"state": "printed", "pages": 3, "problem": None}
    await call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=60)


@pytest.mark.parametrize(
    ("printer", "stop", "problem"),
    [("bus", ["cupsdisable"], "stopped"), ("bus", ["cupsreject"], "stopped"), ("nopaper", [], "paper")],
)
async def test_a_printer_problem_is_said_in_plain_words(
    run_controller: Any,
    kiosk_config: Any,
    cupsd: CupsServer,
    visitor: Any,
    document: str,
    printer: str,
    stop: list[str],
    problem: str,
) -> None:
    cfg = kiosk_config(printer=printer, cups_server=cupsd.server)
    controller = await run_controller(cfg)
    await wait_until(lambda: controller.kiosk.phase == "idle")
    await call_once(cfg.api.control_socket, "kiosk.open", {})
    await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    if stop == ["cupsreject"]:
        cupsd.submit(printer, document, visitor.pw_uid, visitor.pw_gid, "-H", "hold")  # queued before the refusal
    if stop:
        subprocess.run([*stop, "-h", cupsd.server, printer], check=True)
    try:
        if stop != ["cupsreject"]:
            cupsd.submit(printer, document, visitor.pw_uid, visitor.pw_gid)
        view = await _wait_printing(cfg, state="problem")
        assert view["problem"] == problem
    finally:
        if stop:
            undo = {"cupsdisable": "cupsenable", "cupsreject": "cupsaccept"}[stop[0]]
            subprocess.run([undo, "-h", cupsd.server, printer], check=True)
    ended = await call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=60)
    assert ended["wipe"]["ok"] is True


def test_printed_is_shown_for_a_minute_then_dropped() -> None:
    clock = FakeClock()
    watch = PrintWatch(SessionPrinting(Cups("/nonexistent"), "bus", TEST_USER), monotonic=clock)
    watch.update([Job(1, "processing", TEST_USER, 1)], {"printer-state": 4, "printer-state-reasons": "none"})
    assert watch.view() == {"state": "printing", "pages": 1, "problem": None}
    watch.update([Job(1, "completed", TEST_USER, 2)], None)
    clock.advance(PRINTED_SHOWN_S - 1)
    watch.update([Job(1, "completed", TEST_USER, 2)], None)  # the same reading again: still the same minute
    assert watch.view() == {"state": "printed", "pages": 2, "problem": None}
    clock.advance(2)
    assert watch.view() is None
    watch.update([Job(1, "completed", TEST_USER, 2), Job(2, "aborted", TEST_USER, 0)], None)
    assert watch.view() == {"state": "failed", "pages": 2, "problem": None}
    watch.update(
        [Job(1, "completed", TEST_USER, 2), Job(2, "aborted", TEST_USER, 0), Job(4, "completed", TEST_USER, 1)], None
    )
    assert watch.view() == {"state": "printed", "pages": 3, "problem": None}  # printed again after a failure
    reasons = {"printer-state": 3, "printer-state-reasons": ["media-low-report", "media-jam-error"]}
    watch.update([Job(3, "pending", TEST_USER, 0)], reasons)
    assert watch.view() == {"state": "problem", "pages": 0, "problem": "jam"}  # low paper is no problem yet
