"""Report by exception: deadbands, free-running values, the per-component refresh, over a real Mosquitto."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_host.mqtt.reporter import DEFAULT_DEADBANDS, Reporter, field_class

from ..conftest import make_config, wait_until
from .mosquitto import Broker, Watcher

PREFIX = "allervers/bus-test"


def test_field_classes_follow_the_units() -> None:
    assert field_class("ac_in_v") == "ac_v" and field_class("voltage_v") == "ac_v"
    assert field_class("battery_v") == "dc_v"
    assert field_class("battery_a") == "a" and field_class("ac_out_w") == "w"
    assert field_class("soc") == "soc" and field_class("frequency_hz") == "hz"
    assert field_class("battery_temp_c") == "c"
    # Fields of components that do not exist yet get a class from their unit suffix.
    assert field_class("inverter_temp_c") == "c" and field_class("ac_load_w") == "w"
    assert field_class("starter_battery_v") == "dc_v"
    assert field_class("sessions_today") is None


def test_reporter_quiet_inside_deadbands_and_loud_past_them() -> None:
    r = Reporter()
    base = {"soc": 80.0, "battery_v": 26.10, "ac_in_v": 230.0, "state": "bulk", "stale": False, "uptime_s": 5, "ts": 1}
    assert r.significant(None, base) == sorted(base)  # never published: everything is news
    jitter = {**base, "soc": 80.6, "battery_v": 26.15, "ac_in_v": 231.9, "uptime_s": 65, "ts": 61}
    assert r.significant(base, jitter) == []
    assert r.significant(base, {**base, "soc": 81.0}) == ["soc"]
    assert r.significant(base, {**base, "battery_v": 26.2}) == ["battery_v"]  # exactly one deadband counts
    assert r.significant(base, {**base, "ac_in_v": 227.5}) == ["ac_in_v"]
    assert r.significant(base, {**base, "state": "absorption"}) == ["state"]
    assert r.significant(base, {**base, "stale": True, "stale_reason": "timeout"}) == ["stale"]
    assert r.significant(base, {**base, "soc": None}) == ["soc"]
    assert r.significant({**base, "alarms": []}, {**base, "alarms": [{"id": "x"}]}) == ["alarms"]
    custom = Reporter({"soc": 5.0})
    assert custom.significant(base, {**base, "soc": 84.0}) == []
    zero = Reporter({"w": 0.0})
    assert zero.significant({"ac_out_w": 100}, {"ac_out_w": 101}) == ["ac_out_w"]


def test_kiosk_sessions_travel_as_events_and_a_failed_wipe_as_state_at_once() -> None:
    """A session's start and end are events sent at the same moment: no state message of their own."""
    r = Reporter()
    idle = {"open": True, "locked": False, "session_active": False, "session_service": None, "sessions_today": 3}
    idle |= {"session_started": None, "last_wipe": {"ok": True}, "wipe_ok": True, "wipe_error": None}
    started = {**idle, "session_active": True, "session_service": "caf", "session_started": 1781505060.0}
    assert r.significant(idle, started) == []
    ended = {**idle, "sessions_today": 4, "last_wipe": {"ok": True, "files_removed": 20}}
    assert r.significant(started, ended) == []
    failed = {**ended, "wipe_ok": False, "wipe_error": "processus restants", "last_wipe": {"ok": False}}
    assert r.significant(ended, failed) == ["wipe_error", "wipe_ok"]
    assert r.significant(idle, {**idle, "locked": True}) == ["locked"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-3, max_value=3, allow_nan=False), min_size=1, max_size=60))
def test_a_drift_is_never_hidden_for_more_than_one_deadband(steps: list[float]) -> None:
    """Whatever the walk, what the office last saw is always within one deadband of the truth."""
    r = Reporter()
    band = DEFAULT_DEADBANDS["dc_v"]
    value = 26.0
    published = {"battery_v": value}
    for step in steps:
        value = round(value + step * band / 3, 6)
        current = {"battery_v": value}
        if r.significant(published, current):
            published = current
        assert abs(published["battery_v"] - value) < band


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    with Broker(tmp_path / "broker") as b:
        yield b


