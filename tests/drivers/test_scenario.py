"""The scenario's `sim.set`: holding and releasing served values, and its errors as the API client sees them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from drivers import registry
from drivers.scenario import Simulation
from drivers.victron_gx import GXSimulator
from firmware_host.api import ClientError, call_once

from ..conftest import make_config, sim_sections


def gx_only() -> Simulation:
    profile = registry.get("inverter", "victron-gx")
    simulator = GXSimulator(unit=227, system_unit=100)
    return Simulation(gx=("127.0.0.1", 0, profile, simulator), meter=None, modem=None, seed=1)


def test_releasing_a_held_value_brings_back_the_one_from_before() -> None:
    sim = gx_only()
    sim.step(1.0)

    def served(name: str) -> object:
        return sim.get_all()[f"inverter.{name}"]

    assert served("alarms.overload") == "ok" and served("mode") == "on"
    sim.set_many({"inverter.alarms.overload": "alarm", "inverter.mode": "charger_only"})
    sim.step(1.0)
    assert served("alarms.overload") == "alarm" and served("mode") == "charger_only"
    sim.set_many({"scenario.release": "inverter.alarms.overload"})
    assert served("alarms.overload") == "ok"  # at once, not only at the next tick
    assert served("mode") == "charger_only"  # still held
    sim.set_many({"scenario.release": "inverter.mode"})
    assert served("mode") == "on"
    sim.step(1.0)
    assert served("alarms.overload") == "ok" and served("mode") == "on" and sim.held == {}


def test_release_all_and_a_value_the_model_drives() -> None:
    sim = gx_only()
    sim.set_many({"inverter.ac_in_v": 0.0, "inverter.mode": "off"})
    sim.step(1.0)
    assert sim.get_all()["inverter.ac_in_v"] == 0.0
    sim.set_many({"scenario.release": "all"})
    values = sim.get_all()
    assert values["inverter.ac_in_v"] > 200 and values["inverter.mode"] == "on" and sim.held == {}


def test_release_refuses_what_is_not_a_held_key() -> None:
    sim = gx_only()
    for value in (True, "inverter.mode", 3):
        with pytest.raises(KeyError, match=r"^'scenario\.release: .* is not a held key"):
            sim.set_many({"scenario.release": value})


async def test_errors_name_the_command_once(tmp_path: Path, run_controller: Any) -> None:
    controller = await run_controller(make_config(tmp_path, **sim_sections(tmp_path)))
    await asyncio.wait_for(controller.ready.wait(), 10)
    path = controller.config.api.control_socket
    for args in ({"scenario.release": True}, {"gpio.warp": True}, {}):
        with pytest.raises(ClientError) as err:
            await call_once(path, "sim.set", args)
        assert str(err.value).startswith("sim.set: ") and "sim.set: sim.set" not in str(err.value), err.value
