"""`allervers supervise` against a real Mosquitto: the fleet model, the app driven by the Pilot with real buses (an
in-process controller, synthetic publishers for 500 buses), commands and replies, a few fixed-size screen checks."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import RichLog, Sparkline

from firmware_host.mqtt.client import BrokerOptions
from firmware_host.mqtt.protocol import FleetTopics
from firmware_host.supervise.app import SuperviseApp
from firmware_host.supervise.fleet import Fleet, FleetLink
from firmware_host.supervise.screens import BusScreen, ConfirmScreen, FleetScreen
from firmware_host.supervise.widgets import FleetTable

from ..conftest import make_config, on_screen, wait_until
from .mosquitto import Broker, Watcher, publish_fleet

SIZE = (140, 40)


def screen_text(app: SuperviseApp) -> str:
    """The screen as text, line by line, as a terminal of SIZE shows it."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def office(port: int, **kwargs: Any) -> FleetLink:
    return FleetLink(BrokerOptions("127.0.0.1", port, tls=False), Fleet(**kwargs))


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    with Broker(tmp_path / "broker") as b:
        yield b


# --- the model ------------------------------------------------------------------------------------------------


def state(**components: dict[str, Any]) -> dict[str, bytes]:
    return {c: json.dumps({**v, "stale": False}).encode() for c, v in components.items()}


def test_fleet_folds_messages_and_sorts_problems_first() -> None:
    fleet = Fleet(clock=lambda: 1000.0)
    for bus, online in (("bus-01", True), ("bus-02", False), ("bus-03", True), ("bus-04", True)):
        fleet.apply(f"allervers/{bus}/status", b"online" if online else b"offline", retained=True)
    fleet.apply("allervers/bus-01/state/power", b'{"soc": 90, "stale": false, "ts": 900}', retained=True)
    fleet.apply("allervers/bus-03/state/power", b'{"soc": 12, "stale": false}')
    fleet.apply("allervers/bus-03/state/shore", b'{"connected": false, "stale": false}')
    fleet.apply(
        "allervers/bus-04/state/controller",
        json.dumps({"alarms": [{"id": "interlock.shore_connected", "severity": "critical"}], "stale": False}).encode(),
    )
    # Critical, low battery, then the rest: bus-02's link is down, which is not a fault (out of coverage).
    assert fleet.order() == ["bus-04", "bus-03", "bus-01", "bus-02"]
    assert fleet.buses["bus-02"].problems(1000.0) == [] and fleet.buses["bus-02"].connectivity(1000.0)[0] == "down"
    assert fleet.buses["bus-04"].problems(1000.0) == ["alarm.critical"]
    assert fleet.buses["bus-01"].last_seen == 900  # retained: the reading's own time
    assert fleet.buses["bus-03"].last_seen == 1000.0  # live: when it arrived

    event = b'{"seq": 7, "ts": 1, "clock_synced": true, "type": "shore.connected", "value": true}'
    fleet.apply("allervers/bus-01/events", event)
    fleet.apply("allervers/bus-01/events", event)  # re-sent after an outage: shown once
    assert [e["seq"] for e in fleet.buses["bus-01"].events] == [7]

    # Broken messages are named and skipped; the rest keeps working.
    assert fleet.apply("allervers/bus-01/state/power", b"{not json") is None
    assert fleet.apply("allervers/bus-01/status", b"maybe") is None
    assert fleet.apply("allervers/bus-01/events", b'{"type": "x"}') is None
    assert fleet.apply("elsewhere/bus-01/status", b"online") is None
    assert len(fleet.errors) == 3
    assert fleet.errors[0].startswith("allervers/bus-01/state/power: ")
    assert "online or offline" in fleet.errors[1]
    assert fleet.buses["bus-01"].value("power", "soc") == 90

    stop = {"commune": "Gournay-en-Bray", "place": "place de la mairie"}
    fleet.apply("allervers/bus-01/state/checklist", json.dumps({"stop": stop, "stale": False}).encode())
    assert fleet.buses["bus-01"].stop == "Gournay-en-Bray (place de la mairie)"
    nested = Fleet(FleetTopics("assoc/allervers"))
    assert nested.apply("assoc/allervers/bus-09/status", b"online") == "bus-09"


