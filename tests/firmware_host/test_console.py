"""The driver's console (Textual, Pilot) against a real controller and its simulators, over the control socket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Button, Input, Static

from firmware_host.api import call_once
from firmware_host.console.app import ConsoleApp, StopPickerScreen
from firmware_host.console.link import ControllerLink
from firmware_host.console.screens import (
    AlarmsScreen,
    ChecklistView,
    InterlockScreen,
    LoginScreen,
    MainScreen,
    NoteView,
    OpenView,
    OverrideScreen,
    RoadView,
    UnscheduledStopScreen,
)
from firmware_host.console.settings import PinLock
from firmware_host.console.widgets import StepRow

from ..conftest import make_config, on_screen, wait_until
from .test_checklist import bus_config, day_clock

SIZE = (100, 32)


@pytest.fixture
async def bus(tmp_path: Path, run_controller: Any) -> Any:
    controller = await run_controller(bus_config(tmp_path), clock=day_clock())
    await asyncio.wait_for(controller.ready.wait(), 10)
    return controller


@contextlib.asynccontextmanager
async def console(controller: Any, **kwargs: Any) -> AsyncIterator[tuple[ConsoleApp, Any]]:
    app = ConsoleApp(ControllerLink(controller.config.api.control_socket), vehicle_name="Bus test", **kwargs)
    async with app.run_test(size=SIZE) as pilot:
        yield app, pilot


async def login(app: ConsoleApp, pilot: Any, name: str = "Marie", pin: str | None = None) -> None:
    field = (await on_screen(app, LoginScreen, message="login screen")).query_one("#name", Input)
    field.value = ""
    await pilot.press(*name, "enter")
    if pin is not None:
        await pilot.press(*pin, "enter")
    await on_screen(app, MainScreen, message="main screen")


def body(app: ConsoleApp) -> Any:
    children = list(app.main.query_one("#body").children)
    return children[0] if children else None


async def wait_body(app: ConsoleApp, kind: type, message: str = "") -> Any:
    return await wait_until(
        lambda: body(app) if isinstance(body(app), kind) else None, message=message or kind.__name__
    )


def row(app: ConsoleApp, step_id: str) -> StepRow:
    return app.main.query_one(f"#step-{step_id}", StepRow)


def text_of(widget: Any) -> str:
    return str(widget.render())


async def sim_set(controller: Any, **values: Any) -> Any:
    return await call_once(controller.config.api.control_socket, "sim.set", values)


async def test_arrival_from_the_suggested_stop_to_open(bus: Any) -> None:
    async with console(bus) as (app, pilot):
        await login(app, pilot)
        road = await wait_body(app, RoadView)
        assert "Menat, Place de l'église   (prochain)" in str(road.query_one("#stop-0", Button).label)
        await wait_until(lambda: "Contact mairie : Mairie, 04 65 71 00 03" in text_of(road.query_one("#stop-detail")))
        await pilot.press("enter")  # the suggested stop has the focus: Enter confirms the arrival there
        view = await wait_body(app, ChecklistView)
        assert bus.state.value("checklist", "stop")["commune"] == "Menat"
        assert "[x] Courant secteur présent" in text_of(row(app, "shore_power"))
        assert "vérifié automatiquement" in text_of(row(app, "shore_power"))
        await wait_until(lambda: "Reste à faire : 2 étape(s) obligatoire(s)" in text_of(view.query_one("#summary")))

        await sim_set(bus, **{"shore.connected": False})  # the socket trips: the step unticks on screen
        await wait_until(lambda: "[!] Courant secteur présent" in text_of(row(app, "shore_power")))
        assert "pas encore" in text_of(row(app, "shore_power"))
        await sim_set(bus, **{"shore.connected": True})
        await wait_until(lambda: "[x] Courant secteur présent" in text_of(row(app, "shore_power")))

        await wait_until(lambda: app.focused is row(app, "parked"), message="focus on the first step to do")
        await pilot.press("enter")
        await wait_until(lambda: "coché par Marie" in text_of(row(app, "parked")), message="parked ticked")
        await pilot.click("#step-shore_plugged")
        await wait_until(lambda: bus.state.value("checklist", "pending_required") == [], message="all ticked")
        await wait_until(lambda: "Tout est prêt." in text_of(view.query_one("#summary", Static)))
        await pilot.click("#finish")
        opened = await wait_body(app, OpenView)
        assert bus.state.value("checklist", "phase") == "open"
        assert "Pas de borne publique configurée" in text_of(opened.query_one("#kiosk-note", Static))
        assert "Départ prévu à 12:00" in text_of(opened.query_one("#open-info", Static))
    ended = [e for e in await bus.store.events_after(0, 500) if e["type"] == "checklist.ended"]
    assert ended[-1]["by"] == "Marie" and ended[-1]["done"]["parked"] == "Marie"


async def test_override_asks_for_a_reason_and_logs_it(bus: Any) -> None:
    async with console(bus) as (app, pilot):
        await login(app, pilot, "Paul")
        await wait_body(app, RoadView)
        await pilot.press("enter")
        await wait_body(app, ChecklistView)
        await pilot.click("#finish")
        dialog = await on_screen(app, OverrideScreen)
        listed = text_of(dialog.query_one("#override-steps", Static))
        assert "Bus garé, frein serré, cales posées" in listed and "Câble branché" in listed
        ok = dialog.query_one("#override-ok", Button)
        assert ok.disabled
        await pilot.press("o", "k")
        assert ok.disabled  # two letters are not a reason
        await pilot.press(*" : prise HS", "enter")
        await wait_body(app, OpenView)
    overrides = [e for e in await bus.store.events_after(0, 500) if e["type"] == "checklist.override"]
    assert [(e["step"], e["reason"], e["by"]) for e in overrides] == [
        ("parked", "ok : prise HS", "Paul"),
        ("shore_plugged", "ok : prise HS", "Paul"),
    ]


async def test_interlock_warning_buzzer_and_acknowledge(bus: Any) -> None:
    buzzer = bus.io.buzzer
    async with console(bus) as (app, pilot):
        await login(app, pilot)
        await sim_set(bus, **{"gpio.ignition": True})  # dish raised and cable plugged: both interlocks
        screen = await on_screen(app, InterlockScreen)
        await wait_until(lambda: "débranchez le câble" in text_of(screen.query_one("#interlock-text", Static)))
        assert "rangez l'antenne" in text_of(screen.query_one("#interlock-text", Static))
        await wait_until(lambda: buzzer.pin.state == 1, message="buzzer sounding")
        await pilot.press("escape")  # not dismissible
        assert isinstance(app.screen, InterlockScreen)
        await pilot.press("enter")  # the acknowledge button has the focus
        await wait_until(lambda: buzzer.value == 0 and buzzer.pin.state == 0, message="buzzer silenced")
        await wait_until(lambda: "Buzzer coupé" in text_of(screen.query_one("#interlock-acked", Static)))
        assert isinstance(app.screen, InterlockScreen)  # silenced, not gone
        assert not screen.query_one("#interlock-ack", Button).display
        await sim_set(bus, **{"gpio.antenna_stowed": True})  # one cause gone, the other remains
        await wait_until(lambda: "rangez l'antenne" not in text_of(screen.query_one("#interlock-text", Static)))
        assert isinstance(app.screen, InterlockScreen)
        await sim_set(bus, **{"shore.connected": False})
        await on_screen(app, MainScreen, message="warning gone with its cause")
        assert buzzer.pin.state == 0


async def test_a_warning_cleared_under_another_screen_goes_when_uncovered(bus: Any) -> None:
    async with console(bus) as (app, pilot):
        await login(app, pilot)
        await sim_set(bus, **{"gpio.ignition": True})
        warning = await on_screen(app, InterlockScreen)
        app.action_show_alarms()  # a screen over the warning, as a worker finishing late can open one
        await on_screen(app, AlarmsScreen, message="alarms over the warning")
        await sim_set(bus, **{"gpio.ignition": False})
        await wait_until(lambda: warning.has_class("-cleared"), message="warning cleared under the alarms")
        assert not warning.query_one("#interlock-box").display  # the main screen shows through, not the red
        await pilot.press("escape")
        await on_screen(app, MainScreen, message="warning gone once uncovered")
        assert not any(isinstance(s, InterlockScreen) for s in app.screen_stack)


async def test_departure_then_the_next_stop_is_suggested(bus: Any) -> None:
    await call_once(bus.config.api.control_socket, "checklist.arrive", {"stop": "2026-06-02/63223/0900", "by": "M"})
    await call_once(bus.config.api.control_socket, "checklist.finish", {"by": "M", "reason": "set up by the test"})
    async with console(bus) as (app, pilot):
        await login(app, pilot, "Marie")
        await wait_body(app, OpenView)
        await pilot.click("#close-open")
        view = await wait_body(app, ChecklistView)
        assert "Départ de Menat" in text_of(view.query_one(".title", Static))
        assert "[-] Borne publique fermée et effacée" in text_of(row(app, "kiosk_closed"))
        assert "sans objet" in text_of(row(app, "kiosk_closed"))
        await pilot.click("#step-antenna_stowed")  # the sensor says no: the driver cannot tick it by hand
        await wait_until(lambda: any("réglez-le" in str(n.message) for n in app._notifications))
        assert "[!]" in text_of(row(app, "antenna_stowed"))
        await sim_set(bus, **{"gpio.antenna_stowed": True, "shore.connected": False, "inverter.mode": "off"})
        await wait_until(lambda: bus.state.value("checklist", "pending_required") == ["equipment_stowed"])
        await pilot.click("#step-equipment_stowed")
        await wait_until(lambda: bus.state.value("checklist", "pending_required") == [])
        await pilot.click("#finish")
        road = await wait_body(app, RoadView)
        await wait_until(lambda: "Manzat, Place du marché   (prochain)" in str(road.query_one("#stop-1", Button).label))
        assert "(fait)" in str(road.query_one("#stop-0", Button).label)
        await wait_until(lambda: app.focused is road.query_one("#stop-1", Button), message="focus on the next stop")
    assert bus.state.value("checklist", "phase") == "on_the_road"


async def test_unscheduled_stop_and_changing_the_stop(bus: Any) -> None:
    async with console(bus) as (app, pilot):
        await login(app, pilot)
        await wait_body(app, RoadView)
        await pilot.click("#other-stop")
        form = await on_screen(app, UnscheduledStopScreen)
        await pilot.press(*"Saint-Gervais", "tab", *"632", "enter")
        await wait_until(lambda: "Code INSEE : 5 caractères" in text_of(form.query_one("#stop-error")))
        form.query_one("#insee", Input).value = "63354"
        await pilot.click("#stop-ok")
        view = await wait_body(app, ChecklistView)
        assert "Arrivée à Saint-Gervais" in text_of(view.query_one(".title", Static))
        assert bus.state.value("checklist", "stop")["insee"] == "63354"
        await pilot.click("#step-parked")
        await wait_until(lambda: "coché par Marie" in text_of(row(app, "parked")))
        await pilot.click("#change-stop")  # wrong stop: pick the scheduled one; the ticks stay
        picker = await on_screen(app, StopPickerScreen)
        await pilot.click(picker.query_one("#stop-1", Button))
        await wait_until(lambda: (bus.state.value("checklist", "stop") or {}).get("commune") == "Manzat")
        await on_screen(app, MainScreen)
        await wait_until(lambda: "Arrivée à Manzat" in text_of(body(app).query_one(".title", Static)))
        assert "coché par Marie" in text_of(row(app, "parked"))
        await pilot.click("#cancel-run")
        await wait_body(app, RoadView)
    assert bus.state.value("checklist", "phase") == "on_the_road"


async def test_english_on_f2_and_back(bus: Any) -> None:
    async with console(bus) as (app, pilot):
        await login(app, pilot)
        await wait_body(app, RoadView)
        await pilot.press("enter")
        await wait_body(app, ChecklistView)
        await pilot.press("f2")
        await wait_until(lambda: "[x] Shore power present" in text_of(row(app, "shore_power")), message="English")
        assert "checked automatically" in text_of(row(app, "shore_power"))
        assert "Open to the public" in str(app.main.query_one("#finish", Button).label)
        assert "Shore: plugged in" in text_of(app.main.query_one("#status"))
        await pilot.press("f2")
        await wait_until(lambda: "Ouvrir au public" in str(app.main.query_one("#finish", Button).label))


async def test_pin_lockout_then_unlock(bus: Any, tmp_path: Path) -> None:
    now = [1000.0]
    pin = PinLock("4821", monotonic=lambda: now[0])
    async with console(bus, pin=pin) as (app, pilot):
        await on_screen(app, LoginScreen)
        await wait_until(lambda: app.status is not None, message="status")
        await pilot.press(*"Marie", "enter")
        for _ in range(5):
            await pilot.press(*"1111", "enter")
        error = app.screen.query_one("#login-error", Static)
        await wait_until(lambda: "Trop d'essais : réessayez dans 30 s." in text_of(error))
        await pilot.press(*"4821", "enter")  # even the right PIN waits out the pause
        assert isinstance(app.screen, LoginScreen) and "réessayez" in text_of(error)
        now[0] += 31
        await pilot.press(*"4821", "enter")
        await on_screen(app, MainScreen, message="unlocked")
        assert app.driver == "Marie"
        await pilot.press("f9")  # lock: the next driver signs in
        await on_screen(app, LoginScreen)
        assert app.driver is None


async def test_idle_console_locks_itself(bus: Any) -> None:
    now = [0.0]
    async with console(bus, pin=PinLock("1234"), lock_after_s=0.2, monotonic=lambda: now[0]) as (app, pilot):
        await on_screen(app, LoginScreen)
        await pilot.press(*"Marie", "enter", *"1234", "enter")
        await on_screen(app, MainScreen)
        now[0] += 1.0
        locked = await on_screen(app, LoginScreen, message="locked after idling")
        field = locked.query_one("#name", Input)
        await wait_until(lambda: field.value == "", message="the name is asked again")


async def test_the_language_switch_on_the_login_screen_keeps_what_the_driver_typed(bus: Any) -> None:
    async with console(bus) as (app, pilot):
        login_screen = await on_screen(app, LoginScreen)
        app.last_driver = "Paul"  # offered, then replaced by the driver
        login_screen.query_one("#name", Input).value = ""
        await pilot.press(*"Ma", "f2")
        await wait_until(lambda: "Your first name" in text_of(login_screen.query_one(".field-label", Static)))
        assert login_screen.query_one("#name", Input).value == "Ma"


async def test_news_landing_before_a_screen_is_drawn_is_shown_once_it_is(bus: Any) -> None:
    """The app tells its screens of news as it comes (the last driver, alarms, the language, a new tour), and a
    screen just pushed has no widgets yet: its compose runs later. CI once failed on the login screen the idle lock
    had just pushed. Each screen takes the news quietly and, once drawn, shows the state of that moment."""
    async with console(bus, pin=PinLock("1234")) as (app, pilot):
        await login(app, pilot, pin="1234")
        await wait_body(app, RoadView)
        app.action_lock()
        locked = app.screen
        assert isinstance(locked, LoginScreen) and not locked.children
        locked.offer_name("Paul")  # each of these raised NoMatches before
        locked.relabel()
        await on_screen(app, LoginScreen)
        assert locked.query_one("#name", Input).value == "Paul"  # the name offered meanwhile
        await pilot.press(*"1234", "enter")
        await on_screen(app, MainScreen)

        bus.io.drive("ignition", True)  # an interlock alarm for the screens to show
        await wait_until(lambda: app.interlocks(), message="interlock alarm")
        shown = await on_screen(app, InterlockScreen)  # the app's own stays under the two below
        warning = InterlockScreen(app)
        app.push_screen(warning)
        warning.show()
        assert await on_screen(app, InterlockScreen) is warning and shown is not warning
        assert "débranchez" in text_of(warning.query_one("#interlock-text", Static))
        app.pop_screen()
        alarms = AlarmsScreen(app)
        app.push_screen(alarms)
        await alarms.show_rows()
        await on_screen(app, AlarmsScreen)
        await wait_until(lambda: "débranchez" in rows_text(alarms), message="the alarm listed")
        app.pop_screen()
        bus.io.drive("ignition", False)
        await on_screen(app, MainScreen, message="the warning gone with its cause")

        picker = StopPickerScreen(app)
        app.push_screen(picker)
        await app.reload()
        await on_screen(app, StopPickerScreen)
        assert picker.query_one(RoadView).query(".stop")


async def test_body_redraws_from_the_app_and_its_workers_do_not_interleave(bus: Any) -> None:
    """The app's handlers and its workers (reload, arrive) redraw the main body at once: each swap of the body's
    view waits for the one before, so the body never holds two views, half-made ones included."""
    async with console(bus) as (app, pilot):
        await login(app, pilot)
        await wait_body(app, RoadView)
        await asyncio.gather(*(app.main.show_body(force=True) for _ in range(3)))
        views = list(app.main.query_one("#body").children)
        assert len(views) == 1 and isinstance(views[0], RoadView) and views[0].query("#other-stop")


async def test_timers_landing_while_the_console_closes_are_ignored(bus: Any) -> None:
    """Textual removes the screens before it stops the app's timers; a tick in between must not look for them."""
    now = [0.0]
    async with console(bus, pin=PinLock("1234"), lock_after_s=60, monotonic=lambda: now[0]) as (app, pilot):
        await login(app, pilot, pin="1234")
    assert not app.screen_stack
    now[0] += 120.0
    app.link_lost_at = 0.0
    app._check_idle()  # raised ScreenStackError before
    app._age_tick()
    assert not app.screen_stack


