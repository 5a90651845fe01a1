"""The checklist's persistence: its runs in table ``checklist_runs``, the phase and stop in the store's meta."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .model import Run

if TYPE_CHECKING:
    import sqlite_utils

    from ..store import Store

RECENT_RUNS = 200  # runs read back at start-up to know which stops were already visited

_TABLES = """
CREATE TABLE IF NOT EXISTS checklist_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,   -- runs are ordered by id (sequence), never by the clock
    kind TEXT NOT NULL,                     -- arrival | departure
    stop TEXT NOT NULL,                     -- JSON tag of the stop
    driver TEXT NOT NULL,
    started_seq INTEGER,                    -- seq of the checklist.started event
    ended_seq INTEGER,
    started_ts REAL NOT NULL,
    ended_ts REAL,
    outcome TEXT,                           -- NULL while running; completed | overridden | cancelled
    confirmations TEXT NOT NULL DEFAULT '{}',  -- JSON {step: {by, seq}}: the driver's ticks, kept across restarts
    overrides TEXT NOT NULL DEFAULT '[]',   -- JSON [{step, reason, by, seq}]
    summary TEXT                            -- JSON {step: {status, by, seq}} at the end
);
"""


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class RunStore:
    """The checklist's rows in the controller's store, every call on the store's writer thread."""

    def __init__(self, store: Store, clock: Callable[[], float]):
        self.store = store
        self.clock = clock
        self.meta = store.meta("checklist")  # phase, stop (JSON), driver

    async def load(self) -> tuple[dict[str, str], list[tuple], tuple | None]:
        """The saved phase/stop/driver, the recent runs (newest first) and the run left unfinished, if any."""

        def read(db: sqlite_utils.Database) -> tuple[dict[str, str], list[tuple], tuple | None]:
            db.conn.executescript(_TABLES)
            meta = self.meta.read(db)
            recent = db.execute(
                "SELECT id, kind, stop, outcome FROM checklist_runs ORDER BY id DESC LIMIT ?", (RECENT_RUNS,)
            ).fetchall()
            current = db.execute(
                "SELECT id, kind, stop, driver, started_seq, confirmations, overrides FROM checklist_runs"
                " WHERE outcome IS NULL ORDER BY id DESC LIMIT 1"
            ).fetchone()
            return meta, recent, current

        return await self.store.run(read)

    async def save_meta(self, values: dict[str, str]) -> None:
        await self.meta.set(values)

    async def insert(self, kind: str, stop: dict[str, Any], driver: str) -> int:
        """A new run, not yet started; returns its id."""
        row = (kind, _json(stop), driver, self.clock())

        def write(db: sqlite_utils.Database) -> int:
            with db.conn:
                cur = db.conn.execute(
                    "INSERT INTO checklist_runs (kind, stop, driver, started_ts) VALUES (?, ?, ?, ?)", row
                )
            return int(cur.lastrowid or 0)

        return await self.store.run(write)

    async def mark_started(self, run_id: int, seq: int) -> None:
        def write(db: sqlite_utils.Database) -> None:
            with db.conn:
                db.conn.execute("UPDATE checklist_runs SET started_seq = ? WHERE id = ?", (seq, run_id))

        await self.store.run(write)

    async def save_marks(self, run: Run) -> None:
        """The driver's ticks and overrides so far (a restart resumes the run with them)."""
        values = (_json(run.confirmations()), _json(run.overrides), _json(run.stop), run.id)

        def write(db: sqlite_utils.Database) -> None:
            with db.conn:
                db.conn.execute(
                    "UPDATE checklist_runs SET confirmations = ?, overrides = ?, stop = ? WHERE id = ?", values
                )

        await self.store.run(write)

    async def end(self, run: Run, outcome: str, ended_seq: int | None) -> None:
        summary = {sid: {"status": s.status, "by": s.by, "seq": s.as_dict()["seq"]} for sid, s in run.steps.items()}
        values = (
            ended_seq,
            self.clock(),
            outcome,
            _json(run.confirmations()),
            _json(run.overrides),
            _json(summary),
            run.id,
        )

        def write(db: sqlite_utils.Database) -> None:
            with db.conn:
                db.conn.execute(
                    "UPDATE checklist_runs SET ended_seq = ?, ended_ts = ?, outcome = ?, confirmations = ?,"
                    " overrides = ?, summary = ? WHERE id = ?",
                    values,
                )

        await self.store.run(write)

    async def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest stored runs, newest first."""

        def read(db: sqlite_utils.Database) -> list[dict[str, Any]]:
            rows = db.execute("SELECT * FROM checklist_runs ORDER BY id DESC LIMIT ?", (limit,))
            names = [d[0] for d in rows.description]
            out = []
            for values in rows.fetchall():
                row = dict(zip(names, values, strict=True))
                for key in ("stop", "confirmations", "overrides", "summary"):
                    if row[key] is not None:
                        row[key] = json.loads(row[key])
                out.append(row)
            return out

        return await self.store.run(read)
