"""The device profiles every driver module registers: kind -> name -> how to configure, build and simulate it.

A brand is a file: a driver module declares ``DEVICE_PROFILES`` (one ``DeviceProfile`` per model it speaks to)
and gets one line in ``PROFILE_MODULES`` below. The config schema's ``profile`` choices and per-profile keys,
the controller's device construction, the demo's simulators, the brand's alarm rules and the doctor's advice
all come from here, so adding a brand touches no controller, config or simulation code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

KINDS = ("inverter", "meter", "modem")

# One line per driver module that declares DEVICE_PROFILES.
PROFILE_MODULES: tuple[str, ...] = (
    "drivers.victron_gx",
    "drivers.sdm120",
    "drivers.et112",
    "drivers.modem",
)


class AlarmText(NamedTuple):
    """A holding rule's verdict: the log's message and the values behind it, which screens translate by alarm id."""

    message: str
    params: dict[str, Any]


@dataclass(frozen=True)
class AlarmRule:
    """An alarm over the controller's live state (firmware_host/alarms.py raises and clears it).

    ``condition(state)`` returns None (no alarm), or the alarm's message (it may vary with the values), with its
    parameters when it has some (the console words each alarm id in French from them, never from the message).
    """

    id: str
    severity: str
    condition: Callable[[Any], str | AlarmText | None]
    delay_s: float = 0.0  # the condition must hold this long before the alarm is raised (sensors disagreeing)
    buzzer: bool = False  # interlocks sound the buzzer until acknowledged


@dataclass(frozen=True)
class DeviceProfile:
    """One model a driver speaks to.

    ``config_keys`` are this profile's own keys in its config section, as keyword arguments of the config
    schema's ``Key`` (kind, default, choices, min, max); they may also override a shared key's default (a
    meter's factory baud rate). ``build(section, name)`` returns the PolledDevice from the validated section.
    ``simulator(section)`` returns a simulator speaking the real protocol (None when there is none).
    ``alarm_rules(name)`` returns the brand's own AlarmRules over the state (e.g. the VE.Bus error).
    ``fix`` is what `allervers doctor` tells the driver to check when this device does not answer.
    ``sim_points`` pairs each simulator map name with the driver table whose register paths are the maker's
    names in it, so the scenario sets a simulated value by the driver's name (``sim.set meter.voltage_v``).
    """

    kind: str
    name: str
    title: str
    build: Callable[[Any, str], Any]
    simulator: Callable[[Any], Any] | None = None
    config_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    alarm_rules: Callable[[str], list[AlarmRule]] | None = None
    fix: str = ""
    sim_points: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"device profile {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")


_PROFILES: dict[str, dict[str, DeviceProfile]] | None = None


def _load() -> dict[str, dict[str, DeviceProfile]]:
    global _PROFILES
    if _PROFILES is None:
        table: dict[str, dict[str, DeviceProfile]] = {kind: {} for kind in KINDS}
        for module_name in PROFILE_MODULES:
            for profile in importlib.import_module(module_name).DEVICE_PROFILES:
                if profile.name in table[profile.kind]:
                    raise ValueError(f"{module_name}: {profile.kind} profile {profile.name!r} is registered twice")
                table[profile.kind][profile.name] = profile
        _PROFILES = table
    return _PROFILES


def profiles(kind: str) -> dict[str, DeviceProfile]:
    """Every profile of a kind, by name, in registration order (the first is the config's default)."""
    return dict(_load()[kind])


def get(kind: str, name: str) -> DeviceProfile:
    """The profile ``name`` of ``kind``; KeyError naming the known ones."""
    known = _load()[kind]
    if name not in known:
        raise KeyError(f"no {kind} profile {name!r} (known: {', '.join(known)})")
    return known[name]


def modbus_transport(section: Any) -> Any:
    """The ModbusTransport a validated Modbus config section (inverter, shore_power.meter) describes."""
    from drivers.modbus import ModbusTransport

    return ModbusTransport(
        kind=section.transport,
        host=section.host,
        port=section.port,
        serial_port=section.serial_port,
        baudrate=section.baudrate,
        timeout_s=section.timeout_s,
    )