async def test_the_console_rides_out_a_controller_restart(tmp_path: Path, run_controller: Any) -> None:
    cfg = bus_config(tmp_path)
    first = await run_controller(cfg, clock=day_clock())
    await asyncio.wait_for(first.ready.wait(), 10)
    async with console(first) as (app, pilot):
        await login(app, pilot)
        await wait_body(app, RoadView)
        status = app.main.query_one("#status", Static)
        await wait_until(lambda: "Batterie : " in text_of(status), message="live values")
        assert "VALEURS ANCIENNES" not in text_of(status)
        await first.stop()
        banner = app.main.query_one("#banner", Static)
        await wait_until(lambda: "Contrôleur injoignable : il" in text_of(banner), message="banner")
        assert not english_in(text_of(banner)), text_of(banner)
        await wait_until(lambda: "VALEURS ANCIENNES (il y a" in text_of(status), message="old values marked")
        assert "(?)" in text_of(status)
        second = await run_controller(cfg, clock=day_clock())
        await wait_until(lambda: not banner.display, timeout=15, message="reconnected")
        await wait_until(lambda: "VALEURS ANCIENNES" not in text_of(status), message="live again")
        await pilot.press("enter")
        await wait_body(app, ChecklistView)
        assert second.state.value("checklist", "phase") == "arrival"


