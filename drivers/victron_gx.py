"""Profile "victron-gx": a MultiPlus/Quattro seen through a Victron GX over Modbus-TCP, plus its simulator."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

from pymodbus import FramerType

from drivers.base import WriteNotAllowed
from drivers.modbus import (
    MapSimulator,
    ModbusDevice,
    ModbusTransport,
    PublishedMap,
    PublishedRegister,
    Register,
    RegisterTable,
    nest,
    read_published_csv,
)
from drivers.registry import AlarmRule, AlarmText, DeviceProfile

DEFAULT_VEBUS_UNIT = 227  # Cerbo GX VE.Bus port; 246 on a CCGX, 242 on a Venus GX, 228 on a MultiPlus-II GX
DEFAULT_SYSTEM_UNIT = 100

ACTIVE_INPUT = {0: "ac1", 1: "ac2", 240: "disconnected"}
STATE = {
    0: "off",
    1: "low_power",
    2: "fault",
    3: "bulk",
    4: "absorption",
    5: "float",
    6: "storage",
    7: "equalize",
    8: "passthru",
    9: "inverting",
    10: "power_assist",
    11: "power_supply",
    252: "bulk_protection",
}
MODE = {1: "charger_only", 2: "inverter_only", 3: "on", 4: "off"}
ALARM = {0: "ok", 1: "warning", 2: "alarm"}
ALARM_NO_ALARM_LEVEL = {0: "ok", 1: "warning"}
BATTERY_STATE = {0: "idle", 1: "charging", 2: "discharging"}

# On Modbus-TCP another round trip costs far more than a few dozen unused registers in one reply.
GX_MAX_GAP = 32
MAX_INPUT_CURRENT_LIMIT_A = 100.0  # largest Quattro input; a typo like 160 must not reach the inverter


def _reg(address: int, name: str, path: str, type_: str = "uint16", scale: float = 1, **kw: Any) -> Register:
    # The GX reads 0xFFFF for "reserved / not available" on unsigned registers; signed ones have no marker.
    invalid = 0xFFFF if type_ == "uint16" else None
    return Register(address, name, path, type_, scale, kind="holding", invalid=invalid, **kw)


VEBUS_TABLE = RegisterTable(
    registers=(
        _reg(3, "ac_in_v", "/Ac/ActiveIn/L1/V", "uint16", 10, unit="V"),
        _reg(6, "ac_in_a", "/Ac/ActiveIn/L1/I", "int16", 10, unit="A"),
        _reg(9, "ac_in_hz", "/Ac/ActiveIn/L1/F", "int16", 100, unit="Hz"),
        _reg(12, "ac_in_w", "/Ac/ActiveIn/L1/P", "int16", 0.1, unit="W"),
        _reg(15, "ac_out_v", "/Ac/Out/L1/V", "uint16", 10, unit="V"),
        _reg(18, "ac_out_a", "/Ac/Out/L1/I", "int16", 10, unit="A"),
        _reg(21, "ac_out_hz", "/Ac/Out/L1/F", "int16", 100, unit="Hz"),
        _reg(22, "ac_in_current_limit", "/Ac/ActiveIn/CurrentLimit", "int16", 10, unit="A", writable=True),
        _reg(23, "ac_out_w", "/Ac/Out/L1/P", "int16", 0.1, unit="W"),
        _reg(26, "battery_v", "/Dc/0/Voltage", "uint16", 100, unit="V"),
        _reg(27, "battery_a", "/Dc/0/Current", "int16", 10, unit="A"),
        _reg(29, "active_input", "/Ac/ActiveIn/ActiveInput", enum=ACTIVE_INPUT),
        _reg(30, "soc", "/Soc", "uint16", 10, unit="%"),
        _reg(31, "state", "/State", enum=STATE),
        _reg(32, "vebus_error", "/VebusError"),
        _reg(33, "mode", "/Mode", enum=MODE, writable=True),
        _reg(34, "alarms.high_temperature", "/Alarms/HighTemperature", enum=ALARM),
        _reg(35, "alarms.low_battery", "/Alarms/LowBattery", enum=ALARM),
        _reg(36, "alarms.overload", "/Alarms/Overload", enum=ALARM),
        _reg(42, "alarms.temperature_sensor", "/Alarms/TemperatureSensor", enum=ALARM),
        _reg(43, "alarms.voltage_sensor", "/Alarms/VoltageSensor", enum=ALARM),
        _reg(47, "alarms.ripple", "/Alarms/L1/Ripple", enum=ALARM),
        _reg(61, "battery_temp_c", "/Dc/0/Temperature", "int16", 10, unit="°C"),
        _reg(63, "alarms.phase_rotation", "/Alarms/PhaseRotation", enum=ALARM_NO_ALARM_LEVEL),
    ),
    # Victron's list defines every address 1..63 on a VE.Bus unit (the ones not above are other phases, ESS
    # and BMS values), so the planner may read across them: one request for all of the above.
    readable=(range(1, 64),),
    group="vebus",
)

# The VE.Bus alarm names, as the poll's "alarms" dict and the controller's alarm rules use them.
ALARM_NAMES: tuple[str, ...] = tuple(
    r.name.removeprefix("alarms.") for r in VEBUS_TABLE.registers if r.name.startswith("alarms.")
)

# The GX's own battery monitor (com.victronenergy.system, unit 100): the BMV/SmartShunt/BMS the GX has chosen
# when one is fitted (more exact than the VE.Bus's estimate), else the VE.Bus values again. Only the addresses
# Victron's list defines are vouched for: there is no 827..839, so 826 and 840 are never read together.
SYSTEM_TABLE = RegisterTable(
    registers=(
        _reg(840, "monitor_battery_v", "/Dc/Battery/Voltage", "uint16", 10, unit="V"),
        _reg(841, "monitor_battery_a", "/Dc/Battery/Current", "int16", 10, unit="A"),
        _reg(842, "monitor_battery_w", "/Dc/Battery/Power", "int16", 1, unit="W"),
        _reg(843, "monitor_soc", "/Dc/Battery/Soc", "uint16", 1, unit="%"),
        _reg(844, "monitor_battery_state", "/Dc/Battery/State", enum=BATTERY_STATE),
    ),
    readable=(range(800, 827), range(840, 847), range(850, 852), range(855, 856), range(860, 861), range(865, 867)),
    group="battery_monitor",
)
# Battery values the monitor gives better than the VE.Bus: state name -> the monitor's register name.
FROM_MONITOR = {"battery_v": "monitor_battery_v", "battery_a": "monitor_battery_a", "soc": "monitor_soc"}
BATTERY_SOURCES = ("battery_monitor", "vebus")


class VictronGX(ModbusDevice):
    """The inverter/charger as the GX publishes it; ``poll()`` returns the state model's ``power`` component.

    Wiring: ``[inverter] profile = victron-gx``, Modbus-TCP to the GX on port 502, unit 227 for a Cerbo GX's
    VE.Bus port. Example against the bundled simulator::

        sim = GXSimulator()
        port = await sim.start()
        inverter = VictronGX(ModbusTransport(host="127.0.0.1", port=port))
        await inverter.open()
        (await inverter.poll())["soc"]  # 78.5
    """

    def __init__(
        self,
        transport: ModbusTransport,
        unit: int = DEFAULT_VEBUS_UNIT,
        system_unit: int = DEFAULT_SYSTEM_UNIT,
        allow_writes: bool = False,
        name: str = "inverter",
    ):
        if unit == system_unit:
            raise ValueError(f"{name}: unit and system_unit are both {unit}")
        super().__init__(
            name,
            transport,
            {unit: VEBUS_TABLE, system_unit: SYSTEM_TABLE},
            allow_writes=allow_writes,
            max_gap=GX_MAX_GAP,
        )
        self.unit = unit
        self.system_unit = system_unit

    def to_state(self, values: dict[str, Any]) -> dict[str, Any]:
        """The ``power`` component: VE.Bus values, the battery from the GX's battery monitor when it answers."""
        power = nest({r.name: values[r.name] for r in VEBUS_TABLE.registers})
        monitor_answered = SYSTEM_TABLE.group not in self.failing
        if monitor_answered:
            for name, monitor_name in FROM_MONITOR.items():
                if values[monitor_name] is not None:
                    power[name] = values[monitor_name]
        power["battery_w"] = values["monitor_battery_w"]
        power["battery_state"] = values["monitor_battery_state"]
        power["battery_source"] = "battery_monitor" if monitor_answered else "vebus"
        return power

    async def set_mode(self, mode: str) -> None:
        """Switch the inverter/charger: "charger_only", "inverter_only", "on" or "off"."""
        self._check_writes("mode")
        if mode not in MODE.values():
            raise ValueError(f"{self.name}: mode {mode!r} is not one of {', '.join(MODE.values())}")
        await self.write_value("mode", mode)

    async def set_input_current_limit(self, amps: float) -> None:
        """Set the AC input current limit in A (what the shore socket's breaker allows)."""
        self._check_writes("ac_in_current_limit")
        if (
            isinstance(amps, bool)
            or not isinstance(amps, int | float)
            or not math.isfinite(amps)
            or not 0 <= amps <= MAX_INPUT_CURRENT_LIMIT_A
        ):
            raise ValueError(
                f"{self.name}: input current limit {amps!r} A is outside 0..{MAX_INPUT_CURRENT_LIMIT_A:g} A"
            )
        await self.write_value("ac_in_current_limit", amps)

    def _check_writes(self, name: str) -> None:
        if not self.allow_writes:
            # Checked before the value, so a disabled write is reported as such and never as a bad value.
            register = VEBUS_TABLE.by_name(name)
            raise WriteNotAllowed(self.name, f"unit {self.unit}, {register.label}: writes are off (allow_writes)")


