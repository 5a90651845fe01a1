"""Draw the public terminal's launcher screens as PNGs at the bus's screen sizes (run by scripts/screenshots).

The launcher runs at the terminal size foot gives it on each panel (72x23 cells on the 10-inch 1280x800 screen,
109x31 on a 1920x1080 one) against the scripted kiosk socket of the tests, with the shipped services. Each screen is
exported as an SVG of its cells (Rich, monospace font, no window frame) and drawn to a PNG by rsvg-convert at the
panel's pixel size.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from textual.widgets import Static  # noqa: E402

from kiosk.launcher.app import KioskApp  # noqa: E402
from kiosk.launcher.screens import (  # noqa: E402
    ClosedScreen,
    IdleScreen,
    OfflineScreen,
    ServicesScreen,
    SessionScreen,
    WelcomeScreen,
)
from tests.conftest import wait_until  # noqa: E402
from tests.kiosk.scripted_kiosk import (  # noqa: E402
    ScriptedKiosk,
    end_as_the_visitor,
    on_screen,
    screen_services,
    settle,
    tap,
)

PANELS = {"1280x800": (72, 23), "1920x1080": (109, 31)}  # pixels -> foot's cells at the shipped font size 22

# Rich's SVG without the window frame and with the terminal's own font (DejaVu Sans Mono on Debian, as in foot).
SVG_FORMAT = """<svg viewBox="{terminal_x} {terminal_y} {terminal_width} {terminal_height}"
     xmlns="http://www.w3.org/2000/svg">
    <style>
    .{unique_id}-matrix {{
        font-family: DejaVu Sans Mono, monospace;
        font-size: {char_height}px;
        line-height: {line_height}px;
    }}
    {styles}
    </style>
    <defs>
    <clipPath id="{unique_id}-clip-terminal">
      <rect x="0" y="0" width="{terminal_width}" height="{terminal_height}" />
    </clipPath>
    {lines}
    </defs>
    <rect x="{terminal_x}" y="{terminal_y}" width="{terminal_width}" height="{terminal_height}" fill="#000000"/>
    <g transform="translate({terminal_x}, {terminal_y})" clip-path="url(#{unique_id}-clip-terminal)">
    {backgrounds}
    <g class="{unique_id}-matrix">
    {matrix}
    </g>
    </g>
</svg>
"""


def screen_svg(app: KioskApp) -> str:
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), force_terminal=True, record=True, legacy_windows=False
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    # DejaVu Sans Mono's advance is 0.602 em: with Rich's default 0.61 a long line drifts by a cell.
    return console.export_svg(code_format=SVG_FORMAT, unique_id="screen", font_aspect_ratio=0.602)


def to_png(svg: str, panel: str, out: Path) -> None:
    width, height = panel.split("x")
    with tempfile.NamedTemporaryFile("w", suffix=".svg", encoding="utf-8") as f:
        f.write(svg)
        f.flush()
        subprocess.run(["rsvg-convert", "-w", width, "-h", height, "-b", "#000000", f.name, "-o", str(out)], check=True)


Steps = Callable[[KioskApp, Any, ScriptedKiosk], Awaitable[None]]


async def welcome(app: KioskApp, pilot: Any, kiosk: ScriptedKiosk) -> None:
    await on_screen(app, WelcomeScreen)


async def services(app: KioskApp, pilot: Any, kiosk: ScriptedKiosk) -> None:
    await tap(pilot, "#touch")
    await on_screen(app, ServicesScreen)


async def offline(app: KioskApp, pilot: Any, kiosk: ScriptedKiosk) -> None:
    kiosk.status["link_up"] = False
    await tap(pilot, "#touch")
    await on_screen(app, OfflineScreen)


async def session(app: KioskApp, pilot: Any, kiosk: ScriptedKiosk) -> None:
    await kiosk.call("session.start", {"service": "caf"})
    screen = await on_screen(app, SessionScreen)
    kiosk.status["session"].update(time_left_s=290, warning="5min")
    await wait_until(lambda: screen.query_one("#warning").has_class("-warning"), message="the 5-minute warning")


async def idle(app: KioskApp, pilot: Any, kiosk: ScriptedKiosk) -> None:
    await kiosk.call("session.start", {"service": "caf"})
    await on_screen(app, SessionScreen)
    kiosk.status["session"].update(idle_prompt=True, idle_left_s=42)
    screen = await on_screen(app, IdleScreen)
    await wait_until(lambda: "42" in str(screen.query_one("#idle-left", Static).content), message="the seconds left")


async def end(app: KioskApp, pilot: Any, kiosk: ScriptedKiosk) -> None:
    screen = await end_as_the_visitor(app, pilot, kiosk)
    await wait_until(lambda: screen.query_one("#faces").display, message="the faces")


async def closed(app: KioskApp, pilot: Any, kiosk: ScriptedKiosk) -> None:
    kiosk.status.update(available=False, closed_reason="closed")
    await on_screen(app, ClosedScreen)


# file name, panel, number of services, how to get there
SHOTS: list[tuple[str, str, int, Steps]] = [
    ("welcome", "1280x800", 8, welcome),
    ("services", "1280x800", 8, services),
    ("services-12", "1280x800", 12, services),
    ("services", "1920x1080", 8, services),
    ("session", "1280x800", 8, session),
    ("idle", "1280x800", 8, idle),
    ("end", "1280x800", 8, end),
    ("offline", "1280x800", 12, offline),
    ("closed", "1280x800", 8, closed),
]


async def shoot(name: str, panel: str, count: int, steps: Steps, out_dir: Path) -> Path:
    kiosk = ScriptedKiosk(services=screen_services(count))
    app = KioskApp(kiosk, poll_s=0.05)
    async with app.run_test(size=PANELS[panel]) as pilot:
        await steps(app, pilot, kiosk)
        await settle(pilot)
        svg = screen_svg(app)
    out = out_dir / f"{name}-{panel}.png"
    to_png(svg, panel, out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?", default=REPO / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    for name, panel, count, steps in SHOTS:
        path = asyncio.run(shoot(name, panel, count, steps, args.out))
        print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}", flush=True)
    print(f"{len(SHOTS)} screenshots in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
