"""Anonymous statistics: what a row holds (and does not), the aggregates, and `allervers report` on a real store."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import sqlite_utils

from firmware_host import cli
from firmware_host.api import call_once
from firmware_host.store import Store
from kiosk import stats
from tests.conftest import wait_until

from .conftest import to_toml

ROWS = [
    ("2026-06-02", 9, 600, "Cadillac", ["caf"], 2, "visitor", "good"),
    ("2026-06-02", 10, 1800, "Cadillac", ["impots"], 0, "time_limit", None),
    ("2026-06-02", 11, None, "Cadillac", ["caf"], 0, "interrupted", None),
    ("2026-06-03", 14, 300, "Saint-Macaire", ["ameli", "caf"], 5, "idle", "bad"),
]


def fill(db_path: Path) -> None:
    store = Store(str(db_path))
    try:
        store.run_sync(stats.create_tables)
        for date, hour, duration, stop, services, pages, ended, satisfaction in ROWS:
            row = {
                "date": date,
                "start_hour": hour,
                "duration_s": duration,
                "stop_key": stop.lower(),
                "stop_label": stop,
                "services": services,
                "pages": pages,
                "ended_by": ended,
                "clock_synced": date != "2026-06-03",
            }
            row_id = store.run_sync(lambda db, row=row: stats.record_session(db, row, clear_intent=True))
            if satisfaction:
                store.run_sync(lambda db, i=row_id, s=satisfaction: stats.set_satisfaction(db, i, s))
    finally:
        store.close_sync()


def report(config: Path, *args: str) -> subprocess.CompletedProcess:
    """`allervers report ...` in this process (the same entry point as the command, without the start-up cost)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(["report", "-c", str(config), *args])
        except SystemExit as exc:  # argparse refusing an argument
            code = int(exc.code or 0)
    return subprocess.CompletedProcess(["allervers", "report"], code, out.getvalue(), err.getvalue())


def write_config(tmp_path: Path, db_path: Path) -> Path:
    path = tmp_path / "bus.toml"
    path.write_text(to_toml({"storage": {"path": str(db_path)}}))
    return path


def test_aggregates_by_stop_day_and_service() -> None:
    rows = [
        {
            "date": d,
            "start_hour": h,
            "duration_s": du,
            "stop_label": st,
            "services": sv,
            "pages": p,
            "ended_by": e,
            "satisfaction": sa,
            "clock_synced": True,
        }
        for d, h, du, st, sv, p, e, sa in ROWS
    ]
    total = stats.aggregate(rows, None)
    assert total == [
        {
            "scope": "total",
            "sessions": 4,
            "minutes": 45.0,
            "mean_minutes": 15.0,
            "pages": 7,
            "satisfaction_good": 1,
            "satisfaction_neutral": 0,
            "satisfaction_bad": 1,
            "scanned_pages": 0,
            "ended_by": "idle 1, interrupted 1, time_limit 1, visitor 1",
            "clock_unsynced": 0,
        }
    ]
    by_service = {line["service"]: (line["sessions"], line["pages"]) for line in stats.aggregate(rows, "service")}
    assert by_service == {"ameli": (1, 5), "caf": (3, 7), "impots": (1, 0)}
    by_stop = {line["stop"]: line["sessions"] for line in stats.aggregate(rows, "stop")}
    assert by_stop == {"Cadillac": 3, "Saint-Macaire": 1}
    assert [line["day"] for line in stats.aggregate(rows, "day")] == ["2026-06-02", "2026-06-03"]


def test_report_command_table_and_csv(tmp_path: Path) -> None:
    db_path = tmp_path / "allervers.db"
    fill(db_path)
    config = write_config(tmp_path, db_path)
    out = report(config)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:6] == ["scope", "sessions", "minutes", "mean_minutes", "pages", "satisfaction_good"]
    assert lines[1].split()[:5] == ["total", "4", "45.0", "15.0", "7"]

    out = report(config, "--by", "service", "--csv", "--from", "2026-06-03")
    table = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [(r["service"], r["sessions"], r["pages"], r["satisfaction_bad"]) for r in table] == [
        ("ameli", "1", "5", "1"),
        ("caf", "1", "5", "1"),
    ]
    assert table[0]["clock_unsynced"] == "1"  # the day's figures came from a clock NTP had not set yet

    out = report(config, "--by", "stop", "--to", "2026-06-02")
    assert "Cadillac" in out.stdout and "Saint-Macaire" not in out.stdout
    assert report(config, "--from", "2027-01-01").stdout.strip() == "no session in this period"


def test_report_errors_are_clear(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "missing.db")
    out = report(config)
    assert out.returncode == 1 and "missing.db: no store yet (storage.path)" in out.stderr
    out = report(config, "--from", "yesterday")
    assert out.returncode == 2 and "'yesterday' is not a date (YYYY-MM-DD)" in out.stderr
    empty = tmp_path / "empty.db"
    Store(str(empty)).close_sync()  # a bus whose kiosk never ran
    assert report(write_config(tmp_path, empty)).stdout.strip() == "no session in this period"


async def test_a_session_row_holds_no_address_no_text_no_identifier(
    run_controller: Any, kiosk_config: Any, visitor: Any
) -> None:
    cfg = kiosk_config()
    controller = await run_controller(cfg)
    await wait_until(lambda: controller.kiosk.phase == "idle")
    await call_once(cfg.api.control_socket, "kiosk.open", {"stop": "Cadillac"})
    reply = await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    await call_once(cfg.api.kiosk_socket, "session.end", {})
    db = sqlite_utils.Database(cfg.storage.path)
    (row,) = list(db["kiosk_sessions"].rows)
    assert set(row) == {
        "id",
        "date",
        "start_hour",
        "duration_s",
        "stop_key",
        "stop_label",
        "services",
        "pages",
        "scanned_pages",
        "ended_by",
        "satisfaction",
        "clock_synced",
    }
    assert json.loads(row["services"]) == ["caf"] and row["stop_label"] == "Cadillac"
    dump = "\n".join(db.conn.iterdump())
    assert reply["session"] not in dump and "caf.fr" not in dump  # neither the session id nor an address
    assert controller.state.get("kiosk")["sessions_today"] == 1
