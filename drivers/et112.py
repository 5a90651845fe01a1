"""Profile "et112": a Carlo Gavazzi ET112 single-phase meter on RS-485 (the one Victron sells), and its simulator.

From Carlo Gavazzi's "EM111, EM112, ET112 communication protocol": Modbus RTU, functions 03h and 04h read the
same map, at most 50 words per request, 9600 8N1 and address 1 from the factory. Measurements are INT32 with the
low word first (LSW, MSW), the power factor and frequency INT16; each has a fixed weight (V x10, A x1000, W x10,
Hz x10, kWh x10). ``000Bh`` is both the identification code (read alone) and the high word of ``W dmd``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymodbus import FramerType
from pymodbus.constants import ExcCodes

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
MAX_WORDS = 50  # the meter answers exception 3 to a longer read
# 000Bh read alone: the model's identification code. The protocol gives one per model; 120 is assumed here for
# the ET112 (no driver decision depends on it).
IDENTIFICATION_CODE = 120


@dataclass(frozen=True)
class LswRegister(Register):
    """A Carlo Gavazzi 32-bit register: the low word comes first on the wire."""

    def decode(self, words: Sequence[int]) -> Any:
        return super().decode(list(reversed(words)))

    def encode(self, value: Any) -> list[int]:
        return list(reversed(super().encode(value)))


def _int32(address: int, name: str, path: str, weight: float, unit: str) -> Register:
    return LswRegister(address, name, path, "int32", weight, unit=unit, kind="input")


ET112_TABLE = RegisterTable(
    registers=(
        _int32(0x0000, "voltage_v", "V L-N", 10, "V"),
        _int32(0x0002, "current_a", "A", 1000, "A"),
        _int32(0x0004, "power_w", "W", 10, "W"),
        Register(0x000F, "frequency_hz", "Hz", "int16", 10, unit="Hz", kind="input"),
        _int32(0x0010, "energy_import_kwh", "kWh (+) TOT", 10, "kWh"),
        _int32(0x0020, "energy_export_kwh", "kWh (-) TOT", 10, "kWh"),
    ),
    # The protocol defines every word of 0000h..0034h (unavailable variables read 0): one 34-word read.
    readable=(range(0x0000, 0x0035),),
)


class ET112(ModbusDevice):
    """The shore-power meter: ``poll()`` gives voltage_v, current_a, power_w, frequency_hz, energy_import_kwh.

    Wiring: the meter's RS-485 A/B through a USB adapter (``transport = "rtu"``) or an RS-485/Ethernet gateway
    (``"rtu-over-tcp"``), address 1, 9600 8N1 as shipped. Example against the simulator::

        sim = ET112Simulator()
        port = await sim.start()
        meter = ET112(ModbusTransport(kind="rtu-over-tcp", host="127.0.0.1", port=port))
        await meter.open()
        (await meter.poll())["voltage_v"]  # 230.6
    """

    def __init__(self, transport: ModbusTransport, unit: int = DEFAULT_UNIT, name: str = "shore_meter"):
        if not 1 <= unit <= 247:
            raise ValueError(f"{name}: unit must be 1..247 on RS-485, got {unit}")
        # Input registers, so the reads are function 04h; one block of 34 words is under the 50-word limit.
        super().__init__(name, transport, {unit: ET112_TABLE}, max_gap=MAX_WORDS)
        self.unit = unit
        oversized = [block.describe() for block in self.plan if block.count > MAX_WORDS]
        if oversized:
            raise ValueError(f"{name}: reads over the ET112's {MAX_WORDS}-word limit: {', '.join(oversized)}")


# --- simulator: the published map, word by word --------------------------------------------------------------

PUBLISHED_LIST = Path(__file__).with_name("carlo_gavazzi_et112_registers.csv")
MAP_END = 0x0035  # 0000h..0034h are defined; the words no listed variable names (tariffs t3/t4, THD...) read 0
ID_ADDRESS = 0x000B


@dataclass(frozen=True)
class LswPublishedRegister(PublishedRegister):
    """A published 32-bit value as the ET112 serves it: low word first."""

    def encode(self, value: Any) -> list[int]:
        return list(reversed(super().encode(value)))

    def decode(self, words: Sequence[int]) -> Any:
        return super().decode(list(reversed(words)))


def published_map() -> PublishedMap:
    """The meter's variables as Carlo Gavazzi publishes them, named by the protocol's variable names."""
    registers = tuple(
        (LswPublishedRegister if kind == "INT32" else PublishedRegister)(
            int(address), variable, kind.lower(), float(weight)
        )
        for _hex, address, kind, weight, variable, _unit in read_published_csv(PUBLISHED_LIST)
    )
    return PublishedMap("et112", registers, blank_ranges=(range(MAP_END),), functions=(3, 4))


# What the simulated meter serves at start, by the protocol's variable names.
DEFAULT_VALUES: dict[str, dict[str, Any]] = {
    "et112": {
        "V L-N": 230.6,
        "A": 4.87,
        "W": 1098.2,
        "VA": 1123.0,
        "var": -61.5,
        "W dmd": 1050.0,
        "W dmd peak": 3420.0,
        "PF": 0.978,
        "Hz": 50.0,
        "kWh (+) TOT": 812.4,
        "kvarh (+) TOT": 40.2,
        "kWh (+) PARTIAL": 12.6,
        "kvarh (+) PARTIAL": 0.7,
        "kWh (+) t1": 812.4,
        "kWh (+) t2": 0.0,
        "kWh (-) TOT": 0.0,
        "kvarh (-) TOT": 1.1,
    }
}


class ET112Simulator(MapSimulator):
    """An ET112 behind an RS-485/Ethernet gateway (RTU frames over TCP); silence for any other address.

    Built from the published list (``carlo_gavazzi_et112_registers.csv``), not from our table:
    ``sim.values["et112"]["V L-N"] = 228.0``. Functions 03h and 04h read the same map; a read past 0034h or
    longer than 50 words is refused as the meter does (exception 2 or 3), and 000Bh read alone answers the
    identification code. ``sim.fault``: None, "silent", "exception" (exception 4) or "garbage".
    """

    def __init__(self, unit: int = DEFAULT_UNIT, values: dict[str, dict[str, Any]] | None = None):
        super().__init__(
            {unit: published_map()},
            copy.deepcopy(DEFAULT_VALUES) if values is None else values,
            framer=FramerType.RTU,
            missing_unit="silent",
        )

    def _serve(
        self,
        unit: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if set_values is None and count > MAX_WORDS and not self.fault:
            return ExcCodes.ILLEGAL_VALUE
        if set_values is None and address == ID_ADDRESS and count == 1 and not self.fault:
            registers[address - start_address] = IDENTIFICATION_CODE  # not W dmd's high word, read alone
            return None
        return super()._serve(unit, function_code, start_address, address, count, registers, set_values)


DEVICE_PROFILES = (
    DeviceProfile(
        "meter",
        "et112",
        "Carlo Gavazzi ET112, Modbus RTU",
        build=lambda section, name: ET112(modbus_transport(section), unit=section.unit, name=name),
        simulator=lambda section: ET112Simulator(unit=section.unit),
        sim_points=(("et112", ET112_TABLE),),
        fix="check the ET112 wiring (A/B), its address and 9600 8N1 (as shipped), and /dev/allervers-rs485 (udev rule)",
    ),
)
