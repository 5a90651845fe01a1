"""The victron-gx profile against its simulator over real loopback Modbus-TCP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from drivers.base import DeviceError, DeviceGone, DeviceTimeout, PolledDevice, WriteNotAllowed
from drivers.modbus import ModbusExceptionReply, ModbusTransport, ReadBlock
from drivers.victron_gx import ALARM_NAMES, SYSTEM_TABLE, VEBUS_TABLE, GXSimulator, VictronGX
from firmware_host.state import COMPONENT_FIELDS

TIMEOUT_S = 0.3
REQUIRED_KEYS = set(COMPONENT_FIELDS["power"])
EXTRA_KEYS = {
    "ac_in_current_limit",
    "phases",
    "ac_in_source",
    "system_battery_v",
    "system_battery_a",
    "battery_power_w",
    "system_soc",
    "battery_state",
}
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
    assert power.keys() == REQUIRED_KEYS | EXTRA_KEYS
    assert set(power["alarms"]) == ALARM_KEYS
    assert power["ac_in_v"] == 230.1
    assert power["ac_in_hz"] == 50.01
    assert power["ac_in_w"] == 960.0
    assert power["battery_v"] == 26.62
    assert power["soc"] == 78.5
    assert power["state"] == "absorption"
    assert power["mode"] == "on"
    assert power["active_input"] == "ac1"
    assert power["vebus_error"] == 0
    assert power["ac_in_source"] == "shore"
    assert power["battery_state"] == "charging"


async def test_values_are_served_live_with_signs_enums_and_invalid(sim: GXSimulator, inverter: VictronGX) -> None:
    sim.values.update(
        battery_a=-42.7,
        battery_temp_c=-8.5,
        ac_out_w=-120.0,
        battery_power_w=-1130,
        soc=55.0,
        state="inverting",
        mode="inverter_only",
        active_input="disconnected",
        vebus_error=3,
        ac_in_v=None,
        battery_state="discharging",
    )
    sim.values["alarms"]["low_battery"] = "alarm"
    sim.values["alarms"]["overload"] = "warning"
    power = await inverter.poll()
    assert power["battery_a"] == -42.7
    assert power["battery_temp_c"] == -8.5
    assert power["ac_out_w"] == -120.0
    assert power["battery_power_w"] == -1130
    assert power["soc"] == 55.0
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
    sim.values["state"] = "unknown_17"
    sim.values["mode"] = "unknown_0"
    sim.values["alarms"]["phase_rotation"] = "unknown_2"
    power = await inverter.poll()
    assert power["state"] == "unknown_17"
    assert power["mode"] == "unknown_0"
    assert power["alarms"]["phase_rotation"] == "unknown_2"


async def test_full_poll_takes_two_requests_instead_of_one_per_register(sim: GXSimulator, inverter: VictronGX) -> None:
    assert [(b.unit, b.start, b.count) for b in inverter.plan] == [(227, 3, 61), (100, 826, 19)]
    before = sim.requests
    merged = await inverter.poll()
    assert inverter.requests_last_poll == 2 <= 3
    assert sim.requests - before == 2

    naive = make_inverter(sim)
    naive.plan = [ReadBlock(227, r.kind, r.address, r.size, (r,)) for r in VEBUS_TABLE.registers] + [
        ReadBlock(100, r.kind, r.address, r.size, (r,)) for r in SYSTEM_TABLE.registers
    ]
    await naive.open()
    try:
        before = sim.requests
        assert await naive.poll() == merged
        assert naive.requests_last_poll == len(VEBUS_TABLE.registers) + len(SYSTEM_TABLE.registers) == 31
        assert sim.requests - before == 31
    finally:
        await naive.close()
    await inverter.poll()
    assert inverter.requests_total == 4


async def test_writes_are_blocked_without_allow_writes(sim: GXSimulator, inverter: VictronGX) -> None:
    with pytest.raises(WriteNotAllowed, match=r"inverter: unit 227, register 33 \(/Mode\): writes are off"):
        await inverter.set_mode("off")
    with pytest.raises(WriteNotAllowed, match="/Ac/ActiveIn/CurrentLimit"):
        await inverter.set_input_current_limit(10)
    assert sim.values["mode"] == "on"
    assert sim.values["ac_in_current_limit"] == 16.0
    assert sim.requests == 0


async def test_writes_change_the_inverter_when_allowed(sim: GXSimulator) -> None:
    inverter = make_inverter(sim, allow_writes=True)
    await inverter.open()
    try:
        await inverter.set_mode("charger_only")
        await inverter.set_input_current_limit(12.5)
        assert sim.values["mode"] == "charger_only"
        assert sim.values["ac_in_current_limit"] == 12.5
        power = await inverter.poll()
        assert power["mode"] == "charger_only"
        assert power["ac_in_current_limit"] == 12.5
        with pytest.raises(ValueError, match="inverter: mode 'sleep' is not one of charger_only"):
            await inverter.set_mode("sleep")
        for bad in (-1, 160, float("nan")):
            with pytest.raises(ValueError, match="inverter: input current limit"):
                await inverter.set_input_current_limit(bad)
        assert sim.values["ac_in_current_limit"] == 12.5
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
    assert (await inverter.poll())["soc"] == 78.5


async def test_unit_without_a_device_answers_gateway_path_unavailable(sim: GXSimulator) -> None:
    ccgx = make_inverter(sim, unit=246)
    await ccgx.open()
    try:
        with pytest.raises(DeviceError, match=r"unit 246, .*exception 10 \(gateway path unavailable\)"):
            await ccgx.poll()
    finally:
        await ccgx.close()


async def test_garbage_reply_is_a_device_error(sim: GXSimulator, inverter: VictronGX) -> None:
    sim.fault = "garbage"
    with pytest.raises(DeviceError, match="expected 61 registers, got 60"):
        await inverter.poll()


async def test_silent_device_times_out_within_one_timeout(sim: GXSimulator, inverter: VictronGX) -> None:
    sim.fault = "silent"
    started = time.monotonic()
    with pytest.raises(DeviceTimeout, match=r"inverter: unit 227, registers 3..63 .*no reply within 0.3 s"):
        await inverter.poll()
    assert time.monotonic() - started < TIMEOUT_S + 0.5


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
    assert (await inverter.poll())["soc"] == 78.5


def test_unit_and_system_unit_must_differ() -> None:
    with pytest.raises(ValueError, match="unit and system_unit are both 100"):
        VictronGX(ModbusTransport(host="127.0.0.1"), unit=100)


def test_alarm_names_come_from_the_table() -> None:
    assert set(ALARM_NAMES) == ALARM_KEYS
