"""Home Assistant MQTT discovery over a real Mosquitto: every payload field by field, templates rendered with Jinja2
against the real state messages, re-sent only when needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2.sandbox
import pytest

from firmware_host.controller import version

from ..conftest import make_config, wait_until
from .mosquitto import Broker, Watcher

PREFIX = "allervers/bus-test"
NODE = "allervers_bus-test"

# (key, platform, state component, name, unit, device_class, state_class)
EXPECTED = [
    ("soc", "sensor", "power", "Batterie", "%", "battery", "measurement"),
    ("battery_v", "sensor", "power", "Tension batterie", "V", "voltage", "measurement"),
    ("shore_connected", "binary_sensor", "shore", "Prise de quai", None, "plug", None),
    ("link", "binary_sensor", "modem", "Liaison satellite", None, "connectivity", None),
    ("signal_bars", "sensor", "modem", "Signal", None, None, "measurement"),
    ("ignition", "binary_sensor", "vehicle", "Contact", None, None, None),
    ("antenna_stowed", "binary_sensor", "vehicle", "Antenne repliée", None, None, None),
    ("alarm_count", "sensor", "controller", "Alarmes actives", None, None, "measurement"),
    ("kiosk_open", "binary_sensor", "kiosk", "Borne ouverte", None, "opening", None),
    ("sessions_today", "sensor", "kiosk", "Sessions aujourd'hui", None, None, "total_increasing"),
]


def render(template: str, payload: bytes) -> str:
    """What Home Assistant does with a value_template: Jinja2 (sandboxed, as HA's) with ``value_json`` bound to the
    parsed payload."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment()
    return env.from_string(template).render(value_json=json.loads(payload), value=payload.decode())


def test_a_field_left_out_of_a_state_message_reads_as_unknown() -> None:
    """State messages leave out null fields: every template reads a missing field as it read a null ("None":
    unknown in HA), never as OFF or an error."""
    from firmware_host.mqtt.discovery import ENTITIES

    for entity in ENTITIES:
        if entity.key == "alarm_count":
            assert render(entity.template, b'{"stale": false}') == "0"
            continue
        assert render(entity.template, b'{"stale": false}') == "None", entity.key


def discovery(watcher: Watcher) -> dict[str, dict[str, Any]]:
    out = {}
    for m in watcher.received():
        if m.topic.startswith("homeassistant/") and m.topic.endswith("/config") and m.payload:
            out[m.topic] = m.json()
    return out


def config_topic(key: str, platform: str) -> str:
    return f"homeassistant/{platform}/{NODE}/{key}/config"


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    with Broker(tmp_path / "broker") as b:
        yield b


def cfg(tmp_path: Path, port: int, **mqtt: Any) -> Any:
    return make_config(
        tmp_path,
        vehicle={"id": "bus-test", "name": "Bus France Services du Pays de Bray"},
        gpio={"pin_factory": "mock", "ignition_pin": 17, "antenna_stowed_pin": 27, "debounce_s": 0.0},
        mqtt={"host": "127.0.0.1", "port": port, "tls": False, "link_gate": "always", "ha_discovery": True, **mqtt},
    )


async def test_discovery_payloads_field_by_field(tmp_path: Path, broker: Broker, run_controller) -> None:
    watcher = Watcher(broker.port, ["homeassistant/#", f"{PREFIX}/#"]).start()
    try:
        controller = await run_controller(cfg(tmp_path, broker.port))
        without_kiosk = [e for e in EXPECTED if e[2] != "kiosk"]
        await wait_until(lambda: len(discovery(watcher)) == len(without_kiosk), message="discovery")
        configs = discovery(watcher)
        assert set(configs) == {config_topic(e[0], e[1]) for e in without_kiosk}
        for key, platform, component, name, unit, device_class, state_class in without_kiosk:
            c = configs[config_topic(key, platform)]
            assert c["name"] == name
            assert c["unique_id"] == f"{NODE}_{key}"
            assert c["state_topic"] == f"{PREFIX}/state/{component}"
            assert c.get("unit_of_measurement") == unit
            assert c.get("device_class") == device_class
            assert c.get("state_class") == state_class
            assert c["qos"] == 1
            assert c["availability_mode"] == "all"
            assert c["availability"][0] == {
                "topic": f"{PREFIX}/status",
                "payload_available": "online",
                "payload_not_available": "offline",
            }
            assert c["availability"][1]["topic"] == f"{PREFIX}/state/{component}"
            assert c["device"] == {
                "identifiers": [NODE],
                "name": "Bus France Services du Pays de Bray",
                "manufacturer": "allervers",
                "model": "Bus numérique itinérant",
                "serial_number": "bus-test",
                "sw_version": version(),
            }
            assert c["origin"] == {"name": "allervers", "sw_version": version()}
            if platform == "binary_sensor":
                assert (c["payload_on"], c["payload_off"]) == ("ON", "OFF")
            else:
                assert "payload_on" not in c
            known = {
                "name", "unique_id", "state_topic", "value_template", "availability", "availability_mode", "device",
                "origin", "qos", "payload_on", "payload_off", "unit_of_measurement", "device_class", "state_class",
                "icon",
            }  # fmt: skip
            assert set(c) <= known, set(c) - known

        # The templates, rendered on the bus's real state messages.
        state = controller.state
        state.update("power", {"soc": 76.0, "battery_v": 25.9})
        state.update("modem", {"link": "up", "signal_bars": 3})
        controller.io.drive("ignition", True)  # with the dish raised: an interlock alarm
        await wait_until(
            lambda: any(m.json()["alarms"] for m in watcher.received(f"{PREFIX}/state/controller")), message="alarm"
        )
        await wait_until(lambda: watcher.received(f"{PREFIX}/state/modem")[-1].json()["link"] == "up", message="up")

        def value(key: str, platform: str, component: str) -> str:
            c = configs[config_topic(key, platform)]
            payload = watcher.received(f"{PREFIX}/state/{component}")[-1].payload
            return render(c["value_template"], payload)

        assert value("soc", "sensor", "power") == "76.0"
        assert value("battery_v", "sensor", "power") == "25.9"
        assert value("link", "binary_sensor", "modem") == "ON"
        assert value("signal_bars", "sensor", "modem") == "3"
        assert value("ignition", "binary_sensor", "vehicle") == "ON"
        assert value("antenna_stowed", "binary_sensor", "vehicle") == "OFF"
        assert value("alarm_count", "sensor", "controller") == "1"
        assert value("shore_connected", "binary_sensor", "shore") == "None"  # unknown stays unknown in HA
        stale = configs[config_topic("soc", "sensor")]["availability"][1]
        assert render(stale["value_template"], watcher.received(f"{PREFIX}/state/power")[-1].payload) == "online"
        assert render(stale["value_template"], b'{"stale": true}') == stale["payload_not_available"]

        # A late subscriber (HA starting) gets them as retained messages.
        late = Watcher(broker.port, ["homeassistant/#"]).start()
        try:
            await wait_until(lambda: len(late.received()) == len(without_kiosk), message="retained discovery")
            assert all(m.retain for m in late.received())
        finally:
            late.stop()
    finally:
        watcher.stop()


async def test_kiosk_entities_join_with_the_kiosk_component(tmp_path: Path, broker: Broker, run_controller) -> None:
    watcher = Watcher(broker.port, ["homeassistant/#", f"{PREFIX}/state/kiosk"]).start()
    try:
        controller = await run_controller(cfg(tmp_path, broker.port))
        await wait_until(lambda: len(discovery(watcher)) == 8, message="discovery without kiosk")
        controller.state.add_component("kiosk")
        controller.state.update("kiosk", {"open": True, "sessions_today": 7, "locked": False})
        controller.mqtt.tick()
        await wait_until(lambda: config_topic("sessions_today", "sensor") in discovery(watcher), message="kiosk")
        configs = discovery(watcher)
        await wait_until(lambda: watcher.received(f"{PREFIX}/state/kiosk"), message="kiosk state")
        payload = watcher.received(f"{PREFIX}/state/kiosk")[-1].payload
        assert render(configs[config_topic("kiosk_open", "binary_sensor")]["value_template"], payload) == "ON"
        assert render(configs[config_topic("sessions_today", "sensor")]["value_template"], payload) == "7"
    finally:
        watcher.stop()


async def test_discovery_is_sent_again_only_when_needed(tmp_path: Path, broker: Broker, run_controller) -> None:
    config = cfg(tmp_path, broker.port)
    first = await run_controller(config)
    await wait_until(lambda: first.mqtt._discovery_digest is not None, message="discovery acknowledged")
    await first.stop()

    watcher = Watcher(broker.port, ["homeassistant/+/+/+/config", f"{PREFIX}/status", f"{PREFIX}/state/vehicle"])
    watcher.start()
    try:
        await wait_until(lambda: len(watcher.received()) == 10, message="retained configs, status and vehicle")
        watcher.clear()
        # Restart: the broker kept our session and the configs did not change: not one byte of discovery.
        second = await run_controller(config)
        await wait_until(lambda: second.mqtt.session is not None, message="connected")
        assert second.mqtt.session.session_present
        await wait_until(lambda: watcher.received(f"{PREFIX}/status"), message="online")
        second.state.update("vehicle", {"door_open": True})  # a sentinel after the connection's first messages
        await wait_until(
            lambda: any(m.json().get("door_open") for m in watcher.received(f"{PREFIX}/state/vehicle")),
            message="sentinel",
        )
        assert discovery(watcher) == {}
        # Home Assistant restarts and says so: everything again.
        watcher.publish("homeassistant/status", b"online")
        await wait_until(lambda: len(discovery(watcher)) == 8, message="discovery after HA's birth message")
    finally:
        watcher.stop()
