"""The one store: an append-only event log and per-minute aggregates in SQLite (WAL), written off the loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlite_utils

EventListener = Callable[[dict[str, Any]], None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: a seq is never reused, even after deletions
    ts REAL NOT NULL,
    clock_synced INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS aggregates (
    minute INTEGER PRIMARY KEY,             -- wall-clock epoch minute of the samples
    data TEXT NOT NULL                      -- {"metric": [min, max, mean, count], ...}
);
"""

# One key/value table for every feature's small persistent facts (the checklist's phase, the kiosk's wipe intent,
# the MQTT watermark), each feature in its own namespace: Store.meta(namespace).
_META = """
CREATE TABLE IF NOT EXISTS meta (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
"""

# Stores from before Store.meta kept a table per feature: (old table, namespace its rows move to).
_OLD_META_TABLES = (("checklist_meta", "checklist"), ("kiosk_meta", "kiosk"), ("mqtt_meta", "mqtt"))
_OLD_STORE_META = "store"  # the namespace of the rows of the old one-namespace ``meta (key, value)`` table


class StoreError(RuntimeError):
    """The store could not be opened or written (names the database file)."""


def event_row_to_dict(row: dict[str, Any]) -> dict[str, Any]:
    """Turn a stored row into the public event shape ``{"seq", "ts", "clock_synced", "type", ...}``."""
    event = {
        "seq": row["seq"],
        "ts": row["ts"],
        "clock_synced": bool(row["clock_synced"]),
        "type": row["type"],
    }
    for key, value in json.loads(row["data"]).items():
        event.setdefault(key, value)
    return event


class _MinuteAggregate:
    __slots__ = ("count", "max", "min", "total")

    def __init__(self, value: float):
        self.min = self.max = self.total = value
        self.count = 1

    def add(self, value: float) -> None:
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        self.total += value
        self.count += 1

    def as_list(self) -> list[float]:
        return [round(self.min, 4), round(self.max, 4), round(self.total / self.count, 4), self.count]


