"""Screenshots of the office app for the README (docs/screenshots/supervise-*.png): a small fleet on a Monday at
11:00, sent as real retained MQTT messages to a local Mosquitto, shown by the app under the Pilot (Textual's SVG,
rendered with rsvg-convert from librsvg2-bin)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from firmware_host.mqtt.client import BrokerOptions  # noqa: E402
from firmware_host.supervise.app import SuperviseApp  # noqa: E402
from firmware_host.supervise.fleet import Fleet, FleetLink  # noqa: E402
from firmware_host.supervise.widgets import FleetTable  # noqa: E402
from tests.firmware_host.mosquitto import Broker, Watcher  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
MONDAY = dt.date(2026, 6, 15)


def at(hhmm: str) -> float:
    return dt.datetime.combine(MONDAY, dt.time.fromisoformat(hhmm)).timestamp()


def stop(key: str, commune: str, place: str, arrive: str, depart: str) -> dict[str, str]:
    return {"key": key, "commune": commune, "place": place, "arrive": arrive, "depart": depart}


PIONSAT = stop("2026-06-15/63281/0900", "Pionsat", "Place de la mairie", "09:00", "12:00")
MONTAIGUT = stop("2026-06-15/63233/1400", "Montaigut", "Salle des fêtes", "14:00", "17:00")
MENAT = stop("2026-06-15/63223/0900", "Menat", "Marché", "09:00", "12:00")
SAINT_ELOY = stop("2026-06-15/63338/0830", "Saint-Éloy-les-Mines", "Place Jean-Jaurès", "08:30", "10:00")
YOUX = stop("2026-06-15/63469/1400", "Youx", "Mairie", "14:00", "17:00")
STATE = {
    "bus-01": {
        "power": {"soc": 78.0, "battery_v": 26.4},
        "shore": {"connected": True},
        "modem": {"link": "up", "signal_bars": 4},
        "kiosk": {"open": True, "locked": False, "sessions_today": 9},
        "checklist": {"stop": {"commune": "Pionsat", "place": "Place de la mairie"}},
        "controller": {"alarms": []},
    },
    "bus-02": {
        "power": {"soc": 64.0, "battery_v": 25.9},
        "shore": {"connected": False},
        "modem": {"link": "up", "signal_bars": 2},
        "kiosk": {"open": False, "locked": False, "sessions_today": 4},
        "controller": {"alarms": []},
    },
    "bus-03": {
        "power": {"soc": 41.0, "battery_v": 25.4},
        "shore": {"connected": False},
        "modem": {"link": "up", "signal_bars": 3},
        "kiosk": {"open": True, "locked": False, "sessions_today": 2},
        "checklist": {"stop": {"commune": "Menat", "place": "Marché"}},
        "controller": {"alarms": []},
    },
    "bus-04": {
        "power": {"soc": 55.0, "battery_v": 25.7},
        "shore": {"connected": False},
        "modem": {"link": "up", "signal_bars": 5},
        "vehicle": {"ignition": True, "antenna_stowed": False},
        "controller": {
            "alarms": [{"id": "interlock.antenna_up", "severity": "critical", "message": "antenne levée, contact mis"}]
        },
    },
}


def publish_fleet(port: int) -> None:
    bus = Watcher(port, [])
    bus.start()
    try:
        for bus_id, components in STATE.items():
            read_at = {"bus-02": "10:14", "bus-03": "10:19"}.get(bus_id, "10:58")  # before their link went
            for component, values in components.items():
                payload = {**values, "ts": at(read_at), "stale": False}
                bus.publish(f"allervers/{bus_id}/state/{component}", json.dumps(payload), retain=True)
        days = {
            "bus-01": {
                "planned": [PIONSAT, MONTAIGUT],
                "stops": [{**PIONSAT, "at": at("09:07")}],
                "visitors": [{"key": PIONSAT["key"], "label": "Pionsat", "visitors": 9}],
            },
            "bus-02": {
                "planned": [SAINT_ELOY, YOUX],
                "stops": [{**SAINT_ELOY, "at": at("08:34")}],
                "visitors": [{"key": SAINT_ELOY["key"], "label": "Saint-Éloy-les-Mines", "visitors": 4}],
            },
            "bus-03": {
                "planned": [MENAT],
                "stops": [{**MENAT, "at": at("09:12")}],
                "visitors": [{"key": MENAT["key"], "label": "Menat", "visitors": 2}],
            },
        }
        for bus_id, day in days.items():
            bus.publish(f"allervers/{bus_id}/day", json.dumps({"date": MONDAY.isoformat(), **day}), retain=True)
        links = {
            "bus-01": {"since": at("10:52"), "down_since": at("09:40"), "backlog": 412, "last_seq": 5210},
            "bus-02": {"since": at("08:02"), "down_since": None, "backlog": 0, "last_seq": 3001},
            "bus-03": {"since": at("09:10"), "down_since": None, "backlog": 0, "last_seq": 880},
            "bus-04": {"since": at("10:40"), "down_since": None, "backlog": 0, "last_seq": 1405},
        }
        for bus_id, link in links.items():
            link |= {"keepalive_s": 600, "refresh_s": 3600}
            bus.publish(f"allervers/{bus_id}/link", json.dumps(link), retain=True)
            bus.publish(f"allervers/{bus_id}/status", b"online", retain=True)
    finally:
        bus.stop()


async def shoot(port: int, tmp: Path) -> list[Path]:
    now = [at("10:20")]
    app = SuperviseApp(FleetLink(BrokerOptions("127.0.0.1", port, tls=False), Fleet(clock=lambda: now[0])),
                       clock=lambda: now[0])  # fmt: skip
    shots = []
    async with app.run_test(size=(140, 30)) as pilot:
        table = app.screen.query_one(FleetTable)
        while table.row_count < 4 or not app.fleet.buses["bus-03"].day:
            await asyncio.sleep(0.05)
        # Their wills: bus-02 at 10:15 between two stops, bus-03 at 10:20 in the middle of its stop at Menat.
        office = Watcher(port, [])
        office.start()
        now[0] = at("10:15")
        office.publish("allervers/bus-02/status", b"offline", retain=True)
        await asyncio.sleep(0.3)
        now[0] = at("10:20")
        office.publish("allervers/bus-03/status", b"offline", retain=True)
        await asyncio.sleep(0.3)
        # bus-01 is back since 10:52 and has sent part of its backlog.
        office.publish("allervers/bus-01/events", json.dumps({"seq": 5000, "ts": at("10:53"), "type": "kiosk.wipe"}))
        await asyncio.sleep(0.3)
        office.stop()
        now[0] = at("11:00")
        app.screen.tick()
        table.sync(force=True)
        await pilot.pause()
        shots.append(tmp / "supervise-fleet.svg")
        app.save_screenshot(shots[-1].name, str(tmp))
        table.move_cursor(row=table.get_row_index("bus-01"))
        await pilot.press("enter")
        await pilot.pause(0.8)
        shots.append(tmp / "supervise-bus.svg")
        app.save_screenshot(shots[-1].name, str(tmp))
    return shots


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="screenshot-supervise-") as name:
        tmp = Path(name)
        with Broker(tmp / "broker") as broker:
            publish_fleet(broker.port)
            shots = asyncio.run(shoot(broker.port, tmp))
        for svg in shots:
            png = OUT / svg.with_suffix(".png").name
            subprocess.run(["rsvg-convert", "-w", "1400", str(svg), "-o", str(png)], check=True)
            print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
