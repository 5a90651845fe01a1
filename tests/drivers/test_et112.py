"""The et112 profile against a simulator written from Carlo Gavazzi's published map, alone and in the controller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient

from drivers import registry
from drivers.base import DeviceError, DeviceTimeout, PolledDevice
from drivers.et112 import ET112, ET112_TABLE, MAX_WORDS, ET112Simulator, published_map
from drivers.modbus import ModbusTransport
from firmware_host.api import call_once
from firmware_host.config import ConfigError
from firmware_host.doctor import _device_fix

from ..conftest import make_config, sim_sections, wait_until

TIMEOUT_S = 0.3


@pytest.fixture
async def sim() -> AsyncIterator[ET112Simulator]:
    simulator = ET112Simulator()
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def meter(sim: ET112Simulator) -> AsyncIterator[ET112]:
    assert sim.port is not None
    device = ET112(ModbusTransport(kind="rtu-over-tcp", host="127.0.0.1", port=sim.port, timeout_s=TIMEOUT_S))
    await device.open()
    yield device
    await device.close()


@pytest.fixture
async def raw(sim: ET112Simulator) -> AsyncIterator[AsyncModbusTcpClient]:
    """A plain pymodbus client, to see the meter's words as they are on the wire."""
    client = AsyncModbusTcpClient("127.0.0.1", port=sim.port, framer=FramerType.RTU, timeout=TIMEOUT_S, retries=0)
    await client.connect()
    yield client
    client.close()


async def test_poll_gives_the_shore_values_in_one_request(sim: ET112Simulator, meter: ET112) -> None:
    assert isinstance(meter, PolledDevice)
    values = await meter.poll()
    assert values == {
        "voltage_v": 230.6,
        "current_a": 4.87,
        "power_w": 1098.2,
        "frequency_hz": 50.0,
        "energy_import_kwh": 812.4,
        "energy_export_kwh": 0.0,
    }
    assert meter.requests_last_poll == 1 and sim.requests == 1
    assert [(b.kind, b.start, b.count) for b in meter.plan] == [("input", 0, 0x22)]


async def test_values_follow_the_meter_including_large_and_negative_ones(sim: ET112Simulator, meter: ET112) -> None:
    # Past 65535 raw (6553.5 kWh) the high word matters: a word-order mistake shows here, not on small values.
    sim.values["et112"].update({"kWh (+) TOT": 123456.7, "W": -350.4, "V L-N": 0.0})
    values = await meter.poll()
    assert values["energy_import_kwh"] == 123456.7
    assert values["power_w"] == -350.4  # exporting (a generator behind the socket)
    assert values["voltage_v"] == 0.0


async def test_32_bit_values_are_low_word_first_on_the_wire(sim: ET112Simulator, raw: AsyncModbusTcpClient) -> None:
    sim.values["et112"]["kWh (+) TOT"] = 123456.7  # 1234567 = 0x0012D687
    reply = await raw.read_input_registers(0x0010, count=2, device_id=1)
    assert reply.registers == [0xD687, 0x0012]


async def test_planned_reads_are_accepted_and_the_map_limits_are_enforced(
    sim: ET112Simulator, raw: AsyncModbusTcpClient, meter: ET112
) -> None:
    for block in meter.plan:
        reply = await raw.read_input_registers(block.start, count=block.count, device_id=1)
        assert not reply.isError(), block.describe()
        reply = await raw.read_holding_registers(block.start, count=block.count, device_id=1)
        assert not reply.isError(), "functions 03h and 04h read the same map"
    too_long = await raw.read_input_registers(0, count=MAX_WORDS + 1, device_id=1)
    assert too_long.isError() and too_long.exception_code == 3
    past_end = await raw.read_input_registers(0x0030, count=6, device_id=1)
    assert past_end.isError() and past_end.exception_code == 2


async def test_000b_alone_is_the_identification_code(sim: ET112Simulator, raw: AsyncModbusTcpClient) -> None:
    sim.values["et112"]["W dmd"] = 8.6
    pair = await raw.read_input_registers(0x000A, count=2, device_id=1)
    alone = await raw.read_input_registers(0x000B, count=1, device_id=1)
    assert pair.registers == [86, 0]  # W dmd, LSW first
    assert alone.registers != [0] and alone.registers[0] > 100


