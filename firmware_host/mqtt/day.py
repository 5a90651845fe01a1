"""The day's summary a bus keeps retained at the broker (``<p>/day``): today's stops, planned (the tour) and actual
(the checklist's confirmed stops), and the visitors per stop (the kiosk's statistics), so that the office has the
daily totals without copying files from the bus. One small message, replaced as the day goes on."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlite_utils

STOP_FIELDS = ("key", "commune", "place")


def planned_stops(controller: Any, day: dt.date) -> list[dict[str, Any]]:
    """The tour's stops of ``day`` (none without a checklist or a schedule)."""
    checklist = controller.lookup("checklist")
    tour = checklist.tour if checklist is not None else None
    if tour is None:
        return []
    out = []
    for stop in tour.on(day):
        info = stop.as_dict()
        out.append({k: info[k] for k in (*STOP_FIELDS, "arrive", "depart")})
    return out


async def day_summary(controller: Any, day: dt.date) -> dict[str, Any]:
    """``{"date", "planned": [{"key", "commune", "place", "arrive", "depart"}], "stops": [{"key", "commune", "at"}],
    "visitors": [{"key", "label", "visitors"}]}`` for ``day`` (local time of the bus's clock)."""
    start = dt.datetime.combine(day, dt.time()).timestamp()
    end = start + 86400
    date = day.isoformat()

    def read(db: sqlite_utils.Database) -> tuple[list[tuple[float, str]], list[dict[str, Any]]]:
        from kiosk.stats import day_totals

        stops = db.execute(
            "SELECT ts, data FROM events WHERE type = 'checklist.stop' AND ts >= ? AND ts < ? ORDER BY seq",
            (start, end),
        ).fetchall()
        has_kiosk = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'kiosk_sessions'").fetchone()
        return stops, day_totals(db, date) if has_kiosk else []

    rows, visitors = await controller.store.run(read)
    actual = []
    for ts, data in rows:
        stop = json.loads(data).get("stop")
        if isinstance(stop, dict):  # (the place is in the plan; an unplanned stop is named by its commune)
            actual.append({"key": stop.get("key"), "commune": stop.get("commune"), "at": round(ts)})
    return {"date": date, "planned": planned_stops(controller, day), "stops": actual, "visitors": visitors}
