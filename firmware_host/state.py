"""The one live state model: one typed declaration per field, components with freshness, change notification."""

from __future__ import annotations

import copy
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from drivers import victron_gx
from drivers.modem import REGISTRATION_RANK

log = logging.getLogger("allervers.state")

NUMBER, BOOL, TEXT, TABLE = "number", "bool", "text", "table"  # TABLE: a dict or a list, never compared
KINDS = (NUMBER, BOOL, TEXT, TABLE)
# MQTT deadband classes (the `[mqtt.deadbands]` keys); FREE: moves on its own, never a reason to publish.
DEADBANDS = ("ac_v", "dc_v", "a", "w", "soc", "hz", "c")
FREE = "free"


@dataclass(frozen=True)
class Field:
    """One value of the public contract (`allervers status --json`, MQTT state, conditions, history)."""

    component: str
    name: str
    kind: str
    unit: str = ""  # shown after the value by the status views
    choices: tuple[str, ...] | None = None  # every value a text field can take (typos in conditions are caught)
    deadband: str | None = None  # MQTT: a number is worth a message once it moved this class's deadband
    sampled: bool = False  # folded into the per-minute history aggregates
    logged: bool = False  # each change is an event named "<component>.<name>"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"state field {self.component}.{self.name}: kind {self.kind!r} not in {KINDS}")
        if self.deadband not in (None, FREE, *DEADBANDS):
            raise ValueError(f"state field {self.component}.{self.name}: deadband {self.deadband!r} unknown")


def choices(enum: Mapping[int, str]) -> tuple[str, ...]:
    """The text values of a driver's enumeration, in the driver's order."""
    return tuple(dict.fromkeys(enum.values()))


F = Field
# The public contract, one line per field: adding a field is one line here plus the driver that fills it.
FIELDS: tuple[Field, ...] = (
    # power: the inverter/charger (drivers/victron_gx.py)
    F("power", "ac_in_v", NUMBER, "V", deadband="ac_v", sampled=True),
    F("power", "ac_in_a", NUMBER, "A", deadband="a", sampled=True),
    F("power", "ac_in_hz", NUMBER, "Hz", deadband="hz"),
    F("power", "ac_in_w", NUMBER, "W", deadband="w", sampled=True),
    F("power", "ac_in_current_limit", NUMBER, "A", deadband="a"),
    F("power", "ac_out_v", NUMBER, "V", deadband="ac_v", sampled=True),
    F("power", "ac_out_a", NUMBER, "A", deadband="a", sampled=True),
    F("power", "ac_out_hz", NUMBER, "Hz", deadband="hz"),
    F("power", "ac_out_w", NUMBER, "W", deadband="w", sampled=True),
    F("power", "active_input", TEXT, choices=choices(victron_gx.ACTIVE_INPUT), logged=True),
    F("power", "battery_v", NUMBER, "V", deadband="dc_v", sampled=True),
    F("power", "battery_a", NUMBER, "A", deadband="a", sampled=True),
    F("power", "battery_w", NUMBER, "W", deadband="w"),
    F("power", "battery_temp_c", NUMBER, "°C", deadband="c", sampled=True),
    F("power", "battery_state", TEXT, choices=choices(victron_gx.BATTERY_STATE)),
    F("power", "battery_source", TEXT, choices=victron_gx.BATTERY_SOURCES, logged=True),
    F("power", "soc", NUMBER, "%", deadband="soc", sampled=True),
    F("power", "state", TEXT, choices=choices(victron_gx.STATE), logged=True),
    F("power", "mode", TEXT, choices=choices(victron_gx.MODE), logged=True),
    F("power", "vebus_error", NUMBER),
    F("power", "alarms", TABLE),
    # shore: derived from the presence pin, the meter (drivers/sdm120.py) and the inverter's AC input
    F("shore", "connected", BOOL, logged=True),
    F("shore", "sources", TABLE),
    F("shore", "lost_while_parked", BOOL),
    F("shore", "voltage_v", NUMBER, "V", deadband="ac_v", sampled=True),
    F("shore", "current_a", NUMBER, "A", deadband="a", sampled=True),
    F("shore", "power_w", NUMBER, "W", deadband="w", sampled=True),
    F("shore", "frequency_hz", NUMBER, "Hz", deadband="hz"),
    F("shore", "energy_import_kwh", NUMBER, "kWh", deadband=FREE, sampled=True),
    # modem (drivers/modem.py)
    F("modem", "link", TEXT, choices=("up", "down"), logged=True),
    F("modem", "registered", BOOL),
    F("modem", "registration", TEXT, choices=tuple(REGISTRATION_RANK), logged=True),
    F("modem", "signal_bars", NUMBER, sampled=True),
    F("modem", "signal_raw", NUMBER, deadband=FREE),
    F("modem", "operator", TEXT),
    F("modem", "ip", TEXT),
    F("modem", "iridium_service", BOOL),
    F("modem", "antenna_fault", BOOL),
    # vehicle: GPIO contacts (drivers/gpio.py)
    F("vehicle", "ignition", BOOL, logged=True),
    F("vehicle", "antenna_stowed", BOOL, logged=True),
    F("vehicle", "door_open", BOOL, logged=True),
    # devices: health of each polled device, {"answering", "error", "failing": {read group: error}}; null when
    # the device is not configured. The alarms <device>.stale and <device>.partial read it.
    F("devices", "inverter", TABLE),
    F("devices", "shore_meter", TABLE),
    F("devices", "modem", TABLE),
    # controller
    F("controller", "version", TEXT),
    F("controller", "uptime_s", NUMBER, "s", deadband=FREE),
    F("controller", "clock_synced", BOOL),
    F("controller", "alarms", TABLE),
    # kiosk: the public terminal, when configured (kiosk/session.py)
    F("kiosk", "open", BOOL),
    F("kiosk", "locked", BOOL),
    F("kiosk", "session_active", BOOL),
    F("kiosk", "session_service", TEXT),
    F("kiosk", "session_started", NUMBER),
    F("kiosk", "sessions_today", NUMBER),
    F("kiosk", "last_wipe", TABLE),
    F("kiosk", "wipe_ok", BOOL),
    F("kiosk", "wipe_error", TEXT),
    F("kiosk", "setup_error", TEXT),
)
OPTIONAL_COMPONENTS: tuple[str, ...] = ("kiosk",)  # join the model only when their feature is configured