def test_simulator_map_is_the_published_one_not_the_driver_table() -> None:
    published = {r.path: r for r in published_map().registers}
    # Every register the driver reads is in the published list, at the same address, with the same weight ...
    for register in ET112_TABLE.registers:
        maker = published[register.path]
        assert (maker.address, maker.scale, maker.size) == (register.address, register.scale, register.size)
    # ... and the simulator serves far more than the driver reads.
    assert len(published) > 2 * len(ET112_TABLE.registers)


async def test_silent_meter_times_out_and_exception_names_the_read(sim: ET112Simulator, meter: ET112) -> None:
    sim.fault = "silent"
    with pytest.raises(DeviceTimeout):
        await meter.poll()
    sim.fault = "exception"
    await meter.close()
    await meter.open()
    with pytest.raises(DeviceError, match=r"shore_meter: unit 1, .*exception 4"):
        await meter.poll()


def test_registry_and_config_offer_the_profile(tmp_path: Path) -> None:
    assert "et112" in registry.profiles("meter")
    meter = {"profile": "et112", "transport": "rtu", "serial_port": "/dev/ttyUSB0"}
    cfg = make_config(tmp_path, shore_power={"meter": meter})
    assert cfg.shore_power.meter.profile == "et112"
    with pytest.raises(ConfigError, match=r"^test\.toml: shore_power\.meter\.profile: must be one of .*'et112'"):
        make_config(tmp_path, shore_power={"meter": {**meter, "profile": "et113"}})
    # A brand's own key (the GX's system_unit) belongs to its profile's section only.
    assert "system_unit" in registry.get("inverter", "victron-gx").config_keys
    assert make_config(tmp_path, inverter={"host": "gx", "system_unit": 90}).inverter.system_unit == 90
    with pytest.raises(ConfigError, match=r"^test\.toml: shore_power\.meter\.system_unit: unknown key"):
        make_config(tmp_path, shore_power={"meter": {**meter, "system_unit": 100}})
    # allervers doctor's advice for a silent meter is the configured brand's.
    assert "ET112" in _device_fix(cfg, "shore")
    sdm120 = make_config(tmp_path, shore_power={"meter": {**meter, "profile": "sdm120"}})
    assert "SDM120" in _device_fix(sdm120, "shore")


async def test_controller_on_the_et112_simulator_gives_right_shore_values(tmp_path: Path, run_controller: Any) -> None:
    sections = sim_sections(tmp_path, shore_power={"presence_pin": 5, "debounce_s": 0.05})
    sections["shore_power"]["meter"] = {
        "profile": "et112",
        "transport": "rtu-over-tcp",
        "host": "127.0.0.1",
        "port": sim_sections(tmp_path)["shore_power"]["meter"]["port"],
        "poll_s": 0.5,
        "timeout_s": 0.3,
    }
    bus = await run_controller(make_config(tmp_path, **sections))
    assert isinstance(bus.devices["shore_meter"], ET112)
    assert isinstance(bus.simulation.meter, ET112Simulator)
    socket = bus.config.api.control_socket
    await call_once(socket, "sim.set", {"scenario.paused": True})
    await call_once(socket, "sim.set", {"meter.voltage_v": 229.4, "meter.power_w": 2310.5, "meter.current_a": 10.07})
    await wait_until(lambda: bus.state.value("shore", "power_w") == 2310.5, message="meter power in shore")
    shore = bus.state.get("shore")
    assert shore["voltage_v"] == 229.4 and shore["current_a"] == 10.07
    assert shore["sources"]["meter"] is True and shore["connected"] is True
    await call_once(socket, "sim.set", {"shore.connected": False, "scenario.release": "all"})
    await wait_until(lambda: bus.state.value("shore", "sources")["meter"] is False, message="meter sees no voltage")
    assert bus.state.value("shore", "voltage_v") == 0.0
