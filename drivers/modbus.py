"""Generic Modbus plumbing: register tables, read planning, decoding, transports, base device, simulator."""

from __future__ import annotations

import asyncio
import csv
import math
import re
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient, ModbusBaseClient
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException, NoSuchIdException
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.base import DeviceError, DeviceGone, DeviceTimeout, WriteNotAllowed

MAX_READ_COUNT = 125  # Modbus limit for one read of holding/input registers
DEFAULT_MAX_GAP = 10

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

_DT = ModbusClientMixin.DATATYPE
# name -> (pymodbus datatype, registers, min raw, max raw); floats have no integer range.
REGISTER_TYPES: dict[str, tuple[Any, int, int | None, int | None]] = {
    "uint16": (_DT.UINT16, 1, 0, 0xFFFF),
    "int16": (_DT.INT16, 1, -0x8000, 0x7FFF),
    "uint32": (_DT.UINT32, 2, 0, 0xFFFFFFFF),
    "int32": (_DT.INT32, 2, -0x80000000, 0x7FFFFFFF),
    "float32": (_DT.FLOAT32, 2, None, None),
}
KINDS = ("holding", "input")
READ_FUNCTION = {"holding": 3, "input": 4}


class DecodeError(ValueError):
    """Registers that cannot be turned into a value (or a value that cannot be turned into registers)."""


# ---------------------------------------------------------------- registers