MONDAY = dt.datetime(2026, 6, 15)  # config/tour.toml: Pionsat 09:00-12:00, Montaigut 14:00-17:00 on Mondays


def at(hhmm: str) -> float:
    return dt.datetime.combine(MONDAY.date(), dt.time.fromisoformat(hhmm)).timestamp()


DAY = {
    "date": "2026-06-15",
    "planned": [
        {"key": "2026-06-15/63281/0900", "commune": "Pionsat", "place": "Place de la mairie",
         "arrive": "09:00", "depart": "12:00"},
        {"key": "2026-06-15/63233/1400", "commune": "Montaigut", "place": "Parking", "arrive": "14:00",
         "depart": "17:00"},
    ],
    "stops": [{"key": "2026-06-15/63281/0900", "commune": "Pionsat", "place": "Place de la mairie", "at": 0}],
    "visitors": [{"key": "2026-06-15/63281/0900", "label": "Pionsat", "visitors": 7}],
}  # fmt: skip


def test_a_field_left_out_of_a_state_message_is_null_at_the_office() -> None:
    """The bus leaves a state's null fields out: a value that became null is gone from the office's view, not kept
    from the message before."""
    fleet = Fleet(clock=lambda: 1000.0)
    fleet.apply("allervers/bus-01/state/power", b'{"soc": 12, "battery_v": 24.1, "stale": false}')
    assert fleet.buses["bus-01"].value("power", "soc") == 12
    assert "low_soc" in fleet.buses["bus-01"].problems(1000.0)
    fleet.apply("allervers/bus-01/state/power", b'{"battery_v": 24.1, "stale": false}')  # the inverter lost its SoC
    assert fleet.buses["bus-01"].value("power", "soc") is None
    assert fleet.buses["bus-01"].value("power", "battery_v") == 24.1
    assert "low_soc" not in fleet.buses["bus-01"].problems(1000.0)


