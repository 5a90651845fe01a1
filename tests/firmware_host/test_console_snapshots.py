"""Snapshots of the console's main screens at a fixed terminal size (100 x 32), as plain text.

The state is set directly on a GPIO-only controller (fixed clock, clock synced) so every figure is stable. When a
screen changes on purpose, rewrite the files with ``ALLERVERS_UPDATE_SNAPSHOTS=1 pytest tests/firmware_host/
test_console_snapshots.py`` and review the diff like code.
"""

from __future__ import annotations

import difflib
import io
import os
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from firmware_host.api import call_once
from firmware_host.console.screens import ChecklistView, InterlockScreen, RoadView

from ..conftest import make_config, on_screen, wait_until
from .test_checklist import ROOT, day_clock
from .test_console import SIZE, body, console, login, row, text_of, wait_body

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("ALLERVERS_UPDATE_SNAPSHOTS") == "1"


def screen_text(app: Any) -> str:
    """What the terminal shows, characters only (the same rendering path as App.export_screenshot)."""
    width, height = app.size
    out = Console(
        width=width, height=height, file=io.StringIO(), force_terminal=True, record=True, legacy_windows=False
    )
    out.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return "\n".join(line.rstrip() for line in out.export_text(styles=False).splitlines()) + "\n"


def check(name: str, text: str, folder: Path = SNAPSHOTS) -> None:
    path = folder / f"{name}.txt"
    if UPDATE:
        folder.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"no snapshot {path.name}: run with ALLERVERS_UPDATE_SNAPSHOTS=1 and review it"
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = "\n".join(difflib.unified_diff(expected.splitlines(), text.splitlines(), "expected", "now", lineterm=""))
        pytest.fail(f"screen {name} differs from its snapshot:\n{diff}")


@pytest.fixture
async def bus(tmp_path: Path, run_controller: Any) -> Any:
    flag = tmp_path / "synchronized"
    flag.touch()
    cfg = make_config(
        tmp_path,
        checklist={"schedule": str(ROOT / "config" / "tour.toml")},
        gpio={"pin_factory": "mock", "ignition_pin": 17, "antenna_stowed_pin": 27, "buzzer_pin": 23},
        shore_power={"presence_pin": 5, "debounce_s": 0.0},
    )
    controller = await run_controller(cfg, clock=day_clock(), timesync_flag=str(flag))
    controller.io.drive("shore_presence", True)
    await wait_until(lambda: controller.state.value("shore", "connected") is True, message="shore")
    controller.state.update(
        "power", {"soc": 64.0, "battery_v": 25.62, "mode": "on", "state": "float", "active_input": "ac1"}
    )
    controller.state.update("modem", {"link": "up", "signal_bars": 4, "registered": True})
    return controller


async def test_login_and_road_screens(bus: Any) -> None:
    async with console(bus) as (app, pilot):
        await wait_until(lambda: app.status is not None, message="status")
        await pilot.pause()
        check("login", screen_text(app))
        await login(app, pilot)
        road = await wait_body(app, RoadView)
        await wait_until(lambda: "Contact mairie" in text_of(road.query_one("#stop-detail")), message="focus")
        await pilot.pause()
        check("road", screen_text(app))


async def test_arrival_checklist_screen_french_and_english(bus: Any) -> None:
    sock = bus.config.api.control_socket
    await call_once(sock, "checklist.arrive", {"stop": "2026-06-02/63223/0900", "by": "Marie"})
    await call_once(sock, "checklist.tick", {"step": "parked", "by": "Marie"})
    async with console(bus) as (app, pilot):
        await login(app, pilot)
        view = await wait_body(app, ChecklistView)
        await wait_until(lambda: "coché par Marie" in text_of(row(app, "parked")))
        await wait_until(lambda: "Reste à faire" in text_of(view.query_one("#summary")), message="summary")
        await pilot.pause()
        check("arrival_fr", screen_text(app))
        await pilot.press("f2")
        await wait_until(lambda: "ticked by Marie" in text_of(row(app, "parked")), message="English")
        await wait_until(lambda: "Still to do" in text_of(body(app).query_one("#summary")), message="summary")
        await pilot.pause()
        check("arrival_en", screen_text(app))


async def test_interlock_screen(bus: Any) -> None:
    async with console(bus) as (app, pilot):
        await login(app, pilot)
        await wait_body(app, RoadView)
        bus.io.drive("ignition", True)  # ignition on, dish not stowed (pin low), cable plugged in
        warning = await on_screen(app, InterlockScreen, message="interlock")
        await wait_until(lambda: "débranchez" in text_of(warning.query_one("#interlock-text")))
        await pilot.pause()
        check("interlock", screen_text(app))
        assert app.size == SIZE and body(app) is not None


async def test_the_demo_live_view_fits_80x24_and_scales_up(tmp_path: Path, run_controller: Any) -> None:
    from firmware_host.statusview import SUMMARY, demo_hints, live_lines

    from .test_checklist import bus_config

    controller = await run_controller(bus_config(tmp_path), clock=day_clock())
    await wait_until(lambda: controller.ready.is_set(), message="ready")
    await call_once(controller.config.api.control_socket, "sim.set", {"inverter.alarms.overload": "alarm"})
    await wait_until(lambda: "inverter.overload" in controller.alarms.active, message="overload")
    hints = demo_hints("config/simulated.toml")
    shown = {}
    for width, height in ((80, 11), (80, 24), (120, 40), (200, 50)):
        lines = [
            t.plain for t in live_lines(controller.snapshot(), width=width, height=height, title="demo", hints=hints)
        ]
        assert len(lines) <= height and all(len(x) <= width for x in lines), (width, height)
        assert lines[-1].startswith("Ctrl-C") and lines[-2].startswith("try: ")  # the hints are never cut off
        names = [x.split()[0] for x in lines if x and not x.startswith(" ")]
        for component in ("alarm", "power", "shore", "modem", "vehicle", "checklist", "controller"):
            assert component in names, (width, height, component)  # the most useful rows first
        assert any("inverter.overload" in x for x in lines)
        shown[(width, height)] = "\n".join(lines)
    assert "ac_in_hz" not in shown[(80, 11)]  # no room: details left out ...
    for name, comp in controller.snapshot().items():  # ... room: every value shown
        for key in comp:
            if key not in ("ts", "stale", "stale_reason", "alarms"):
                assert key in shown[(200, 50)] or key in str(SUMMARY[name]), (name, key)
