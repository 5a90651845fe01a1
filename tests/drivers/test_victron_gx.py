"""The victron-gx profile against its simulator over real loopback Modbus-TCP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import DeviceError, DeviceGone, DeviceTimeout, PolledDevice, WriteNotAllowed
from drivers.modbus import ModbusExceptionReply, ModbusTransport, ReadBlock, Register, RegisterTable, plan_reads
from drivers.victron_gx import (
    ALARM_NAMES,
    GX_MAX_GAP,
    SYSTEM_TABLE,
    VEBUS_TABLE,
    GXSimulator,
    VictronGX,
    published_map,
)
from firmware_host.state import component_fields

TIMEOUT_S = 0.3
REQUIRED_KEYS = set(component_fields("power"))
ALARM_KEYS = {
    "high_temperature",
    "low_battery",
    "overload",
    "temperature_sensor",
    "voltage_sensor",
    "ripple",
    "phase_rotation",
}


@pytest.fixture
async def sim() -> AsyncIterator[GXSimulator]:
    simulator = GXSimulator()
    await simulator.start()
    yield simulator
    await simulator.stop()


def make_inverter(sim: GXSimulator, **kwargs: object) -> VictronGX:
    assert sim.port is not None
    return VictronGX(ModbusTransport(host="127.0.0.1", port=sim.port, timeout_s=TIMEOUT_S), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def inverter(sim: GXSimulator) -> AsyncIterator[VictronGX]:
    device = make_inverter(sim)
    await device.open()
    yield device
    await device.close()


async def test_poll_returns_the_power_component(sim: GXSimulator, inverter: VictronGX) -> None:
    assert isinstance(inverter, PolledDevice)
    assert inverter.name == "inverter"
    power = await inverter.poll()
    assert power.keys() == REQUIRED_KEYS
    assert set(power["alarms"]) == ALARM_KEYS
    assert power["ac_in_v"] == 230.1
    assert power["ac_in_hz"] == 50.01
    assert power["ac_in_w"] == 960.0
    assert power["ac_in_current_limit"] == 16.0
    assert power["state"] == "absorption"
    assert power["mode"] == "on"
    assert power["active_input"] == "ac1"
    assert power["vebus_error"] == 0
    assert power["battery_temp_c"] == 21.5
    # The battery from the GX's battery monitor (system service), not the VE.Bus estimate (26.62 V, 78.5 %).
    assert power["battery_source"] == "battery_monitor"
    assert (power["battery_v"], power["battery_a"], power["soc"]) == (26.6, 9.4, 78)
    assert power["battery_w"] == 250
    assert power["battery_state"] == "charging"
    assert inverter.failing == {}


async def test_values_are_served_live_with_signs_enums_and_invalid(sim: GXSimulator, inverter: VictronGX) -> None:
    sim.values["vebus"].update(
        {
            "/Dc/0/Temperature": -8.5,
            "/Ac/Out/L1/P": -120,
            "/State": 9,
            "/Mode": 2,
            "/Ac/ActiveIn/ActiveInput": 240,
            "/VebusError": 3,
            "/Ac/ActiveIn/L1/V": None,
            "/Alarms/LowBattery": 2,
            "/Alarms/Overload": 1,
        }
    )
    sim.values["system"].update(
        {"/Dc/Battery/Current": -42.7, "/Dc/Battery/Power": -1130, "/Dc/Battery/Soc": 55, "/Dc/Battery/State": 2}
    )
    power = await inverter.poll()
    assert power["battery_a"] == -42.7
    assert power["battery_temp_c"] == -8.5
    assert power["ac_out_w"] == -120.0
    assert power["battery_w"] == -1130
    assert power["soc"] == 55
    assert power["state"] == "inverting"
    assert power["mode"] == "inverter_only"
    assert power["active_input"] == "disconnected"
    assert power["vebus_error"] == 3
    assert power["ac_in_v"] is None
    assert power["battery_state"] == "discharging"
    assert power["alarms"]["low_battery"] == "alarm"
    assert power["alarms"]["overload"] == "warning"
    assert power["alarms"]["ripple"] == "ok"


async def test_unknown_enum_values_are_readable_strings(sim: GXSimulator, inverter: VictronGX) -> None:
    sim.values["vebus"].update({"/State": 17, "/Mode": 0, "/Alarms/PhaseRotation": 2})
    power = await inverter.poll()
    assert power["state"] == "unknown_17"
    assert power["mode"] == "unknown_0"
    assert power["alarms"]["phase_rotation"] == "unknown_2"


async def test_full_poll_takes_two_requests_instead_of_one_per_register(sim: GXSimulator, inverter: VictronGX) -> None:
    assert [(b.unit, b.start, b.count) for b in inverter.plan] == [(227, 3, 61), (100, 840, 5)]
    before = sim.requests
    merged = await inverter.poll()
    assert inverter.requests_last_poll == 2 <= 3
    assert sim.requests - before == 2

    naive = make_inverter(sim)
    naive.plan = [ReadBlock(227, r.kind, r.address, r.size, (r,), "vebus") for r in VEBUS_TABLE.registers] + [
        ReadBlock(100, r.kind, r.address, r.size, (r,), "battery_monitor") for r in SYSTEM_TABLE.registers
    ]
    await naive.open()
    try:
        before = sim.requests
        assert await naive.poll() == merged
        assert naive.requests_last_poll == len(VEBUS_TABLE.registers) + len(SYSTEM_TABLE.registers) == 29
        assert sim.requests - before == 29
    finally:
        await naive.close()
    await inverter.poll()
    assert inverter.requests_total == 4


def test_the_simulator_serves_victrons_list_not_our_table() -> None:
    vebus, system = published_map("vebus"), published_map("system")
    assert vebus.defined() == set(range(1, 64))
    # The published list: 800..826, 840..846, 850..851, 855, 860, 865..866, and nothing in 827..839.
    expected = {*range(800, 827), *range(840, 847), 850, 851, 855, 860, 865, 866}
    assert system.defined() == expected
    for table, published in ((VEBUS_TABLE, vebus), (SYSTEM_TABLE, system)):
        for register in table.registers:
            served = published.by_path(register.path)
            assert (served.address, served.type, served.scale) == (register.address, register.type, register.scale)
            assert served.writable or not register.writable, register.path  # we only write what the GX lets us


async def test_every_planned_read_is_accepted_by_the_published_gx(sim: GXSimulator, inverter: VictronGX) -> None:
    for block in inverter.plan:
        published = sim.maps[block.unit]
        assert set(range(block.start, block.end)) <= published.defined(), block.describe()
    await inverter.poll()
    assert inverter.failing == {}


async def test_a_read_spanning_an_undefined_address_is_rejected_whole(sim: GXSimulator) -> None:
    # The block the issue found in the field: 826..844 crosses 827..839, which Victron's list does not define.
    source = Register(826, "source", "/Ac/ActiveIn/Source", "int16")
    old = RegisterTable((source, *SYSTEM_TABLE.registers), readable=(range(826, 845),))
    device = make_inverter(sim)
    device.plan = plan_reads(old, 100, max_gap=GX_MAX_GAP)
    await device.open()
    try:
        with pytest.raises(
            ModbusExceptionReply, match=r"unit 100, registers 826..844 .*exception 2 \(illegal data address\)"
        ):
            await device.poll()
    finally:
        await device.close()


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_planner_never_reads_an_address_the_gx_does_not_define(data: st.DataObject) -> None:
    for table, service in ((VEBUS_TABLE, "vebus"), (SYSTEM_TABLE, "system")):
        subset = data.draw(st.lists(st.sampled_from(table.registers), min_size=1, unique_by=lambda r: r.name))
        max_gap = data.draw(st.integers(0, 125))
        blocks = plan_reads(RegisterTable(tuple(subset), table.readable), 1, max_gap=max_gap)
        defined = published_map(service).defined()
        for block in blocks:
            assert set(range(block.start, block.end)) <= defined, (service, block.describe())


async def test_writes_are_blocked_without_allow_writes(sim: GXSimulator, inverter: VictronGX) -> None:
    with pytest.raises(WriteNotAllowed, match=r"inverter: unit 227, register 33 \(/Mode\): writes are off"):
        await inverter.set_mode("off")
    with pytest.raises(WriteNotAllowed, match="/Ac/ActiveIn/CurrentLimit"):
        await inverter.set_input_current_limit(10)
    assert sim.values["vebus"]["/Mode"] == 3
    assert sim.values["vebus"]["/Ac/ActiveIn/CurrentLimit"] == 16.0
    assert sim.requests == 0


async def test_writes_change_the_inverter_when_allowed(sim: GXSimulator) -> None:
    inverter = make_inverter(sim, allow_writes=True)
    await inverter.open()
    try:
        await inverter.set_mode("charger_only")
        await inverter.set_input_current_limit(12.5)
        assert sim.values["vebus"]["/Mode"] == 1
        assert sim.values["vebus"]["/Ac/ActiveIn/CurrentLimit"] == 12.5
        power = await inverter.poll()
        assert power["mode"] == "charger_only"
        assert power["ac_in_current_limit"] == 12.5
        with pytest.raises(ValueError, match="inverter: mode 'sleep' is not one of charger_only"):
            await inverter.set_mode("sleep")
        for bad in (-1, 160, float("nan")):
            with pytest.raises(ValueError, match="inverter: input current limit"):
                await inverter.set_input_current_limit(bad)
        assert sim.values["vebus"]["/Ac/ActiveIn/CurrentLimit"] == 12.5
    finally:
        await inverter.close()


async def test_exception_reply_names_device_unit_registers_and_code(sim: GXSimulator, inverter: VictronGX) -> None:
    sim.fault = "exception"
    with pytest.raises(ModbusExceptionReply) as caught:
        await inverter.poll()
    message = str(caught.value)
    assert message.startswith("inverter: unit 227, registers 3..63 (/Ac/ActiveIn/L1/V .. /Alarms/PhaseRotation)")
    assert "exception 4 (server device failure)" in message
    assert caught.value.code == 4 and caught.value.unit == 227
    sim.fault = None
    assert (await inverter.poll())["soc"] == 78


async def test_unit_without_a_device_answers_gateway_path_unavailable(sim: GXSimulator) -> None:
    ccgx = make_inverter(sim, unit=246)  # a CCGX's VE.Bus unit asked of a Cerbo: only the system unit answers
    await ccgx.open()
    try:
        power = await ccgx.poll()
        assert "unit 246, registers 3..63" in ccgx.failing["vebus"]
        assert "exception 10 (gateway path unavailable)" in ccgx.failing["vebus"]
        assert power["state"] is None and power["soc"] == 78
        sim.set_unit_fault(100, "exception")  # and nothing answers at all: the poll fails, naming the first read
        with pytest.raises(DeviceError, match=r"unit 246, .*exception 10 \(gateway path unavailable\)"):
            await ccgx.poll()
    finally:
        await ccgx.close()


async def test_garbage_reply_is_a_device_error(sim: GXSimulator, inverter: VictronGX) -> None:
    sim.fault = "garbage"
    with pytest.raises(DeviceError, match="expected 61 registers, got 60"):
        await inverter.poll()


async def test_silent_device_times_out_within_one_timeout_per_read_group(sim: GXSimulator, inverter: VictronGX) -> None:
    sim.fault = "silent"
    started = time.monotonic()
    with pytest.raises(DeviceTimeout, match=r"inverter: unit 227, registers 3..63 .*no reply within 0.3 s"):
        await inverter.poll()
    # Each group gets its own chance (a silent system unit must not hide the VE.Bus): two timeouts, no more.
    assert time.monotonic() - started < 2 * TIMEOUT_S + 0.5


async def test_stopped_server_is_device_gone_and_reopen_works_after_restart(
    sim: GXSimulator, inverter: VictronGX
) -> None:
    port = sim.port
    await sim.stop()
    with pytest.raises(DeviceGone):
        await inverter.poll()
    await inverter.close()
    with pytest.raises(DeviceGone, match="cannot connect"):
        await inverter.open()
    assert await sim.start(port=port) == port
    await inverter.open()
    assert (await inverter.poll())["soc"] == 78


def test_unit_and_system_unit_must_differ() -> None:
    with pytest.raises(ValueError, match="unit and system_unit are both 100"):
        VictronGX(ModbusTransport(host="127.0.0.1"), unit=100)


def test_alarm_names_come_from_the_table() -> None:
    assert set(ALARM_NAMES) == ALARM_KEYS


@pytest.mark.parametrize("fault", ["exception", "silent", "garbage"])
async def test_a_gx_without_its_system_service_still_gives_every_vebus_value(
    sim: GXSimulator, inverter: VictronGX, fault: str
) -> None:
    sim.set_unit_fault(100, fault)
    power = await inverter.poll()
    assert set(inverter.failing) == {"battery_monitor"}
    assert "unit 100, registers 840..844" in inverter.failing["battery_monitor"]
    # The battery falls back to the VE.Bus's own values; only what the monitor alone knows is unknown.
    assert power["battery_source"] == "vebus"
    assert (power["battery_v"], power["battery_a"], power["soc"]) == (26.62, 9.5, 78.5)
    assert power["battery_w"] is None and power["battery_state"] is None
    assert power["ac_in_v"] == 230.1 and power["state"] == "absorption"
    sim.values["vebus"]["/Soc"] = 64.5
    assert (await inverter.poll())["soc"] == 64.5
    sim.set_unit_fault(100, None)
    power = await inverter.poll()
    assert inverter.failing == {} and power["battery_source"] == "battery_monitor"


async def test_a_failing_vebus_unit_keeps_the_battery_monitor(sim: GXSimulator, inverter: VictronGX) -> None:
    sim.set_unit_fault(227, "exception")
    power = await inverter.poll()
    assert set(inverter.failing) == {"vebus"}
    assert power["ac_in_v"] is None and power["state"] is None
    assert (power["battery_v"], power["soc"], power["battery_source"]) == (26.6, 78, "battery_monitor")