def test_the_office_tells_a_link_down_from_a_silent_bus() -> None:
    now = [at("09:10")]
    fleet = Fleet(clock=lambda: now[0])
    bus = "allervers/bus-01"
    day = {**DAY, "stops": [{**DAY["stops"][0], "at": at("09:05")}]}
    fleet.apply(f"{bus}/status", b"online")
    link = {"since": at("09:06"), "down_since": at("08:30"), "backlog": 120, "last_seq": 500, "keepalive_s": 600,
            "refresh_s": 3600}  # fmt: skip
    fleet.apply(f"{bus}/link", json.dumps(link).encode())
    fleet.apply(f"{bus}/day", json.dumps(day).encode(), retained=True)
    view = fleet.buses["bus-01"]
    assert view.connectivity(now[0]) == ("up", at("09:06"))
    # The backlog it reported, less what has arrived since.
    assert view.backlog() == 120
    fleet.apply(f"{bus}/events", b'{"seq": 450, "ts": 1, "type": "x"}')
    assert view.backlog() == 50
    fleet.apply(f"{bus}/events", b'{"seq": 500, "ts": 1, "type": "x"}')
    assert view.backlog() == 0

    # Its will at 10:00, in the middle of a planned stop: first just "down" (it may come back any minute)...
    now[0] = at("10:00")
    fleet.apply(f"{bus}/status", b"offline")
    assert view.connectivity(at("10:20")) == ("down", at("10:00"))
    assert view.problems(at("10:20")) == [] and view.rank(at("10:20")) == 0
    # ... then "silent" once it has been gone for half an hour of a stop where it should have a link.
    assert view.connectivity(at("10:31")) == ("silent", at("10:00"))
    assert view.problems(at("10:31")) == ["silent"]
    # On the road between stops, down is expected: not a fault, however long.
    assert view.connectivity(at("13:30")) == ("down", at("10:00"))
    assert view.connectivity(at("20:00")) == ("down", at("10:00"))

    # Connected but saying nothing for longer than its refresh period and keepalive allow: silent too.
    now[0] = at("14:05")
    fleet.apply(f"{bus}/status", b"online")
    assert view.connectivity(at("14:30"))[0] == "up"
    assert view.connectivity(at("14:05") + 3600 + 900 + 1) == ("silent", at("14:05"))

    # Today's stops: planned with arrival and visitors; a stop reached off the plan is listed after them.
    assert view.today(now[0]) == [
        {"label": "Pionsat", "place": "Place de la mairie", "planned": "09:00-12:00", "at": at("09:05"),
         "visitors": 7},
        {"label": "Montaigut", "place": "Parking", "planned": "14:00-17:00", "at": None, "visitors": 0},
    ]  # fmt: skip
    extra = {"key": "2026-06-15/63000/hors-planning", "commune": "Menat", "place": "", "at": at("17:30")}
    fleet.apply(f"{bus}/day", json.dumps({**day, "stops": [*day["stops"], extra]}).encode())
    assert view.today(now[0])[-1] == {"label": "Menat", "place": "", "planned": None, "at": at("17:30"), "visitors": 0}
    assert view.visitors_today(now[0]) == 7
    # Sessions at stops off the plan: with the stop reached, or tagged with a stop never confirmed.
    visitors = [*day["visitors"], {"key": extra["key"], "label": "Menat", "visitors": 2},
                {"key": "76312", "label": "Gournay-en-Bray", "visitors": 1}]  # fmt: skip
    fleet.apply(f"{bus}/day", json.dumps({**day, "stops": [*day["stops"], extra], "visitors": visitors}).encode())
    assert [(r["label"], r["at"], r["visitors"]) for r in view.today(now[0])[2:]] == [
        ("Menat", at("17:30"), 2),
        ("Gournay-en-Bray", None, 1),
    ]
    assert view.visitors_today(now[0]) == 10
    # The next morning, before the bus is heard from: yesterday's summary is not today's.
    tomorrow = at("08:00") + 86400
    assert view.today(tomorrow) == [] and view.visitors_today(tomorrow) is None
    assert view.stop_in_progress(tomorrow + 3600) is None  # nor is its plan
    assert fleet.apply(f"{bus}/day", b"[1, 2]") is None and "must be a JSON object" in fleet.errors[-1]