class Store:
    """All disk writes of the controller go through here, on one writer thread.

    Events are committed one transaction each with ``synchronous=FULL`` (they are rare and must survive a power
    cut); an event is acknowledged (its future resolved, listeners told) only once committed. Numeric samples
    are folded in memory into per-minute min/max/mean and written in one transaction every ``flush_s``: an
    unchanged value costs no disk write at all.
    """

    def __init__(
        self,
        path: str,
        *,
        clock: Callable[[], float] = time.time,
        clock_synced: Callable[[], bool] = lambda: False,
        flush_s: float = 300.0,
        retention_days: int = 31,
    ):
        self.path = path
        self.clock = clock
        self.clock_synced = clock_synced
        self.flush_s = flush_s
        self.retention_s = retention_days * 86400
        self._listeners: list[EventListener] = []
        self._minutes: dict[int, dict[str, _MinuteAggregate]] = {}
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_task: asyncio.Task | None = None
        self._last_prune = 0.0
        self.events_written = 0
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._executor.submit(self._open).result()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{path}: cannot open the store: {exc}") from exc
        self.last_seq: int = self._call(lambda db: db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    # --- writer-thread side ---

    def _open(self) -> None:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db = sqlite_utils.Database(conn)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        # Fewer, larger checkpoints: each one rewrites pages into the main file, which is what wears the card.
        conn.execute("PRAGMA wal_autocheckpoint=2000")
        conn.executescript(_SCHEMA)
        _migrate_meta(conn)
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {check}")

    def _call(self, fn: Callable[[sqlite_utils.Database], Any]) -> Any:
        return self._executor.submit(fn, self.db).result()

    def _insert_event(self, ts: float, synced: bool, etype: str, data: dict[str, Any]) -> dict[str, Any]:
        conn = self.db.conn
        cur = conn.execute(
            "INSERT INTO events (ts, clock_synced, type, data) VALUES (?, ?, ?, ?)",
            (ts, int(synced), etype, json.dumps(data, separators=(",", ":"), default=str)),
        )
        self.events_written += 1
        return event_row_to_dict(
            {
                "seq": cur.lastrowid,
                "ts": ts,
                "clock_synced": synced,
                "type": etype,
                "data": json.dumps(data, default=str),
            }
        )

    # --- loop side ---

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to the running loop and start the periodic aggregate flush."""
        self._loop = loop
        self._flush_task = loop.create_task(self._flush_forever(), name="store-flush")

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def append_event(self, etype: str, **data: Any) -> asyncio.Future:
        """Append an event; the returned future resolves to the stored event once it is durable."""
        ts, synced = self.clock(), bool(self.clock_synced())
        cfut = self._executor.submit(self._insert_event, ts, synced, etype, data)
        loop = self._loop or asyncio.get_running_loop()
        fut = asyncio.wrap_future(cfut, loop=loop)
        fut.add_done_callback(self._committed)
        return fut

    def _committed(self, fut: asyncio.Future) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        event = fut.result()
        self.last_seq = max(self.last_seq, event["seq"])
        for listener in list(self._listeners):
            listener(event)

    async def run(self, fn: Callable[[sqlite_utils.Database], Any]) -> Any:
        """Run ``fn(db)`` on the writer thread (reads or writes of other features' own tables)."""
        loop = self._loop or asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self.db)

    def run_sync(self, fn: Callable[[sqlite_utils.Database], Any]) -> Any:
        return self._call(fn)

    async def events_after(self, seq: int, limit: int = 500) -> list[dict[str, Any]]:
        def query(db: sqlite_utils.Database) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT seq, ts, clock_synced, type, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
            return [
                event_row_to_dict(dict(zip(("seq", "ts", "clock_synced", "type", "data"), r, strict=True)))
                for r in rows
            ]

        return await self.run(query)

    def meta(self, namespace: str) -> Meta:
        """The key/value rows of one feature (``checklist``, ``kiosk``, ``mqtt``...) in the shared ``meta`` table."""
        return Meta(self, namespace)

    # --- aggregates ---

    def add_sample(self, metric: str, value: float | int | None) -> None:
        """Fold a numeric reading into this minute's min/max/mean (memory only until the next flush)."""
        if value is None or isinstance(value, bool) or not math.isfinite(value):
            return
        minute = int(self.clock() // 60)
        bucket = self._minutes.setdefault(minute, {})
        agg = bucket.get(metric)
        if agg is None:
            bucket[metric] = _MinuteAggregate(float(value))
        else:
            agg.add(float(value))

    def _write_minutes(self, minutes: dict[int, dict[str, _MinuteAggregate]], prune_before: int | None) -> None:
        conn = self.db.conn
        conn.execute("BEGIN")
        try:
            for minute, metrics in minutes.items():
                row = conn.execute("SELECT data FROM aggregates WHERE minute = ?", (minute,)).fetchone()
                data = json.loads(row[0]) if row else {}
                for name, agg in metrics.items():
                    data[name] = merge_aggregate(data.get(name), agg.as_list())
                conn.execute(
                    "INSERT OR REPLACE INTO aggregates (minute, data) VALUES (?, ?)",
                    (minute, json.dumps(data, separators=(",", ":"))),
                )
            if prune_before is not None:
                conn.execute("DELETE FROM aggregates WHERE minute < ?", (prune_before,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _take_minutes(self, everything: bool) -> dict[int, dict[str, _MinuteAggregate]]:
        current = int(self.clock() // 60)
        done = {m: v for m, v in self._minutes.items() if everything or m != current}
        for m in done:
            del self._minutes[m]
        return done

    def _prune_cutoff(self) -> int | None:
        now = self.clock()
        if now - self._last_prune < 3600:
            return None
        self._last_prune = now
        return int((now - self.retention_s) // 60)

    async def flush(self, everything: bool = False) -> None:
        minutes = self._take_minutes(everything)
        if minutes:
            await self.run(lambda _db: self._write_minutes(minutes, self._prune_cutoff()))

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            await self.flush()

    async def history(
        self,
        metrics: list[str],
        start: float,
        end: float,
        *,
        after_minute: int | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """Per-minute aggregates of ``metrics`` in [start, end), oldest first, paged by ``after_minute``."""
        first = int(start // 60) if after_minute is None else max(int(start // 60), after_minute + 1)

        def query(db: sqlite_utils.Database) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT minute, data FROM aggregates WHERE minute >= ? AND minute < ? ORDER BY minute LIMIT ?",
                (first, math.ceil(end / 60), limit),
            ).fetchall()
            out = []
            for minute, data in rows:
                values = json.loads(data)
                picked = {m: values[m] for m in metrics if m in values}
                if picked:
                    out.append({"minute": minute, **picked})
            return out

        pending = [
            {"minute": m, **{k: a.as_list() for k, a in v.items() if k in metrics}}
            for m, v in sorted(self._minutes.items())
            if first <= m < math.ceil(end / 60)
        ]
        stored = await self.run(query)
        seen = {r["minute"] for r in stored}
        merged = stored + [p for p in pending if p["minute"] not in seen and len(p) > 1]
        return sorted(merged, key=lambda r: r["minute"])[:limit]

    async def close(self) -> None:
        if self._flush_task:
            self._flush_task.cancel()
        await self.flush(everything=True)
        await self.run(lambda db: db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
        self._executor.submit(self.db.conn.close).result()
        self._executor.shutdown(wait=True)

    def close_sync(self) -> None:
        """Close without a loop (tools); pending aggregates are written first."""
        minutes = self._take_minutes(True)
        if minutes:
            self._call(lambda _db: self._write_minutes(minutes, None))
        self._executor.submit(self.db.conn.close).result()
        self._executor.shutdown(wait=True)


def read_meta(db: sqlite_utils.Database, namespace: str) -> dict[str, str]:
    """One namespace of the key/value table, on the writer thread (inside ``Store.run``)."""
    return dict(db.execute("SELECT key, value FROM meta WHERE namespace = ?", (namespace,)).fetchall())


def write_meta(db: sqlite_utils.Database, namespace: str, values: dict[str, str], delete: tuple[str, ...] = ()) -> None:
    """Set and delete keys of one namespace inside the caller's transaction (none is opened here)."""
    for key, value in values.items():
        db.conn.execute(
            "INSERT INTO meta (namespace, key, value) VALUES (?, ?, ?)"
            " ON CONFLICT(namespace, key) DO UPDATE SET value = excluded.value",
            (namespace, key, value),
        )
    for key in delete:
        db.conn.execute("DELETE FROM meta WHERE namespace = ? AND key = ?", (namespace, key))


class Meta:
    """One namespace of the store's key/value table; values are text (the feature decides their encoding).

    ``read``/``write`` take the writer thread's database, so a feature can change its flags in the same
    transaction as its own rows (``Store.run``); ``get``/``all``/``set`` are the same from the loop, one
    transaction per ``set``.
    """

    def __init__(self, store: Store, namespace: str):
        self.store = store
        self.namespace = namespace

    def read(self, db: sqlite_utils.Database) -> dict[str, str]:
        return read_meta(db, self.namespace)

    def write(self, db: sqlite_utils.Database, values: dict[str, str], delete: tuple[str, ...] = ()) -> None:
        write_meta(db, self.namespace, values, delete)

    async def all(self) -> dict[str, str]:
        return await self.store.run(self.read)

    async def get(self, key: str) -> str | None:
        return (await self.all()).get(key)

    async def set(self, values: dict[str, str], delete: tuple[str, ...] = ()) -> None:
        """Set and delete keys in one transaction (one fsync: write only what changed)."""

        def write(db: sqlite_utils.Database) -> None:
            conn = db.conn
            conn.execute("BEGIN")
            try:
                self.write(db, values, delete)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self.store.run(write)


def _table_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})").fetchall()]


def _migrate_meta(conn: sqlite3.Connection) -> None:
    """Bring a store's key/value rows into the one ``meta`` table, keeping every value (runs at open, idempotent).

    Before Store.meta, the store had ``meta (key, value)`` and each feature its own ``<feature>_meta`` table: a bus
    updated in place must keep its checklist phase, wipe intent and MQTT watermark.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = _table_columns(conn, "meta")
        if columns and "namespace" not in columns:
            conn.execute("ALTER TABLE meta RENAME TO meta_before_namespaces")
        conn.execute(_META)
        if columns and "namespace" not in columns:
            conn.execute(
                "INSERT OR IGNORE INTO meta (namespace, key, value) SELECT ?, key, value FROM meta_before_namespaces",
                (_OLD_STORE_META,),
            )
            conn.execute("DROP TABLE meta_before_namespaces")
        for table, namespace in _OLD_META_TABLES:
            if _table_columns(conn, table):
                conn.execute(
                    f"INSERT OR IGNORE INTO meta (namespace, key, value) SELECT ?, key, value FROM {table}",
                    (namespace,),
                )
                conn.execute(f"DROP TABLE {table}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def merge_aggregate(old: list[float] | None, new: list[float]) -> list[float]:
    """Two [min, max, mean, count] aggregates of one reading as one (the minute rows and the MQTT history alike)."""
    if old is None:
        return list(new)
    count = old[3] + new[3]
    mean = (old[2] * old[3] + new[2] * new[3]) / count if count else old[2]
    return [min(old[0], new[0]), max(old[1], new[1]), round(mean, 4), count]
