"""Benchmark of the driver's console feature: conditions, events and writes per stop, schedule parsing, UI latency."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from firmware_host import config as config_mod  # noqa: E402
from firmware_host.checklist import DEFAULT_ARRIVAL, DEFAULT_DEPARTURE  # noqa: E402
from firmware_host.conditions import compile_condition  # noqa: E402

Row = tuple[str, str, str]
CONDITIONS = [s["condition"] for s in DEFAULT_ARRIVAL + DEFAULT_DEPARTURE if s.get("condition")]


def _per_call_us(fn: Any, repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - started) / repeat * 1e6


def bench_conditions(repeat: int) -> list[Row]:
    compiled = [compile_condition(c) for c in CONDITIONS]
    values = {
        ("shore", "connected"): True,
        ("power", "mode"): "on",
        ("power", "soc"): 72.0,
        ("vehicle", "antenna_stowed"): False,
        ("vehicle", "door_open"): False,
        ("modem", "link"): "up",
    }

    def lookup(component: str, field: str) -> Any:
        return values.get((component, field))

    compile_us = _per_call_us(lambda: [compile_condition(c) for c in CONDITIONS], repeat) / len(CONDITIONS)
    eval_us = _per_call_us(lambda: [c.evaluate(lookup) for c in compiled], repeat * 10)
    return [
        ("condition parse + check (at config load), per condition", f"{compile_us:.0f} µs", "< 1 ms on a Pi 4"),
        (
            f"re-evaluating all {len(compiled)} shipped auto conditions (one state change)",
            f"{eval_us:.0f} µs",
            "< 0.5 ms on a Pi 4",
        ),
    ]


def bench_tour(rows: int = 520) -> list[Row]:
    from firmware_host.tour import parse_csv

    lines = ["date;commune;insee;lieu;arrivée;départ;contact"]
    day = time.mktime((2026, 1, 5, 12, 0, 0, 0, 0, -1))
    for i in range(rows // 2):
        date = time.strftime("%d/%m/%Y", time.localtime(day + i * 86400))
        lines.append(f"{date};Menat;63223;Place de l'église;9h00;12h00;Mairie, 04 65 71 00 03")
        lines.append(f"{date};Manzat;63206;Place du marché;14h00;17h00;Mairie, 04 65 71 00 04")
    text = "\n".join(lines) + "\n"
    started = time.perf_counter()
    tour = parse_csv(text, "year.csv")
    elapsed = (time.perf_counter() - started) * 1000
    assert len(tour.stops) == rows and not tour.errors
    return [(f"schedule parse, a year of stops ({rows} CSV rows)", f"{elapsed:.0f} ms", "< 250 ms on a Pi 4")]


async def _stop_visit(tmp: Path) -> list[Row]:
    """One stop with the shipped lists: arrival, open with flapping sensors, departure. Count what is written/sent."""
    from firmware_host.api import call_once
    from firmware_host.console.app import ConsoleApp
    from firmware_host.console.link import ControllerLink
    from firmware_host.console.widgets import StepRow
    from firmware_host.controller import Controller

    raw = {
        "vehicle": {"id": "bus-bench"},
        "storage": {"path": str(tmp / "db" / "allervers.db")},
        "api": {"control_socket": str(tmp / "run" / "control.sock"), "kiosk_socket": str(tmp / "run" / "kiosk.sock")},
        "gpio": {"pin_factory": "mock", "ignition_pin": 17, "antenna_stowed_pin": 27, "door_pin": 22},
        "checklist": {"schedule": str(ROOT / "config" / "tour.toml")},
    }
    cfg = config_mod.validate(raw, "bench.toml", tmp)
    controller = Controller(cfg)
    await controller.start()
    state, store = controller.state, controller.store
    assert store is not None
    sock = cfg.api.control_socket

    async def changes() -> int:
        return await store.run(lambda db: db.conn.total_changes)

    def parked() -> None:
        state.update("shore", {"connected": True, "sources": {"pin": True}})
        state.update("power", {"mode": "on", "soc": 72.0, "state": "float"})
        state.update("modem", {"link": "up", "signal_bars": 4})

    try:
        parked()
        first_seq, rows_before = store.last_seq, await changes()
        await call_once(sock, "checklist.arrive", {"stop": {"commune": "Menat", "insee": "63223"}, "by": "Marie"})
        for step in ("parked", "shore_plugged", "printer", "signage"):
            await call_once(sock, "checklist.tick", {"step": step, "by": "Marie"})
        await call_once(sock, "checklist.finish", {"by": "Marie"})

        # Open for the afternoon: sensors come and go; nothing is checked, nothing logged by the checklist.
        open_seq, open_rows = store.last_seq, await changes()
        for i in range(100):
            state.update("modem", {"link": "down" if i % 2 else "up"})
            state.update("vehicle", {"door_open": bool(i % 2)})
        await asyncio.sleep(0.2)
        events = await store.events_after(open_seq, 1000)
        open_checklist_events = [e for e in events if e["type"].startswith("checklist.")]
        open_checklist_rows = await changes() - open_rows - len(events)

        await call_once(sock, "checklist.depart", {"by": "Marie"})
        state.update("shore", {"connected": False, "sources": {"pin": False}})
        state.update("power", {"mode": "off"})
        state.update("vehicle", {"antenna_stowed": True, "door_open": False})
        await call_once(sock, "checklist.tick", {"step": "equipment_stowed", "by": "Marie"})
        result = await call_once(sock, "checklist.finish", {"by": "Marie"})
        assert result["outcome"] == "completed", result
        await asyncio.sleep(0.1)
        all_events = await store.events_after(first_seq, 1000)
        mine = [e for e in all_events if e["type"].startswith("checklist.")]
        sent_bytes = sum(len(json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode()) for e in mine)
        rows_written = await changes() - rows_before
        core_events = len(all_events) - len(mine)

        # Console latency: a sensor change on the controller until the step row shows it.
        parked()
        await call_once(sock, "checklist.arrive", {"stop": {"commune": "Giat", "insee": "63165"}, "by": "Marie"})
        latencies: list[float] = []
        app = ConsoleApp(ControllerLink(sock), vehicle_name="bench")
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.press(*"M", "enter")
            deadline = time.monotonic() + 10
            while not app.main.query(StepRow) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            for i in range(10):
                connected = i % 2 == 1
                mark = "[x]" if connected else "[!]"
                started = time.perf_counter()
                state.update("shore", {"connected": connected, "sources": {"pin": connected}})
                while mark not in str(app.main.query_one("#step-shore_power", StepRow).render()):
                    await asyncio.sleep(0.002)
                latencies.append((time.perf_counter() - started) * 1000)
    finally:
        await controller.stop()

    return [
        (
            "checklist events for one stop (arrival + departure, shipped steps)",
            f"{len(mine)} events, {sent_bytes / 1024:.1f} kB as JSON",
            "< 40 events, < 16 kB to send",
        ),
        (
            "SQLite rows written by the checklist for one stop (its events, run and phase rows)",
            f"{rows_written - core_events}",
            "a few dozen; none per poll",
        ),
        (
            "checklist events and rows while open, 100 sensor flaps",
            f"{len(open_checklist_events)} events, {open_checklist_rows} rows",
            "0",
        ),
        (
            "console: sensor change to step row redrawn (median / max of 10)",
            f"{statistics.median(latencies):.0f} / {max(latencies):.0f} ms",
            "< 500 ms",
        ),
    ]


def run(quick: bool = False) -> list[Row]:
    rows = bench_conditions(200 if quick else 2000)
    rows += bench_tour()
    with tempfile.TemporaryDirectory(prefix="allervers-bench-checklist-") as tmp:
        rows += asyncio.run(_stop_visit(Path(tmp)))
    return rows


if __name__ == "__main__":
    for metric, value, target in run(quick="--quick" in sys.argv):
        print(f"{metric:<75} {value:<28} {target}")
