"""The controller against every simulator on real transports: complete state, staleness and recovery, alarms."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from firmware_host.api import ClientError, call_once
from firmware_host.state import CORE_COMPONENTS, component_fields

from ..conftest import make_config, sim_sections, wait_until, write_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def bus(tmp_path: Path, run_controller: Any) -> Any:
    controller = await run_controller(make_config(tmp_path, **sim_sections(tmp_path)))
    await asyncio.wait_for(controller.ready.wait(), 10)
    return controller


async def sim_set(controller: Any, **values: Any) -> Any:
    return await call_once(controller.config.api.control_socket, "sim.set", values)


def stale(controller: Any, component: str) -> bool:
    return controller.state.components[component].stale


async def test_first_complete_state_has_every_contract_field(bus: Any) -> None:
    snap = await call_once(bus.config.api.control_socket, "status")
    for component in CORE_COMPONENTS:
        assert set(component_fields(component)) | {"ts", "stale"} <= set(snap[component]), component
        assert snap[component]["stale"] is False, (component, snap[component].get("stale_reason"))
    assert snap["power"]["state"] in ("bulk", "absorption", "float")
    assert snap["power"]["mode"] == "on"
    assert snap["shore"]["connected"] is True
    assert snap["shore"]["sources"] == {"pin": True, "meter": True, "inverter": True}
    assert snap["modem"]["link"] == "up" and 0 <= snap["modem"]["signal_bars"] <= 5
    assert snap["vehicle"] == {**snap["vehicle"], "ignition": False, "antenna_stowed": False, "door_open": False}
    assert bus.first_complete_s is not None and bus.first_complete_s < 10


async def test_every_power_value_is_what_the_published_gx_serves(bus: Any) -> None:
    bus.simulation.paused = True
    gx = bus.simulation.gx
    vebus, system = gx.values["vebus"], gx.values["system"]
    await sim_set(bus, **{"inverter.ac_out_w": 1230})  # a fresh value proves a reading after the pause (10 W steps)
    await wait_until(lambda: bus.state.value("power", "ac_out_w") == 1230, message="held value read")
    power = bus.state.get("power")
    assert "stale_groups" not in power and power["battery_source"] == "battery_monitor"
    expected = {
        "ac_in_v": vebus["/Ac/ActiveIn/L1/V"],
        "ac_in_a": vebus["/Ac/ActiveIn/L1/I"],
        "ac_in_hz": vebus["/Ac/ActiveIn/L1/F"],
        "ac_in_w": vebus["/Ac/ActiveIn/L1/P"],
        "ac_in_current_limit": vebus["/Ac/ActiveIn/CurrentLimit"],
        "ac_out_v": vebus["/Ac/Out/L1/V"],
        "ac_out_a": vebus["/Ac/Out/L1/I"],
        "ac_out_hz": vebus["/Ac/Out/L1/F"],
        "battery_temp_c": vebus["/Dc/0/Temperature"],
        "battery_v": system["/Dc/Battery/Voltage"],
        "battery_a": system["/Dc/Battery/Current"],
        "battery_w": system["/Dc/Battery/Power"],
        "soc": system["/Dc/Battery/Soc"],
        "battery_state": {0: "idle", 1: "charging", 2: "discharging"}[system["/Dc/Battery/State"]],
        "active_input": {0: "ac1", 1: "ac2", 240: "disconnected"}[vebus["/Ac/ActiveIn/ActiveInput"]],
        "state": {3: "bulk", 4: "absorption", 5: "float"}[vebus["/State"]],
        "mode": "on",
        "vebus_error": 0,
    }
    assert {k: power[k] for k in expected} == expected
    assert power["alarms"]["overload"] == "ok"


@pytest.mark.parametrize(("fault", "detail"), [("exception", "exception 4"), ("silent", "no reply within")])
async def test_a_failing_system_unit_degrades_only_the_battery_monitor_values(
    bus: Any, fault: str, detail: str
) -> None:
    bus.simulation.paused = True
    await sim_set(bus, **{"inverter.system_fault": fault})
    await wait_until(lambda: "inverter.partial" in bus.alarms.active, message="partial alarm")
    power = bus.state.get("power")
    assert power["stale"] is False
    assert "unit 100, registers 840..844" in power["stale_groups"]["battery_monitor"]
    assert detail in power["stale_groups"]["battery_monitor"]
    assert power["battery_source"] == "vebus"
    assert power["battery_w"] is None and power["battery_state"] is None
    vebus = bus.simulation.gx.values["vebus"]
    assert (power["battery_v"], power["soc"]) == (vebus["/Dc/0/Voltage"], vebus["/Soc"])
    assert "battery_monitor" in bus.alarms.active["inverter.partial"].message
    assert "inverter.stale" not in bus.alarms.active
    # The VE.Bus values stay fresh and follow changes.
    await sim_set(bus, **{"inverter.ac_out_w": 1500, "inverter.soc": 42.5})
    await wait_until(lambda: bus.state.value("power", "ac_out_w") == 1500, message="VE.Bus value follows")
    await wait_until(lambda: bus.state.value("power", "soc") == 42.5, message="VE.Bus SoC follows")
    health = bus.state.value("devices", "inverter")
    assert health["answering"] is True and set(health["failing"]) == {"battery_monitor"}
    await sim_set(bus, **{"inverter.system_fault": None})
    await wait_until(lambda: "inverter.partial" not in bus.alarms.active, message="partial alarm cleared")
    power = bus.state.get("power")
    assert "stale_groups" not in power and power["battery_source"] == "battery_monitor"


async def test_inverter_goes_stale_within_two_polls_and_recovers(bus: Any) -> None:
    poll_s = bus.config.inverter.poll_s
    await sim_set(bus, **{"inverter.fault": "silent"})
    loop = asyncio.get_running_loop()
    start = loop.time()
    await wait_until(lambda: stale(bus, "power"), timeout=2 * poll_s + 2, message="power stale")
    # The last good reading was at most one poll before the fault: stale within two poll periods of it.
    assert loop.time() - start <= 2 * poll_s + 0.5
    reason = bus.state.components["power"].stale_reason
    assert "inverter" in reason
    await wait_until(lambda: "inverter.stale" in bus.alarms.active, message="stale alarm")
    await sim_set(bus, **{"inverter.fault": None})
    await wait_until(lambda: not stale(bus, "power"), timeout=10, message="power fresh again")
    await wait_until(lambda: "inverter.stale" not in bus.alarms.active, message="stale alarm cleared")


async def test_exception_reply_names_device_and_register(bus: Any) -> None:
    await sim_set(bus, **{"meter.fault": "exception"})
    await wait_until(
        lambda: stale(bus, "shore") or bus.state.value("shore", "sources")["meter"] is None,
        timeout=5,
        message="meter reading dropped",
    )
    poller = bus.pollers["shore_meter"]
    await wait_until(lambda: poller.last_error and "exception 4" in poller.last_error, message="exception")
    assert "shore_meter" in poller.last_error and "unit 1" in poller.last_error
    # The shore component stays fresh on its pin and inverter, but the silent meter is still an alarm and an event.
    await wait_until(lambda: "shore_meter.stale" in bus.alarms.active, message="meter stale alarm")
    assert not stale(bus, "shore")
    events = await bus.store.events_after(0, 1000)
    assert any(e["type"] == "device.stale" and e["device"] == "shore_meter" for e in events)
    await sim_set(bus, **{"meter.fault": None})
    await wait_until(lambda: bus.state.value("shore", "sources")["meter"] is True, timeout=10, message="meter back")
    await wait_until(lambda: "shore_meter.stale" not in bus.alarms.active, message="meter alarm cleared")


async def test_modem_unplug_and_replug_recovers_within_15_s(bus: Any) -> None:
    await sim_set(bus, **{"modem.plugged": False})
    await wait_until(lambda: stale(bus, "modem"), timeout=10, message="modem stale")
    loop = asyncio.get_running_loop()
    await sim_set(bus, **{"modem.plugged": True})
    replugged = loop.time()
    await wait_until(lambda: not stale(bus, "modem"), timeout=15, message="modem back within 15 s")
    assert loop.time() - replugged < 15
    assert bus.state.value("modem", "link") == "up"


async def test_modem_signal_loss_brings_the_link_down(bus: Any) -> None:
    await sim_set(bus, **{"modem.rssi": 99})
    await wait_until(lambda: bus.state.value("modem", "link") == "down", timeout=10, message="link down")
    events = await bus.store.events_after(0, 1000)
    assert any(e["type"] == "modem.link" and e["value"] == "down" for e in events)


async def test_unplugging_shore_is_seen_by_every_source_and_logged(bus: Any) -> None:
    await sim_set(bus, **{"shore.connected": False})
    await wait_until(
        lambda: bus.state.value("shore", "sources") == {"pin": False, "meter": False, "inverter": False},
        timeout=10,
        message="all sources agree: unplugged",
    )
    assert bus.state.value("shore", "connected") is False
    await wait_until(lambda: "shore.lost" in bus.alarms.active, message="shore lost alarm while parked")
    events = await bus.store.events_after(0, 1000)
    assert any(e["type"] == "shore.connected" and e["value"] is False for e in events)


async def test_disagreeing_sources_raise_an_alarm_after_the_hold_time(bus: Any) -> None:
    await sim_set(bus, **{"gpio.shore_presence": False})  # the contact says unplugged, meter and inverter say live
    await wait_until(lambda: "shore.sources_disagree" in bus.alarms.active, timeout=10, message="disagree alarm")
    assert bus.state.value("shore", "connected") is True  # any live source counts: the interlock errs safe
    await sim_set(bus, **{"gpio.shore_presence": True})
    await wait_until(lambda: "shore.sources_disagree" not in bus.alarms.active, message="disagree cleared")


async def test_drive_away_interlocks_sound_the_buzzer_until_acknowledged(bus: Any) -> None:
    buzzer_pin = bus.io.buzzer.pin
    await sim_set(bus, **{"gpio.ignition": True})
    await wait_until(
        lambda: {"interlock.antenna_up", "interlock.shore_connected"} <= set(bus.alarms.active),
        message="both interlocks",
    )
    await wait_until(lambda: buzzer_pin.state == 1, message="buzzer sounding")
    acked = await call_once(bus.config.api.control_socket, "alarms.ack", {"id": "interlock.antenna_up"})
    assert acked == ["interlock.antenna_up"]
    assert bus.alarms.buzzer_wanted  # the shore interlock is not acknowledged yet
    await call_once(bus.config.api.control_socket, "alarms.ack", {})
    await wait_until(lambda: buzzer_pin.state == 0 and bus.io.buzzer.value == 0, message="buzzer silenced")
    assert "interlock.antenna_up" in bus.alarms.active  # silenced, not gone
    await sim_set(bus, **{"gpio.antenna_stowed": True, "shore.connected": False})
    await wait_until(
        lambda: not ({"interlock.antenna_up", "interlock.shore_connected"} & set(bus.alarms.active)),
        timeout=10,
        message="interlocks resolved",
    )


async def test_inverter_alarm_and_mode_write(bus: Any) -> None:
    await sim_set(bus, **{"inverter.alarms.overload": "alarm"})
    await wait_until(lambda: "inverter.overload" in bus.alarms.active, message="overload alarm")
    assert bus.alarms.active["inverter.overload"].severity == "alarm"
    result = await call_once(bus.config.api.control_socket, "inverter.mode", {"mode": "charger_only"})
    assert result == {"mode": "charger_only"}
    await wait_until(lambda: bus.state.value("power", "mode") == "charger_only", message="mode read back")
    with pytest.raises(ClientError, match=r"inverter\.mode: .*mode"):
        await call_once(bus.config.api.control_socket, "inverter.mode", {"mode": "turbo"})


async def test_sim_set_rejects_bad_keys_without_changing_anything(bus: Any) -> None:
    path = bus.config.api.control_socket
    with pytest.raises(ClientError, match=r"gpio\.warp: unknown GPIO input"):
        await call_once(path, "sim.set", {"gpio.ignition": True, "gpio.warp": True})
    assert bus.io.read("ignition") is False
    with pytest.raises(ClientError, match="must be true or false"):
        await call_once(path, "sim.set", {"shore.connected": "yes"})
    with pytest.raises(ClientError, match=r"inverter\.warp: unknown inverter value \(known: ac_in_v, "):
        await call_once(path, "sim.set", {"inverter.warp": 1})
    with pytest.raises(ClientError, match=r"inverter\.mode: .*'turbo' is not one of charger_only"):
        await call_once(path, "sim.set", {"inverter.mode": "turbo"})
    served = await call_once(path, "sim.get", {})
    assert served["inverter.mode"] == "on" and served["inverter.system_fault"] is None
    assert served["meter.voltage_v"] > 180


async def test_writes_refused_without_allow_writes(tmp_path: Path, run_controller: Any) -> None:
    controller = await run_controller(make_config(tmp_path, **sim_sections(tmp_path, inverter={"allow_writes": False})))
    await asyncio.wait_for(controller.ready.wait(), 10)
    with pytest.raises(ClientError, match="allow_writes"):
        await call_once(controller.config.api.control_socket, "inverter.mode", {"mode": "off"})


async def test_no_disk_write_per_poll_of_unchanged_values(bus: Any) -> None:
    """With the scenario paused nothing changes: polls go on, but no event is written."""
    bus.simulation.paused = True
    await sim_set(bus, **{"modem.rssi": 20})
    await asyncio.sleep(0)
    inverter = bus.pollers["inverter"]
    await wait_until(lambda: bus.state.value("modem", "signal_raw") == 20, message="signal settled")
    written = bus.store.events_written
    polls = inverter.polls
    await wait_until(lambda: inverter.polls >= polls + 4, timeout=10, message="four more polls")
    assert bus.store.events_written == written


async def test_events_are_ordered_by_seq_and_carry_clock_state(bus: Any) -> None:
    events = await call_once(bus.config.api.control_socket, "events", {"after": 0, "limit": 1000})
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert any(e["type"] == "controller.started" for e in events)
    assert all(isinstance(e["clock_synced"], bool) and isinstance(e["ts"], float) for e in events)


def test_status_cli_prints_table_and_json(tmp_path: Path) -> None:
    """`allervers run` and `allervers status` as a user runs them, in separate processes."""
    cfg = write_config(tmp_path, **sim_sections(tmp_path))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware_host.cli", "run", "-c", str(cfg)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def status(*extra: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-m", "firmware_host.cli", "status", "-c", str(cfg), *extra],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )

        out = _retry(
            lambda: status("--json"), lambda r: r.returncode == 0 and not json.loads(r.stdout)["power"]["stale"]
        )
        snap = json.loads(out.stdout)
        assert snap["power"]["soc"] is not None
        table = status()
        assert table.returncode == 0 and "POWER" in table.stdout and "soc" in table.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert proc.returncode == 0
    unreachable = subprocess.run(
        [sys.executable, "-m", "firmware_host.cli", "status", "-c", str(cfg)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert unreachable.returncode == 3 and "cannot reach the controller" in unreachable.stderr


def _retry(fn: Any, ok: Any, timeout: float = 20.0) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if ok(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready: {result.stdout} {result.stderr}")
        time.sleep(0.1)


async def test_iridium_modem_profile_end_to_end(tmp_path: Path, run_controller: Any) -> None:
    controller = await run_controller(make_config(tmp_path, **sim_sections(tmp_path, modem_profile="iridium")))
    await asyncio.wait_for(controller.ready.wait(), 20)
    assert controller.state.value("modem", "link") == "up"
    assert controller.state.value("modem", "ip") is None
    await sim_set(controller, **{"modem.sbdreg": 0, "modem.service": False})
    await wait_until(lambda: controller.state.value("modem", "link") == "down", timeout=20, message="link down")


def test_standalone_simulators_serve_a_separate_controller(tmp_path: Path) -> None:
    """`allervers sim` in one process, `allervers run` (embedded = false) in another, as on a bench."""
    sections = sim_sections(tmp_path, simulation={"embedded": False})
    sections["shore_power"].pop("presence_pin")
    sections["gpio"] = {"pin_factory": "mock"}
    cfg = write_config(tmp_path, **sections)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "firmware_host.cli"]
    sim = subprocess.Popen([*cli, "sim", "-c", str(cfg)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    ctl = None
    try:
        assert sim.stdout is not None
        lines = [sim.stdout.readline() for _ in range(4)]
        assert any("Victron GX Modbus-TCP" in line for line in lines), lines
        ctl_log = tmp_path / "controller.log"
        ctl = subprocess.Popen(
            [*cli, "run", "-c", str(cfg)], cwd=ROOT, env=env, stdout=ctl_log.open("w"), stderr=subprocess.STDOUT
        )

        def status() -> subprocess.CompletedProcess:
            return subprocess.run(
                [*cli, "status", "--json", "-c", str(cfg)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )

        def complete(r: subprocess.CompletedProcess) -> bool:
            assert ctl.poll() is None, f"controller exited: {ctl_log.read_text()}"
            return r.returncode == 0 and all(not json.loads(r.stdout)[c]["stale"] for c in ("power", "shore", "modem"))

        snap = json.loads(_retry(status, complete).stdout)
        assert snap["shore"]["sources"]["meter"] is True
        sim_sock = str(tmp_path / "run" / "sim.sock")
        out = subprocess.run(
            [*cli, "sim-set", "-c", str(cfg), "inverter.fault=silent"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode != 0 and "not running in this controller" in out.stderr
        asyncio.run(call_once(sim_sock, "sim.set", {"inverter.fault": "silent"}))
        _retry(status, lambda r: r.returncode == 0 and json.loads(r.stdout)["power"]["stale"])
    finally:
        for proc in (ctl, sim):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=20)