_declared = Counter(f"{f.component}.{f.name}" for f in FIELDS)
if any(count > 1 for count in _declared.values()):
    raise ValueError(f"state FIELDS: declared twice: {', '.join(p for p, n in _declared.items() if n > 1)}")


def component_fields(component: str) -> tuple[str, ...]:
    """The field names of one declared component, in declaration order."""
    names = tuple(f.name for f in FIELDS if f.component == component)
    if not names:
        raise KeyError(f"no state component {component!r} declared in firmware_host/state.py")
    return names


def declared_components() -> tuple[str, ...]:
    return tuple(dict.fromkeys(f.component for f in FIELDS))


CORE_COMPONENTS = tuple(c for c in declared_components() if c not in OPTIONAL_COMPONENTS)

Listener = Callable[[str, dict[str, Any], dict[str, Any]], None]

# Unknown keys given to StateModel.update, as "component.key": a programming error, logged once per key; the
# test suite fails any test that adds to this list (tests/conftest.py).
unknown_keys: list[str] = []
_reported: set[str] = set()


class Component:
    """One component's values plus ``ts`` (epoch of the last reading), staleness and failing field groups."""

    def __init__(self, name: str, fields: tuple[str, ...]):
        self.name = name
        self.fields = fields
        self.values: dict[str, Any] = dict.fromkeys(fields)
        self.ts: float | None = None
        self.stale = True
        self.stale_reason: str | None = "no reading yet"
        self.stale_groups: dict[str, str] = {}  # group -> why its fields are null while the rest is fresh

    def as_dict(self) -> dict[str, Any]:
        out = copy.deepcopy(self.values)
        out["ts"] = self.ts
        out["stale"] = self.stale
        if self.stale:
            out["stale_reason"] = self.stale_reason
        if self.stale_groups:
            out["stale_groups"] = dict(self.stale_groups)
        return out


class StateModel:
    """Holds every component; drivers write into it, publishers and screens subscribe to it.

    Listeners get ``(component, changed, full)`` where ``changed`` holds only the keys that changed (including
    ``stale``/``stale_reason``/``stale_groups``) and ``full`` the component's whole dict. Listeners run
    synchronously on the event loop and must not block.
    """

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.components: dict[str, Component] = {
            name: Component(name, component_fields(name)) for name in CORE_COMPONENTS
        }
        self._listeners: list[Listener] = []

    def add_component(self, name: str, fields: tuple[str, ...] | None = None) -> Component:
        """Add a component (kiosk, checklist) that joins the model once its feature is configured.

        A component declared in FIELDS takes its fields from there; a feature's own component names them.
        """
        if name in self.components:
            raise ValueError(f"state component {name!r} already exists")
        comp = self.components[name] = Component(name, fields if fields is not None else component_fields(name))
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

    def update(
        self,
        name: str,
        values: Mapping[str, Any],
        *,
        fresh: bool = True,
        stale_groups: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Merge ``values`` into a component; returns what changed.

        ``fresh`` marks the component as just read (``ts`` = now, not stale). ``stale_groups`` replaces the
        groups of fields a partly failed reading left null ({group: reason}; {} when the reading was whole).
        A key the component does not declare is a programming error: logged once, recorded for the tests.
        """
        comp = self.components[name]
        changed: dict[str, Any] = {}
        for key, value in values.items():
            if key not in comp.values:
                self._unknown(name, key)
                continue
            if value != comp.values[key]:
                comp.values[key] = copy.deepcopy(value)
                changed[key] = comp.values[key]
        if stale_groups is not None and dict(stale_groups) != comp.stale_groups:
            comp.stale_groups = dict(stale_groups)
            changed["stale_groups"] = dict(stale_groups)
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

    @staticmethod
    def _unknown(component: str, key: str) -> None:
        path = f"{component}.{key}"
        unknown_keys.append(path)
        if path not in _reported:
            _reported.add(path)
            log.error("state: %s is not a declared field (declare it in firmware_host/state.py FIELDS)", path)

    def _notify(self, comp: Component, changed: dict[str, Any]) -> None:
        full = comp.as_dict()
        for listener in list(self._listeners):
            listener(comp.name, changed, full)
