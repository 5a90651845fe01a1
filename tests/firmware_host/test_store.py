"""Store: seq strictly increasing across restarts, acknowledged events survive kill -9, aggregates batched."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from firmware_host.store import Store


async def test_seq_increases_across_restarts(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    store = Store(db)
    store.attach(asyncio.get_running_loop())
    first = [await store.append_event("test.a", n=i) for i in range(3)]
    await store.close()
    assert [e["seq"] for e in first] == [1, 2, 3]
    assert first[0]["type"] == "test.a" and first[0]["n"] == 0 and first[0]["clock_synced"] is False

    store = Store(db, clock_synced=lambda: True)
    store.attach(asyncio.get_running_loop())
    assert store.last_seq == 3
    again = await store.append_event("test.b")
    assert again["seq"] == 4 and again["clock_synced"] is True
    assert [e["seq"] for e in await store.events_after(1)] == [2, 3, 4]
    await store.close()


async def test_listeners_hear_only_committed_events_in_order(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s.db"))
    store.attach(asyncio.get_running_loop())
    heard: list[int] = []
    store.subscribe(lambda e: heard.append(e["seq"]))
    futures = [store.append_event("burst", i=i) for i in range(50)]
    await asyncio.gather(*futures)
    assert heard == list(range(1, 51))
    await store.close()


async def test_aggregates_are_folded_in_memory_and_written_in_batches(tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    store = Store(str(tmp_path / "s.db"), clock=lambda: now[0], flush_s=3600)
    store.attach(asyncio.get_running_loop())
    for i in range(120):  # two minutes of readings, one every second
        store.add_sample("power.soc", 50 + (i % 10))
        store.add_sample("power.battery_v", 26.0)
        now[0] += 1
    rows_before = store.run_sync(lambda db: db.execute("SELECT COUNT(*) FROM aggregates").fetchone()[0])
    assert rows_before == 0, "samples must not touch the disk until a flush"
    await store.flush()
    hist = await store.history(["power.soc"], 1_700_000_000 - 60, now[0] + 60)
    assert len(hist) >= 2
    mn, mx, mean, count = hist[0]["power.soc"]
    assert (mn, mx) == (50, 59) and 50 < mean < 59 and count > 0
    await store.close()


def test_kill_minus_nine_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """A writer is killed -9 in the middle of a burst: every event it was told is durable is there, the
    database passes an integrity check, and seq goes on from the last one."""
    db = tmp_path / "k.db"
    script = textwrap.dedent(f"""
        import asyncio, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from firmware_host.store import Store
        async def main():
            store = Store({str(db)!r})
            store.attach(asyncio.get_running_loop())
            i = 0
            while True:
                event = await store.append_event("burst", i=i, payload="x" * 200)
                print(event["seq"], flush=True)
                i += 1
        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    acked: list[int] = []
    assert proc.stdout is not None
    while len(acked) < 200:
        line = proc.stdout.readline()
        assert line, "writer died early"
        acked.append(int(line))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for line in proc.stdout:  # lines already printed before the kill are acknowledged too
        if line.strip():
            acked.append(int(line))
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = {r[0] for r in conn.execute("SELECT seq FROM events")}
    conn.close()
    assert set(acked) <= stored

    async def restart() -> dict:
        store = Store(str(db))
        store.attach(asyncio.get_running_loop())
        assert store.last_seq >= max(acked)
        event = await store.append_event("after.restart")
        await store.close()
        return event

    assert asyncio.run(restart())["seq"] == max(stored) + 1


async def test_meta_namespaces_are_separate_and_set_is_one_transaction(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s.db"))
    store.attach(asyncio.get_running_loop())
    checklist, kiosk = store.meta("checklist"), store.meta("kiosk")
    await checklist.set({"phase": "open", "driver": "Marie"})
    await kiosk.set({"phase": "x", "intent": "{}"})
    await kiosk.set({"locked": "true"}, delete=("intent",))
    assert await checklist.all() == {"phase": "open", "driver": "Marie"}
    assert await kiosk.all() == {"phase": "x", "locked": "true"}
    assert await checklist.get("stop") is None and await kiosk.get("phase") == "x"
    await store.close()


async def test_a_store_with_the_old_key_value_tables_keeps_every_value(tmp_path: Path) -> None:
    """A bus updated in place: its store has ``meta (key, value)`` and one ``<feature>_meta`` table per feature."""
    db = str(tmp_path / "s.db")
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema', '1');
        CREATE TABLE checklist_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO checklist_meta VALUES ('phase', 'open'), ('driver', 'Marie');
        CREATE TABLE kiosk_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO kiosk_meta VALUES ('intent', '{"session": 7, "home": "/srv/allervers/sessions/s7"}');
        CREATE TABLE mqtt_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO mqtt_meta VALUES ('delivered_seq', '1234');
        """
    )
    conn.close()
    for _ in range(2):  # the migration runs at every open and changes nothing the second time
        store = Store(db)
        store.attach(asyncio.get_running_loop())
        assert await store.meta("checklist").all() == {"phase": "open", "driver": "Marie"}
        assert await store.meta("store").all() == {"schema": "1"}
        assert await store.meta("kiosk").get("intent") == '{"session": 7, "home": "/srv/allervers/sessions/s7"}'
        assert await store.meta("mqtt").get("delivered_seq") == "1234"
        await store.close()
    conn = sqlite3.connect(db)
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert not tables & {"checklist_meta", "kiosk_meta", "mqtt_meta"} and "meta" in tables