async def test_a_bus_without_a_checklist_section(tmp_path: Path, run_controller: Any) -> None:
    controller = await run_controller(make_config(tmp_path))
    async with console(controller) as (app, pilot):
        await login(app, pilot)
        note = await wait_body(app, NoteView)
        assert "[checklist] absent" in text_of(note.query_one(Static))
        assert "Borne : non équipé" in text_of(app.main.query_one("#status"))


# --- the driver's words: French from the tables, never the controller's English -----------------------------------

ENGLISH_MARKERS = (
    "inverter",
    "not answering",
    "no reply",
    "reports",
    "connection",
    "registers",
    "unit ",
    "error",
    "shore power",
    "while parked",
    "warning",
    "alarm:",
    "sim.set",
    "press ",
    " the ",
)


def english_in(text: str) -> list[str]:
    """English words that must not reach a French screen (the language switch's "English" label is not one)."""
    low = text.lower()
    return [m for m in ENGLISH_MARKERS if m in low]


def alarm_ids_in_source() -> set[str]:
    """Every alarm id written literally in a rule anywhere in the product (the kiosk's, future features')."""
    import re

    ids: set[str] = set()
    for folder in ("firmware_host", "kiosk", "drivers"):
        for path in (Path(__file__).resolve().parents[2] / folder).rglob("*.py"):
            ids |= set(re.findall(r'AlarmRule\(\s*"([a-z0-9_.]+)"', path.read_text(encoding="utf-8")))
    return ids


