"""The launcher on the bus's real screen sizes: 72x23 cells (foot at size 22 on the 10-inch 1280x800 panel) and
109x31 (a 1920x1080 one). Every service one touch from the welcome screen, every screen readable without
scrolling, the grid under the arrow keys, and "Agrandir le texte".

Snapshots are the characters on the screen (tests/kiosk/snapshots/*.txt). When a screen changes on purpose,
rewrite them with ``ALLERVERS_UPDATE_SNAPSHOTS=1 pytest tests/kiosk/test_launcher_layout.py`` and review the diff
like code; docs/screenshots/ (scripts/screenshots) shows the same screens in colour.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import Button, Static

from firmware_host import config as config_mod
from firmware_host.api import call_once
from kiosk.launcher.app import ZOOMS, KioskApp
from kiosk.launcher.i18n import TEXTS
from kiosk.launcher.screens import (
    ClosedScreen,
    ConfirmEndScreen,
    EndScreen,
    IdleScreen,
    OfflineScreen,
    OpeningScreen,
    ServicesScreen,
    SessionScreen,
    WelcomeScreen,
)
from kiosk.launcher.widgets import MIN_TILE_H, MIN_TILE_W, ServiceGrid, ServiceTile, grid_shape, tile_lines
from kiosk.session import ZOOMS as CONTROLLER_ZOOMS
from kiosk.settings import DEFAULT_SERVICES
from tests.conftest import wait_until, write_config
from tests.firmware_host.test_console_cli import tmux
from tests.firmware_host.test_console_snapshots import check, screen_text

from .conftest import FAKE_BROWSER, TEST_USER
from .scripted_kiosk import ScriptedKiosk, end_as_the_visitor, on_screen, screen_services, settle, tap
from .test_launcher import launcher

SNAPSHOTS = Path(__file__).parent / "snapshots"
BUS, WIDE = (72, 23), (109, 31)


def shown(widget: Widget) -> bool:
    return all(node.display for node in widget.ancestors_with_self if isinstance(node, Widget))


def text_of(widget: Widget) -> str:
    if isinstance(widget, ServiceTile):
        return str(widget.worded())
    if isinstance(widget, Button):
        return str(widget.label)
    return str(widget.content) if isinstance(widget, Static) else ""


def cells(line: str) -> list[str]:
    """One entry per terminal cell: a wide character (an emoji) fills two."""
    out: list[str] = []
    for char in line:
        out.extend([char] + [""] * (cell_len(char) - 1))
    return out


def drawn(app: KioskApp, region: Region) -> list[str]:
    """The words drawn inside ``region`` (the dialogs' frames left out)."""
    rows = [cells(line) for line in screen_text(app).splitlines()]
    inside = ["".join(rows[y][region.x : region.right]) for y in range(region.y, region.bottom) if y < len(rows)]
    return "".join(" " if "\u2500" <= c <= "\u259f" else c for c in " ".join(inside)).split()


def assert_readable(app: KioskApp) -> None:
    """Every text of the screen is inside the screen and drawn whole (the characters inside each widget's region
    are its text, word for word), and nothing scrolls."""
    width, height = app.size
    whole = Region(0, 0, width, height)
    screen = app.screen
    for widget in [screen, *screen.query("*")]:
        if not shown(widget):
            continue
        assert not widget.allow_vertical_scroll, f"{widget!r} scrolls at {width}x{height}"
        text = text_of(widget)
        if not text.strip():
            continue
        region = widget.region
        assert region.area > 0 and whole.contains_region(region), (
            f"{widget!r} at {region}, off a {width}x{height} screen"
        )
        words = drawn(app, region)
        assert words == text.split(), f"{widget!r} is cut at {width}x{height}: {words}"


def background_colours(app: KioskApp, region: Region) -> set[str]:
    """The background colours of every cell of ``region`` as drawn."""
    colours: set[str] = set()
    for y, strip in enumerate(app.screen._compositor.render_strips()):
        if not region.y <= y < region.bottom:
            continue
        x = 0
        for segment in strip:
            for _ in range(cell_len(segment.text)):
                if region.x <= x < region.right and segment.style and segment.style.bgcolor:
                    colours.add(segment.style.bgcolor.name)
                x += 1
    return colours


# --- every service one touch away --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [BUS, WIDE], ids=["72x23", "109x31"])
async def test_welcome_fits_with_its_promise_and_one_big_target(size: tuple[int, int]) -> None:
    app = launcher(ScriptedKiosk(services=screen_services(8)))
    async with app.run_test(size=size) as pilot:
        welcome = await on_screen(app, WelcomeScreen)
        await settle(pilot)
        assert_readable(app)
        touch = welcome.query_one("#touch")
        assert touch.region.width == welcome.content_region.width and touch.region.height >= 9
        for button in ("#zoom", "#language"):
            assert welcome.query_one(button).region.height >= 3
        check(f"welcome_{size[0]}x{size[1]}", screen_text(app), SNAPSHOTS)


async def test_touching_the_promise_or_the_title_starts_too_but_not_the_two_small_buttons() -> None:
    app = launcher(ScriptedKiosk(services=screen_services(8)))
    async with app.run_test(size=BUS) as pilot:
        await on_screen(app, WelcomeScreen)
        await tap(pilot, "#zoom")
        await wait_until(lambda: app.zoom == 125, message="the zoom")
        assert isinstance(app.screen, WelcomeScreen)
        await tap(pilot, "#promise")
        await on_screen(app, ServicesScreen)


@pytest.mark.parametrize("count", [8, 12])
@pytest.mark.parametrize("size", [BUS, WIDE], ids=["72x23", "109x31"])
async def test_one_touch_on_welcome_shows_every_service(size: tuple[int, int], count: int) -> None:
    services = screen_services(count)
    app = launcher(ScriptedKiosk(services=services))
    async with app.run_test(size=size) as pilot:
        await on_screen(app, WelcomeScreen)
        await tap(pilot, "#touch")
        screen = await on_screen(app, ServicesScreen)
        await settle(pilot)
        assert_readable(app)
        grid = screen.query_one(ServiceGrid).region
        tiles = list(screen.query(ServiceTile))
        assert len(tiles) == count
        for service, tile in zip(services, tiles, strict=True):
            label = service["label"].split()
            assert drawn(app, tile.region)[: len(label)] == label, service["label"]
            assert grid.contains_region(tile.region), f"{tile.id} at {tile.region} outside the grid {grid}"
            assert tile.region.width >= MIN_TILE_W and tile.region.height >= MIN_TILE_H, (tile.id, tile.region)
        overlaps = [(a.id, b.id) for a in tiles for b in tiles if a is not b and a.region.overlaps(b.region)]
        assert overlaps == []
        assert screen.query_one("#back").region.bottom <= size[1]
        check(f"services_{count}_{size[0]}x{size[1]}", screen_text(app), SNAPSHOTS)


async def test_the_kiosk_command_on_a_real_terminal_of_the_bus_size(
    tmp_path: Path, run_controller: Any, visitor: Any, sessions_root: Path
) -> None:
    """The issue's "done when", end to end: `allervers kiosk` in a real 72x23 terminal (tmux) on a real controller
    with the shipped services; one touch (Enter, on the focused big button) shows every service's name."""
    assert shutil.which("tmux"), "tmux is needed (scripts/test installs it)"
    kiosk = {
        "sessions_dir": str(sessions_root / "sessions"),
        "session_user": TEST_USER,
        "browser_command": [FAKE_BROWSER, "--user-data-dir={profile_dir}", "--url={url}"],
        "policy_dir": str(tmp_path / "policies"),
    }  # no [[kiosk.services]]: the shipped list
    cfg_path = write_config(tmp_path, kiosk=kiosk)
    cfg = config_mod.load(cfg_path)
    controller = await run_controller(cfg)
    await wait_until(lambda: controller.kiosk.phase == "idle", message="the kiosk ready")
    await call_once(cfg.api.control_socket, "kiosk.open", {})
    server = f"allervers-launcher-{os.getpid()}"
    # Without COLUMNS/LINES from this process (Textual would believe them over the terminal).
    allervers = Path(sys.executable).parent / "allervers"
    command = f"env -u COLUMNS -u LINES TERM=xterm-256color LANG=C.UTF-8 {allervers} kiosk -c {cfg_path}"
    await tmux(server, "new-session", "-d", "-x", str(BUS[0]), "-y", str(BUS[1]), "-s", "kiosk", command)
    try:

        async def shows(text: str) -> bool:
            return text in await tmux(server, "capture-pane", "-p", "-t", "kiosk")

        await wait_until(lambda: shows("Touchez l'écran pour commencer"), timeout=20, message="the welcome screen")
        await tmux(server, "send-keys", "-t", "kiosk", "Enter")

        async def in_a_grid() -> bool:  # side by side, not a list to scroll
            lines = (await tmux(server, "capture-pane", "-p", "-t", "kiosk")).splitlines()
            return any("Impôts" in line and "CAF" in line for line in lines)

        await wait_until(in_a_grid, message="the services in a grid")
        screen = await tmux(server, "capture-pane", "-p", "-t", "kiosk")
        enabled = [s["label"] for s in DEFAULT_SERVICES if s.get("enabled", True)]
        assert len(enabled) == 8 and all(label in screen for label in enabled), screen
        assert "Que voulez-vous faire ?" in screen and "Retour" in screen and "Navigation libre" not in screen
    finally:
        await tmux(server, "kill-server")


async def test_a_1024x600_panel_with_foot_at_size_18_fits_too() -> None:
    """The README's advice for a 7-inch panel: about 71x21 cells."""
    app = launcher(ScriptedKiosk(services=screen_services(12)))
    async with app.run_test(size=(71, 21)) as pilot:
        await on_screen(app, WelcomeScreen)
        await settle(pilot)
        assert_readable(app)
        await tap(pilot, "#touch")
        screen = await on_screen(app, ServicesScreen)
        await settle(pilot)
        assert_readable(app)
        assert all(t.region.width >= MIN_TILE_W and t.region.height >= MIN_TILE_H for t in screen.query(ServiceTile))


async def test_english_labels_fit_the_bus_screen_too() -> None:
    services = screen_services(12)
    app = launcher(ScriptedKiosk(services=services))
    async with app.run_test(size=BUS) as pilot:
        await tap(pilot, "#language")
        await wait_until(lambda: "Touch the screen to start" in screen_text(app))
        await tap(pilot, "#touch")
        screen = await on_screen(app, ServicesScreen)
        await settle(pilot)
        assert_readable(app)
        for service, tile in zip(services, screen.query(ServiceTile), strict=True):
            label = (service.get("label_en") or service["label"]).split()
            assert drawn(app, tile.region)[: len(label)] == label, label


def test_the_grid_takes_the_shape_with_the_biggest_tiles() -> None:
    assert grid_shape(12, 68, 17) == (3, 4)  # 72x23: tiles of 21x3-4 cells
    assert grid_shape(8, 68, 17) == (3, 3)  # 21x5: squarer on the glass than 2 columns of 33x3
    assert grid_shape(8, 105, 20) == (4, 2)
    assert grid_shape(12, 105, 20) == (4, 3)
    assert grid_shape(1, 68, 17) == (1, 1)
    assert grid_shape(12, 30, 10) == (4, 3)  # nothing readable fits: still every tile, as big as can be


def test_a_tile_keeps_its_label_and_shortens_its_hint_clause_by_clause() -> None:
    hint = "Allocations familiales, aide au logement, RSA"
    assert tile_lines("CAF", hint, 50, 2) == (["CAF"], [hint])
    assert tile_lines("CAF", hint, 40, 3) == (["CAF"], ["Allocations familiales, aide au", "logement, RSA"])
    assert tile_lines("CAF", hint, 30, 2) == (["CAF"], ["Allocations familiales"])
    assert tile_lines("CAF", hint, 30, 1) == (["CAF"], [])
    assert tile_lines("Assurance Maladie", "Remboursements", 10, 3) == (["Assurance", "Maladie"], [])  # no word cut
    assert tile_lines("Télédéclaration", "", 8, 3) == (["Télédécl", "aration"], [])  # split, never lost
    assert tile_lines("Impôts", "", 20, 4) == (["Impôts"], [])


# --- the grid under the keyboard ---------------------------------------------------------------------------------


async def test_the_arrows_move_in_the_grid_and_enter_opens() -> None:
    kiosk = ScriptedKiosk(services=screen_services(8))
    app = launcher(kiosk)
    async with app.run_test(size=BUS) as pilot:
        await pilot.press("enter")
        screen = await on_screen(app, ServicesScreen)
        await settle(pilot)
        assert screen.query_one(ServiceGrid).columns == 3
        ids = [t.service_id for t in screen.query(ServiceTile)]
        moves = [("right", 1), ("down", 4), ("left", 3), ("up", 0), ("left", 0), ("down", 3), ("down", 6)]
        assert app.focused.id == f"service-{ids[0]}"
        for key, index in moves:
            await pilot.press(key)
            assert app.focused.id == f"service-{ids[index]}", key
        await pilot.press("down")  # below the last row: "Retour"
        assert app.focused.id == "back"
        await pilot.press("up")
        assert app.focused.id == f"service-{ids[-1]}"
        await pilot.press("right")
        assert app.focused.id == "back"
        await pilot.press("up", "up", "enter")
        await on_screen(app, SessionScreen)
        assert [a["service"] for c, a in kiosk.calls if c == "session.start"] == [ids[4]]


async def test_the_focused_tile_is_one_colour_with_no_band_behind_its_label() -> None:
    app = launcher(ScriptedKiosk(services=screen_services(8)))
    async with app.run_test(size=BUS) as pilot:
        await pilot.press("enter")
        screen = await on_screen(app, ServicesScreen)
        await settle(pilot)
        focused, other = list(screen.query(ServiceTile))[:2]
        assert app.focused is focused
        assert len(background_colours(app, focused.region)) == 1
        assert len(background_colours(app, other.region)) == 1
        assert background_colours(app, focused.region) != background_colours(app, other.region)


# --- every other screen at 72x23 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["fr", "en"])
async def test_every_screen_is_readable_on_the_bus_screen(lang: str) -> None:
    kiosk = ScriptedKiosk(services=screen_services(8))
    app = launcher(kiosk)

    async def readable(kind: type, *needles: str) -> Any:
        screen = await on_screen(app, kind)
        await wait_until(lambda: all(n in " ".join(screen_text(app).split()) for n in needles), message=str(needles))
        await settle(pilot)
        assert_readable(app)
        return screen

    async with app.run_test(size=BUS) as pilot:
        if lang == "en":
            await tap(pilot, "#language")
        await readable(WelcomeScreen, "Touch the screen" if lang == "en" else "Touchez l'écran")
        await kiosk.call("session.start", {"service": "caf"})
        session = await readable(SessionScreen)
        for warning in ("5min", "1min"):
            kiosk.status["session"].update(time_left_s=50, warning=warning)
            await wait_until(lambda: session.query_one("#warning").has_class("-warning"))
            await readable(SessionScreen)
            assert session.query_one("#end").region.height >= 5
        # The most the session screen says at once: the last minute, a printer problem, the scanner's button.
        kiosk.status["session"]["printing"] = {"state": "problem", "problem": "paper", "pages": 2}
        await wait_until(lambda: session.query_one("#printing").display, message="the printer's problem")
        await readable(SessionScreen)
        assert all(session.query_one(b).region.height >= 3 for b in ("#scan", "#end"))
        kiosk.status["session"].update(idle_prompt=True, idle_left_s=42)
        await readable(IdleScreen, "42")
        kiosk.status["session"].update(idle_prompt=False)
        await tap(pilot, "#end")
        await readable(ConfirmEndScreen)
        await tap(pilot, "#no")
        await on_screen(app, SessionScreen)
        kiosk.status["session"]["ending"] = True  # the time limit: the end screen follows the controller's wipe
        kiosk.status["wipe_phase"] = "erasing"
        end = await readable(EndScreen, "Erasing the files" if lang == "en" else "Effacement des fichiers")
        kiosk.end("time_limit")
        await wait_until(lambda: end.result is not None, message="the wipe result")
        await readable(EndScreen, "2")
        await tap(pilot, "#skip")
        await wait_until(lambda: end.query_one("#again").display)
        await readable(EndScreen)
        await tap(pilot, "#again")
        kiosk.status["link_up"] = False
        await readable(WelcomeScreen)
        await tap(pilot, "#touch")
        await readable(OfflineScreen)
        await tap(pilot, "#back")
        await on_screen(app, WelcomeScreen)
        kiosk.status["link_up"] = True
        kiosk.failing.add("session.start")
        await tap(pilot, "#touch")
        await on_screen(app, ServicesScreen)
        await tap(pilot, "#service-caf")
        opening = await readable(OpeningScreen)
        await wait_until(lambda: opening.query_one("#back").display, message="the failure")
        await readable(OpeningScreen)
        for reason in ("closed", "locked", "wipe_failed", "low_battery", "starting"):
            kiosk.status.update(available=False, closed_reason=reason)
            await on_screen(app, ClosedScreen)
            await wait_until(lambda r=reason: getattr(app.screen, "reason", None) == r, message=reason)
            await readable(ClosedScreen)


@pytest.mark.parametrize("wipe_ok", [True, False], ids=["faces", "failed-wipe"])
async def test_the_end_fits_the_bus_screen_with_the_faces_or_the_failure(wipe_ok: bool) -> None:
    kiosk = ScriptedKiosk(services=screen_services(8))
    kiosk.wipe_ok = wipe_ok
    app = launcher(kiosk)
    async with app.run_test(size=BUS) as pilot:
        end = await end_as_the_visitor(app, pilot, kiosk)
        buttons = ("#face-good", "#face-neutral", "#face-bad", "#skip") if wipe_ok else ("#again",)
        await wait_until(lambda: end.query_one(buttons[0]).display, message=buttons[0])
        await settle(pilot)
        assert_readable(app)
        for button in buttons:
            region = end.query_one(button).region
            assert region.height >= 3 and region.width >= 14 and region.bottom <= BUS[1], button


# --- "Agrandir le texte" ------------------------------------------------------------------------------------------


async def test_larger_text_cycles_goes_to_session_start_and_the_next_visitor_starts_at_100() -> None:
    assert ZOOMS == CONTROLLER_ZOOMS  # the launcher offers exactly what session.start accepts
    kiosk = ScriptedKiosk(services=screen_services(8))
    app = launcher(kiosk)
    async with app.run_test(size=BUS) as pilot:
        welcome = await on_screen(app, WelcomeScreen)
        assert str(welcome.query_one("#zoom", Button).label) == "Agrandir le texte : 100 %"
        zoom = welcome.query_one("#zoom", Button)
        for percent in (125, 150, 200, 100, 125):
            # A button ignores a second tap within its short press effect: a double tap is one step, not two.
            await wait_until(lambda: not zoom.has_class("-active"), message="the press effect")
            await tap(pilot, "#zoom")
            label = f"Agrandir le texte : {percent} %"
            await wait_until(lambda label=label: str(zoom.label) == label, message=label)
        await tap(pilot, "#language")  # the same visitor: the size stays
        welcome = await on_screen(app, WelcomeScreen)
        await wait_until(lambda: str(welcome.query_one("#zoom", Button).label) == "Larger text: 125%")
        await tap(pilot, "#touch")
        await on_screen(app, ServicesScreen)
        await tap(pilot, f"#service-{screen_services(1)[0]['id']}")
        await on_screen(app, SessionScreen)
        assert ("session.start", {"service": "impots", "lang": "en", "zoom": 125}) in kiosk.calls
        await tap(pilot, "#end")
        await tap(pilot, "#yes")
        end = await on_screen(app, EndScreen)
        await wait_until(lambda: end.result is not None)
        await tap(pilot, "#skip")
        await tap(pilot, "#again")
        welcome = await on_screen(app, WelcomeScreen)
        assert str(welcome.query_one("#zoom", Button).label) == "Agrandir le texte : 100 %"  # the next visitor


def test_every_character_of_the_launcher_has_a_glyph_in_the_fonts_on_the_bus() -> None:
    """The bus installs only fonts-dejavu-core (foot falls back to DejaVu Sans for the faces): a character outside
    DejaVu is a box with a hex code on the public screen (🙁 was)."""
    chars = sorted({c for pair in TEXTS.values() for text in pair for c in text if ord(c) > 0x7E})
    missing = []
    for char in chars:
        families = subprocess.run(
            ["fc-list", f":charset={ord(char):x}", "family"], capture_output=True, text=True, check=True
        ).stdout
        if "DejaVu" not in families:
            missing.append(f"{char} U+{ord(char):04X}")
    assert missing == []
