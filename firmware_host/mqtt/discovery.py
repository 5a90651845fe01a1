"""Home Assistant MQTT discovery: one device per bus, entities for the main values, available with ``<p>/status``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .protocol import Topics

DISCOVERY_PREFIX = "homeassistant"
HA_STATUS_TOPIC = "homeassistant/status"  # HA's birth message: "online" asks integrations to send discovery again


@dataclass(frozen=True)
class Entity:
    key: str
    platform: str  # "sensor" | "binary_sensor"
    component: str  # the state topic it reads
    name: str
    template: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    icon: str | None = None


def _field(name: str) -> str:
    # State messages leave out null fields: get() reads a missing one as None, as a null was read before.
    return f"value_json.get('{name}')"


def _value(name: str) -> str:
    return "{{ " + _field(name) + " }}"


def _on_off(expr: str) -> str:
    # binary_sensor compares with payload_on/off ("ON"/"OFF"); an unknown value stays unknown, not "off".
    return "{{ 'None' if (" + expr + ") is none else ('ON' if (" + expr + ") else 'OFF') }}"


# The main values an office dashboard wants. A `None` (or missing) value renders "None", which HA shows as unknown.
ENTITIES: tuple[Entity, ...] = (
    Entity("soc", "sensor", "power", "Batterie", _value("soc"), "%", "battery", "measurement"),
    Entity("battery_v", "sensor", "power", "Tension batterie", _value("battery_v"), "V", "voltage", "measurement"),
    Entity("shore_connected", "binary_sensor", "shore", "Prise de quai", _on_off(_field("connected")), None, "plug"),
    Entity(
        "link",
        "binary_sensor",
        "modem",
        "Liaison satellite",
        "{{ 'None' if " + _field("link") + " is none else ('ON' if " + _field("link") + " == 'up' else 'OFF') }}",
        None,
        "connectivity",
    ),
    Entity(
        "signal_bars",
        "sensor",
        "modem",
        "Signal",
        _value("signal_bars"),
        None,
        None,
        "measurement",
        "mdi:signal-cellular-3",
    ),
    Entity("ignition", "binary_sensor", "vehicle", "Contact", _on_off(_field("ignition")), icon="mdi:car-key"),
    Entity(
        "antenna_stowed",
        "binary_sensor",
        "vehicle",
        "Antenne repliée",
        _on_off(_field("antenna_stowed")),
        icon="mdi:satellite-uplink",
    ),
    Entity("kiosk_open", "binary_sensor", "kiosk", "Borne ouverte", _on_off(_field("open")), None, "opening"),
    Entity(
        "sessions_today",
        "sensor",
        "kiosk",
        "Sessions aujourd'hui",
        _value("sessions_today"),
        None,
        None,
        "total_increasing",
        "mdi:account-multiple",
    ),
    Entity(
        "alarm_count",
        "sensor",
        "controller",
        "Alarmes actives",
        "{{ (" + _field("alarms") + " or []) | length }}",
        None,
        None,
        "measurement",
        "mdi:alarm-light",
    ),
)


def node_id(vehicle_id: str) -> str:
    # Vehicle ids are [a-z0-9-], valid in HA node ids as they are; the broker ACL matches them with %u.
    return f"allervers_{vehicle_id}"


def discovery_messages(
    *,
    vehicle_id: str,
    vehicle_name: str,
    topics: Topics,
    version: str,
    components: list[str] | tuple[str, ...],
) -> list[tuple[str, dict[str, Any]]]:
    """(topic, config) for every entity whose component exists on this bus (no kiosk: no kiosk entities)."""
    node = node_id(vehicle_id)
    device = {
        "identifiers": [node],
        "name": vehicle_name,
        "manufacturer": "allervers",
        "model": "Bus numérique itinérant",
        "serial_number": vehicle_id,
        "sw_version": version,
    }
    out = []
    for e in ENTITIES:
        if e.component not in components:
            continue
        state_topic = topics.state(e.component)
        config: dict[str, Any] = {
            "name": e.name,
            "unique_id": f"{node}_{e.key}",
            "state_topic": state_topic,
            "value_template": e.template,
            # Both must say "online": the bus is connected and this component's readings are not stale.
            "availability": [
                {"topic": topics.status, "payload_available": "online", "payload_not_available": "offline"},
                {
                    "topic": state_topic,
                    "value_template": "{{ 'offline' if value_json.stale else 'online' }}",
                    "payload_available": "online",
                    "payload_not_available": "offline",
                },
            ],
            "availability_mode": "all",
            "device": device,
            "origin": {"name": "allervers", "sw_version": version},
            "qos": 1,
        }
        if e.platform == "binary_sensor":
            config["payload_on"] = "ON"
            config["payload_off"] = "OFF"
        for key, value in (
            ("unit_of_measurement", e.unit),
            ("device_class", e.device_class),
            ("state_class", e.state_class),
            ("icon", e.icon),
        ):
            if value is not None:
                config[key] = value
        out.append((f"{DISCOVERY_PREFIX}/{e.platform}/{node}/{e.key}/config", config))
    return out


def removal_topics(vehicle_id: str, components: list[str] | tuple[str, ...]) -> list[str]:
    """Config topics of entities whose component is absent: an empty retained payload removes them from HA."""
    node = node_id(vehicle_id)
    return [f"{DISCOVERY_PREFIX}/{e.platform}/{node}/{e.key}/config" for e in ENTITIES if e.component not in components]


def digest(messages: list[tuple[str, dict[str, Any]]]) -> str:
    """A fingerprint of the discovery set: it is sent again only when it changes (or HA asks)."""
    blob = json.dumps(messages, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