SAMPLE_PARAMS = {
    "power.low_soc": {"soc": 12},
    "inverter.vebus_error": {"code": 17},
    "shore.sources_disagree": {"sources": {"meter": False, "pin": True}},
}


async def test_every_alarm_the_rules_can_raise_has_french_words(bus: Any) -> None:
    from firmware_host.console.i18n import I18n, alarm_kind

    ids = {rule.id for rule in bus.alarms.rules} | alarm_ids_in_source()
    assert {"inverter.overload", "inverter.overload.warning", "modem.stale", "kiosk.wipe_failed"} <= ids
    fr, en = I18n("fr"), I18n("en")
    for alarm_id in sorted(ids):
        alarm = {
            "id": alarm_id,
            "severity": "warning",
            "message": "the controller's own English message",
            "params": SAMPLE_PARAMS.get(alarm_id, {"name": "x", "error": "inverter: unit 227: no reply within 1 s"}),
        }
        assert alarm_kind(alarm_id) is not None, f"{alarm_id}: no French words in firmware_host/console/i18n.py"
        text = fr.alarm(alarm)
        assert "English message" not in text and not english_in(text), (alarm_id, text)
        assert "{" not in text and "?" not in text, (alarm_id, text)  # every parameter filled in
        assert en.alarm(alarm) != text, alarm_id
    for unknown in ("brand.new", "device.stale", "inverter.alarm"):  # never a table key taken for an id
        assert fr.alarm({"id": unknown, "message": "something went wrong"}) == (
            f"Alarme « {unknown} » (voir le détail technique)."
        )


