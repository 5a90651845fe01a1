"""Anonymous session statistics (what funders ask for) and `allervers report`.

One row per finished session: stop, date, start hour, duration, services opened, pages printed, pages scanned, how
it ended, satisfaction if given. No address visited, nothing typed, no identifier: rows are ordered by their sequence
number, never by time (the clock may be wrong until NTP syncs, which each row records).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sqlite3
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import sqlite_utils

from kiosk import coop, flags

SATISFACTION = ("good", "neutral", "bad")
END_REASONS = (
    "visitor",
    "idle",
    "time_limit",
    "remote",
    "closed",
    "locked",
    "ignition",
    "low_battery",
    "browser_exited",
    "interrupted",
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS kiosk_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,   -- the order sessions ended in (the clock may be wrong)
    date TEXT NOT NULL,                     -- local date the session started, YYYY-MM-DD
    start_hour INTEGER NOT NULL,            -- 0..23
    duration_s INTEGER,                     -- NULL when a power cut ended it
    stop_key TEXT NOT NULL DEFAULT '',
    stop_label TEXT NOT NULL DEFAULT '',
    services TEXT NOT NULL,                 -- JSON list of service ids opened
    pages INTEGER NOT NULL DEFAULT 0,
    scanned_pages INTEGER NOT NULL DEFAULT 0,  -- pages of the documents the visitor scanned and saved
    ended_by TEXT NOT NULL,
    satisfaction TEXT,                      -- good / neutral / bad, or NULL
    clock_synced INTEGER NOT NULL
);
"""


# --- writer-thread functions (run through Store.run) -----------------------------------------------------------


def create_tables(db: sqlite_utils.Database) -> None:
    db.conn.executescript(SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(kiosk_sessions)").fetchall()}
    if "scanned_pages" not in columns:  # a store from before scanning
        db.conn.execute("ALTER TABLE kiosk_sessions ADD COLUMN scanned_pages INTEGER NOT NULL DEFAULT 0")


def record_session(db: sqlite_utils.Database, row: dict[str, Any], *, clear_intent: bool) -> int:
    """Store one finished session and, in the same transaction, drop the wipe intent if the wipe was verified."""
    conn = db.conn
    conn.execute("BEGIN")
    try:
        cur = conn.execute(
            "INSERT INTO kiosk_sessions (date, start_hour, duration_s, stop_key, stop_label, services, pages,"
            " scanned_pages, ended_by, satisfaction, clock_synced) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
            (
                row["date"],
                row["start_hour"],
                row["duration_s"],
                row.get("stop_key") or "",
                row.get("stop_label") or "",
                json.dumps(row["services"]),
                row["pages"],
                row.get("scanned_pages", 0),
                row["ended_by"],
                int(bool(row["clock_synced"])),
            ),
        )
        if clear_intent:
            flags.write_in(db, {}, delete=("intent",))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(cur.lastrowid)


def set_satisfaction(db: sqlite_utils.Database, row_id: int, rating: str) -> bool:
    cur = db.conn.execute(
        "UPDATE kiosk_sessions SET satisfaction = ? WHERE id = ? AND satisfaction IS NULL", (rating, row_id)
    )
    return cur.rowcount == 1


def count_day(db: sqlite_utils.Database, date: str) -> int:
    return int(db.execute("SELECT COUNT(*) FROM kiosk_sessions WHERE date = ?", (date,)).fetchone()[0])


# --- reading and aggregating -------------------------------------------------------------------------------------


def load_rows(conn: sqlite3.Connection, date_from: str | None = None, date_to: str | None = None) -> list[dict]:
    query = "SELECT * FROM kiosk_sessions WHERE 1=1"
    params: list[Any] = []
    if date_from:
        query += " AND date >= ?"
        params.append(date_from)
    if date_to:
        query += " AND date <= ?"
        params.append(date_to)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute(query + " ORDER BY id", params)]
    for r in rows:
        r["services"] = json.loads(r["services"])
    return rows