async def test_app_states_down_silent_and_today(broker: Broker) -> None:
    """The fleet table and the bus screen for each state of a bus's link, fed by real retained messages."""
    now = [at("10:20")]
    publisher = Watcher(broker.port, [])
    publisher.start()
    try:
        link = {"since": at("09:06"), "down_since": at("08:30"), "backlog": 120, "last_seq": 500,
                "keepalive_s": 600, "refresh_s": 3600}  # fmt: skip
        day = {**DAY, "stops": [{**DAY["stops"][0], "at": at("09:05")}]}
        for bus, status in (("bus-01", b"online"), ("bus-02", b"offline"), ("bus-03", b"offline")):
            publisher.publish(f"allervers/{bus}/link", json.dumps(link), retain=True)
            publisher.publish(f"allervers/{bus}/status", status, retain=True)
        publisher.publish("allervers/bus-01/day", json.dumps(day), retain=True)
        publisher.publish("allervers/bus-03/day", json.dumps(day), retain=True)  # it should be at Pionsat now
        publisher.publish("allervers/bus-01/state/power", json.dumps({"soc": 80, "ts": at("10:19")}), retain=True)

        app = SuperviseApp(office(broker.port, clock=lambda: now[0]), clock=lambda: now[0])
        async with app.run_test(size=SIZE) as pilot:
            table = app.screen.query_one(FleetTable)
            await wait_until(lambda: table.row_count == 3 and app.fleet.buses["bus-03"].day, message="3 rows")
            table.sync()

            def row(bus: str) -> list[str]:
                return [c.plain if hasattr(c, "plain") else str(c) for c in table.get_row(bus)]

            # 10:20: a retained "offline" says nothing of when: bus 2 (no plan known) is down, calmly; bus 3 should
            # have had a link since its stop began at 09:00: silent, and first.
            assert row("bus-01")[1] == "en ligne" and row("bus-01")[7] == "120" and row("bus-01")[9] == "7"
            assert row("bus-02")[1] == "coupée —" and table.get_row("bus-02")[1].style == "yellow"
            assert row("bus-03")[1] == "MUET —" and table.get_row_at(0)[0].plain == "bus-03"
            # Bus 3 comes back, then its will arrives at 10:25: down (it may be back any minute)...
            now[0] = at("10:24")
            publisher.publish("allervers/bus-03/status", b"online", retain=True)
            await wait_until(lambda: app.fleet.buses["bus-03"].online, message="bus 3 online")
            now[0] = at("10:25")
            publisher.publish("allervers/bus-03/status", b"offline", retain=True)
            await wait_until(lambda: app.fleet.buses["bus-03"].offline_at == at("10:25"), message="live offline")
            table.sync(force=True)
            assert row("bus-03")[1] == "coupée 10:25" and table.get_row_at(0)[0].plain != "bus-03"
            # ... and silent half an hour later, still at its planned stop.
            now[0] = at("11:00")
            table.sync(force=True)
            assert row("bus-03")[1] == "MUET 10:25" and table.get_row("bus-03")[1].style == "bold red"
            assert table.get_row_at(0)[0].plain == "bus-03" and row("bus-02")[1] == "coupée —"
            await wait_until(lambda: "1 à surveiller" in screen_text(app), message="one problem counted")

            # The bus screen says why it is quiet and shows today's stops with their visitors.
            table.move_cursor(row=table.get_row_index("bus-01"))
            await pilot.press("enter")
            assert isinstance(app.screen, BusScreen)
            await wait_until(lambda: "Aujourd'hui" in screen_text(app), message="today's panel")
            text = screen_text(app)
            assert "en ligne depuis 09:06" in text and "avant : coupée depuis 08:30" in text
            assert "120 événements à recevoir" in text
            assert "09:00-12:00" in text and "Pionsat" in text and "arrivé 09:05" in text and "7 visiteurs" in text
            assert "14:00-17:00" in text and "pas encore" in text and "Total : 7 visiteurs" in text
            await pilot.press("escape")
            await pilot.press("l")
            await wait_until(lambda: "SILENT 10:25" in screen_text(app), message="English")
            assert "down —" in screen_text(app)
    finally:
        publisher.stop()


# --- the app with a real bus ------------------------------------------------------------------------------------


