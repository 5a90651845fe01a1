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


# The live view's rows, most useful first: what each component says in one line, then the rest if there is room.
SUMMARY: dict[str, tuple[tuple[str, str], ...]] = {  # (field, short label; "" when the unit says it all)
    "power": (
        ("soc", "battery"),
        ("battery_v", ""),
        ("battery_a", ""),
        ("state", ""),
        ("mode", "mode"),
        ("ac_out_w", "load"),
    ),
    "shore": (("connected", "plugged"), ("voltage_v", ""), ("power_w", "")),
    "modem": (("link", "link"), ("signal_bars", "bars"), ("operator", ""), ("registration", "")),
    "vehicle": (("ignition", "ignition"), ("antenna_stowed", "dish stowed"), ("door_open", "door open")),
    "kiosk": (("open", "open"), ("locked", "locked"), ("session_active", "session"), ("sessions_today", "today")),
    "checklist": (("phase", ""), ("stop", "at"), ("pending_required", "to do")),
    "controller": (("uptime_s", "up"), ("clock_synced", "clock synced")),
}
NAME_WIDTH = 13


def _summary_value(key: str, value: Any) -> str:
    if key == "stop" and isinstance(value, dict):
        return str(value.get("commune") or "—")
    if key == "pending_required" and isinstance(value, list):
        return str(len(value))
    if isinstance(value, dict) and "answering" in value:  # a device's health (the devices component)
        return "partial" if value.get("failing") else "ok" if value["answering"] else "silent"
    return _fmt(key, value)


def live_lines(
    snapshot: dict[str, Any],
    *,
    width: int,
    height: int,
    title: str,
    hints: list[str],
    last_change: tuple[float, str] | None = None,
    now: float | None = None,
) -> list[Any]:
    """The demo's live view as at most ``height`` lines of at most ``width`` cells: title, alarms, one line per
    component, then details while there is room; the hints always on the last lines."""
    from rich.text import Text

    now = time.time() if now is None else now

    def line(*parts: tuple[str, str]) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        for chunk, style in parts:
            text.append(chunk, style)
        text.truncate(width, overflow="ellipsis")
        return text

    first = [line((title, "bold"))]
    alarms = (snapshot.get("controller") or {}).get("alarms") or []
    if not alarms:
        first.append(line(("alarms".ljust(NAME_WIDTH), "bold"), ("none", "green")))
    for a in alarms:
        acked = " (acknowledged)" if a.get("acknowledged") else ""
        first.append(
            line(("alarm".ljust(NAME_WIDTH), "bold red"), (f"{a['severity']} {a['id']}{acked}: {a['message']}", "red"))
        )
    summaries, details = [], []
    for name, comp in snapshot.items():
        stale = bool(comp.get("stale"))
        keys = SUMMARY.get(name) or tuple((k, k) for k in comp if k not in HIDDEN and k != "alarms")[:4]
        values = "  ".join(f"{label} {_summary_value(k, comp.get(k))}".strip() for k, label in keys if k in comp)
        mark = (f"STALE ({comp.get('stale_reason') or 'unknown'})  ", "bold red") if stale else ("", "")
        summaries.append(line((name.ljust(NAME_WIDTH), "bold"), mark, (values, "dim" if stale else "")))
        shown = {k for k, _label in keys}
        rest = [
            f"{k} {_fmt(k, comp[k])}"
            for k in comp
            if k not in HIDDEN and k not in shown and (name, k) != ("controller", "alarms")
        ]
        # The details of a component, packed into as few lines as the width allows.
        current = ""
        for item in rest:
            if current and NAME_WIDTH + 2 + len(current) + 2 + len(item) > width:
                details.append(line((f"  {name}".ljust(NAME_WIDTH), "dim"), (current, "")))
                current = ""
            current = f"{current}  {item}" if current else item
        if current:
            details.append(line((f"  {name}".ljust(NAME_WIDTH), "dim"), (current, "")))
    if last_change is not None:
        when, what = last_change
        summaries.append(line(("simulator".ljust(NAME_WIDTH), "bold"), (f"{what} ({now - when:.0f} s ago)", "yellow")))
    bottom = [line((hint, "cyan")) for hint in hints]
    room = max(0, height - len(bottom))
    body = (first + summaries)[:room]
    body += details[: room - len(body)]
    return body + bottom[: max(1, height - len(body))]


async def live_view(
    controller: Any, stop: asyncio.Event, duration: float | None = None, refresh_s: float = 1.0
) -> None:
    """Redraw the state every ``refresh_s`` until ``stop`` (Ctrl-C) or ``duration``; plain lines off a tty.

    The view fits the terminal (80 x 24 shows every component and the alarms; a larger one shows the details too).
    """
    from rich.console import Console, Group
    from rich.live import Live

    console = Console()
    deadline = None if duration is None else time.monotonic() + duration
    cfg = controller.config
    title = f"allervers demo: {cfg.vehicle.name} ({cfg.vehicle.id})"
    hints = demo_hints(cfg.source_path)

    def build() -> Group:
        sim = getattr(controller, "simulation", None)
        width, height = console.size
        lines = live_lines(
            controller.snapshot(),
            width=width,
            height=height - 1,  # Live keeps the cursor on a line of its own below the view
            title=title,
            hints=hints,
            last_change=sim.last_change if sim is not None else None,
        )
        return Group(*lines)

    async def wait_tick() -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), refresh_s)
        return stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

    if not sys.stdout.isatty():
        for hint in hints:
            print(hint, flush=True)
        while True:
            print(render_text(controller.snapshot()), flush=True)
            print("-" * 60, flush=True)
            if await wait_tick():
                return
    with Live(build(), console=console, refresh_per_second=2, screen=False, vertical_overflow="crop") as live:
        while not await wait_tick():
            live.update(build())


def demo_hints(config_path: str | None) -> list[str]:
    """What to type next, as it works from where the demo was started (the CLI finds the running demo itself)."""
    import os
    import shutil

    exe = "allervers"
    found = shutil.which("allervers")
    mine = os.path.join(os.path.dirname(sys.executable), "allervers")
    if found is None or os.path.realpath(found) != os.path.realpath(mine):
        exe = os.path.relpath(mine) if not os.path.relpath(mine).startswith("..") else mine
    if os.environ.get("TMUX"):
        last = "Ctrl-C here stops the whole demo · Ctrl-b 1 console · Ctrl-b 2 public terminal"
    else:
        last = f"Ctrl-C stops the demo · config {config_path}"
    return [f"try: {exe} status · {exe} sim-set gpio.ignition=true · {exe} alarms", last]
