"""Profile "victron-gx": a MultiPlus/Quattro seen through a Victron GX over Modbus-TCP, plus its simulator."""

from __future__ import annotations

import copy
import math
from typing import Any

from pymodbus import FramerType

from drivers.base import WriteNotAllowed
from drivers.modbus import (
    ModbusDevice,
    ModbusTransport,
    Register,
    RegisterTable,
    TableSimulator,
)

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
AC_SOURCE = {0: "not_available", 1: "grid", 2: "generator", 3: "shore", 240: "not_connected"}
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
        _reg(28, "phases", "/Ac/NumberOfPhases"),
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
    # The GX answers the whole 3..63 block on a VE.Bus unit (the unlisted addresses are other phases and
    # alarms), so the planner may read across them: one request for all of the above.
    readable=(range(3, 64),),
)

# The VE.Bus alarm names, as the poll's "alarms" dict and the controller's alarm rules use them.
ALARM_NAMES: tuple[str, ...] = tuple(
    r.name.removeprefix("alarms.") for r in VEBUS_TABLE.registers if r.name.startswith("alarms.")
)

SYSTEM_TABLE = RegisterTable(
    registers=(
        _reg(826, "ac_in_source", "/Ac/ActiveIn/Source", "int16", enum=AC_SOURCE),
        _reg(840, "system_battery_v", "/Dc/Battery/Voltage", "uint16", 10, unit="V"),
        _reg(841, "system_battery_a", "/Dc/Battery/Current", "int16", 10, unit="A"),
        _reg(842, "battery_power_w", "/Dc/Battery/Power", "int16", 1, unit="W"),
        _reg(843, "system_soc", "/Dc/Battery/Soc", "uint16", 1, unit="%"),
        _reg(844, "battery_state", "/Dc/Battery/State", enum=BATTERY_STATE),
    ),
    readable=(range(826, 845),),
)


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


DEFAULT_VALUES: dict[str, Any] = {
    "ac_in_v": 230.1,
    "ac_in_a": 4.2,
    "ac_in_hz": 50.01,
    "ac_in_w": 960.0,
    "ac_out_v": 230.0,
    "ac_out_a": 3.1,
    "ac_out_hz": 50.01,
    "ac_out_w": 700.0,
    "ac_in_current_limit": 16.0,
    "battery_v": 26.62,
    "battery_a": 9.5,
    "phases": 1,
    "active_input": "ac1",
    "soc": 78.5,
    "state": "absorption",
    "vebus_error": 0,
    "mode": "on",
    "alarms": {
        "high_temperature": "ok",
        "low_battery": "ok",
        "overload": "ok",
        "temperature_sensor": "ok",
        "voltage_sensor": "ok",
        "ripple": "ok",
        "phase_rotation": "ok",
    },
    "battery_temp_c": 21.5,
    "ac_in_source": "shore",
    "system_battery_v": 26.6,
    "system_battery_a": 9.4,
    "battery_power_w": 250,
    "system_soc": 78,
    "battery_state": "charging",
}


class GXSimulator(TableSimulator):
    """A Modbus-TCP peer that behaves like a GX: the VE.Bus and system units, exception 10 on any other unit.

    ``sim.values`` uses the poll's names (``sim.values["alarms"]["low_battery"] = "alarm"``); None serves the
    "not available" marker (0xFFFF) where the GX has one, else 0. ``sim.fault``: None, "silent",
    "exception", "garbage". Function 3 and 4 read the same map, as on the GX.
    """

    def __init__(
        self,
        unit: int = DEFAULT_VEBUS_UNIT,
        system_unit: int = DEFAULT_SYSTEM_UNIT,
        values: dict[str, Any] | None = None,
    ):
        super().__init__(
            {unit: VEBUS_TABLE, system_unit: SYSTEM_TABLE},
            copy.deepcopy(DEFAULT_VALUES) if values is None else values,
            framer=FramerType.SOCKET,
            missing_unit="gateway",
            fc4_reads_holding=True,
        )