async def test_app_shows_a_real_bus_and_runs_commands(tmp_path: Path, broker: Broker, run_controller) -> None:
    t0 = (int(time.time()) // 60 - 120) * 60
    now = [float(t0)]
    cfg = make_config(
        tmp_path,
        vehicle={"id": "bus-07", "name": "Bus du Pays de Bray"},
        gpio={"pin_factory": "mock", "ignition_pin": 17, "antenna_stowed_pin": 27, "debounce_s": 0.0},
        mqtt={"host": "127.0.0.1", "port": broker.port, "tls": False, "link_gate": "always"},
    )
    controller = await run_controller(cfg, clock=lambda: now[0])
    for minute in range(120):  # two hours of battery readings for the history sparklines
        now[0] = t0 + minute * 60
        controller.store.add_sample("power.soc", 90 - minute * 0.2)
        controller.store.add_sample("power.battery_v", 26.5 - minute * 0.005)
    now[0] = time.time()
    await controller.store.flush(everything=True)
    controller.state.update("power", {"soc": 66.0, "battery_v": 25.9})
    controller.state.update("modem", {"link": "up", "signal_bars": 4})
    kiosk_calls: list[object] = []

    class Kiosk:
        """The kiosk feature's lock (kiosk.session.KioskManager.lock), counting the calls."""

        async def lock(self, reason: object = None) -> dict[str, Any]:
            kiosk_calls.append(reason)
            return {"locked": True}

    app = SuperviseApp(office(broker.port))
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(FleetTable)
        await wait_until(lambda: table.row_count == 1 and table.get_row_at(0)[1].plain == "en ligne", message="row")
        await wait_until(lambda: "66 %" in screen_text(app), message="the battery level on screen")
        text = screen_text(app)
        assert "Supervision de la flotte" in text
        header = next(line for line in text.splitlines() if "Bus" in line and "Batterie" in line)
        assert header.split() == [
            "Bus",
            "État",
            "Vu",
            "à",
            "Arrêt",
            "Secteur",
            "Batterie",
            "Liaison",
            "À",
            "venir",
            "Borne",
            "Visiteurs",
            "Alarmes",
        ]
        rows = [line for line in text.splitlines() if "bus-07" in line]
        assert rows, text
        row = rows[0]
        assert "en ligne" in row and "66 %" in row and "ok ▮▮▮▮▯" in row

        # The dish raised with the ignition on: the row says so at once.
        controller.io.drive("antenna_stowed", False)
        controller.io.drive("ignition", True)
        await wait_until(lambda: "1 · ALARME CRITIQUE" in screen_text(app), message="the alarm in the table")

        await pilot.press("enter")
        detail = await on_screen(app, BusScreen)
        assert detail.bus_id == "bus-07"
        await wait_until(lambda: detail.query_one("#chart-soc").spark.data, message="history loaded")
        soc_series = detail.query_one("#chart-soc").spark.data
        assert len(soc_series) in (24, 25)  # two hours in 5-minute buckets (aligned on the clock)
        assert soc_series[0] > soc_series[-1]
        assert isinstance(detail.query_one("#chart-battery Sparkline", Sparkline), Sparkline)
        await wait_until(lambda: "interlock.antenna_up" in screen_text(app), message="alarm in the detail")
        await wait_until(lambda: "vehicle.ignition" in screen_text(app), message="recent events")

        await pilot.press("p")
        await wait_until(lambda: "ping : fait" in detail.replies, message="ping reply")

        # An acting command asks first; cancelled, nothing is sent.
        await pilot.click("#cmd-kiosk-lock")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, BusScreen)
        await pilot.click("#cmd-kiosk-lock")
        await pilot.click("#yes")
        await wait_until(lambda: any("Verrouiller" not in r and "refusé" in r for r in detail.replies), message="reply")
        assert detail.replies[-1] == "kiosk.lock : refusé (no kiosk is configured on this bus)"

        controller.features["kiosk"] = Kiosk()
        await pilot.click("#cmd-kiosk-lock")
        await pilot.click("#yes")
        await wait_until(lambda: detail.replies[-1] == "kiosk.lock : fait", message="lock done")
        assert kiosk_calls == [None]
        assert len(detail.query_one("#replies", RichLog).lines) >= 4

        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)
        await pilot.press("l")
        await wait_until(lambda: "Fleet supervision" in screen_text(app), message="English")
        assert "CRITICAL ALARM" in screen_text(app)


async def test_the_app_names_an_unreachable_broker_and_keeps_running(broker: Broker) -> None:
    from .mosquitto import free_port

    port = free_port()  # nothing listens here
    app = SuperviseApp(office(port), language="en")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: "Broker unreachable" in screen_text(app), message="the error on screen")
        assert f"mqtt://127.0.0.1:{port}" in screen_text(app)
        await pilot.press("l")  # still answering keys
        assert "Supervision de la flotte" in screen_text(app)


# --- 500 buses --------------------------------------------------------------------------------------------------


