"""Human-readable views of the state: the `allervers status` table and the demo's live view."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any

from .state import FIELDS

UNITS = {f.name: f.unit for f in FIELDS if f.unit}  # shown after the value
HIDDEN = {"ts", "stale", "stale_reason", "stale_groups"}


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        text = f"{value:.2f}".rstrip("0").rstrip(".")
    elif isinstance(value, dict) and key == "alarms":
        raised = {k: v for k, v in value.items() if v != "ok"}
        text = ", ".join(f"{k}={v}" for k, v in raised.items()) if raised else "all ok"
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={_fmt(k, v)}" for k, v in value.items()) or "—"
    elif isinstance(value, list):
        text = "; ".join(a.get("id", str(a)) if isinstance(a, dict) else str(a) for a in value) or "none"
    else:
        text = str(value)
    unit = UNITS.get(key)
    return f"{text} {unit}" if unit else text


def _freshness(comp: dict[str, Any], now: float) -> str:
    if comp.get("stale"):
        return f"STALE: {comp.get('stale_reason') or 'unknown'}"
    ts = comp.get("ts")
    text = f"fresh, {max(0.0, now - ts):.0f} s ago" if ts else "fresh"
    for group, reason in (comp.get("stale_groups") or {}).items():
        text += f"; {group} unknown: {reason}"
    return text


def render_text(snapshot: dict[str, Any], now: float | None = None) -> str:
    """A plain table, one block per component, readable in any terminal and in a log."""
    now = time.time() if now is None else now
    lines: list[str] = []
    for name, comp in snapshot.items():
        lines.append(f"{name.upper():<12} [{_freshness(comp, now)}]")
        for key, value in comp.items():
            if key in HIDDEN:
                continue
            if key == "alarms" and isinstance(value, list):
                if not value:
                    lines.append(f"  {'alarms':<18} none")
                for a in value:
                    lines.append(f"  {'alarm':<18} {a['severity']:<8} {a['id']}: {a['message']}")
                continue
            lines.append(f"  {key:<18} {_fmt(key, value)}")
    return "\n".join(lines)


async def live_view(
    controller: Any, stop: asyncio.Event, duration: float | None = None, refresh_s: float = 1.0
) -> None:
    """Redraw the state every ``refresh_s`` until ``stop`` (Ctrl-C) or ``duration``; plain lines off a tty."""
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    console = Console()
    deadline = None if duration is None else time.monotonic() + duration
    sockets = controller.config.api

    def build() -> Table:
        snap = controller.snapshot()
        table = Table(
            title=f"allervers demo: {controller.config.vehicle.name} ({controller.config.vehicle.id})",
            caption=f"control socket {sockets.control_socket}  ·  Ctrl-C to stop  ·  "
            f"try: allervers sim-set -c {controller.config.source_path} gpio.ignition=true",
            expand=True,
        )
        table.add_column("component", style="bold")
        table.add_column("values")
        table.add_column("freshness")
        now = time.time()
        sim = getattr(controller, "simulation", None)
        if sim is not None and sim.last_change is not None:
            when, what = sim.last_change
            table.add_row("simulator", f"[yellow]{what}[/yellow]", f"{now - when:.0f} s ago")
        for name, comp in snap.items():
            values = "\n".join(
                f"{k}: {_fmt(k, v)}"
                for k, v in comp.items()
                if k not in HIDDEN and (k, name) != ("alarms", "controller")
            )
            if name == "controller":
                alarms = comp.get("alarms") or []
                values += "\n" + (
                    "alarms: none"
                    if not alarms
                    else "\n".join(f"[red]{a['severity']} {a['id']}[/red]: {a['message']}" for a in alarms)
                )
            style = "red" if comp.get("stale") else "green"
            table.add_row(name, values, f"[{style}]{_freshness(comp, now)}[/{style}]")
        return table

    async def wait_tick() -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), refresh_s)
        return stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

    if not sys.stdout.isatty():
        while True:
            print(render_text(controller.snapshot()), flush=True)
            print("-" * 60, flush=True)
            if await wait_tick():
                return
    with Live(build(), console=console, refresh_per_second=2, screen=False) as live:
        while not await wait_tick():
            live.update(build())
