"""Iridium readings reach the state and the alarms: antenna fault and network service, from the simulator."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from drivers.modem import PROFILES, ModemStatus
from firmware_host.api import call_once
from firmware_host.state import component_fields

from ..conftest import make_config, sim_sections, wait_until


def test_every_value_a_modem_profile_reports_is_a_state_field() -> None:
    for name, profile in PROFILES.items():
        extra = set(profile().component(ModemStatus())) - set(component_fields("modem"))
        assert not extra, f"profile {name} reports values the state model would drop: {extra}"


async def test_antenna_fault_is_state_and_alarm_and_service_is_state(tmp_path: Path, run_controller: Any) -> None:
    bus = await run_controller(make_config(tmp_path, **sim_sections(tmp_path, modem_profile="iridium")))
    await asyncio.wait_for(bus.ready.wait(), 10)
    socket = bus.config.api.control_socket
    await wait_until(lambda: bus.state.value("modem", "antenna_fault") is False, message="antenna ok")
    assert bus.state.value("modem", "iridium_service") is True
    assert "modem.antenna_fault" not in bus.alarms.active

    await call_once(socket, "sim.set", {"modem.antenna_fault": True})
    await wait_until(lambda: "modem.antenna_fault" in bus.alarms.active, message="antenna alarm")
    assert bus.state.value("modem", "antenna_fault") is True
    assert "antenna" in bus.alarms.active["modem.antenna_fault"].message

    await call_once(socket, "sim.set", {"modem.service": False})
    await wait_until(lambda: bus.state.value("modem", "iridium_service") is False, message="service lost")

    await call_once(socket, "sim.set", {"modem.antenna_fault": False, "modem.service": True})
    await wait_until(lambda: "modem.antenna_fault" not in bus.alarms.active, message="antenna alarm cleared")
    events = [e["type"] for e in await bus.store.events_after(0, 1000)]
    assert "alarm.raised" in events and "alarm.cleared" in events


async def test_3gpp_bus_has_no_antenna_rule(tmp_path: Path, run_controller: Any) -> None:
    bus = await run_controller(make_config(tmp_path, **sim_sections(tmp_path)))
    assert "modem.antenna_fault" not in {rule.id for rule in bus.alarms.rules}
    assert "inverter.vebus_error" in {rule.id for rule in bus.alarms.rules}  # the GX profile's own rules