def rows_text(screen: Any) -> str:
    from firmware_host.console.widgets import AlarmRow

    return "\n".join(text_of(r) for r in screen.query(AlarmRow))


async def test_overload_and_a_silent_modem_in_french_then_acknowledged(bus: Any) -> None:
    await sim_set(bus, **{"inverter.alarms.overload": "alarm", "modem.fault": "silent"})
    async with console(bus) as (app, pilot):
        await login(app, pilot)
        status = app.main.query_one("#status")
        await wait_until(lambda: "Alarme de l'onduleur : surcharge" in text_of(status), message="overload, French")
        await wait_until(lambda: "modem.stale" in bus.alarms.active, timeout=15, message="modem silent")
        await pilot.press("f4")
        screen = await wait_until(lambda: app.screen if type(app.screen).__name__ == "AlarmsScreen" else None)
        await wait_until(lambda: "Le modem satellite ne répond plus" in rows_text(screen))
        shown = rows_text(screen) + text_of(status)
        assert not english_in(shown), shown
        await pilot.press("enter")  # the first alarm not yet acknowledged has the focus
        first = bus.alarms.as_list()[0]["id"]
        await wait_until(lambda: bus.alarms.active[first].acknowledged, message="one acknowledged")
        assert not all(a.acknowledged for a in bus.alarms.active.values())
        await wait_until(lambda: "acquittée" in rows_text(screen), message="marked")
        await pilot.click("#ack-all")
        await wait_until(lambda: all(a.acknowledged for a in bus.alarms.active.values()), message="all acked")
        await pilot.click("#alarm-details-toggle")  # the technical text, on request only
        await wait_until(lambda: "inverter reports overload" in text_of(screen.query_one("#alarm-details")))
        await pilot.press("escape")
        await on_screen(app, MainScreen)
        assert "(acquittée)" in text_of(status)


