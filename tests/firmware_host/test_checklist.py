"""Checklist runs on a controller driven by the real simulators: auto steps, ticks, overrides, events, restarts."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from firmware_host.api import ClientError, call_once

from ..conftest import make_config, sim_sections, wait_until

ROOT = Path(__file__).resolve().parents[2]
DAY = dt.datetime(2026, 6, 2, 8, 45)  # a Tuesday: the rota has Menat at 09:00 and Manzat at 14:00


def day_clock(day: dt.datetime = DAY) -> Any:
    """A wall clock on a fixed day that still moves (the store and alarms want time to pass)."""
    start, offset = time.monotonic(), day.timestamp()
    return lambda: offset + (time.monotonic() - start)


def bus_config(tmp_path: Path, **checklist: Any) -> Any:
    return make_config(
        tmp_path,
        **sim_sections(tmp_path),
        checklist={"schedule": str(ROOT / "config" / "tour.toml"), **checklist},
    )


@pytest.fixture
async def bus(tmp_path: Path, run_controller: Any) -> Any:
    controller = await run_controller(bus_config(tmp_path), clock=day_clock())
    await asyncio.wait_for(controller.ready.wait(), 10)
    return controller


async def api(controller: Any, cmd: str, **args: Any) -> Any:
    return await call_once(controller.config.api.control_socket, cmd, args)


def steps(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in status["run"]["steps"]}


async def events(controller: Any, prefix: str = "checklist.") -> list[dict[str, Any]]:
    return [e for e in await controller.store.events_after(0, 1000) if e["type"].startswith(prefix)]


async def test_the_day_s_stops_and_the_suggestion_follow_the_sequence(bus: Any) -> None:
    tour = await api(bus, "checklist.tour")
    assert tour["date"] == "2026-06-02"
    assert [(s["commune"], s["arrive"], s["insee"]) for s in tour["stops"]] == [
        ("Menat", "09:00", "63223"),
        ("Manzat", "14:00", "63206"),
    ]
    assert tour["suggested"] == "2026-06-02/63223/0900"
    assert tour["stops"][0]["contact"]  # the driver sees the town-hall contact ...
    first = tour["stops"][0]["key"]
    status = await api(bus, "checklist.arrive", stop=first, by="Marie")
    assert "contact" not in status["stop"]  # ... but it never tags the state or the events
    await api(bus, "checklist.finish", by="Marie", reason="test: arriving only")
    tour = await api(bus, "checklist.tour")
    assert [s["visited"] for s in tour["stops"]] == [True, False]
    assert tour["suggested"] == "2026-06-02/63206/1400"
    dated = await api(bus, "checklist.tour", date="2026-06-01")  # the fair day replaces Monday's rota
    assert [s["place"] for s in dated["stops"]] == ["Champ de foire"]
    with pytest.raises(ClientError, match="date: must be YYYY-MM-DD"):
        await api(bus, "checklist.tour", date="mardi")


async def test_arrival_auto_steps_follow_the_simulators_live(bus: Any) -> None:
    status = await api(bus, "checklist.arrive", stop="2026-06-02/63223/0900", by="Marie")
    assert status["phase"] == "arrival"
    assert bus.state.value("checklist", "stop")["commune"] == "Menat"
    s = steps(status)
    # Parked at a live socket, inverter on, battery at 72 %, dish raised, link up: the sensors tick these.
    for sid in ("shore_power", "inverter_on", "battery", "antenna_up", "link_up"):
        assert (s[sid]["status"], s[sid]["by"]) == ("done", "auto"), sid
    for sid in ("parked", "shore_plugged", "printer", "signage"):
        assert s[sid]["status"] == "todo", sid
    assert bus.state.value("checklist", "pending_required") == ["parked", "shore_plugged"]

    await api(bus, "sim.set", **{"shore.connected": False})
    await wait_until(lambda: "shore_power" in bus.state.value("checklist", "pending_required"), message="untick")
    await api(bus, "sim.set", **{"modem.rssi": 99})  # signal lost: the link goes down
    await wait_until(lambda: "link_up" in bus.state.value("checklist", "pending_required"), message="link down")
    assert steps(await api(bus, "checklist.status"))["link_up"]["status"] == "no"
    await api(bus, "sim.set", **{"shore.connected": True, "modem.rssi": 20})
    await wait_until(lambda: not {"shore_power", "link_up"} & set(bus.state.value("checklist", "pending_required")))

    flips = [(e["step"], e["done"], e["by"]) for e in await events(bus) if e["type"] == "checklist.step"]
    assert ("shore_power", False, "auto") in flips and ("shore_power", True, "auto") in flips
    assert ("link_up", False, "auto") in flips and ("link_up", True, "auto") in flips


async def test_manual_ticks_finish_and_open_without_a_kiosk(bus: Any) -> None:
    await api(bus, "checklist.arrive", stop="2026-06-02/63223/0900", by="Marie")
    with pytest.raises(ClientError, match="required steps not done: parked, shore_plugged"):
        await api(bus, "checklist.finish", by="Marie")
    await api(bus, "checklist.tick", step="parked", by="Marie")
    status = await api(bus, "checklist.tick", step="shore_plugged", by="Marie")
    assert steps(status)["parked"]["by"] == "Marie"
    assert status["run"]["can_finish"]
    untick = await api(bus, "checklist.tick", step="parked", done=False, by="Marie")
    assert steps(untick)["parked"]["status"] == "todo"
    await api(bus, "checklist.tick", step="parked", by="Marie")
    result = await api(bus, "checklist.finish", by="Marie")
    assert (result["phase"], result["outcome"], result["kiosk"]) == ("open", "completed", "not_configured")
    assert bus.state.get("checklist")["phase"] == "open"
    assert bus.state.value("checklist", "done") == []

    evs = await events(bus)
    types = [e["type"] for e in evs]
    assert types[0] == "checklist.stop" and "checklist.started" in types and types[-1] == "checklist.ended"
    assert all(e["stop"]["insee"] == "63223" for e in evs)  # every event carries the stop
    ended = evs[-1]
    assert ended["outcome"] == "completed" and ended["done"]["shore_power"] == "auto"
    assert ended["done"]["parked"] == "Marie" and ended["skipped"] == ["printer", "signage"]
    seqs = [e["seq"] for e in evs]
    assert seqs == sorted(seqs)

    (run,) = await bus.checklist.runs()
    assert (run["kind"], run["outcome"], run["driver"], run["ended_seq"]) == ("arrival", "completed", "Marie", seqs[-1])
    assert run["summary"]["battery"]["by"] == "auto" and run["confirmations"]["parked"]["by"] == "Marie"


async def test_override_needs_a_typed_reason_and_is_logged_per_step(bus: Any) -> None:
    await api(bus, "sim.set", **{"modem.rssi": 99})
    await wait_until(lambda: bus.state.value("modem", "link") == "down", message="link down")
    await api(bus, "checklist.arrive", stop={"commune": "Saint-Gervais-d'Auvergne", "place": "Marché"}, by="Marie")
    await api(bus, "checklist.tick", step="parked", by="Marie")
    with pytest.raises(ClientError, match="link_up: the sensors say not yet"):
        await api(bus, "checklist.tick", step="link_up", by="Marie")
    with pytest.raises(ClientError, match="reason: a reason for the override is required"):
        await api(bus, "checklist.finish", by="Marie", reason="  ")
    result = await api(bus, "checklist.finish", by="Marie", reason="zone blanche, satellite en panne")
    assert result["outcome"] == "overridden"
    overrides = [e for e in await events(bus) if e["type"] == "checklist.override"]
    assert [(e["step"], e["status"], e["reason"], e["by"]) for e in overrides] == [
        ("shore_plugged", "todo", "zone blanche, satellite en panne", "Marie"),
        ("link_up", "no", "zone blanche, satellite en panne", "Marie"),
    ]
    assert overrides[0]["stop"]["scheduled"] is False and overrides[0]["stop"]["commune"] == "Saint-Gervais-d'Auvergne"
    (run,) = await bus.checklist.runs()
    assert run["outcome"] == "overridden" and [o["step"] for o in run["overrides"]] == ["shore_plugged", "link_up"]


async def test_departure_closes_checks_the_stowing_and_goes_on_the_road(bus: Any) -> None:
    await api(bus, "checklist.arrive", stop="2026-06-02/63223/0900", by="Marie")
    await api(bus, "checklist.finish", by="Marie", reason="test starts at departure")
    status = await api(bus, "checklist.depart", by="Marie")
    assert (status["phase"], status["kiosk"]) == ("departure", "not_configured")
    s = steps(status)
    assert s["kiosk_closed"]["status"] == "n/a"  # no public terminal on this bus: the step does not apply
    assert s["antenna_stowed"]["status"] == "no" and s["shore_unplugged"]["status"] == "no"
    assert s["door_closed"]["status"] == "done"
    assert set(status["run"]["pending_required"]) == {
        "equipment_stowed",
        "antenna_stowed",
        "shore_unplugged",
        "inverter_driving",
    }
    await api(
        bus, "sim.set", **{"gpio.antenna_stowed": True, "shore.connected": False, "inverter.mode": "charger_only"}
    )
    await wait_until(lambda: bus.state.value("checklist", "pending_required") == ["equipment_stowed"], message="stowed")
    assert bus.state.value("shore", "connected") is False
    assert "shore.lost" not in bus.alarms.active  # unplugging is what the departure asks for, not news
    await api(bus, "checklist.tick", step="equipment_stowed", by="Paul")
    result = await api(bus, "checklist.finish", by="Paul")
    assert (result["phase"], result["stop"], result["outcome"]) == ("on_the_road", None, "completed")
    assert bus.state.value("checklist", "stop") is None
    assert "shore.lost" not in bus.alarms.active  # nor once on the road
    assert not [e for e in await events(bus, "alarm.") if e.get("alarm_id") == "shore.lost"]
    ended = [e for e in await events(bus) if e["type"] == "checklist.ended"][-1]
    assert ended["kind"] == "departure" and ended["done"]["kiosk_closed"] == "n/a" and ended["by"] == "Paul"


async def test_shore_lost_while_open_is_still_an_alarm(bus: Any) -> None:
    await api(bus, "checklist.arrive", stop="2026-06-02/63223/0900", by="Marie")
    await api(bus, "checklist.finish", by="Marie", reason="test starts open")
    await api(bus, "sim.set", **{"shore.connected": False})  # the town hall's breaker trips
    await wait_until(lambda: "shore.lost" in bus.alarms.active, message="shore.lost while open")
    await api(bus, "checklist.depart", by="Marie")  # leaving anyway: the loss is no longer news
    await wait_until(lambda: "shore.lost" not in bus.alarms.active, message="shore.lost cleared by the departure")


async def test_a_silent_sensor_is_confirmed_by_hand_a_contradicting_one_is_not(bus: Any) -> None:
    await api(bus, "checklist.arrive", stop="2026-06-02/63223/0900", by="Marie")
    await api(bus, "sim.set", **{"inverter.fault": "silent"})
    await wait_until(lambda: bus.state.components["power"].stale, message="inverter stale")
    await wait_until(lambda: "inverter_on" in bus.state.value("checklist", "pending_required"), message="unknown")
    s = steps(await api(bus, "checklist.status"))
    assert s["inverter_on"]["status"] == "todo" and s["battery"]["status"] == "todo"  # unknown, not "no"
    status = await api(bus, "checklist.tick", step="inverter_on", by="Marie")
    assert (steps(status)["inverter_on"]["status"], steps(status)["inverter_on"]["by"]) == ("done", "Marie")
    await api(bus, "sim.set", **{"inverter.fault": None})
    await wait_until(lambda: not bus.state.components["power"].stale, message="inverter back")
    s = steps(await api(bus, "checklist.status"))
    assert (s["inverter_on"]["status"], s["inverter_on"]["by"]) == ("done", "auto")  # the sensor takes over


async def test_bad_requests_are_refused_with_the_thing_named(bus: Any) -> None:
    with pytest.raises(ClientError, match="by: the driver's name is required"):
        await api(bus, "checklist.arrive", stop="2026-06-02/63223/0900")
    with pytest.raises(ClientError, match="no checklist is running"):
        await api(bus, "checklist.tick", step="parked", by="Marie")
    with pytest.raises(ClientError, match="no stop '2026-06-02/99999/0900' in the schedule"):
        await api(bus, "checklist.arrive", stop="2026-06-02/99999/0900", by="Marie")
    with pytest.raises(ClientError, match="insee: must be an INSEE commune code"):
        await api(bus, "checklist.arrive", stop={"commune": "Menat", "insee": "6322"}, by="Marie")
    with pytest.raises(ClientError, match="stop: unknown field"):
        await api(bus, "checklist.arrive", stop={"commune": "Menat", "mayor": "x"}, by="Marie")
    with pytest.raises(ClientError, match="not open at a stop"):
        await api(bus, "checklist.depart", by="Marie")
    await api(bus, "checklist.arrive", stop="2026-06-02/63223/0900", by="Marie")
    with pytest.raises(ClientError, match="step: no step 'teleport'"):
        await api(bus, "checklist.tick", step="teleport", by="Marie")
    with pytest.raises(ClientError, match="done: must be true or false"):
        await api(bus, "checklist.tick", step="parked", done="yes", by="Marie")
    # Picking another stop during arrival keeps the run and its ticks.
    await api(bus, "checklist.tick", step="parked", by="Marie")
    status = await api(bus, "checklist.arrive", stop="2026-06-02/63206/1400", by="Marie")
    assert status["stop"]["commune"] == "Manzat" and steps(status)["parked"]["status"] == "done"
    cancelled = await api(bus, "checklist.cancel", by="Marie")
    assert (cancelled["phase"], cancelled["stop"]) == ("on_the_road", None)
    assert (await api(bus, "ping"))["pong"]  # the controller kept serving throughout


async def arrive_park_and_stop(cfg: Any, run_controller: Any) -> None:
    """A controller confirms Menat, Marie ticks "parked", and the controller stops mid-run."""
    first = await run_controller(cfg, clock=day_clock())
    await asyncio.wait_for(first.ready.wait(), 10)
    await api(first, "checklist.arrive", stop="2026-06-02/63223/0900", by="Marie")
    await api(first, "checklist.tick", step="parked", by="Marie")
    await first.stop()


async def test_phase_and_ticks_survive_a_controller_restart(tmp_path: Path, run_controller: Any) -> None:
    cfg = bus_config(tmp_path)
    await arrive_park_and_stop(cfg, run_controller)

    second = await run_controller(cfg, clock=day_clock())
    await asyncio.wait_for(second.ready.wait(), 10)
    status = await api(second, "checklist.status")
    assert (status["phase"], status["stop"]["commune"], status["driver"]) == ("arrival", "Menat", "Marie")
    assert (steps(status)["parked"]["status"], steps(status)["parked"]["by"]) == ("done", "Marie")
    assert steps(status)["battery"]["status"] == "done"  # auto steps are re-read from the live state
    assert any(e["type"] == "checklist.resumed" for e in await events(second))
    await api(second, "checklist.tick", step="shore_plugged", by="Marie")
    await api(second, "checklist.finish", by="Marie")
    await second.stop()

    third = await run_controller(cfg, clock=day_clock())
    await asyncio.wait_for(third.ready.wait(), 10)
    status = await api(third, "checklist.status")
    assert (status["phase"], status["run"], status["stop"]["commune"]) == ("open", None, "Menat")
    assert (await api(third, "checklist.tour"))["suggested"] == "2026-06-02/63206/1400"


async def test_a_store_from_before_the_shared_meta_table_resumes_its_run(tmp_path: Path, run_controller: Any) -> None:
    """The phase, stop and driver were in table checklist_meta: a controller updated in place still has them."""
    cfg = bus_config(tmp_path)
    await arrive_park_and_stop(cfg, run_controller)
    with sqlite3.connect(cfg.storage.path) as conn:  # back to the old layout, as an older controller left it
        conn.executescript(
            """
            CREATE TABLE checklist_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO checklist_meta SELECT key, value FROM meta WHERE namespace = 'checklist';
            DROP TABLE meta;
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            """
        )
    conn.close()

    second = await run_controller(cfg, clock=day_clock())
    await asyncio.wait_for(second.ready.wait(), 10)
    status = await api(second, "checklist.status")
    assert (status["phase"], status["stop"]["commune"], status["driver"]) == ("arrival", "Menat", "Marie")
    assert steps(status)["parked"]["by"] == "Marie"


async def test_no_event_or_write_while_open_and_none_for_unchanged_values(bus: Any) -> None:
    await api(bus, "checklist.arrive", stop="2026-06-02/63223/0900", by="Marie")
    before = len(await events(bus))
    for _ in range(20):  # a chatty sensor repeating the same values: no step event
        bus.state.update("vehicle", {"antenna_stowed": False, "door_open": False})
    await api(bus, "checklist.finish", by="Marie", reason="test of the open phase")
    after_finish = await events(bus)
    assert [e["type"] for e in after_finish[before:]] == [
        "checklist.override",
        "checklist.override",
        "checklist.ended",
    ]
    writes = bus.store.events_written
    await api(bus, "sim.set", **{"shore.connected": False})
    await wait_until(lambda: bus.state.value("shore", "connected") is False, message="unplugged")
    await api(bus, "sim.set", **{"shore.connected": True})
    await wait_until(lambda: bus.state.value("shore", "connected") is True, message="plugged")
    assert len(await events(bus)) == len(after_finish)  # open: nothing to check, nothing logged by the checklist
    assert bus.store.events_written > writes  # (the core still logged the shore transitions)


async def test_kiosk_commands_are_called_when_the_kiosk_is_there(bus: Any) -> None:
    """The failure paths, with a stand-in kiosk feature (test_checklist_kiosk.py runs the real public terminal)."""
    calls: list[str] = []
    bus.state.add_component("kiosk")
    bus.state.update("kiosk", {"open": False, "session_active": False, "sessions_today": 0})

    class StandInKiosk:
        """The two methods of kiosk.session.KioskManager that the checklist calls, and its last stop."""

        open_stop = ""

        async def open_public(self, stop: object) -> dict[str, Any]:
            calls.append("open")
            if len(calls) == 1:
                raise RuntimeError("browser not started")
            bus.state.update("kiosk", {"open": True})
            return {"open": True}

        async def close_public(self) -> dict[str, Any]:
            calls.append("close")
            bus.state.update("kiosk", {"open": False})
            return {"open": False, "wiped": True}

    kiosk = bus.features["kiosk"] = StandInKiosk()
    bus.registry.add("kiosk.open", lambda args, conn: kiosk.open_public(args.get("stop", kiosk.open_stop)))
    await api(bus, "checklist.arrive", stop="2026-06-02/63223/0900", by="Marie")
    result = await api(bus, "checklist.finish", by="Marie", reason="kiosk test")
    assert (result["phase"], result["kiosk"], result["kiosk_error"]) == ("open", "error", "browser not started")
    assert any(e["type"] == "checklist.kiosk_error" for e in await events(bus))
    assert (await api(bus, "kiosk.open"))["open"] is True  # the console's retry
    status = await api(bus, "checklist.depart", by="Marie")
    assert calls == ["open", "open", "close"] and status["kiosk"] == "closed"
    assert steps(status)["kiosk_closed"]["status"] == "done"
    bus.state.update("kiosk", {"open": True})  # reopened behind the driver's back: the step unticks
    await wait_until(lambda: "kiosk_closed" in bus.state.value("checklist", "pending_required"))
    cancelled = await api(bus, "checklist.cancel", by="Marie")  # not leaving after all: open again
    assert (cancelled["phase"], cancelled["kiosk"]) == ("open", "opened") and calls[-1] == "open"


async def test_without_a_checklist_section_there_is_no_component_nor_command(
    tmp_path: Path, run_controller: Any
) -> None:
    controller = await run_controller(make_config(tmp_path))
    assert "checklist" not in controller.state.components
    assert not [c for c in controller.registry.commands if c.startswith("checklist.")]


async def test_custom_steps_from_config_and_a_bad_schedule_row(tmp_path: Path, run_controller: Any) -> None:
    schedule = tmp_path / "tour.csv"
    schedule.write_text(
        "date,commune,insee,place,arrive,depart,contact\n"
        "2026-06-02,Menat,63223,Église,09:00,12:00,Mairie\n"
        "2026-06-02,Manzat,6320,Marché,14:00,17:00,Mairie\n",
        encoding="utf-8",
    )
    cfg = make_config(
        tmp_path,
        checklist={
            "schedule": str(schedule),
            "arrival": [
                {
                    "id": "ignition_off",
                    "label": {"fr": "Contact coupé"},
                    "kind": "auto",
                    "condition": "not vehicle.ignition",
                },
                {"id": "coffee", "label": {"fr": "Café", "en": "Coffee"}, "required": False},
            ],
            "departure": [],
        },
        gpio={"pin_factory": "mock", "ignition_pin": 17},
    )
    controller = await run_controller(cfg, clock=day_clock())
    tour = await api(controller, "checklist.tour")
    assert [s["commune"] for s in tour["stops"]] == ["Menat"]
    assert tour["schedule"]["errors"] == [
        "tour.csv: row 3: insee: must be an INSEE commune code of 5 characters (e.g. 17369, 2A004), got '6320'"
    ]
    status = await api(controller, "checklist.arrive", stop=tour["stops"][0]["key"], by="Marie")
    assert [(s["id"], s["status"]) for s in status["run"]["steps"]] == [("ignition_off", "done"), ("coffee", "todo")]
    controller.io.drive("ignition", True)
    await wait_until(lambda: controller.state.value("checklist", "pending_required") == ["ignition_off"])
    controller.io.drive("ignition", False)
    await wait_until(lambda: controller.state.value("checklist", "pending_required") == [])
    result = await api(controller, "checklist.finish", by="Marie")
    assert result["outcome"] == "completed"
    depart = await api(controller, "checklist.depart", by="Marie")  # an empty departure list: nothing to block
    assert depart["run"]["can_finish"]
    assert (await api(controller, "checklist.finish", by="Marie"))["phase"] == "on_the_road"