PUBLISHED_LIST = Path(__file__).with_name("victron_gx_registers.csv")  # Victron's own list, source in the file
SERVICES = {"vebus": "com.victronenergy.vebus", "system": "com.victronenergy.system"}


def published_map(service: str) -> PublishedMap:
    """One GX service's registers exactly as Victron's list defines them (none of our table's choices)."""
    registers = []
    for row in read_published_csv(PUBLISHED_LIST):
        if row[0] != SERVICES[service]:
            continue
        _service, path, _dbus_type, _text, address, type_, scale, access = row
        registers.append(
            PublishedRegister(int(address), path, type_ or "uint16", float(scale or 1), writable=access == "W")
        )
    return PublishedMap(service, tuple(sorted(registers, key=lambda r: r.address)))


# What the simulated GX serves at start, by Victron's service and path (enumerations as their raw numbers).
DEFAULT_VALUES: dict[str, dict[str, Any]] = {
    "vebus": {
        "/Ac/ActiveIn/L1/V": 230.1,
        "/Ac/ActiveIn/L1/I": 4.2,
        "/Ac/ActiveIn/L1/F": 50.01,
        "/Ac/ActiveIn/L1/P": 960,
        "/Ac/Out/L1/V": 230.0,
        "/Ac/Out/L1/I": 3.1,
        "/Ac/Out/L1/F": 50.01,
        "/Ac/ActiveIn/CurrentLimit": 16.0,
        "/Ac/Out/L1/P": 700,
        "/Dc/0/Voltage": 26.62,
        "/Dc/0/Current": 9.5,
        "/Ac/NumberOfPhases": 1,
        "/Ac/ActiveIn/ActiveInput": 0,  # AC Input 1
        "/Soc": 78.5,
        "/State": 4,  # Absorption
        "/VebusError": 0,
        "/Mode": 3,  # On
        "/Alarms/HighTemperature": 0,
        "/Alarms/LowBattery": 0,
        "/Alarms/Overload": 0,
        "/Alarms/TemperatureSensor": 0,
        "/Alarms/VoltageSensor": 0,
        "/Alarms/L1/Ripple": 0,
        "/Dc/0/Temperature": 21.5,
        "/Alarms/PhaseRotation": 0,
    },
    "system": {
        "/Serial": "c0619ab1d2e3",
        "/Ac/ActiveIn/Source": 3,  # Shore power
        "/Ac/Consumption/L1/Power": 700,
        "/Dc/Battery/Voltage": 26.6,
        "/Dc/Battery/Current": 9.4,
        "/Dc/Battery/Power": 250,
        "/Dc/Battery/Soc": 78,
        "/Dc/Battery/State": 1,  # charging
        "/Dc/Battery/ConsumedAmphours": -88.0,
        "/Dc/Battery/TimeToGo": None,
    },
}


