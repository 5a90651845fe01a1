"""Tests of the generic Modbus code: register decode/encode, the read planner, transports, error mapping."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from drivers.base import DeviceGone, PolledDevice
from drivers.modbus import (
    MAX_READ_COUNT,
    REGISTER_TYPES,
    DecodeError,
    MapSimulator,
    ModbusDevice,
    ModbusExceptionReply,
    ModbusTransport,
    PublishedMap,
    PublishedRegister,
    Register,
    RegisterTable,
    free_port,
    get_path,
    nest,
    plan_reads,
)

# ---------------------------------------------------------------- decode / encode


def test_decode_scaling_signs_and_power_of_ten_rounding() -> None:
    assert Register(0, "v", type="uint16", scale=10).decode([2301]) == 230.1
    assert Register(0, "a", type="int16", scale=10).decode([0xFFF6]) == -1.0
    assert Register(0, "t", type="int16", scale=10).decode([(-55) & 0xFFFF]) == -5.5
    assert Register(0, "w", type="int16", scale=0.1).decode([3]) == 30.0  # not 30.000000000000004
    assert Register(0, "n", type="uint16").decode([7]) == 7
    assert Register(0, "e", type="int32").decode([0xFFFF, 0xFFFE]) == -2
    assert Register(0, "f", type="float32").decode([0x4367, 0x6666]) == 231.4


def test_decode_invalid_enum_and_nan() -> None:
    assert Register(0, "v", invalid=0xFFFF).decode([0xFFFF]) is None
    state = Register(31, "state", "/State", enum={0: "off", 9: "inverting"})
    assert state.decode([9]) == "inverting"
    assert state.decode([17]) == "unknown_17"
    assert Register(0, "f", type="float32").decode([0x7FC0, 0]) is None


def test_decode_wrong_length_names_register() -> None:
    with pytest.raises(DecodeError, match=r"register 12 \(/Ac/ActiveIn/L1/P\)"):
        Register(12, "ac_in_w", "/Ac/ActiveIn/L1/P", "int16").decode([1, 2])


def test_encode_errors_name_register_and_bounds() -> None:
    limit = Register(22, "limit", "/Ac/ActiveIn/CurrentLimit", "int16", 10, unit="A")
    with pytest.raises(DecodeError, match=r"register 22 \(/Ac/ActiveIn/CurrentLimit\).*out of range"):
        limit.encode(5000)
    mode = Register(33, "mode", "/Mode", enum={1: "charger_only", 3: "on"})
    with pytest.raises(DecodeError, match=r"/Mode.*'sleep' is not one of charger_only, on"):
        mode.encode("sleep")
    assert mode.encode("unknown_9") == [9]
    with pytest.raises(DecodeError, match="cannot encode None"):
        Register(0, "x", type="int16").encode(None)
    with pytest.raises(DecodeError, match="not available"):
        Register(0, "v", scale=10, invalid=0xFFFF).encode(6553.5)


def test_register_rejects_bad_definitions() -> None:
    with pytest.raises(ValueError, match="type 'uint8'"):
        Register(0, "x", type="uint8")
    with pytest.raises(ValueError, match="kind 'coil'"):
        Register(0, "x", kind="coil")
    with pytest.raises(ValueError, match="duplicate names x"):
        RegisterTable((Register(0, "x"), Register(1, "x")))


registers = st.builds(
    Register,
    address=st.just(0),
    name=st.just("r"),
    type=st.sampled_from(sorted(REGISTER_TYPES)),
    scale=st.sampled_from([1, 10, 100, 0.1, 3]),
    invalid=st.sampled_from([None, 0xFFFF, 0x7FFF]),
)


@given(registers, st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2), st.booleans())
def test_any_words_decode_without_crashing(register: Register, words: list[int], with_enum: bool) -> None:
    if with_enum and register.type != "float32":
        register = Register(0, "r", type=register.type, enum={0: "zero", 1: "one"})
    value = register.decode(words[: register.size])
    assert value is None or isinstance(value, int | float | str)


@given(st.sampled_from(["uint16", "int16", "uint32", "int32"]), st.sampled_from([1, 10, 100, 0.1]), st.data())
def test_integer_encode_decode_round_trips_within_resolution(type_: str, scale: float, data: st.DataObject) -> None:
    register = Register(0, "r", type=type_, scale=scale)
    _, _, low, high = REGISTER_TYPES[type_]
    value = data.draw(st.floats(low / scale, high / scale, allow_nan=False))
    words = register.encode(value)
    assert len(words) == register.size and all(0 <= w <= 0xFFFF for w in words)
    assert abs(register.decode(words) - value) <= 0.5 / scale + 1e-9 * abs(value)


@given(st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_float32_round_trips_to_seven_digits(value: float) -> None:
    register = Register(0, "f", type="float32")
    assert math.isclose(register.decode(register.encode(value)), value, rel_tol=1e-6, abs_tol=1e-30)


@given(st.sampled_from([None, "off", "inverting", "unknown_200"]))
def test_enum_round_trips(value: str | None) -> None:
    register = Register(31, "state", enum={0: "off", 9: "inverting"}, invalid=0xFFFF)
    assert register.decode(register.encode(value)) == value


# ---------------------------------------------------------------- planner


def test_planner_merges_only_across_readable_gaps() -> None:
    regs = (Register(3, "a"), Register(6, "b"), Register(40, "c"))
    unsafe = plan_reads(RegisterTable(regs), 1, max_gap=10)
    assert [(b.start, b.count) for b in unsafe] == [(3, 1), (6, 1), (40, 1)]
    safe = plan_reads(RegisterTable(regs, readable=(range(3, 41),)), 1, max_gap=10)
    assert [(b.start, b.count) for b in safe] == [(3, 4), (40, 1)]
    wide = plan_reads(RegisterTable(regs, readable=(range(3, 41),)), 1, max_gap=40)
    assert [(b.start, b.count) for b in wide] == [(3, 38)]


def test_planner_rejects_a_register_wider_than_a_read() -> None:
    with pytest.raises(ValueError, match=r"register 0 \(f\) needs 2 registers, max_count is 1"):
        plan_reads(RegisterTable((Register(0, "f", type="float32"),)), 1, max_count=1)


def test_planner_never_mixes_kinds() -> None:
    regs = (Register(0, "h"), Register(1, "i", kind="input"), Register(2, "h2"))
    blocks = plan_reads(RegisterTable(regs, readable=(range(0, 3),)), 7)
    assert {(b.kind, b.start, b.count, b.unit) for b in blocks} == {("holding", 0, 3, 7), ("input", 1, 1, 7)}


@st.composite
def tables(draw: st.DrawFn) -> RegisterTable:
    registers = []
    address = draw(st.integers(0, 50))
    for index in range(draw(st.integers(1, 60))):
        type_ = draw(st.sampled_from(["uint16", "float32"]))
        kind = draw(st.sampled_from(["holding", "input"]))
        registers.append(Register(address, f"r{index}", type=type_, kind=kind))
        address += registers[-1].size + draw(st.integers(0, 15))
    readable = tuple(
        range(start, start + length)
        for start, length in draw(st.lists(st.tuples(st.integers(0, 900), st.integers(1, 200)), max_size=3))
    )
    return RegisterTable(tuple(registers), readable)


@settings(max_examples=200)
@given(tables(), st.integers(0, 20), st.integers(2, MAX_READ_COUNT))
def test_plan_covers_every_register_exactly_once(table: RegisterTable, max_gap: int, max_count: int) -> None:
    blocks = plan_reads(table, 1, max_gap=max_gap, max_count=max_count)
    planned = [r.name for b in blocks for r in b.registers]
    assert sorted(planned) == sorted(r.name for r in table.registers)
    for block in blocks:
        assert 1 <= block.count <= max_count
        for register in block.registers:
            assert register.kind == block.kind
            assert block.start <= register.address and register.end <= block.end
        covered = {a for r in block.registers for a in range(r.address, r.end)}
        # Every address read that no register needs must be vouched for by the table.
        assert all(table.is_readable(a) for a in range(block.start, block.end) if a not in covered)


@given(st.integers(1, 700), st.integers(0, 100), st.integers(1, MAX_READ_COUNT))
def test_plan_is_minimal_for_contiguous_tables(length: int, start: int, max_count: int) -> None:
    table = RegisterTable(tuple(Register(start + i, f"r{i}") for i in range(length)))
    blocks = plan_reads(table, 1, max_count=max_count)
    assert len(blocks) == math.ceil(length / max_count)


# ---------------------------------------------------------------- names, transport


def test_nested_names() -> None:
    values = nest({"soc": 50, "alarms.overload": "ok", "alarms.ripple": "alarm"})
    assert values == {"soc": 50, "alarms": {"overload": "ok", "ripple": "alarm"}}
    assert get_path(values, "alarms.ripple") == "alarm"
    assert get_path(values, "alarms.missing") is None


async def test_transport_builds_the_right_client() -> None:
    tcp = ModbusTransport(host="127.0.0.1", port=1502, timeout_s=0.5).make_client()
    assert isinstance(tcp, AsyncModbusTcpClient) and tcp.ctx.retries == 0
    gateway = ModbusTransport(kind="rtu-over-tcp", host="10.0.0.2", port=4001).make_client()
    assert isinstance(gateway, AsyncModbusTcpClient)
    assert type(gateway.ctx.framer).__name__ == "FramerRTU"
    serial = ModbusTransport(kind="rtu", serial_port="/dev/ttyUSB0", baudrate=2400).make_client()
    assert isinstance(serial, AsyncModbusSerialClient)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "udp", "host": "x"}, "kind 'udp'"),
        ({"kind": "tcp"}, "needs host"),
        ({"kind": "rtu"}, "needs serial_port"),
        ({"host": "x", "port": 0}, "port must be"),
        ({"host": "x", "timeout_s": 0}, "timeout_s"),
    ],
)
def test_transport_validation_names_the_option(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModbusTransport(**kwargs)


# ---------------------------------------------------------------- device against a generic simulator

TABLE = RegisterTable(
    (
        Register(10, "count", "/Count"),
        Register(11, "temp", "/Temp", "int16", 10),
        Register(20, "power", "/Power", "float32", kind="input"),
    )
)
# The same device as its maker would publish it, for the simulator.
THING = PublishedMap(
    "thing",
    (
        PublishedRegister(10, "/Count"),
        PublishedRegister(11, "/Temp", "int16", 10),
        PublishedRegister(20, "/Power", "float32"),
    ),
)


async def test_generic_device_reads_both_kinds_and_maps_gateway_errors() -> None:
    sim = MapSimulator({5: THING}, {"thing": {"/Count": 3, "/Temp": -12.5, "/Power": 1.5}})
    port = await sim.start()
    try:
        device = ModbusDevice("thing", ModbusTransport(host="127.0.0.1", port=port, timeout_s=0.5), {5: TABLE})
        assert isinstance(device, PolledDevice)
        await device.open()
        assert await device.poll() == {"count": 3, "temp": -12.5, "power": 1.5}
        assert device.requests_last_poll == 2
        await device.close()

        wrong_unit = ModbusDevice("thing", ModbusTransport(host="127.0.0.1", port=port), {9: TABLE})
        await wrong_unit.open()
        with pytest.raises(ModbusExceptionReply, match=r"thing: unit 9, .*exception 10 \(gateway path unavailable\)"):
            await wrong_unit.poll()
        await wrong_unit.close()
    finally:
        await sim.stop()


async def test_open_without_a_server_is_device_gone() -> None:
    device = ModbusDevice("thing", ModbusTransport(host="127.0.0.1", port=free_port(), timeout_s=0.5), {1: TABLE})
    with pytest.raises(DeviceGone, match=r"thing: cannot connect to tcp 127\.0\.0\.1:"):
        await device.open()


async def test_poll_before_open_is_device_gone() -> None:
    device = ModbusDevice("thing", ModbusTransport(host="127.0.0.1"), {1: TABLE})
    with pytest.raises(DeviceGone, match="not connected"):
        await device.poll()


def test_simulator_rejects_unknown_fault() -> None:
    sim = MapSimulator({1: THING}, {}, framer=FramerType.RTU)
    with pytest.raises(ValueError, match="fault 'smoke'"):
        sim.fault = "smoke"


async def test_exception_2_on_a_merged_read_points_at_the_readable_ranges() -> None:
    sim = MapSimulator({5: THING}, {"thing": {"/Count": 3, "/Temp": 1.0, "/Power": 1.5}})
    port = await sim.start()
    # The device side vouches for 12..13, which the simulated device does not have.
    optimistic = RegisterTable((Register(10, "count", "/Count"), Register(13, "x", "/X")), readable=(range(10, 14),))
    device = ModbusDevice("thing", ModbusTransport(host="127.0.0.1", port=port, timeout_s=0.5), {5: optimistic})
    try:
        await device.open()
        with pytest.raises(ModbusExceptionReply) as caught:
            await device.poll()
        assert str(caught.value) == (
            "thing: unit 5, registers 10..13 (/Count .. /X): exception 2 (illegal data address); "
            "this read spans unlisted addresses, check the table's readable ranges"
        )
    finally:
        await device.close()
        await sim.stop()
