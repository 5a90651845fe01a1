"""The one live state model: components of named values, with freshness, and change notification."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

# The public contract: `allervers status --json` and the MQTT state payloads use exactly these names.
COMPONENT_FIELDS: dict[str, tuple[str, ...]] = {
    "power": (
        "ac_in_v",
        "ac_in_a",
        "ac_in_hz",
        "ac_in_w",
        "ac_out_v",
        "ac_out_a",
        "ac_out_hz",
        "ac_out_w",
        "active_input",
        "battery_v",
        "battery_a",
        "battery_temp_c",
        "soc",
        "state",
        "mode",
        "vebus_error",
        "alarms",
    ),
    "shore": (
        "connected",
        "sources",
        "voltage_v",
        "current_a",
        "power_w",
        "frequency_hz",
        "energy_import_kwh",
    ),
    "modem": ("link", "registered", "registration", "signal_bars", "signal_raw", "operator", "ip"),
    "vehicle": ("ignition", "antenna_stowed", "door_open"),
    "controller": ("version", "uptime_s", "clock_synced", "alarms"),
}

Listener = Callable[[str, dict[str, Any], dict[str, Any]], None]


class Component:
    """One component's values plus ``ts`` (epoch of the last reading) and staleness."""

    def __init__(self, name: str, fields: tuple[str, ...]):
        self.name = name
        self.fields = fields
        self.values: dict[str, Any] = dict.fromkeys(fields)
        self.ts: float | None = None
        self.stale = True
        self.stale_reason: str | None = "no reading yet"

    def as_dict(self) -> dict[str, Any]:
        out = copy.deepcopy(self.values)
        out["ts"] = self.ts
        out["stale"] = self.stale
        if self.stale:
            out["stale_reason"] = self.stale_reason
        return out


class StateModel:
    """Holds every component; drivers write into it, publishers and screens subscribe to it.

    Listeners get ``(component, changed, full)`` where ``changed`` holds only the keys that changed (including
    ``stale``/``stale_reason``) and ``full`` the component's whole dict. Listeners run synchronously on the event
    loop and must not block.
    """

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.components: dict[str, Component] = {
            name: Component(name, fields) for name, fields in COMPONENT_FIELDS.items()
        }
        self._listeners: list[Listener] = []

    def add_component(self, name: str, fields: tuple[str, ...]) -> Component:
        """Add a component (kiosk, checklist) that joins the model once its feature is configured."""
        if name in self.components:
            raise ValueError(f"state component {name!r} already exists")
        comp = self.components[name] = Component(name, fields)
        return comp

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def get(self, name: str) -> dict[str, Any]:
        return self.components[name].as_dict()

    def value(self, name: str, key: str) -> Any:
        return self.components[name].values.get(key)

    def is_fresh(self, name: str) -> bool:
        return not self.components[name].stale

    def snapshot(self) -> dict[str, Any]:
        return {name: comp.as_dict() for name, comp in self.components.items()}

    def update(self, name: str, values: dict[str, Any], *, fresh: bool = True) -> dict[str, Any]:
        """Merge ``values`` into a component; unknown keys are kept out of the contract and ignored.

        ``fresh`` marks the component as just read (``ts`` = now, not stale). Returns what changed.
        """
        comp = self.components[name]
        changed: dict[str, Any] = {}
        for key in comp.fields:
            if key in values and values[key] != comp.values[key]:
                comp.values[key] = copy.deepcopy(values[key])
                changed[key] = comp.values[key]
        if fresh:
            comp.ts = self.clock()
            if comp.stale:
                comp.stale, comp.stale_reason = False, None
                changed["stale"] = False
        if changed:
            self._notify(comp, changed)
        return changed

    def mark_stale(self, name: str, reason: str) -> bool:
        """Mark a component stale (its values are kept, for context); returns True if that is news."""
        comp = self.components[name]
        if comp.stale and comp.stale_reason == reason:
            return False
        comp.stale, comp.stale_reason = True, reason
        self._notify(comp, {"stale": True, "stale_reason": reason})
        return True

    def _notify(self, comp: Component, changed: dict[str, Any]) -> None:
        full = comp.as_dict()
        for listener in list(self._listeners):
            listener(comp.name, changed, full)