class GXSimulator(MapSimulator):
    """A Modbus-TCP peer that behaves like a GX: Victron's published VE.Bus and system maps, nothing else.

    Built from Victron's register list (``victron_gx_registers.csv``), not from our tables: a read that touches
    an address the list does not define answers exception 2, like a real GX; any other unit answers exception 10.
    ``sim.values["vebus"]["/Soc"] = 55.0``; enumerations are raw numbers (``["/State"] = 9``, inverting); None
    reads as "not available" (0xFFFF) on unsigned registers. ``sim.fault`` for the whole GX,
    ``sim.set_unit_fault(100, "exception")`` for the system service alone. Functions 3 and 4 read the same map.
    """

    def __init__(
        self,
        unit: int = DEFAULT_VEBUS_UNIT,
        system_unit: int = DEFAULT_SYSTEM_UNIT,
        values: dict[str, dict[str, Any]] | None = None,
    ):
        super().__init__(
            {unit: published_map("vebus"), system_unit: published_map("system")},
            copy.deepcopy(DEFAULT_VALUES) if values is None else values,
            framer=FramerType.SOCKET,
            missing_unit="gateway",
        )
        self.unit = unit
        self.system_unit = system_unit


def inverter_alarm_rules(names: tuple[str, ...]) -> list[AlarmRule]:
    """One rule per VE.Bus alarm register: warning or alarm as the inverter reports it."""
    rules = []
    for name in names:
        for severity in ("warning", "alarm"):

            def cond(s: Any, name: str = name, severity: str = severity) -> AlarmText | None:
                alarms = s.value("power", "alarms") or {}
                if alarms.get(name) == severity and s.is_fresh("power"):
                    return AlarmText(f"inverter reports {name.replace('_', ' ')}: {severity}", {"name": name})
                return None

            rules.append(AlarmRule(f"inverter.{name}" + ("" if severity == "alarm" else ".warning"), severity, cond))
    return rules


