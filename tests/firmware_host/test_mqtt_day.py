"""What the office learns of a bus's day and link without asking: the retained ``<p>/day`` summary (planned stops,
stops reached, visitors per stop) and ``<p>/link`` (since when, the outage before, the backlog), over a real
Mosquitto, from a real controller with its checklist and the kiosk's statistics table."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from firmware_host.api import call_once
from kiosk import stats

from ..conftest import make_config, wait_until
from .mosquitto import Broker, Watcher

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "allervers/bus-test"
MONDAY_1030 = dt.datetime(2026, 6, 15, 10, 30)  # config/tour.toml: Pionsat 09:00-12:00, Montaigut 14:00-17:00
PIONSAT = "2026-06-15/63281/0900"


def days(watcher: Watcher) -> list[dict[str, Any]]:
    return [m.json() for m in watcher.received(f"{PREFIX}/day")]


async def test_the_day_summary_and_the_link_record_reach_the_office(tmp_path: Path, run_controller: Any) -> None:
    start, offset = time.monotonic(), MONDAY_1030.timestamp()
    with Broker(tmp_path / "broker") as broker:
        cfg = make_config(
            tmp_path,
            vehicle={"id": "bus-test", "name": "Bus test"},
            checklist={"schedule": str(ROOT / "config" / "tour.toml")},
            mqtt={"host": "127.0.0.1", "port": broker.port, "tls": False, "link_gate": "modem"},
        )
        office = Watcher(broker.port, [f"{PREFIX}/day", f"{PREFIX}/link", f"{PREFIX}/status"]).start()
        try:
            controller = await run_controller(cfg, clock=lambda: offset + (time.monotonic() - start))
            link = controller.mqtt
            mono = [0.0]
            link.monotonic = lambda: mono[0]  # the link's own clock: the day's rate limit is stepped by hand
            controller.state.update("modem", {"link": "up"})
            await wait_until(lambda: days(office), message="the day's summary at connection")
            first = days(office)[0]
            assert first["date"] == "2026-06-15" and first["stops"] == [] and first["visitors"] == []
            assert [(p["commune"], p["arrive"], p["depart"]) for p in first["planned"]] == [
                ("Pionsat", "09:00", "12:00"),
                ("Montaigut", "14:00", "17:00"),
            ]
            assert "contact" not in first["planned"][0]  # the town hall's contact stays on the bus
            record = office.received(f"{PREFIX}/link")[0]
            assert record.retain is False  # live: the office was listening
            info = record.json()
            assert info["down_since"] is None and info["backlog"] >= 0 and info["refresh_s"] == cfg.mqtt.refresh_s
            assert abs(info["since"] - controller.clock()) < 5

            # The driver confirms the stop: the summary goes at once.
            await call_once(cfg.api.control_socket, "checklist.arrive", {"stop": PIONSAT, "by": "Marie"})
            await wait_until(lambda: len(days(office)) == 2, message="the stop in the summary")
            reached = days(office)[1]["stops"]
            assert [(s["key"], s["commune"]) for s in reached] == [(PIONSAT, "Pionsat")]

            # Three visitors: their sessions wait for the next refresh period (an hour), not one message each.
            def record_sessions(db: Any) -> None:
                stats.create_tables(db)
                for hour in (10, 10, 11):
                    row = {"date": "2026-06-15", "start_hour": hour, "duration_s": 600, "stop_key": PIONSAT,
                           "stop_label": "Pionsat", "services": ["caf"], "pages": 2, "ended_by": "visitor",
                           "clock_synced": True}  # fmt: skip
                    stats.record_session(db, row, clear_intent=False)

            await controller.store.run(record_sessions)
            for _ in range(3):
                await controller.store.append_event("kiosk.session_ended", stop_key=PIONSAT, services=["caf"])
            await wait_until(lambda: link.outbox.delivered == controller.store.last_seq, message="events sent")
            assert link.day_tick() is None
            mono[0] += cfg.mqtt.refresh_s - 1
            assert link.day_tick() is None
            mono[0] += 1
            due = link.day_tick()
            assert due is not None and await due is True
            await wait_until(lambda: len(days(office)) == 3, message="the visitors in the summary")
            assert days(office)[2]["visitors"] == [{"key": PIONSAT, "label": "Pionsat", "visitors": 3}]
            mono[0] += 2000
            assert link.day_tick() is None  # nothing new
            await wait_until(lambda: not link._day_mids, message="the summary acknowledged")
            assert await link.publish_day() is False  # the broker holds it already

            # The link drops and comes back: the office heard the will, then the bus's own record of the outage.
            down_at = controller.clock()
            controller.state.update("modem", {"link": "down"})
            await wait_until(lambda: office.received(f"{PREFIX}/status")[-1].payload == b"offline", message="will")
            controller.state.update("modem", {"link": "up"})
            await wait_until(lambda: len(office.received(f"{PREFIX}/link")) == 2, message="the second record")
            again = office.received(f"{PREFIX}/link")[1].json()
            assert abs(again["down_since"] - down_at) < 5 and again["since"] >= again["down_since"]
            assert len(days(office)) == 3  # the broker already holds today's summary: not sent again
        finally:
            office.stop()

        # An office that opens later gets both from the broker.
        late = Watcher(broker.port, [f"{PREFIX}/day", f"{PREFIX}/link"]).start()
        try:
            await wait_until(lambda: len(late.received()) == 2, message="retained messages")
            day = json.loads(late.received(f"{PREFIX}/day")[0].payload)
            assert day["visitors"][0]["visitors"] == 3 and late.received(f"{PREFIX}/day")[0].retain
        finally:
            late.stop()