def aggregate(rows: list[dict[str, Any]], by: str | None) -> list[dict[str, Any]]:
    """One line per stop, day or service (or one "total" line): counts only."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if by == "stop":
            keys = [r["stop_label"] or "(arrêt inconnu)"]
        elif by == "day":
            keys = [r["date"]]
        elif by == "service":
            keys = r["services"] or ["(aucun)"]
        else:
            keys = ["total"]
        for key in keys:
            groups[key].append(r)
    out = []
    for key in sorted(groups):
        items = groups[key]
        durations = [r["duration_s"] for r in items if r["duration_s"] is not None]
        ended: dict[str, int] = defaultdict(int)
        for r in items:
            ended[r["ended_by"]] += 1
        line = {
            by or "scope": key,
            "sessions": len(items),
            "minutes": round(sum(durations) / 60, 1),
            "mean_minutes": round(sum(durations) / len(durations) / 60, 1) if durations else 0.0,
            "pages": sum(r["pages"] for r in items),
            **{f"satisfaction_{s}": sum(1 for r in items if r["satisfaction"] == s) for s in SATISFACTION},
            "scanned_pages": sum(r.get("scanned_pages", 0) for r in items),
            "ended_by": ", ".join(f"{k} {v}" for k, v in sorted(ended.items())),
            "clock_unsynced": sum(1 for r in items if not r["clock_synced"]),
        }
        out.append(line)
    return out


def render_table(lines: list[dict[str, Any]]) -> str:
    if not lines:
        return "no session in this period"
    headers = list(lines[0])
    cells = [[str(line[h]) for h in headers] for line in lines]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


# --- `allervers report` --------------------------------------------------------------------------------------------


def _date(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="date_from", type=_date, metavar="YYYY-MM-DD", help="first day included")
    parser.add_argument("--to", dest="date_to", type=_date, metavar="YYYY-MM-DD", help="last day included")
    parser.add_argument("--by", choices=("stop", "day", "service"), help="one line per stop, day or service")
    parser.add_argument("--csv", action="store_true", help="CSV on stdout (for a spreadsheet)")
    parser.add_argument(
        "--format",
        choices=("table", "coop", "lieux"),
        default="table",
        help="table: our counts; coop: anonymous activity records for La Coop de la médiation numérique; "
        "lieux: the bus's stops as itinerant places of the national map (JSON, or CSV with --csv)",
    )
    parser.add_argument(
        "--per",
        choices=("session", "stop-day"),
        default="session",
        help="with --format coop: one record per session, or one per stop and day with its count",
    )


def run(args: argparse.Namespace, cfg: Any) -> int:
    """`allervers report` over the config's store (the command line loads the config: kiosk/cli.py)."""
    if args.format == "lieux":
        return _print_places(cfg, args.csv)
    path = Path(cfg.storage.path)
    if not path.exists():
        print(f"allervers report: {path}: no store yet (storage.path)", file=sys.stderr)
        return 1
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = load_rows(conn, args.date_from, args.date_to)
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            rows = []  # the kiosk never ran on this bus
        else:
            print(f"allervers report: {path}: {exc}", file=sys.stderr)
            return 1
    if args.format == "coop":
        return _print_activities(cfg, rows, args.per, args.csv)
    lines = aggregate(rows, args.by)
    if args.csv:
        if lines:
            writer = csv.DictWriter(sys.stdout, fieldnames=list(lines[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(lines)
    else:
        print(render_table(lines))
    return 0


def _write(records: list[dict[str, Any]], fields: tuple[str, ...], as_csv: bool) -> None:
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(fields)
        writer.writerows([coop.csv_cell(r.get(f)) for f in fields] for r in records)
    else:
        json.dump(records, sys.stdout, ensure_ascii=False, indent=2)
        print()


def _print_activities(cfg: Any, rows: list[dict[str, Any]], per: str, as_csv: bool) -> int:
    from kiosk.settings import DEFAULT_SERVICES

    services = [s.as_dict() for s in cfg.kiosk.services] if cfg.kiosk is not None else []
    records = coop.activities(rows, coop.thematiques_by_service(services, DEFAULT_SERVICES), per)
    for number, record in enumerate(records, start=1):
        problems = coop.check_activity(record)
        if problems:  # our own output: a bug, never something to hand a mediator
            print(f"allervers report: record {number}: {'; '.join(problems)}", file=sys.stderr)
            return 1
    unknown = sum(1 for r in records if "duree" not in r)
    if unknown:
        print(
            f"allervers report: {unknown} record(s) without duree (sessions cut by a power loss): "
            "the Coop asks for one, enter it by hand",
            file=sys.stderr,
        )
    fields = coop.ACTIVITY_FIELDS + ((coop.COUNT_FIELD,) if per == "stop-day" else ())
    _write(records, fields, as_csv)
    return 0


def _print_places(cfg: Any, as_csv: bool) -> int:
    from firmware_host.tour import TourError, load_tour

    schedule = cfg.checklist.schedule if cfg.checklist is not None else None
    if not schedule:
        print("allervers report: --format lieux needs the tour: set [checklist] schedule", file=sys.stderr)
        return 1
    try:
        tour = load_tour(schedule)
    except TourError as exc:
        print(f"allervers report: {exc}", file=sys.stderr)
        return 1
    for problem in tour.errors:
        print(f"allervers report: {problem} (left out)", file=sys.stderr)
    siret = cfg.kiosk.structure_siret if cfg.kiosk is not None else ""
    records = coop.places(
        tour, vehicle_id=cfg.vehicle.id, vehicle_name=cfg.vehicle.name, siret=siret, today=dt.date.today()
    )
    for record in records:
        for problem in coop.check_place(record):
            print(f"allervers report: {tour.source}: {record['nom']} ({record['adresse']}): {problem}", file=sys.stderr)
    _write(records, coop.PLACE_FIELDS, as_csv)
    return 0


def day_totals(db: sqlite_utils.Database, date: str) -> list[dict[str, Any]]:
    """Sessions (one visitor each) per stop on ``date``, in the order the stops were first used: the daily totals
    the bus sends to the office over MQTT."""
    rows = db.execute(
        "SELECT stop_key, MAX(stop_label), COUNT(*) FROM kiosk_sessions WHERE date = ?"
        " GROUP BY stop_key ORDER BY MIN(id)",
        (date,),
    ).fetchall()
    return [{"key": key, "label": label, "visitors": n} for key, label, n in rows]