def _gx_alarm_rules(device: str) -> list[AlarmRule]:
    # The VE.Bus alarm registers (warning or alarm as the inverter reports them) and the VE.Bus error code.
    def vebus_error(state: Any) -> AlarmText | None:
        err = state.value("power", "vebus_error")
        return AlarmText(f"VE.Bus error {err}", {"code": err}) if err and state.is_fresh("power") else None

    return [*inverter_alarm_rules(ALARM_NAMES), AlarmRule(f"{device}.vebus_error", "alarm", vebus_error)]


def _build(section: Any, name: str) -> VictronGX:
    from drivers.registry import modbus_transport

    return VictronGX(
        modbus_transport(section),
        unit=section.unit,
        system_unit=section.system_unit,
        allow_writes=section.allow_writes,
        name=name,
    )


def _simulator(section: Any) -> GXSimulator:
    return GXSimulator(unit=section.unit, system_unit=section.system_unit)


DEVICE_PROFILES = (
    DeviceProfile(
        "inverter",
        "victron-gx",
        "Victron GX Modbus-TCP (VE.Bus inverter/charger)",
        build=_build,
        simulator=_simulator,
        config_keys={
            "unit": {"kind": int, "default": DEFAULT_VEBUS_UNIT, "min": 1, "max": 247},
            "system_unit": {"kind": int, "default": DEFAULT_SYSTEM_UNIT, "min": 1, "max": 247},
        },
        alarm_rules=_gx_alarm_rules,
        sim_points=(("vebus", VEBUS_TABLE), ("system", SYSTEM_TABLE)),
        fix="check the GX: Settings > Services > Modbus-TCP enabled, and [inverter] host/port/unit in the config",
    ),
)
