"""`allervers supervise` against a real Mosquitto: the fleet model, the app driven by the Pilot with real buses (an
in-process controller, synthetic publishers for 500 buses), commands and replies, a few fixed-size screen checks."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import RichLog, Sparkline

from firmware_host.mqtt.client import BrokerOptions
from firmware_host.mqtt.topics import FleetTopics
from firmware_host.supervise.app import SuperviseApp
from firmware_host.supervise.fleet import Fleet, FleetLink
from firmware_host.supervise.screens import BusScreen, ConfirmScreen, FleetScreen
from firmware_host.supervise.widgets import FleetTable

from ..conftest import make_config, wait_until
from .mosquitto import Broker, publish_fleet

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
    assert fleet.order() == ["bus-04", "bus-02", "bus-03", "bus-01"]  # critical, offline, low battery, fine
    assert fleet.buses["bus-04"].problems() == ["alarm.critical"]
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
    kiosk_calls: list[dict[str, Any]] = []

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
            "Quai",
            "Batterie",
            "Liaison",
            "Borne",
            "Sessions",
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
        assert isinstance(app.screen, BusScreen) and app.screen.bus_id == "bus-07"
        detail = app.screen
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

        controller.registry.add("kiosk.lock", lambda a, c: kiosk_calls.append(a) or {"locked": True}, ("control",))
        await pilot.click("#cmd-kiosk-lock")
        await pilot.click("#yes")
        await wait_until(lambda: detail.replies[-1] == "kiosk.lock : fait", message="lock done")
        assert kiosk_calls == [{}]
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
        # Problems first: the buses with a critical alarm (every 97th), then the offline ones (every 40th).
        order = [table.get_row_at(i)[0].plain for i in range(500)]
        critical = [f"bus-{i:03d}" for i in range(500) if i % 97 == 0]
        assert order[: len(critical)] == sorted(critical)
        offline = sorted(f"bus-{i:03d}" for i in range(500) if i % 40 == 0 and i % 97 != 0)
        assert order[len(critical) : len(critical) + len(offline)] == offline
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