async def test_500_buses_render_coalesced_and_keys_keep_working(broker: Broker) -> None:
    app = SuperviseApp(office(broker.port))
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(FleetTable)
        await wait_until(lambda: app.link.connected, message="office connected")
        flood = asyncio.create_task(asyncio.to_thread(publish_fleet, broker.port, 500, 3, offline_every=40))
        # Keys are processed while the flood comes in.
        await wait_until(lambda: table.row_count >= 50, message="first rows")
        moved = 0
        while not flood.done() and moved < 10:
            await pilot.press("down")
            moved += 1
        assert table.cursor_row >= 1
        sent = await flood
        assert sent == 500 * 6 * 3
        await wait_until(lambda: app.fleet.messages >= sent, timeout=30, message="every message folded in")
        await wait_until(lambda: table.row_count == 500 and not app.fleet.dirty, message="500 rows")
        # Coalesced: the table was redrawn a few times per second, not once per message.
        assert table.syncs < sent / 50
        assert table.reorders <= table.syncs and table.rows_added == 500
        # Problems first, worst first: the buses with a critical alarm (every 97th) lead. The offline ones (every
        # 40th) are not problems for being offline: their link is down, calmly said, and they sort by the rest.
        order = [table.get_row_at(i)[0].plain for i in range(500)]
        critical = [f"bus-{i:03d}" for i in range(500) if i % 97 == 0]
        assert order[: len(critical)] == sorted(critical)
        now = time.time()
        ranks = [app.fleet.buses[bus].rank(now) for bus in order]
        assert ranks == sorted(ranks, reverse=True)
        offline = [f"bus-{i:03d}" for i in range(500) if i % 40 == 0]
        assert all(table.get_row(bus)[1].plain.startswith("coupée") for bus in offline)
        assert not any("silent" in app.fleet.buses[bus].problems(now) for bus in offline)
        text = screen_text(app)
        assert "500 bus" in text
        # The cursor still works on the full table, and opens the bus under it.
        await pilot.press("ctrl+home")
        assert table.cursor_row == 0
        await pilot.press("down", "down")
        assert table.cursor_row == 2
        target = table.selected_bus
        assert target == table.get_row_at(2)[0].plain
        await pilot.press("enter")
        assert isinstance(app.screen, BusScreen) and app.screen.bus_id == target
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)


# --- the command line -------------------------------------------------------------------------------------------


def test_supervise_command_line_refuses_unsafe_or_broken_options(tmp_path: Path, capsys: Any) -> None:
    from firmware_host.cli import main

    assert main(["supervise", "--broker", "supervision.example.org", "--no-tls"]) == 2
    assert "plaintext to 'supervision.example.org' is refused" in capsys.readouterr().err
    missing = tmp_path / "office.password"
    assert main(["supervise", "--username", "office", "--password-file", str(missing)]) == 2
    assert f"{missing}: cannot read the MQTT password file" in capsys.readouterr().err
    assert main(["supervise", "--password-file", str(missing)]) == 2
    assert "--password-file needs --username" in capsys.readouterr().err
    assert main(["supervise", "--cert-file", "c.pem"]) == 2
    assert "go together" in capsys.readouterr().err
    assert main(["supervise", "--root", "allervers/#", "--no-tls"]) == 2
    assert "--root" in capsys.readouterr().err


def test_supervise_options_come_from_the_bus_config_when_given(tmp_path: Path) -> None:
    import argparse

    from firmware_host.supervise.cli import add_arguments, options_from

    toml = tmp_path / "bus.toml"
    toml.write_text('[mqtt]\nhost = "broker.example.org"\nport = 8884\nca_file = "ca.pem"\nusername = "bus-01"\n')
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config")
    add_arguments(parser)
    options = options_from(parser.parse_args(["-c", str(toml)]))
    assert (options.host, options.port, options.tls, options.ca_file) == (
        "broker.example.org",
        8884,
        True,
        str(tmp_path / "ca.pem"),
    )
    assert options.username is None  # the office has its own account, never the bus's
    assert options.address == "mqtts://broker.example.org:8884"
    local = options_from(parser.parse_args(["--no-tls"]))
    assert local.address == "mqtt://localhost:1883"
