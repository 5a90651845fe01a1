"""The sdm120 profile against its simulator: RTU frames over loopback TCP, as through an RS-485 gateway."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from drivers.base import DeviceError, DeviceGone, DeviceTimeout, PolledDevice
from drivers.modbus import ModbusExceptionReply, ModbusTransport, Register, RegisterTable, plan_reads
from drivers.sdm120 import SDM120, SDM120_MAX_GAP, SDM120_TABLE, SDM120Simulator, published_map

TIMEOUT_S = 0.3


@pytest.fixture
async def sim() -> AsyncIterator[SDM120Simulator]:
    simulator = SDM120Simulator()
    await simulator.start()
    yield simulator
    await simulator.stop()


def make_meter(sim: SDM120Simulator, **kwargs: object) -> SDM120:
    assert sim.port is not None
    transport = ModbusTransport(kind="rtu-over-tcp", host="127.0.0.1", port=sim.port, timeout_s=TIMEOUT_S)
    return SDM120(transport, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def meter(sim: SDM120Simulator) -> AsyncIterator[SDM120]:
    device = make_meter(sim)
    await device.open()
    yield device
    await device.close()


async def test_poll_reads_the_whole_map_in_one_request(sim: SDM120Simulator, meter: SDM120) -> None:
    assert isinstance(meter, PolledDevice)
    assert meter.name == "shore_meter"
    values = await meter.poll()
    assert {"voltage_v", "current_a", "power_w", "frequency_hz", "energy_import_kwh"} <= values.keys()
    assert values["voltage_v"] == 231.4
    assert values["current_a"] == 5.2
    assert values["power_w"] == 1180.0
    assert values["frequency_hz"] == 50.02
    assert values["energy_import_kwh"] == 1523.75
    assert values["power_factor"] == 0.98
    assert meter.requests_last_poll == 1
    assert sim.requests == 1


async def test_without_gap_merging_it_takes_two_requests(sim: SDM120Simulator) -> None:
    meter = make_meter(sim, merge_gaps=False)
    assert [(b.start, b.count) for b in meter.plan] == [
        (0, 2),
        (6, 2),
        (12, 2),
        (18, 2),
        (24, 2),
        (30, 2),
        (36, 2),
        (70, 10),
    ]
    await meter.open()
    try:
        assert (await meter.poll())["energy_export_kwh"] == 0.0
    finally:
        await meter.close()


async def test_live_values_negative_and_nan(sim: SDM120Simulator, meter: SDM120) -> None:
    sim.values["sdm120"].update(
        {"Line to neutral voltage": 228.25, "Active power": -350.5, "Reactive power": -12.0, "Frequency": None}
    )
    values = await meter.poll()
    assert values["voltage_v"] == 228.25
    assert values["power_w"] == -350.5
    assert values["reactive_power_var"] == -12.0
    assert values["frequency_hz"] is None


async def test_exception_reply_names_meter_unit_and_registers(sim: SDM120Simulator, meter: SDM120) -> None:
    sim.fault = "exception"
    with pytest.raises(ModbusExceptionReply, match=r"shore_meter: unit 1, registers 0..79 \(Line to neutral voltage"):
        await meter.poll()


async def test_garbage_is_a_device_error(sim: SDM120Simulator, meter: SDM120) -> None:
    sim.fault = "garbage"
    with pytest.raises(DeviceError, match="expected 80 registers, got 79"):
        await meter.poll()


async def test_silent_meter_and_absent_unit_time_out(sim: SDM120Simulator, meter: SDM120) -> None:
    sim.fault = "silent"
    started = time.monotonic()
    with pytest.raises(DeviceTimeout, match=r"shore_meter: unit 1, .*no reply within 0\.3 s"):
        await meter.poll()
    assert time.monotonic() - started < TIMEOUT_S + 0.5
    sim.fault = None

    absent = make_meter(sim, unit=7)  # nobody on the RS-485 line answers unit 7
    await absent.open()
    try:
        with pytest.raises(DeviceTimeout, match="unit 7"):
            await absent.poll()
    finally:
        await absent.close()


async def test_stopped_gateway_is_device_gone_then_recovers(sim: SDM120Simulator, meter: SDM120) -> None:
    port = sim.port
    await sim.stop()
    with pytest.raises(DeviceGone):
        await meter.poll()
    await meter.close()
    assert await sim.start(port=port) == port
    await meter.open()
    assert (await meter.poll())["voltage_v"] == 231.4


def test_unit_must_be_a_valid_rs485_address() -> None:
    with pytest.raises(ValueError, match=r"shore_meter: unit must be 1\.\.247"):
        SDM120(ModbusTransport(host="127.0.0.1"), unit=0)


def test_the_simulator_serves_eastrons_map_not_our_table() -> None:
    published = published_map()
    assert [r.address for r in published.registers] == [0, 6, 12, 18, 24, 30, 36, 70, 72, 74, 76, 78, 342, 344]
    for register in SDM120_TABLE.registers:
        served = published.by_path(register.path)
        assert (served.address, served.type) == (register.address, register.type)


async def test_every_planned_read_is_accepted_by_the_published_meter(sim: SDM120Simulator, meter: SDM120) -> None:
    for block in meter.plan:
        assert set(range(block.start, block.end)) <= sim.maps[1].defined(), block.describe()
    past_the_map = RegisterTable(
        (
            Register(0, "v", "Line to neutral voltage", "float32", kind="input"),
            Register(80, "x", "past the first block", "float32", kind="input"),
        ),
        readable=(range(0, 82),),
    )
    meter.plan = plan_reads(past_the_map, 1, max_gap=SDM120_MAX_GAP)
    with pytest.raises(ModbusExceptionReply, match="exception 2"):
        await meter.poll()