async def test_lock_without_a_pin_says_so_and_day_browsing_keeps_the_focus(bus: Any) -> None:
    async with console(bus) as (app, pilot):
        await login(app, pilot)
        road = await wait_body(app, RoadView)
        await pilot.press("f9")
        await wait_until(lambda: any("aucun code" in str(n.message) for n in app._notifications), message="no PIN")
        await pilot.press("ctrl+c")  # the reflex to quit: Textual's own hint is English
        await wait_until(lambda: any("Ctrl+Q" in str(n.message) for n in app._notifications), message="quit hint")
        assert not [n.message for n in app._notifications if english_in(str(n.message))]
        assert isinstance(app.screen, MainScreen)
        app.screen.set_focus(road.query_one("#next-day", Button))
        for day in ("mercredi 3", "jeudi 4", "vendredi 5", "samedi 6"):
            await pilot.press("enter")
            await wait_until(lambda day=day: day in text_of(body(app).query_one("#road-day")), message=day)
            await wait_until(lambda: app.focused is body(app).query_one("#next-day", Button), message="focus kept")
        assert "Aucun arrêt prévu" in text_of(body(app).query_one("#stops .note"))


async def test_inverter_mode_from_the_departure_step(bus: Any) -> None:
    await call_once(bus.config.api.control_socket, "checklist.arrive", {"stop": "2026-06-02/63223/0900", "by": "M"})
    await call_once(bus.config.api.control_socket, "checklist.finish", {"by": "M", "reason": "set up by the test"})
    await call_once(bus.config.api.control_socket, "checklist.depart", {"by": "M"})
    async with console(bus, inverter_writes=True) as (app, pilot):
        await login(app, pilot)
        await wait_body(app, ChecklistView)
        assert "[!] Onduleur en mode route" in text_of(row(app, "inverter_driving"))
        await pilot.click("#step-inverter_driving")
        dialog = await wait_until(lambda: app.screen if type(app.screen).__name__ == "InverterModeScreen" else None)
        assert "Mettre en « chargeur seul »" in str(dialog.query_one("#mode-charger_only", Button).label)
        await pilot.click("#mode-charger_only")
        await wait_until(lambda: bus.state.value("power", "mode") == "charger_only", message="mode set")
        await wait_until(lambda: "[x] Onduleur en mode route" in text_of(row(app, "inverter_driving")))
    async with console(bus, inverter_writes=False) as (app, pilot):  # a bus where the console may not write
        await sim_set(bus, **{"inverter.mode": "on"})
        await login(app, pilot)
        await wait_body(app, ChecklistView)
        await wait_until(lambda: "[!] Onduleur en mode route" in text_of(row(app, "inverter_driving")))
        await pilot.click("#step-inverter_driving")
        await wait_until(lambda: any("n'a pas le droit" in str(n.message) for n in app._notifications))
        assert isinstance(app.screen, MainScreen)