@dataclass(frozen=True)
class Register:
    """One typed value in a device's register map; ``value = raw / scale``.

    ``name`` is the state-model name (dots nest: ``"alarms.overload"``), ``path`` the vendor's name used in
    error messages, ``enum`` maps raw integers to state strings, ``invalid`` is the raw word(s), read as an
    unsigned integer, that means "not available" and decodes to ``None``.
    """

    address: int
    name: str
    path: str = ""
    type: str = "uint16"
    scale: float = 1
    unit: str = ""
    kind: str = "holding"
    writable: bool = False
    enum: Mapping[int, str] | None = None
    invalid: int | None = None

    def __post_init__(self) -> None:
        if self.type not in REGISTER_TYPES:
            raise ValueError(f"{self.label}: type {self.type!r} is not one of {', '.join(REGISTER_TYPES)}")
        if self.kind not in KINDS:
            raise ValueError(f"{self.label}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not 0 <= self.address <= 0xFFFF - self.size + 1:
            raise ValueError(f"{self.label}: address out of range 0..65535")
        if not self.scale > 0:
            raise ValueError(f"{self.label}: scale must be > 0, got {self.scale}")
        if self.enum is not None and self.type == "float32":
            raise ValueError(f"{self.label}: an enum needs an integer type")

    @property
    def label(self) -> str:
        return f"register {self.address} ({self.path or self.name})"

    @property
    def size(self) -> int:
        return REGISTER_TYPES[self.type][1]

    @property
    def end(self) -> int:
        return self.address + self.size

    def decode(self, words: Sequence[int]) -> Any:
        """Turn this register's raw words into a state value (None when invalid)."""
        datatype, size, _, _ = REGISTER_TYPES[self.type]
        if len(words) != size:
            raise DecodeError(f"{self.label}: expected {size} word(s), got {len(words)}")
        unsigned = 0
        for word in words:
            if not 0 <= word <= 0xFFFF:
                raise DecodeError(f"{self.label}: word {word} is not 16 bits")
            unsigned = (unsigned << 16) | word
        if self.invalid is not None and unsigned == self.invalid:
            return None
        raw = ModbusClientMixin.convert_from_registers(list(words), datatype)
        if self.type == "float32":
            if not math.isfinite(raw):
                return None
            # float32 carries ~7 significant digits; more would print 231.39999389648438 for 231.4.
            return float(f"{raw / self.scale:.7g}")
        if self.enum is not None:
            return self.enum.get(raw, f"unknown_{raw}")
        if self.scale == 1:
            return raw
        decimals = _decimals(self.scale)
        value = raw / self.scale
        return value if decimals is None else round(value, decimals)

    def encode(self, value: Any) -> list[int]:
        """Turn a state value into this register's raw words; ValueError naming the register if impossible."""
        datatype, size, low, high = REGISTER_TYPES[self.type]
        if value is None:
            if self.invalid is not None:
                return [(self.invalid >> (16 * (size - 1 - i))) & 0xFFFF for i in range(size)]
            if self.type == "float32":
                return ModbusClientMixin.convert_to_registers(math.nan, datatype)
            raise DecodeError(f"{self.label}: has no invalid marker, cannot encode None")
        if self.enum is not None:
            raw = self.enum_raw(value)
        elif self.type == "float32":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DecodeError(f"{self.label}: {value!r} is not a number")
            return ModbusClientMixin.convert_to_registers(float(value) * self.scale, datatype)
        else:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise DecodeError(f"{self.label}: {value!r} is not a finite number")
            raw = round(value * self.scale)
        assert low is not None and high is not None
        if not low <= raw <= high:
            raise DecodeError(
                f"{self.label}: {value} {self.unit} is out of range "
                f"({low / self.scale:g}..{high / self.scale:g} {self.unit})".replace("  ", " ")
            )
        words = ModbusClientMixin.convert_to_registers(int(raw), datatype)
        unsigned = int.from_bytes(b"".join(w.to_bytes(2, "big") for w in words), "big")
        if self.invalid is not None and unsigned == self.invalid:
            raise DecodeError(f"{self.label}: {value} {self.unit} collides with the 'not available' marker")
        return words

    def enum_raw(self, value: Any) -> int:
        """The raw number of an enumeration value given by its state name (or as a number)."""
        assert self.enum is not None
        if isinstance(value, str):
            for raw, text in self.enum.items():
                if text == value:
                    return raw
            if value.startswith("unknown_") and value[8:].lstrip("-").isdigit():
                return int(value[8:])
            raise DecodeError(f"{self.label}: {value!r} is not one of {', '.join(self.enum.values())}")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise DecodeError(f"{self.label}: {value!r} is not one of {', '.join(self.enum.values())}")


def _decimals(scale: float) -> int | None:
    """Decimals that show raw/scale exactly for power-of-ten scales (3/0.1 is 30.000000000000004)."""
    exponent = round(math.log10(scale))
    if not math.isclose(10.0**exponent, scale):
        return None
    return max(0, exponent)


@dataclass(frozen=True)
class RegisterTable:
    """The registers of one Modbus unit, plus the address ranges the device is known to answer in full.

    The planner only reads across a gap between two registers when every gap address lies in ``readable``:
    a Victron GX, for one, answers exception 2 for the whole read when any address in it is unknown, so a
    merge across an address nobody has vouched for could turn a working poll into a failing one.
    """

    registers: tuple[Register, ...]
    readable: tuple[range, ...] = ()
    group: str = ""  # what a failing read of this table is called in stale_groups and alarms ("battery_monitor")

    def __post_init__(self) -> None:
        names = [r.name for r in self.registers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"register table: duplicate names {', '.join(duplicates)}")

    def is_readable(self, address: int) -> bool:
        return any(address in span for span in self.readable)

    def by_name(self, name: str) -> Register:
        for register in self.registers:
            if register.name == name:
                return register
        raise KeyError(name)


# ---------------------------------------------------------------- planning


@dataclass(frozen=True)
class ReadBlock:
    """One planned read: ``count`` registers from ``start`` on one unit, and the registers it covers."""

    unit: int
    kind: str
    start: int
    count: int
    registers: tuple[Register, ...]
    group: str = ""

    @property
    def end(self) -> int:
        return self.start + self.count

    def describe(self) -> str:
        if len(self.registers) == 1 and self.registers[0].size == self.count:
            return self.registers[0].label
        first, last = self.registers[0], self.registers[-1]
        return f"registers {self.start}..{self.end - 1} ({first.path or first.name} .. {last.path or last.name})"

    @property
    def has_gaps(self) -> bool:
        return sum(r.size for r in self.registers) < self.count

    def decode(self, words: Sequence[int]) -> dict[str, Any]:
        """Decode a reply to this block into {name: value}."""
        if len(words) != self.count:
            raise DecodeError(f"{self.describe()}: expected {self.count} registers, got {len(words)}")
        return {r.name: r.decode(words[r.address - self.start : r.end - self.start]) for r in self.registers}


def plan_reads(
    table: RegisterTable, unit: int, *, max_gap: int = DEFAULT_MAX_GAP, max_count: int = MAX_READ_COUNT
) -> list[ReadBlock]:
    """Pack a table into as few reads as possible.

    Registers of one kind are merged in address order while the gap to the next is at most ``max_gap``
    registers, every gap address is in the table's ``readable`` ranges, and the read stays within
    ``max_count``. Greedy extension is optimal here: a block that stops earlier can never let a later block
    cover more.
    """
    if not 1 <= max_count <= MAX_READ_COUNT:
        raise ValueError(f"max_count must be 1..{MAX_READ_COUNT}, got {max_count}")
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, got {max_gap}")
    blocks: list[ReadBlock] = []
    group = table.group or f"unit {unit}"
    for kind in KINDS:
        registers = sorted((r for r in table.registers if r.kind == kind), key=lambda r: (r.address, r.end))
        current: list[Register] = []
        start = end = 0
        for register in registers:
            if register.size > max_count:
                raise ValueError(f"{register.label} needs {register.size} registers, max_count is {max_count}")
            if current and _can_extend(table, start, end, register, max_gap, max_count):
                current.append(register)
                end = max(end, register.end)
                continue
            if current:
                blocks.append(ReadBlock(unit, kind, start, end - start, tuple(current), group))
            current, start, end = [register], register.address, register.end
        if current:
            blocks.append(ReadBlock(unit, kind, start, end - start, tuple(current), group))
    return blocks


def _can_extend(table: RegisterTable, start: int, end: int, register: Register, max_gap: int, max_count: int) -> bool:
    if max(end, register.end) - start > max_count:
        return False
    gap = range(end, register.address)
    return len(gap) <= max_gap and all(table.is_readable(address) for address in gap)


# ---------------------------------------------------------------- nested names


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"alarms.overload": "ok"} -> {"alarms": {"overload": "ok"}}."""
    result: dict[str, Any] = {}
    for name, value in flat.items():
        set_path(result, name, value)
    return result


def get_path(values: Mapping[str, Any], name: str, default: Any = None) -> Any:
    node: Any = values
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def set_path(values: dict[str, Any], name: str, value: Any) -> None:
    *parents, leaf = name.split(".")
    node = values
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


# ---------------------------------------------------------------- transport


TRANSPORT_KINDS = ("tcp", "rtu", "rtu-over-tcp")


@dataclass(frozen=True)
class ModbusTransport:
    """How to reach a Modbus device: Modbus-TCP, RTU on a serial port, or RTU frames through a TCP gateway.

    >>> ModbusTransport(kind="rtu-over-tcp", host="192.168.1.20", port=4001).describe()
    'rtu-over-tcp 192.168.1.20:4001'
    """

    kind: str = "tcp"
    host: str = ""
    port: int = 502
    serial_port: str = ""
    baudrate: int = 9600
    parity: str = "N"
    timeout_s: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in TRANSPORT_KINDS:
            raise ValueError(f"modbus transport: kind {self.kind!r} is not one of {', '.join(TRANSPORT_KINDS)}")
        if self.kind == "rtu":
            if not self.serial_port:
                raise ValueError("modbus transport: kind 'rtu' needs serial_port")
            if self.baudrate <= 0:
                raise ValueError(f"modbus transport: baudrate must be > 0, got {self.baudrate}")
            if self.parity not in ("N", "E", "O"):
                raise ValueError(f"modbus transport: parity must be N, E or O, got {self.parity!r}")
        else:
            if not self.host:
                raise ValueError(f"modbus transport: kind {self.kind!r} needs host")
            if not 1 <= self.port <= 65535:
                raise ValueError(f"modbus transport: port must be 1..65535, got {self.port}")
        if not 0 < self.timeout_s <= 60:
            raise ValueError(f"modbus transport: timeout_s must be in (0, 60], got {self.timeout_s}")

    def describe(self) -> str:
        if self.kind == "rtu":
            return f"rtu {self.serial_port}@{self.baudrate}"
        return f"{self.kind} {self.host}:{self.port}"

    def make_client(self) -> ModbusBaseClient:
        """Build the pymodbus client.

        retries=0 so a silent device shows up as one timeout per request instead of (1 + retries) timeouts;
        reconnect_delay=0 because reconnecting is the poller's job (close, back off, open).
        """
        if self.kind == "rtu":
            return AsyncModbusSerialClient(
                self.serial_port,
                framer=FramerType.RTU,
                baudrate=self.baudrate,
                parity=self.parity,
                timeout=self.timeout_s,
                retries=0,
                reconnect_delay=0,
            )
        framer = FramerType.SOCKET if self.kind == "tcp" else FramerType.RTU
        return AsyncModbusTcpClient(
            self.host, port=self.port, framer=framer, timeout=self.timeout_s, retries=0, reconnect_delay=0
        )


# ---------------------------------------------------------------- device


class ModbusExceptionReply(DeviceError):
    """The device answered a Modbus exception; ``code`` is the exception code, ``unit`` the unit id."""

    def __init__(self, device: str, detail: str, unit: int, code: int):
        super().__init__(device, detail)
        self.unit = unit
        self.code = code


class ModbusDevice:
    """A PolledDevice made of register tables, one per unit id; subclasses only shape ``to_state``.

    Example, against the simulator shipped with the Victron profile::

        sim = GXSimulator()
        port = await sim.start()
        device = ModbusDevice("inverter", ModbusTransport(host="127.0.0.1", port=port), {227: VEBUS_TABLE})
        await device.open()
        values = await device.poll()
    """

    name: str

    def __init__(
        self,
        name: str,
        transport: ModbusTransport,
        tables: Mapping[int, RegisterTable],
        *,
        allow_writes: bool = False,
        max_gap: int = DEFAULT_MAX_GAP,
    ):
        self.name = name
        self.transport = transport
        self.allow_writes = allow_writes
        self.tables = dict(tables)
        for unit in self.tables:
            if not 0 <= unit <= 255:
                raise ValueError(f"{name}: unit id must be 0..255, got {unit}")
        self._unit_of: dict[str, int] = {}
        for unit, table in self.tables.items():
            for register in table.registers:
                if register.name in self._unit_of:
                    raise ValueError(f"{name}: register name {register.name!r} used on two units")
                self._unit_of[register.name] = unit
        self.plan: list[ReadBlock] = [
            block for unit, table in self.tables.items() for block in plan_reads(table, unit, max_gap=max_gap)
        ]
        self.requests_last_poll = 0
        self.requests_total = 0
        self.failing: dict[str, str] = {}  # read group -> why its last read failed (the others were read)
        self._client: ModbusBaseClient | None = None

    async def open(self) -> None:
        await self.close()
        client = self.transport.make_client()
        if not await client.connect():
            client.close()
            raise DeviceGone(self.name, f"cannot connect to {self.transport.describe()}")
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def poll(self) -> dict[str, Any]:
        return self.to_state(await self.read_values())

    def to_state(self, values: dict[str, Any]) -> dict[str, Any]:
        """Shape the flat {register name: value} into the state-model component."""
        return nest(values)

    async def read_values(self) -> dict[str, Any]:
        """Run every planned read and return {register name: decoded value}.

        A read that fails leaves its registers None and its group named in ``failing`` (group -> error), so
        one rejected block never hides the values the other blocks carried. Only when every group fails, or
        the connection itself is gone, does the poll raise.
        """
        self.requests_last_poll = 0
        values: dict[str, Any] = {}
        failing: dict[str, str] = {}
        first_error: DeviceError | None = None
        for block in self.plan:
            try:
                words = await self._read_block(block)
                try:
                    values.update(block.decode(words))
                except DecodeError as exc:
                    raise DeviceError(self.name, f"unit {block.unit}, {exc}") from exc
            except DeviceGone:
                raise
            except DeviceError as exc:
                first_error = first_error or exc
                failing.setdefault(block.group, str(exc))
                values.update(dict.fromkeys(r.name for r in block.registers))
        self.failing = failing
        if first_error is not None and failing.keys() >= {block.group for block in self.plan}:
            raise first_error
        return values

    async def write_value(self, name: str, value: Any) -> None:
        """Encode and write one writable register by state-model name."""
        unit = self._unit_of.get(name)
        if unit is None:
            raise ValueError(f"{self.name}: no register named {name!r}")
        register = self.tables[unit].by_name(name)
        if not register.writable:
            raise ValueError(f"{self.name}: {register.label} is read-only")
        if not self.allow_writes:
            raise WriteNotAllowed(self.name, f"unit {unit}, {register.label}: writes are off (allow_writes)")
        words = register.encode(value)
        client = self._connected_client()

        async def send() -> Any:
            if len(words) == 1:
                return await client.write_register(register.address, words[0], device_id=unit)
            return await client.write_registers(register.address, words, device_id=unit)

        await self._request(unit, register.label, send, has_gaps=False)

    def _connected_client(self) -> ModbusBaseClient:
        if self._client is None or not self._client.connected:
            raise DeviceGone(self.name, f"not connected to {self.transport.describe()}")
        return self._client

    async def _read_block(self, block: ReadBlock) -> list[int]:
        client = self._connected_client()
        read = client.read_holding_registers if block.kind == "holding" else client.read_input_registers
        reply = await self._request(
            block.unit,
            block.describe(),
            lambda: read(block.start, count=block.count, device_id=block.unit),
            has_gaps=block.has_gaps,
        )
        return list(reply.registers)

    async def _request(self, unit: int, what: str, send: Callable[[], Awaitable[Any]], *, has_gaps: bool) -> Any:
        """Send one request and map every way it can fail onto the driver error hierarchy."""
        self.requests_last_poll += 1
        self.requests_total += 1
        client = self._connected_client()
        # pymodbus already times out after timeout_s; this outer limit only guards against a hang elsewhere.
        limit = self.transport.timeout_s * 2 + 1
        try:
            async with asyncio.timeout(limit):
                reply = await send()
        except (ConnectionException, ConnectionError) as exc:
            raise DeviceGone(self.name, f"unit {unit}, {what}: connection lost ({exc})") from exc
        except (ModbusIOException, TimeoutError) as exc:
            if not client.connected:
                raise DeviceGone(self.name, f"unit {unit}, {what}: connection lost") from exc
            if isinstance(exc, TimeoutError) or "No response" in str(exc):
                raise DeviceTimeout(
                    self.name, f"unit {unit}, {what}: no reply within {self.transport.timeout_s:g} s"
                ) from exc
            raise DeviceError(self.name, f"unit {unit}, {what}: {exc}") from exc
        except ModbusException as exc:
            raise DeviceError(self.name, f"unit {unit}, {what}: {exc}") from exc
        if reply.isError():
            code = int(getattr(reply, "exception_code", 0))
            detail = f"unit {unit}, {what}: exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})"
            if code == 2 and has_gaps:
                detail += "; this read spans unlisted addresses, check the table's readable ranges"
            raise ModbusExceptionReply(self.name, detail, unit, code)
        return reply


# ---------------------------------------------------------------- simulator


FAULTS = (None, "silent", "exception", "garbage")
_STRING_TYPE = re.compile(r"string\[(\d+)\]")


@dataclass(frozen=True)
class PublishedRegister:
    """One value as the device's maker publishes it: address, type, scale and the maker's name (``path``).

    The simulators are built from these, read from the maker's own list (a CSV shipped beside the driver), never
    from our driver tables: a mistake in a table then shows up as a rejected read or a wrong value in the tests.
    ``type`` is one of REGISTER_TYPES or ``string[N]`` (N registers of ASCII); ``scale`` may be negative
    (Victron publishes consumed amp-hours that way). ``value = raw / scale``.
    """

    address: int
    path: str
    type: str = "uint16"
    scale: float = 1
    writable: bool = False

    @property
    def size(self) -> int:
        text = _STRING_TYPE.fullmatch(self.type)
        return int(text.group(1)) if text else REGISTER_TYPES[self.type][1]

    @property
    def end(self) -> int:
        return self.address + self.size

    def encode(self, value: Any) -> list[int]:
        """The words served for ``value``; None (unknown) reads 0xFFFF.. unsigned, NaN in float32, else 0."""
        if self.type.startswith("string"):
            data = str(value or "").encode("ascii", "replace")[: 2 * self.size].ljust(2 * self.size, b"\0")
            return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
        datatype, size, low, _high = REGISTER_TYPES[self.type]
        if self.type == "float32":
            number = math.nan if value is None else float(value) * self.scale
            return ModbusClientMixin.convert_to_registers(number, datatype)
        if value is None:
            return [0xFFFF] * size if low == 0 else [0] * size
        raw = round(value * self.scale)
        width = 16 * size
        unsigned = raw & ((1 << width) - 1)  # two's complement for the signed types
        return [(unsigned >> (16 * (size - 1 - i))) & 0xFFFF for i in range(size)]

    def decode(self, words: Sequence[int]) -> Any:
        """A written value back in engineering units (what a client's write sets)."""
        datatype = REGISTER_TYPES[self.type][0]
        raw = ModbusClientMixin.convert_from_registers(list(words), datatype)
        value = raw / self.scale
        return int(value) if float(value).is_integer() and abs(self.scale) == 1 else value


@dataclass(frozen=True)
class PublishedMap:
    """The registers one unit of a device defines; every other address answers exception 2 (illegal address).

    ``name`` keys the unit's values in the simulator (``sim.values["vebus"]["/Soc"]``); ``blank_ranges`` are
    addresses the device answers although it defines nothing there (they read 0), as some meters do between
    their values; ``functions`` are the read function codes that reach the map (others: exception 1).
    """

    name: str
    registers: tuple[PublishedRegister, ...]
    blank_ranges: tuple[range, ...] = ()
    functions: tuple[int, ...] = (3, 4)

    def __post_init__(self) -> None:
        taken: dict[int, str] = {}
        for register in self.registers:
            for address in range(register.address, register.end):
                if address in taken:
                    raise ValueError(f"{self.name}: {register.path} overlaps {taken[address]} at {address}")
                taken[address] = register.path

    def defined(self) -> set[int]:
        """Every address a read may touch."""
        addresses = {a for r in self.registers for a in range(r.address, r.end)}
        for span in self.blank_ranges:
            addresses.update(span)
        return addresses

    def by_path(self, path: str) -> PublishedRegister:
        for register in self.registers:
            if register.path == path:
                return register
        raise KeyError(f"{self.name}: no register {path!r} in the published list")


class MapSimulator:
    """A real Modbus server on TCP serving published register maps, one per unit id, from plain values.

    ``values[map name][path]`` holds each value in engineering units (an enumeration as its raw number); values
    are encoded at read time, so a test or a scenario just assigns ``sim.values["vebus"]["/Soc"] = 55.0``;
    client writes to writable registers land there too. A read touching an address the map does not define
    answers exception 2, as the real device does. ``fault`` (every unit) and ``unit_faults[unit]`` (one unit):
    None, "silent" (never reply), "exception" (exception 4, device failure) or "garbage" (a well-framed reply
    one register short, as a confused gateway sends). ``requests`` counts requests received.
    """

    def __init__(
        self,
        maps: Mapping[int, PublishedMap],
        values: dict[str, dict[str, Any]],
        *,
        framer: FramerType = FramerType.SOCKET,
        missing_unit: str = "gateway",
    ):
        if missing_unit not in ("gateway", "silent"):
            raise ValueError(f"simulator: missing_unit must be 'gateway' or 'silent', got {missing_unit!r}")
        self.maps = dict(maps)
        self.values = values
        for published in self.maps.values():
            self.values.setdefault(published.name, {})
        self.framer = framer
        self.missing_unit = missing_unit
        self._fault: str | None = None
        self.unit_faults: dict[int, str | None] = {}
        self.requests = 0
        self.port: int | None = None
        self._server: ModbusTcpServer | None = None

    @property
    def fault(self) -> str | None:
        return self._fault

    @fault.setter
    def fault(self, fault: str | None) -> None:
        self._fault = check_fault(fault)

    def set_unit_fault(self, unit: int, fault: str | None) -> None:
        """Fail one unit only (a GX whose system service is gone while its VE.Bus port answers)."""
        if unit not in self.maps:
            raise ValueError(f"simulator: no unit {unit} (units {', '.join(map(str, self.maps))})")
        self.unit_faults[unit] = check_fault(fault)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on host:port (0 picks a free port) and return the bound port."""
        if self._server is not None:
            raise RuntimeError("simulator already running")
        devices = [
            SimDevice(id=unit, simdata=_simdata(published), action=self._make_action(unit))
            for unit, published in self.maps.items()
        ]
        # Unit 0 is pymodbus's catch-all for ids without a SimDevice; it spans the whole address space so the
        # action, not the address check, decides the answer.
        devices.append(
            SimDevice(
                id=0,
                simdata=[SimData(0, count=0x10000, datatype=DataType.REGISTERS)],
                action=self._missing_unit_action,
            )
        )
        server = ModbusTcpServer(
            devices,
            framer=self.framer,
            address=(host, port),
            ignore_missing_devices=True,
            trace_packet=self._trace_packet,
            trace_pdu=self._trace_pdu,
        )
        await server.serve_forever(background=True)
        self._server = server
        self.port = server.transport.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    def _make_action(self, unit: int) -> Any:
        async def action(
            function_code: int,
            start_address: int,
            address: int,
            count: int,
            registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            return self._serve(unit, function_code, start_address, address, count, registers, set_values)

        return action

    async def _missing_unit_action(self, *_args: Any) -> ExcCodes | None:
        if self.missing_unit == "silent":
            raise NoSuchIdException("no device on this unit id")  # server drops the request: RS-485 silence
        return ExcCodes.GATEWAY_PATH_UNAVIABLE

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
        fault = self.unit_faults.get(unit) or self.fault
        if fault == "exception":
            return ExcCodes.DEVICE_FAILURE
        if fault == "silent":
            raise NoSuchIdException(f"unit {unit} is silent")  # the server drops the request, no reply
        published = self.maps[unit]
        if function_code not in (*published.functions, 6, 16):
            return ExcCodes.ILLEGAL_FUNCTION
        touched = [r for r in published.registers if r.address < address + count and r.end > address]
        values = self.values[published.name]
        if set_values is not None:
            return self._write(values, address, [int(v) for v in set_values], touched)
        for register in touched:
            words = register.encode(values.get(register.path))
            offset = register.address - start_address
            registers[offset : offset + register.size] = words
        return None

    @staticmethod
    def _write(
        values: dict[str, Any], address: int, words: list[int], touched: list[PublishedRegister]
    ) -> ExcCodes | None:
        end = address + len(words)
        for register in touched:
            if not register.writable or register.address < address or register.end > end:
                return ExcCodes.ILLEGAL_ADDRESS
        for register in touched:
            offset = register.address - address
            values[register.path] = register.decode(words[offset : offset + register.size])
        return None

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if sending and self.fault == "silent":
            return b""  # an empty write sends nothing: the client waits out its timeout
        return data

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests += 1
        elif (
            pdu.function_code in (3, 4)
            and pdu.registers
            and "garbage" in (self.fault, self.unit_faults.get(pdu.dev_id))
        ):
            pdu.registers = pdu.registers[:-1]
        return pdu


def check_fault(fault: str | None) -> str | None:
    if fault not in FAULTS:
        raise ValueError(f"simulator: fault {fault!r} is not one of {', '.join(map(str, FAULTS))}")
    return fault


def _simdata(published: PublishedMap) -> list[SimData]:
    """One SimData run per stretch of defined addresses: pymodbus answers exception 2 for anything between."""
    ordered = sorted(published.defined())
    runs: list[SimData] = []
    run_start = previous = ordered[0]
    for address in [*ordered[1:], None]:
        if address is not None and address == previous + 1:
            previous = address
            continue
        runs.append(SimData(run_start, count=previous - run_start + 1, datatype=DataType.REGISTERS))
        if address is not None:
            run_start = previous = address
    return runs


def read_published_csv(path: Path) -> list[list[str]]:
    """The rows of a maker's register list shipped as CSV beside its driver (``#`` lines note its source)."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(line for line in handle if line.strip() and not line.startswith("#")))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for tests that must restart a simulator on the same port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
