"""Profile "sdm120": an Eastron SDM120/SDM230 shore-power energy meter on RS-485, and its simulator."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pymodbus import FramerType

from drivers.modbus import (
    MapSimulator,
    ModbusDevice,
    ModbusTransport,
    PublishedMap,
    PublishedRegister,
    Register,
    RegisterTable,
    read_published_csv,
)
from drivers.registry import DeviceProfile, modbus_transport

DEFAULT_UNIT = 1


def _input(address: int, name: str, path: str, unit: str = "") -> Register:
    # Every measurement is an IEEE-754 float32 input register; NaN decodes as None.
    return Register(address, name, path, "float32", 1, unit=unit, kind="input")


SDM120_TABLE = RegisterTable(
    registers=(
        _input(0, "voltage_v", "Line to neutral voltage", "V"),
        _input(6, "current_a", "Current", "A"),
        _input(12, "power_w", "Active power", "W"),
        _input(18, "apparent_power_va", "Apparent power", "VA"),
        _input(24, "reactive_power_var", "Reactive power", "VAr"),
        _input(30, "power_factor", "Power factor"),
        _input(36, "phase_angle_deg", "Phase angle", "°"),
        _input(70, "frequency_hz", "Frequency", "Hz"),
        _input(72, "energy_import_kwh", "Import active energy", "kWh"),
        _input(74, "energy_export_kwh", "Export active energy", "kWh"),
        _input(76, "reactive_import_kvarh", "Import reactive energy", "kVArh"),
        _input(78, "reactive_export_kvarh", "Export reactive energy", "kVArh"),
        # Total energies (342/344) are left out: a third request for import + export, which we already have.
    ),
    # Assumed from the Eastron map (the csv only documents exception 2 past its end): the meter answers the
    # whole 0..79 input range, so one 80-register read replaces two requests on a slow RS-485 line.
    readable=(range(0, 80),),
)

# At 9600 baud a second request (8 + 9 bytes, two 3.5-character silences, the meter's turnaround) costs
# about what 32 unused registers in one reply cost, so a gap up to 40 is worth reading through.
SDM120_MAX_GAP = 40


class SDM120(ModbusDevice):
    """The shore-power meter: ``poll()`` gives voltage_v, current_a, power_w, frequency_hz, energy_import_kwh.

    Wiring: RS-485 A/B to the meter (unit 1, 9600 8N1 after setup; factory 2400 on many units), either a
    USB adapter (``kind="rtu"``) or an RS-485/Ethernet gateway (``kind="rtu-over-tcp"``). Example::

        sim = SDM120Simulator()
        port = await sim.start()
        meter = SDM120(ModbusTransport(kind="rtu-over-tcp", host="127.0.0.1", port=port))
        await meter.open()
        (await meter.poll())["voltage_v"]  # 231.4

    ``merge_gaps=False`` reads the two halves of the map separately, for a meter that rejects 38..69.
    """

    def __init__(
        self,
        transport: ModbusTransport,
        unit: int = DEFAULT_UNIT,
        name: str = "shore_meter",
        merge_gaps: bool = True,
    ):
        if not 1 <= unit <= 247:
            raise ValueError(f"{name}: unit must be 1..247 on RS-485, got {unit}")
        table = SDM120_TABLE if merge_gaps else RegisterTable(SDM120_TABLE.registers)
        super().__init__(name, transport, {unit: table}, max_gap=SDM120_MAX_GAP)
        self.unit = unit


PUBLISHED_LIST = Path(__file__).with_name("eastron_sdm120_registers.csv")


def published_map() -> PublishedMap:
    """The meter's input registers as Eastron publishes them, named by Eastron's parameter names.

    The meter answers a read anywhere in its first parameter block (0x0000..0x004F), undefined slots reading
    0, which is what lets one request fetch the whole block; past it only the listed registers answer.
    """
    registers = tuple(
        PublishedRegister(int(address), name, "float32")
        for _kind, _hex, address, name, _unit in read_published_csv(PUBLISHED_LIST)
    )
    return PublishedMap("sdm120", registers, blank_ranges=(range(0, 0x50),), functions=(4,))


# What the simulated meter serves at start, by Eastron's parameter names.
DEFAULT_VALUES: dict[str, dict[str, Any]] = {
    "sdm120": {
        "Line to neutral voltage": 231.4,
        "Current": 5.2,
        "Active power": 1180.0,
        "Apparent power": 1203.3,
        "Reactive power": -85.0,
        "Power factor": 0.98,
        "Phase angle": 4.1,
        "Frequency": 50.02,
        "Import active energy": 1523.75,
        "Export active energy": 0.0,
        "Import reactive energy": 12.5,
        "Export reactive energy": 3.25,
        "Total active energy": 1523.75,
        "Total reactive energy": 15.75,
    }
}


class SDM120Simulator(MapSimulator):
    """An SDM120 behind an RS-485/Ethernet gateway: RTU frames over TCP, silence for any other unit id.

    Built from Eastron's published map (``eastron_sdm120_registers.csv``), not from our table.
    ``sim.values["sdm120"]["Line to neutral voltage"] = 228.0``; None serves NaN. ``sim.fault``: None,
    "silent", "exception", "garbage". Only function 4 (input registers) is served; holding-register settings
    are not simulated.
    """

    def __init__(self, unit: int = DEFAULT_UNIT, values: dict[str, dict[str, Any]] | None = None):
        super().__init__(
            {unit: published_map()},
            copy.deepcopy(DEFAULT_VALUES) if values is None else values,
            framer=FramerType.RTU,
            missing_unit="silent",
        )


DEVICE_PROFILES = (
    DeviceProfile(
        "meter",
        "sdm120",
        "Eastron SDM120/SDM230, Modbus RTU",
        build=lambda section, name: SDM120(modbus_transport(section), unit=section.unit, name=name),
        simulator=lambda section: SDM120Simulator(unit=section.unit),
        sim_points=(("sdm120", SDM120_TABLE),),
        fix="check the SDM120 wiring (A/B), its Modbus address and baud rate, and /dev/allervers-rs485 (udev rule)",
    ),
)
