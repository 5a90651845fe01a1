"""The launcher with the Pilot: every screen and flow, French text asserted, English, keyboard only, fixed-size
layout checks; against a scripted kiosk socket double, and against a real controller's kiosk socket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Button, Static

from firmware_host.api import call_once
from kiosk.launcher.app import KioskApp, KioskLink
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
from kiosk.launcher.widgets import BigButton, ServiceTile
from tests.conftest import wait_until

from .scripted_kiosk import SERVICES, ScriptedKiosk, on_screen, tap


def texts(app: KioskApp) -> str:
    """Every visible text of the current screen (labels of buttons included), one per line."""
    out = []
    for widget in app.screen.query("*"):
        if not all(node.display for node in [widget, *widget.ancestors_with_self] if hasattr(node, "display")):
            continue
        if isinstance(widget, ServiceTile):
            out.append(str(widget.worded()))  # what the tile draws at its size
        elif isinstance(widget, Button):
            out.append(str(widget.label))
        elif isinstance(widget, Static):
            out.append(str(widget.content))
    return "\n".join(t for t in out if t)


def launcher(kiosk: Any, **kwargs: Any) -> KioskApp:
    return KioskApp(kiosk, poll_s=kwargs.pop("poll_s", 0.05), **kwargs)


async def test_welcome_in_plain_french_with_the_privacy_promise_and_english_on_demand() -> None:
    app = launcher(ScriptedKiosk())
    async with app.run_test(size=(100, 40)) as pilot:
        await on_screen(app, WelcomeScreen)
        shown = texts(app)
        assert "Bienvenue" in shown and "Bus France Services" in shown
        assert "Touchez l'écran pour commencer" in shown
        assert "tout est effacé de l'ordinateur" in shown and "sans savoir qui vous êtes" in shown
        await tap(pilot, "#language")
        await on_screen(app, WelcomeScreen)
        await wait_until(lambda: "Touch the screen to start" in texts(app))
        assert "everything is erased" in texts(app) and "Français" in texts(app)
        await tap(pilot, "#touch")
        await on_screen(app, ServicesScreen)
        assert "What would you like to do?" in texts(app) and "Family benefits (CAF)" in texts(app)
        await tap(pilot, "#back")
        await on_screen(app, WelcomeScreen)
        await tap(pilot, "#language")
        await wait_until(lambda: "Touchez l'écran pour commencer" in texts(app))


async def test_services_tiles_then_a_session_with_time_left_and_the_end_button() -> None:
    kiosk = ScriptedKiosk()
    app = launcher(kiosk)
    async with app.run_test(size=(100, 40)) as pilot:
        await on_screen(app, WelcomeScreen)
        await tap(pilot, "#touch")
        await on_screen(app, ServicesScreen)
        shown = texts(app)
        assert "Que voulez-vous faire ?" in shown
        flat = " ".join(shown.split())  # tiles wrap their text to their width
        assert "CAF Allocations familiales, aide au logement" in flat  # a roomy terminal shows the whole hint
        assert "Impôts Déclaration de revenus" in flat and "Retour" in shown
        await tap(pilot, "#service-impots")
        await on_screen(app, SessionScreen)
        assert ("session.start", {"service": "impots", "lang": "fr", "zoom": 100}) in kiosk.calls
        await wait_until(lambda: "Vous êtes sur : Impôts" in texts(app))
        assert "Temps restant : 10 min" in texts(app) and "Terminer et tout effacer" in texts(app)


async def test_warnings_at_5_and_1_minute() -> None:
    kiosk = ScriptedKiosk()
    app = launcher(kiosk)
    async with app.run_test(size=(100, 40)):
        await kiosk.call("session.start", {"service": "caf"})
        await on_screen(app, SessionScreen)
        kiosk.status["session"].update(time_left_s=290, warning="5min")
        await wait_until(lambda: "Il reste 5 minutes. Pensez à imprimer" in texts(app))
        assert "Temps restant : 5 min" in texts(app)
        assert app.screen.query_one("#warning").has_class("-warning")
        kiosk.status["session"].update(time_left_s=50, warning="1min")
        await wait_until(lambda: "Il reste 1 minute. Tout sera effacé ensuite." in texts(app))
        assert "Moins d'une minute" in texts(app) and app.screen.query_one("#warning").has_class("-urgent")


async def test_scanning_and_printing_on_the_session_screen() -> None:
    kiosk = ScriptedKiosk()
    app = launcher(kiosk)
    async with app.run_test(size=(100, 40)) as pilot:
        await kiosk.call("session.start", {"service": "caf"})
        await on_screen(app, SessionScreen)
        await wait_until(lambda: "Numériser un document" in texts(app))
        await tap(pilot, "#scan")
        await wait_until(lambda: "session.open_scan" in kiosk.commands(), message="the scanning page asked for")
        kiosk.status["session"].update(printing={"state": "printing", "pages": 2, "problem": None})
        await wait_until(lambda: "Impression en cours… 2 pages" in texts(app))
        kiosk.status["session"].update(printing={"state": "printed", "pages": 3, "problem": None})
        await wait_until(lambda: "Imprimé : 3 pages" in texts(app))
        kiosk.status["session"].update(printing={"state": "problem", "pages": 0, "problem": "paper"})
        await wait_until(lambda: "L'imprimante n'a plus de papier. Demandez au médiateur." in texts(app))
        assert app.screen.query_one("#printing").has_class("-warning")
        kiosk.status["session"].update(scanner="unreachable")
        await wait_until(lambda: "Le scanner ne répond pas" in texts(app))
        kiosk.status["session"].update(scanner="none", printing=None)
        await wait_until(lambda: "Pas de scanner dans ce bus" in texts(app))
        assert app.screen.query_one("#scan").disabled and "Imprim" not in texts(app)


async def test_ending_asks_first_no_is_the_default_then_wipe_done_faces_and_back_to_welcome() -> None:
    kiosk = ScriptedKiosk()
    app = launcher(kiosk)
    async with app.run_test(size=(100, 40)) as pilot:
        await kiosk.call("session.start", {"service": "caf"})
        await on_screen(app, SessionScreen)
        await tap(pilot, "#end")
        dialog = await on_screen(app, ConfirmEndScreen)
        assert "Terminer et effacer tout ce que vous avez fait sur cet ordinateur ?" in texts(app)
        assert dialog.focused.id == "no"
        await pilot.press("enter")  # a hurried Enter keeps the session
        await on_screen(app, SessionScreen)
        assert "session.end" not in kiosk.commands()
        await tap(pilot, "#end")
        await on_screen(app, ConfirmEndScreen)
        await tap(pilot, "#yes")
        end = await on_screen(app, EndScreen)
        await wait_until(lambda: end.result is not None, message="the wipe result")
        shown = texts(app)
        assert "Vos données ont été effacées." in shown and "Pages imprimées : 2" in shown
        assert "Ce service vous a-t-il aidé ?" in shown
        assert "😊  Oui" in shown and "😐  Un peu" in shown and "😞  Non" in shown and "Passer" in shown
        await tap(pilot, "#face-good")
        await wait_until(lambda: ("session.feedback", {"rating": "good"}) in kiosk.calls)
        await wait_until(lambda: "Merci ! À bientôt." in texts(app))
        await tap(pilot, "#again")
        await on_screen(app, WelcomeScreen)
        assert [c for c in kiosk.commands() if c != "session.activity"] == [
            "session.start",
            "session.end",
            "session.feedback",
        ]
        assert "session.activity" in kiosk.commands()  # the taps during the session reset the idle timeout


async def test_skipping_the_question_records_nothing() -> None:
    kiosk = ScriptedKiosk()
    app = launcher(kiosk)
    async with app.run_test(size=(100, 40)) as pilot:
        await kiosk.call("session.start", {"service": "caf"})
        await on_screen(app, SessionScreen)
        await tap(pilot, "#end")
        await on_screen(app, ConfirmEndScreen)
        await tap(pilot, "#yes")
        end = await on_screen(app, EndScreen)
        await wait_until(lambda: end.result is not None)
        await tap(pilot, "#skip")
        await wait_until(lambda: "Merci ! À bientôt." in texts(app))
        assert "session.feedback" not in kiosk.commands()


async def test_are_you_still_there_and_the_answer() -> None:
    kiosk = ScriptedKiosk()
    app = launcher(kiosk)
    async with app.run_test(size=(100, 40)) as pilot:
        await kiosk.call("session.start", {"service": "caf"})
        await on_screen(app, SessionScreen)
        kiosk.status["session"].update(idle_prompt=True, idle_left_s=42)
        await on_screen(app, IdleScreen)
        await wait_until(lambda: "Sans réponse, tout sera effacé dans 42 secondes." in texts(app))
        assert "Êtes-vous toujours là ?" in texts(app) and "Oui, je suis là" in texts(app)
        await tap(pilot, "#stay")
        await on_screen(app, SessionScreen)
        assert "session.activity" in kiosk.commands()


@pytest.mark.parametrize(
    ("reason", "sentence"),
    [
        ("time_limit", "Le temps de la session est écoulé."),
        ("idle", "La session a été fermée : personne n'a répondu."),
        ("remote", "La session a été fermée par l'équipe du bus."),
        ("ignition", "Le bus va partir : la session est terminée."),
        ("low_battery", "La batterie du bus est faible : la session est terminée."),
    ],
)
async def test_a_session_ended_elsewhere_shows_why_and_that_the_data_is_gone(reason: str, sentence: str) -> None:
    kiosk = ScriptedKiosk()
    app = launcher(kiosk)
    async with app.run_test(size=(100, 40)):
        await kiosk.call("session.start", {"service": "caf"})
        await on_screen(app, SessionScreen)
        kiosk.status["session"]["ending"] = True
        kiosk.status["wipe_phase"] = "erasing"
        end = await on_screen(app, EndScreen)
        await wait_until(lambda: "Effacement des fichiers" in texts(app))
        assert "Effacement de vos données…" in texts(app)
        kiosk.end(reason)
        await wait_until(lambda: end.result is not None)
        assert sentence in texts(app) and "Vos données ont été effacées." in texts(app)


async def test_a_failed_wipe_says_a_mediator_will_check_then_maintenance() -> None:
    kiosk = ScriptedKiosk()
    kiosk.wipe_ok = False
    app = launcher(kiosk)
    async with app.run_test(size=(100, 40)) as pilot:
        await kiosk.call("session.start", {"service": "caf"})
        await on_screen(app, SessionScreen)
        await tap(pilot, "#end")
        await on_screen(app, ConfirmEndScreen)
        await tap(pilot, "#yes")
        end = await on_screen(app, EndScreen)
        await wait_until(lambda: end.result is not None)
        assert "Un problème est survenu pendant l'effacement" in texts(app)
        assert "Ce service vous a-t-il aidé ?" not in texts(app)
        await tap(pilot, "#again")
        await on_screen(app, ClosedScreen)
        assert "La borne est en maintenance" in texts(app)


@pytest.mark.parametrize(
    ("reason", "title", "sentence"),
    [
        ("closed", "Le bus est fermé", "La borne ouvrira à l'arrivée du bus."),
        ("locked", "La borne est fermée", "Elle a été fermée à distance par l'équipe."),
        ("wipe_failed", "La borne est en maintenance", "Un médiateur va la vérifier."),
        ("ignition", "Le bus est fermé", "Le bus va partir. À bientôt !"),
        ("starting", "Le bus est fermé", "La borne se prépare."),
    ],
)
async def test_closed_screens(reason: str, title: str, sentence: str) -> None:
    kiosk = ScriptedKiosk(available=False, closed_reason=reason)
    app = launcher(kiosk)
    async with app.run_test(size=(100, 40)) as pilot:
        await on_screen(app, ClosedScreen)
        await wait_until(lambda: title in texts(app) and sentence in texts(app))
        await pilot.click()  # touching a closed terminal does nothing
        assert isinstance(app.screen, ClosedScreen)
        kiosk.status.update(available=True, closed_reason=None)
        await on_screen(app, WelcomeScreen)


async def test_an_unreachable_controller_shows_a_calm_message_and_recovers() -> None:
    kiosk = ScriptedKiosk()
    kiosk.failing.add("kiosk.status")
    app = launcher(kiosk)
    async with app.run_test(size=(100, 40)):
        await on_screen(app, ClosedScreen)
        await wait_until(lambda: "La borne redémarre. Un instant…" in texts(app))
        kiosk.failing.clear()
        await on_screen(app, WelcomeScreen)


@pytest.mark.parametrize("status", ["closed", "unreachable", "session"])
async def test_a_poll_landing_while_the_launcher_closes_is_ignored(status: str) -> None:
    """Textual removes the screens before it stops the app's timers: a status poll that lands in between must
    not look for a current screen (CI once failed on "No screens on stack" this way)."""
    kiosk = ScriptedKiosk()
    app = launcher(kiosk, poll_s=60)
    async with app.run_test(size=(100, 40)):
        await on_screen(app, WelcomeScreen)
    assert not app.screen_stack
    if status == "closed":
        kiosk.status.update(available=False, closed_reason="closed")
    elif status == "unreachable":
        kiosk.failing.add("kiosk.status")
    else:
        kiosk.status["session"] = {"service": "impots", "label": "Impôts", "ending": False}
    await app.refresh_status()  # raised ScreenStackError before
    assert not app.screen_stack


async def test_offline_instead_of_a_browser_error_page_with_the_services_that_need_no_link() -> None:
    kiosk = ScriptedKiosk(link_up=False)
    for s in kiosk.status["services"]:
        s["usable"] = not s["needs_link"]
    app = launcher(kiosk)
    async with app.run_test(size=(100, 40)) as pilot:
        await on_screen(app, WelcomeScreen)
        await tap(pilot, "#touch")
        await on_screen(app, OfflineScreen)
        shown = texts(app)
        assert "Pas de connexion Internet pour le moment" in shown
        assert "Vous pouvez quand même utiliser :" in shown and "Guide de la borne" in shown
        assert "CAF" not in shown
        kiosk.status["link_up"] = True
        await on_screen(app, ServicesScreen)
        kiosk.status["link_up"] = False
        await on_screen(app, OfflineScreen)
        await tap(pilot, "#service-guide")
        await on_screen(app, SessionScreen)


async def test_offline_with_nothing_usable_says_to_come_back() -> None:
    kiosk = ScriptedKiosk(link_up=False, services=[SERVICES[0]])
    app = launcher(kiosk)
    async with app.run_test(size=(100, 40)) as pilot:
        await tap(pilot, "#touch")
        await on_screen(app, OfflineScreen)
        assert "Revenez dans quelques minutes, ou demandez au médiateur." in texts(app)


async def test_a_service_that_cannot_open_says_so_and_goes_back() -> None:
    kiosk = ScriptedKiosk()
    kiosk.failing.add("session.start")
    app = launcher(kiosk)
    async with app.run_test(size=(100, 40)) as pilot:
        await tap(pilot, "#touch")
        await on_screen(app, ServicesScreen)
        await tap(pilot, "#service-caf")
        opening = await on_screen(app, OpeningScreen)
        await wait_until(lambda: "Ce service ne peut pas s'ouvrir pour le moment" in texts(app))
        assert opening.query_one("#back").display
        await tap(pilot, "#back")
        await on_screen(app, WelcomeScreen)


async def test_a_refusal_landing_before_the_opening_screen_is_drawn_is_shown_once_it_is() -> None:
    """The controller can refuse a service before the opening screen has made its widgets (its compose runs after
    the push): the refusal is kept and shown when they are, with the way back."""
    app = launcher(ScriptedKiosk())
    async with app.run_test(size=(100, 40)):
        await on_screen(app, WelcomeScreen)
        app.mode = "opening"
        opening = OpeningScreen(app, "CAF")
        app.push_screen(opening)
        opening.failed()  # raised NoMatches before: nothing composed yet
        assert await on_screen(app, OpeningScreen) is opening
        await wait_until(lambda: "Ce service ne peut pas s'ouvrir pour le moment" in texts(app))
        assert opening.query_one("#back").display and app.focused is opening.query_one("#back")


async def test_keyboard_only_from_welcome_to_the_end() -> None:
    kiosk = ScriptedKiosk()
    app = launcher(kiosk)
    async with app.run_test(size=(100, 40)) as pilot:
        await on_screen(app, WelcomeScreen)
        await pilot.press("enter")
        await on_screen(app, ServicesScreen)
        assert app.focused.id == "service-caf"
        await pilot.press("right")
        assert app.focused.id == "service-impots"
        await pilot.press("enter")
        await on_screen(app, SessionScreen)
        await pilot.press("enter")  # the end button has the focus
        await on_screen(app, ConfirmEndScreen)
        await pilot.press("down", "enter")  # "Oui, tout effacer"
        end = await on_screen(app, EndScreen)
        await wait_until(lambda: end.result is not None)
        assert app.focused.id == "face-good"
        await pilot.press("right", "enter")
        await wait_until(lambda: ("session.feedback", {"rating": "neutral"}) in kiosk.calls)
        await pilot.press("enter")
        await on_screen(app, WelcomeScreen)


async def test_visitors_cannot_quit_and_input_during_a_session_counts_as_activity() -> None:
    kiosk = ScriptedKiosk()
    app = launcher(kiosk)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("ctrl+q", "ctrl+c")
        assert app.is_running
        await kiosk.call("session.start", {"service": "caf"})
        await on_screen(app, SessionScreen)
        await pilot.press("tab")
        await wait_until(lambda: "session.activity" in kiosk.commands())


async def test_the_next_visitor_starts_in_french() -> None:
    kiosk = ScriptedKiosk()
    app = launcher(kiosk)
    async with app.run_test(size=(100, 40)) as pilot:
        await tap(pilot, "#language")
        await wait_until(lambda: "Touch the screen to start" in texts(app))
        await tap(pilot, "#touch")
        await on_screen(app, ServicesScreen)
        await tap(pilot, "#service-caf")
        await on_screen(app, SessionScreen)
        assert ("session.start", {"service": "caf", "lang": "en", "zoom": 100}) in kiosk.calls
        await wait_until(lambda: "Finish and erase everything" in texts(app))
        await tap(pilot, "#end")
        await on_screen(app, ConfirmEndScreen)
        await tap(pilot, "#yes")
        end = await on_screen(app, EndScreen)
        await wait_until(lambda: end.result is not None)
        assert "Your data has been erased." in texts(app)
        await tap(pilot, "#skip")
        await tap(pilot, "#again")
        await on_screen(app, WelcomeScreen)
        assert "Touchez l'écran pour commencer" in texts(app)


async def test_an_idle_services_screen_goes_back_to_welcome() -> None:
    now = [0.0]  # the launcher's own clock: a real 0.3 s could pass before the services screen was ever seen
    kiosk = ScriptedKiosk()
    app = launcher(kiosk, back_after_s=20, monotonic=lambda: now[0])

    def polls() -> int:
        return sum(1 for cmd, _ in kiosk.calls if cmd == "kiosk.status")

    async with app.run_test(size=(100, 40)) as pilot:
        await tap(pilot, "#touch")
        services = await on_screen(app, ServicesScreen)
        now[0] += 19
        seen = polls()
        await wait_until(lambda: polls() >= seen + 3, message="three more polls")
        assert app.screen is services  # 19 s untouched: still there
        now[0] += 2
        await on_screen(app, WelcomeScreen, message="back to welcome after 20 s untouched")


# --- against a real controller -------------------------------------------------------------------------------


async def test_launcher_on_a_real_controller_socket(run_controller: Any, kiosk_config: Any, visitor: Any) -> None:
    cfg = kiosk_config()
    controller = await run_controller(cfg)
    await wait_until(lambda: controller.kiosk.phase == "idle")
    app = launcher(KioskLink(cfg.api.kiosk_socket), poll_s=0.1)
    async with app.run_test(size=(100, 40)) as pilot:
        await on_screen(app, ClosedScreen)
        await wait_until(lambda: "Le bus est fermé" in texts(app))
        await call_once(cfg.api.control_socket, "kiosk.open", {})
        await on_screen(app, WelcomeScreen)
        await tap(pilot, "#touch")
        await on_screen(app, ServicesScreen)
        assert "Navigation libre" not in texts(app)  # disabled tile
        await tap(pilot, "#service-caf")
        await on_screen(app, SessionScreen, timeout=10)
        home = Path(controller.kiosk.session.home)
        assert home.exists()
        await wait_until(lambda: "Temps restant : 30 min" in texts(app))
        await tap(pilot, "#end")
        await on_screen(app, ConfirmEndScreen)
        await tap(pilot, "#yes")
        end = await on_screen(app, EndScreen)
        await wait_until(lambda: end.result is not None, timeout=10)
        assert "Vos données ont été effacées." in texts(app) and not home.exists()
        await tap(pilot, "#face-bad")
        await wait_until(lambda: "Merci ! À bientôt." in texts(app))
        rows = await controller.store.run(lambda db: db.execute("SELECT satisfaction FROM kiosk_sessions").fetchall())
        assert rows == [("bad",)]
        await call_once(cfg.api.control_socket, "kiosk.lock", {"reason": "test"})
        await on_screen(app, ClosedScreen)
        await wait_until(lambda: "La borne est fermée" in texts(app))


async def test_every_focus_stop_is_a_button() -> None:
    """Issue 15 point 8: Tab (or an arrow) used to stop on the services' scrolling list, which shows no focus."""
    kiosk = ScriptedKiosk()
    app = launcher(kiosk)
    async with app.run_test(size=(100, 40)) as pilot:
        await on_screen(app, WelcomeScreen)
        await tap(pilot, "#touch")
        services = await on_screen(app, ServicesScreen)
        chain = services.focus_chain
        assert chain and all(isinstance(widget, BigButton) for widget in chain), [type(w).__name__ for w in chain]
        for _ in range(len(chain) + 1):
            await pilot.press("tab")
            assert isinstance(app.focused, BigButton), app.focused
            await pilot.press("up")
            assert isinstance(app.focused, BigButton), app.focused