async def test_state_is_reported_by_exception(tmp_path: Path, broker: Broker, run_controller) -> None:
    watcher = Watcher(broker.port, [f"{PREFIX}/state/+"]).start()
    try:
        cfg = make_config(
            tmp_path,
            gpio={"pin_factory": "mock", "ignition_pin": 17, "debounce_s": 0.0},
            mqtt={"host": "127.0.0.1", "port": broker.port, "tls": False, "link_gate": "always"},
        )
        controller = await run_controller(cfg)
        state = controller.state
        state.update("power", {"soc": 80.0, "battery_v": 26.1, "ac_in_v": 230.0, "state": "bulk"})
        await wait_until(
            lambda: [m.json().get("soc") for m in watcher.received(f"{PREFIX}/state/power")][-1:] == [80.0],
            message="first power state",
        )
        await wait_until(
            lambda: all(watcher.received(f"{PREFIX}/state/{c}") for c in state.components), message="initial state"
        )
        power_before = len(watcher.received(f"{PREFIX}/state/power"))
        controller_before = len(watcher.received(f"{PREFIX}/state/controller"))
        for i in range(20):  # a poll every 2 s for 40 s of noisy readings
            state.update(
                "power", {"soc": 80.0 + (i % 3) * 0.3, "battery_v": 26.1 + (i % 2) * 0.05, "ac_in_v": 229 + i % 3}
            )
        state.update("controller", {"uptime_s": 12345})  # free-running: never a reason to publish
        # A real change on another component, sent after the noise on the same connection: once it has arrived,
        # anything the noise had caused would have arrived before it.
        controller.io.drive("ignition", True)
        await wait_until(
            lambda: any(m.json()["ignition"] for m in watcher.received(f"{PREFIX}/state/vehicle")),
            message="the ignition change",
        )
        assert len(watcher.received(f"{PREFIX}/state/power")) == power_before
        assert len(watcher.received(f"{PREFIX}/state/controller")) == controller_before

        state.update("power", {"soc": 81.5})
        await wait_until(
            lambda: watcher.received(f"{PREFIX}/state/power")[-1].json()["soc"] == 81.5, message="soc past 1 %"
        )
        state.update("power", {"state": "absorption"})
        await wait_until(
            lambda: watcher.received(f"{PREFIX}/state/power")[-1].json()["state"] == "absorption",
            message="enum change",
        )
        assert len(watcher.received(f"{PREFIX}/state/power")) == power_before + 2
    finally:
        watcher.stop()


async def test_every_component_is_refreshed_once_per_refresh_period(
    tmp_path: Path, broker: Broker, run_controller
) -> None:
    watcher = Watcher(broker.port, [f"{PREFIX}/state/+"]).start()
    try:
        cfg = make_config(
            tmp_path,
            mqtt={"host": "127.0.0.1", "port": broker.port, "tls": False, "link_gate": "always", "refresh_s": 600},
        )
        controller = await run_controller(cfg)
        link = controller.mqtt
        clock = [1000.0]
        components = list(controller.state.components)
        await wait_until(lambda: link.session is not None, message="connected")
        link.monotonic = lambda: clock[0]
        assert sorted(link.republish()) == sorted(components)  # as the refresh command does
        await wait_until(
            lambda: all(link._acked_at.get(c) == clock[0] for c in components), message="acknowledged on this clock"
        )
        count = lambda c: len(watcher.received(f"{PREFIX}/state/{c}"))  # noqa: E731
        await wait_until(lambda: all(count(c) == 2 for c in components), message="connect + republish received")
        clock[0] += 599
        assert link.tick() == []
        # Readings taken again (new "ts"), the vehicle's inputs untouched: its retained copy is still exact.
        for component in components:
            if component != "vehicle":
                controller.state.update(component, {})
        clock[0] += 2
        refreshed = [c for c in components if c != "vehicle"]
        assert sorted(link.tick()) == sorted(refreshed)
        await wait_until(
            lambda: all(count(c) == 3 for c in refreshed) and count("vehicle") == 2,
            message="one refresh of each component that changed",
        )
        await wait_until(lambda: all(link._acked_at[c] == clock[0] for c in refreshed), message="refresh acked")
        assert link.tick() == []
        # A component published by exception meanwhile is not refreshed again before its own period.
        clock[0] += 300
        controller.state.update("vehicle", {"door_open": True})
        await wait_until(lambda: link._acked_at["vehicle"] == clock[0], message="vehicle published")
        clock[0] += 301
        for component in refreshed:
            controller.state.update(component, {})
        assert sorted(link.tick()) == sorted(refreshed)
    finally:
        watcher.stop()
