"""The durable event outbox: which events of the Store's log the broker has acknowledged, kept cheap on the SD card.

The event log itself is the queue: nothing is copied. The outbox keeps one number on disk, ``delivered_seq``: every
event with a seq at or below it has been acknowledged by the broker (PUBACK). It only ever advances over a
contiguous run of acknowledged events, so an event is never marked delivered before its PUBACK, and it is written
in batches (every ``persist_every`` events or ``persist_after_s`` seconds, and when a connection ends), not once
per event. After a crash the events acknowledged since the last write are sent again: supervisors dedupe by seq.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import sqlite_utils

from ..store import Store, event_row_to_dict

log = logging.getLogger("allervers.mqtt")

META = "mqtt"  # the store's key/value namespace of the MQTT link (watermark, discovery digest)


_RESERVED = ('"seq":', '"ts":', '"clock_synced":', '"type":')


def event_payload(seq: int, ts: float, clock_synced: int, etype: str, data: str) -> bytes:
    """The event as published, ``{"seq", "ts", "clock_synced", "type", ...}``: the same JSON object as
    :func:`store.event_row_to_dict`, built from the stored text without decoding and re-encoding it (a backlog
    drain on a Pi 4 spends its time here)."""
    if data != "{}" and any(key in data for key in _RESERVED):
        # A field named like a base key (or a value containing such text): let the store's rule decide.
        row = {"seq": seq, "ts": ts, "clock_synced": clock_synced, "type": etype, "data": data}
        return json.dumps(event_row_to_dict(row), separators=(",", ":"), ensure_ascii=False).encode()
    head = (
        f'{{"seq":{seq},"ts":{json.dumps(ts)},"clock_synced":{"true" if clock_synced else "false"},'
        f'"type":{json.dumps(etype, ensure_ascii=False)}'
    )
    return (head + ("}" if data == "{}" else "," + data[1:])).encode()


async def get_meta(store: Store, key: str) -> str | None:
    return await store.meta(META).get(key)


async def set_meta(store: Store, key: str, value: str) -> None:
    await store.meta(META).set({key: value})


class Outbox:
    """Tracks what was sent on the current connection and what the broker acknowledged.

    ``cursor``: the last seq handed to the connection; ``delivered``: the contiguous acknowledged watermark (in
    memory, ahead of ``persisted`` until the next batch write).
    """

    def __init__(
        self,
        store: Store,
        *,
        max_backlog: int,
        persist_every: int = 1000,
        persist_after_s: float = 60.0,
        emit: Callable[..., Any] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.max_backlog = max_backlog
        self.persist_every = persist_every
        self.persist_after_s = persist_after_s
        self.emit = emit or store.append_event
        self.monotonic = monotonic
        self.delivered = 0
        self.persisted = 0
        self.cursor = 0
        self.watermark_writes = 0
        self.dropped_total = 0
        self._sent: collections.deque[int] = collections.deque()  # seqs in send order, oldest first
        self._acked: set[int] = set()
        self._mid_seq: dict[int, int] = {}
        self._persist_timer: asyncio.TimerHandle | None = None
        self._persist_task: asyncio.Task | None = None
        self._bound_task: asyncio.Task | None = None

    # --- disk ---------------------------------------------------------------------------------------------

    async def open(self) -> None:
        value = await get_meta(self.store, "delivered_seq")
        self.delivered = self.persisted = self.cursor = int(value or 0)
        await self.enforce_bound()

    async def persist(self) -> None:
        """Write the watermark now if it moved (one small transaction)."""
        if self._persist_timer is not None:
            self._persist_timer.cancel()
            self._persist_timer = None
        value = self.delivered
        if value == self.persisted:
            return

        await set_meta(self.store, "delivered_seq", str(value))
        self.persisted = max(self.persisted, value)
        self.watermark_writes += 1

    def _schedule_persist(self) -> None:
        if self.delivered - self.persisted >= self.persist_every:
            self._persist_soon()
        elif self._persist_timer is None and self.delivered != self.persisted:
            loop = asyncio.get_running_loop()
            self._persist_timer = loop.call_later(self.persist_after_s, self._persist_soon)

    def _persist_soon(self) -> None:
        self._persist_timer = None
        if self._persist_task is None or self._persist_task.done():
            self._persist_task = asyncio.get_running_loop().create_task(self.persist(), name="mqtt-outbox-persist")

    # --- the current connection ---------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._mid_seq)

    @property
    def backlog(self) -> int:
        """Events not yet acknowledged (seqs are never reused, so this is exact unless a write was rolled back)."""
        return max(0, self.store.last_seq - self.delivered)

    def caught_up(self) -> bool:
        return self.cursor >= self.store.last_seq

    async def next_batch(self, limit: int) -> list[tuple[int, bytes]]:
        """The next events after the cursor as (seq, payload), encoded on the store's thread, off the loop."""
        after = self.cursor

        def read(db: sqlite_utils.Database) -> list[tuple[int, bytes]]:
            rows = db.execute(
                "SELECT seq, ts, clock_synced, type, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
            return [(row[0], event_payload(*row)) for row in rows]

        return await self.store.run(read)

    def sent(self, seq: int, mid: int) -> None:
        self._sent.append(seq)
        self._mid_seq[mid] = seq
        self.cursor = max(self.cursor, seq)

    def acked(self, mid: int, delivered: bool) -> bool:
        """A PUBACK for ``mid``; returns True when the watermark advanced. A refused PUBACK leaves the event
        undelivered (it is sent again on the next connection)."""
        seq = self._mid_seq.pop(mid, None)
        if seq is None or not delivered or seq <= self.delivered:  # unknown, refused, or dropped meanwhile
            return False
        self._acked.add(seq)
        advanced = False
        while self._sent and self._sent[0] in self._acked:
            head = self._sent.popleft()
            self._acked.discard(head)
            if head > self.delivered:
                self.delivered = head
                advanced = True
        if advanced:
            self._schedule_persist()
        return advanced

    def connection_lost(self) -> None:
        """Everything not acknowledged goes back to the queue: the next connection resends from the watermark."""
        self._sent.clear()
        self._acked.clear()
        self._mid_seq.clear()
        self.cursor = self.delivered

    # --- the bound ----------------------------------------------------------------------------------------

    def check_bound(self) -> None:
        """Called for each new event: cheap arithmetic, a query only when the bound is passed."""
        if self.backlog > self.max_backlog and (self._bound_task is None or self._bound_task.done()):
            self._bound_task = asyncio.get_running_loop().create_task(self.enforce_bound(), name="mqtt-outbox-bound")

    async def enforce_bound(self) -> int:
        """Past ``max_backlog`` undelivered events, give up on the oldest (they stay in the local log, they are just
        not sent) and record one ``backlog.dropped`` event saying how many. Returns how many were dropped."""
        start = self.delivered

        def find(db: sqlite_utils.Database) -> tuple[int, int, int] | None:
            count = db.execute("SELECT COUNT(*) FROM events WHERE seq > ?", (start,)).fetchone()[0]
            if count <= self.max_backlog:
                return None
            # Down to 90 % of the bound: one backlog.dropped event per tenth of the bound during a long outage,
            # not one per new event (each would itself take a place in the backlog).
            excess = count - (self.max_backlog - max(1, self.max_backlog // 10))
            first, last = db.execute(
                "SELECT MIN(seq), MAX(seq) FROM (SELECT seq FROM events WHERE seq > ? ORDER BY seq LIMIT ?)",
                (start, excess),
            ).fetchone()
            return excess, first, last

        found = await self.store.run(find)
        if found is None or self.delivered != start:
            return 0
        excess, first, last = found
        self.delivered = max(self.delivered, last)
        self.cursor = max(self.cursor, last)
        while self._sent and self._sent[0] <= last:
            self._acked.discard(self._sent.popleft())
        self.dropped_total += excess
        await self.persist()
        log.warning(
            "MQTT backlog over %d events: dropped the %d oldest (seq %d..%d)", self.max_backlog, excess, first, last
        )
        result = self.emit(
            "backlog.dropped", count=excess, first_seq=first, last_seq=last, max_backlog_events=self.max_backlog
        )
        if asyncio.isfuture(result) or asyncio.iscoroutine(result):
            await result
        return excess

    async def close(self) -> None:
        for task in (self._bound_task, self._persist_task):
            if task is not None and not task.done():
                await asyncio.gather(task, return_exceptions=True)
        await self.persist()
