"""The launcher's screens: welcome, services, opening, session, end (wipe, done, satisfaction), closed, offline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, LoadingIndicator, Static

from .i18n import TEXTS
from .messages import (
    BackToWelcome,
    EndConfirmed,
    FeedbackGiven,
    LanguageToggled,
    ScanRequested,
    ServiceChosen,
    StartTouched,
    StillHere,
    ZoomCycled,
)
from .widgets import BigButton, Faces, Notice, ServiceGrid, ServiceTile, Title

if TYPE_CHECKING:
    from .app import KioskApp

ARROWS = [
    Binding("down,right", "app.focus_next", show=False),
    Binding("up,left", "app.focus_previous", show=False),
]
SHORT_ROWS = 28  # fewer rows than this (the bus's 1280x800 screen has 23): titles lose their margins, help goes


class KioskScreen(Screen[None]):
    """Every screen: arrow keys move between the big buttons, as Tab does."""

    BINDINGS = ARROWS

    def __init__(self, kiosk: KioskApp):
        super().__init__()
        self.kiosk = kiosk  # the app this screen shows (its texts, status, zoom), given when it is made

    def t(self, key: str, **values: Any) -> str:
        return self.kiosk.texts(key, **values)

    @property
    def composed(self) -> bool:
        """Mounted *and* its widgets are there: a status update can arrive in between, under load."""
        return self.is_mounted and bool(self.children)

    def on_mount(self) -> None:
        # Before the first layout (as well as on every resize), so the first frame is already the right one.
        self.set_class(self.kiosk.size.height < SHORT_ROWS, "-short")

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.height < SHORT_ROWS, "-short")


class WelcomeScreen(KioskScreen):
    BINDINGS = [*ARROWS, Binding("space", "start", show=False)]

    def compose(self) -> ComposeResult:
        with Vertical(id="welcome"):
            yield Title(self.t("welcome.title"), id="welcome-title")
            yield Notice(self.kiosk.vehicle_name, id="vehicle")
            yield BigButton(self.t("welcome.touch"), id="touch", variant="primary")
            yield Notice(self.t("welcome.promise"), id="promise")
            with Horizontal(id="welcome-options"):
                yield BigButton(self.t("welcome.zoom", percent=self.kiosk.zoom), id="zoom", classes="secondary")
                yield BigButton(self.t("lang.switch"), id="language", classes="secondary")

    def on_mount(self) -> None:
        self.query_one("#touch").focus()

    def action_start(self) -> None:
        self.post_message(StartTouched())

    def on_click(self, event: events.Click) -> None:
        # "Touchez l'écran": a touch on the title or the promise starts too (the buttons keep their own touches).
        self.post_message(StartTouched())

    @on(Button.Pressed, "#touch")
    def _touched(self) -> None:
        self.post_message(StartTouched())

    @on(Button.Pressed, "#language")
    def _language(self) -> None:
        self.post_message(LanguageToggled())

    @on(Button.Pressed, "#zoom")
    def _zoom(self) -> None:
        self.post_message(ZoomCycled())

    def show_zoom(self, percent: int) -> None:
        self.query_one("#zoom", BigButton).label = self.t("welcome.zoom", percent=percent)


class ServicesScreen(KioskScreen):
    """Every service as a tile, all at once: the arrows move in the grid, Enter opens, "Retour" under it."""

    BINDINGS = [
        Binding("left", "move(-1, 0)", show=False),
        Binding("right", "move(1, 0)", show=False),
        Binding("up", "move(0, -1)", show=False),
        Binding("down", "move(0, 1)", show=False),
        Binding("escape", "back", show=False),
    ]

    def __init__(self, kiosk: KioskApp, services: list[dict[str, Any]]):
        super().__init__(kiosk)
        self.services = services

    def compose(self) -> ComposeResult:
        yield Title(self.t("services.title"), id="services-title")
        yield Notice(self.t("services.help"), id="services-help")
        yield self.grid(self.services)
        yield BigButton(self.t("back"), id="back", classes="secondary")

    def grid(self, services: list[dict[str, Any]]) -> ServiceGrid:
        label = self.kiosk.texts.label
        tiles = [ServiceTile(s, label(s), label(s, "hint"), usable=s.get("usable", True)) for s in services]
        return ServiceGrid(*tiles, id="tiles")

    def on_mount(self) -> None:
        tiles = [t for t in self.query(ServiceTile) if not t.disabled]
        (tiles[0] if tiles else self.query_one("#back")).focus()

    def action_move(self, dx: int, dy: int) -> None:
        """Left/right: the previous or next tile; up/down: the tile above or below; past the last row, "Retour"."""
        tiles = list(self.query(ServiceTile))
        back = self.query_one("#back")
        if self.focused not in tiles:
            usable = [t for t in tiles if not t.disabled]
            if self.focused is back and (dx < 0 or dy < 0) and usable:
                usable[-1].focus()
            return
        step = dx or dy * self.query_one(ServiceGrid).columns
        index = tiles.index(self.focused) + step
        while 0 <= index < len(tiles):
            if not tiles[index].disabled:
                tiles[index].focus()
                return
            index += step
        if step > 0:
            back.focus()

    def action_back(self) -> None:
        self.post_message(BackToWelcome())

    @on(Button.Pressed, "ServiceTile")
    def _chosen(self, event: Button.Pressed) -> None:
        assert isinstance(event.button, ServiceTile)
        self.post_message(ServiceChosen(event.button.service_id))

    @on(Button.Pressed, "#back")
    def _back(self) -> None:
        self.post_message(BackToWelcome())


class OfflineScreen(ServicesScreen):
    """Shown instead of a browser error page: the link is down; services that need no link stay usable."""

    def compose(self) -> ComposeResult:
        usable = [s for s in self.services if not s.get("needs_link", True)]
        yield Title(self.t("offline.title"), id="offline-title")
        yield Notice(self.t("offline.some") if usable else self.t("offline.none"), id="offline-help")
        yield self.grid(usable)
        yield BigButton(self.t("back"), id="back", classes="secondary")


class OpeningScreen(KioskScreen):
    """While the browser starts (a second or two): something visibly happens."""

    def __init__(self, kiosk: KioskApp, label: str):
        super().__init__(kiosk)
        self.label = label
        self.has_failed = False

    def compose(self) -> ComposeResult:
        yield Title(self.t("opening", service=self.label), id="opening-title")
        yield Notice(self.t("opening.wait"), id="opening-help")
        yield LoadingIndicator()
        yield BigButton(self.t("back"), id="back", classes="secondary hidden")

    def on_mount(self) -> None:
        super().on_mount()
        if self.has_failed:  # the answer came before the widgets: show it now
            self._show_failed()

    def failed(self) -> None:
        self.has_failed = True
        if self.composed:
            self._show_failed()

    def _show_failed(self) -> None:
        self.query_one("#opening-help", Notice).update(self.t("opening.failed"))
        self.query_one(LoadingIndicator).display = False
        back = self.query_one("#back", BigButton)
        back.remove_class("hidden")
        back.focus()

    @on(Button.Pressed, "#back")
    def _back(self) -> None:
        self.post_message(BackToWelcome())


class SessionScreen(KioskScreen):
    """Which service, time left, and "Terminer et tout effacer" always in reach (on the Pi the browser is in
    front; its session bar carries the same information and the same button)."""

    def compose(self) -> ComposeResult:
        yield Title("", id="session-service")
        yield Title("", id="time-left")
        yield Notice("", id="warning")
        yield Notice("", id="printing")
        yield BigButton(self.t("scan.ready"), id="scan", classes="secondary")
        yield BigButton(self.t("session.end"), id="end", variant="error")

    def on_mount(self) -> None:
        self.query_one("#end").focus()
        if self.kiosk.status and self.kiosk.status.get("session"):
            self.show(self.kiosk.status["session"])

    def show(self, session: dict[str, Any]) -> None:
        if not self.query("#session-service"):
            return  # not composed yet: on_mount shows the latest status
        label = self.kiosk.texts.label(session)
        self.query_one("#session-service", Title).update(self.t("session.on", service=label))
        minutes = -(-int(session.get("time_left_s") or 0) // 60)
        left = self.t("session.left_short") if minutes <= 1 else self.t("session.left", minutes=minutes)
        self.query_one("#time-left", Title).update(left)
        warning = session.get("warning")
        notice = self.query_one("#warning", Notice)
        notice.update(self.t(f"session.{'warn5' if warning == '5min' else 'warn1'}") if warning else "")
        notice.set_class(bool(warning), "-warning")
        notice.set_class(warning == "1min", "-urgent")
        self._show_devices(session)

    def _show_devices(self, session: dict[str, Any]) -> None:
        """What the printer did after "Imprimer", and the scanner's button (or why there is none)."""
        printing = session.get("printing")
        text = ""
        problem = f"print.problem.{printing.get('problem')}" if printing else ""
        if printing and printing.get("state") == "problem" and problem in TEXTS:
            text = f"{self.t(problem)} {self.t('print.ask')}"
        elif printing and printing.get("state") in ("printing", "printed"):
            pages = int(printing.get("pages") or 0)
            if pages:
                text = self.t(f"print.{printing['state']}.pages", pages=f"{pages} page{'s' if pages > 1 else ''}")
            else:
                text = self.t(f"print.{printing['state']}")
        elif printing:
            text = self.t("print.failed")
        notice = self.query_one("#printing", Notice)
        notice.update(text)
        notice.display = bool(text)
        notice.set_class(bool(printing) and printing.get("state") in ("problem", "failed"), "-warning")
        scanner = session.get("scanner") or "none"
        scan = self.query_one("#scan", BigButton)
        scan.label = self.t(f"scan.{scanner if scanner in ('none', 'unreachable') else 'ready'}")
        scan.disabled = scanner == "none"

    @on(Button.Pressed, "#scan")
    def _scan(self) -> None:
        self.post_message(ScanRequested())

    @on(Button.Pressed, "#end")
    def _end(self) -> None:
        self.kiosk.push_screen(ConfirmEndScreen(self.kiosk), self._confirmed)

    def _confirmed(self, yes: bool | None) -> None:
        if yes:
            self.post_message(EndConfirmed())


class ConfirmEndScreen(ModalScreen[bool]):
    """A wrong tap must not erase someone's work: ending asks once, "Non" is the default."""

    BINDINGS = [*ARROWS, Binding("escape", "dismiss(False)", show=False)]

    def __init__(self, kiosk: KioskApp):
        super().__init__()
        self.kiosk = kiosk

    def compose(self) -> ComposeResult:
        app = self.kiosk
        with Vertical(id="dialog"):
            yield Title(app.texts("confirm.question"), id="confirm-question")
            yield BigButton(app.texts("confirm.no"), id="no", variant="primary")
            yield BigButton(app.texts("confirm.yes"), id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no").focus()

    @on(Button.Pressed, "#yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def _no(self) -> None:
        self.dismiss(False)


class IdleScreen(ModalScreen[None]):
    """ "Êtes-vous toujours là ?" with the seconds left; any answer keeps the session."""

    BINDINGS = ARROWS

    def __init__(self, kiosk: KioskApp):
        super().__init__()
        self.kiosk = kiosk

    def compose(self) -> ComposeResult:
        app = self.kiosk
        with Vertical(id="dialog"):
            yield Title(app.texts("idle.question"), id="idle-question")
            yield Notice("", id="idle-left")
            yield BigButton(app.texts("idle.stay"), id="stay", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#stay").focus()

    def show(self, seconds: int) -> None:
        app = self.kiosk
        self.query_one("#idle-left", Notice).update(app.texts("idle.left", seconds=seconds))

    @on(Button.Pressed, "#stay")
    def _stay(self) -> None:
        self.post_message(StillHere())


class EndScreen(KioskScreen):
    """Wipe progress, then "Vos données ont été effacées", the optional three faces, then back to welcome.

    Only what applies is shown, so that it fits the public screen (about 80x24 cells) without scrolling."""

    def __init__(self, kiosk: KioskApp, reason: str | None = None):
        super().__init__(kiosk)
        self.reason = reason
        self.phase: str | None = None
        self.result: dict[str, Any] | None = None
        self.ask_feedback = False

    def compose(self) -> ComposeResult:
        yield Title(self.t("end.wiping"), id="end-title")
        yield Notice("", id="end-reason")
        yield Notice("", id="end-phase")
        yield LoadingIndicator(id="end-progress")
        yield Notice("", id="end-pages")
        yield Title(self.t("feedback.question"), id="feedback-question")
        yield Faces({r: self.t(f"feedback.{r}") for r in ("good", "neutral", "bad")}, self.t("feedback.skip"))
        yield BigButton(self.t("end.again"), id="again", classes="secondary")

    def on_mount(self) -> None:
        # Only what has something to say takes room: an empty notice would push the faces down.
        for selector in ("#faces", "#again", "#feedback-question", "#end-reason", "#end-phase", "#end-pages"):
            self.query_one(selector).display = False
        self.show_reason(self.reason)
        self.show_phase(self.phase)
        if self.result is not None:
            self._render_result()

    def _say(self, selector: str, text: str) -> None:
        notice = self.query_one(selector, Static)
        notice.update(text)
        notice.display = bool(text)

    def show_reason(self, reason: str | None) -> None:
        self.reason = reason
        if self.composed:
            self._say("#end-reason", self.t(f"end.reason.{reason}") if f"end.reason.{reason}" in TEXTS else "")

    def show_phase(self, phase: str | None) -> None:
        self.phase = phase
        if self.result is None and self.composed:
            self._say("#end-phase", self.t(f"end.phase.{phase}") if phase else "")

    def show_result(self, result: dict[str, Any], ask_feedback: bool) -> None:
        self.result, self.ask_feedback = result, ask_feedback
        if self.composed:
            self._render_result()

    def _render_result(self) -> None:
        result = self.result or {}
        self.show_reason(result.get("reason"))
        self.query_one("#end-progress").display = False
        self._say("#end-phase", "")
        if not result.get("ok"):
            self.query_one("#end-title", Title).update(self.t("end.failed"))
            self._show_again()
            return
        self.query_one("#end-title", Title).update(self.t("end.done"))
        self._say("#end-pages", self.t("end.pages", pages=result["pages"]) if result.get("pages") else "")
        if self.ask_feedback:
            self.query_one("#feedback-question").display = True
            self.query_one("#faces").display = True
            self.query_one("#face-good").focus()
        else:
            self.thank()

    def thank(self) -> None:
        for selector in ("#faces", "#feedback-question", "#end-reason"):
            self.query_one(selector).display = False
        self._say("#end-pages", self.t("feedback.thanks"))
        self._show_again()

    def _show_again(self) -> None:
        again = self.query_one("#again")
        again.display = True
        again.focus()

    @on(Button.Pressed, ".face")
    def _face(self, event: Button.Pressed) -> None:
        rating = (event.button.id or "").removeprefix("face-")
        self.post_message(FeedbackGiven(rating))
        self.thank()

    @on(Button.Pressed, "#skip")
    def _skip(self) -> None:
        self.post_message(FeedbackGiven(None))
        self.thank()

    @on(Button.Pressed, "#again")
    def _again(self) -> None:
        self.post_message(BackToWelcome())


class ClosedScreen(KioskScreen):
    """The bus is closed, the terminal locked or under maintenance: said plainly, nothing to press."""

    TITLES = {
        "locked": "closed.locked.title",
        "wipe_failed": "closed.wipe_failed.title",
        "unreachable": "closed.unreachable.title",
        "unavailable": "closed.unreachable.title",
    }

    def __init__(self, kiosk: KioskApp, reason: str):
        super().__init__(kiosk)
        self.reason = reason

    def compose(self) -> ComposeResult:
        yield Title("", id="closed-title")
        yield Notice("", id="closed-reason")
        yield Notice(self.kiosk.vehicle_name, id="vehicle")

    def on_mount(self) -> None:
        self.show(self.reason)

    def show(self, reason: str) -> None:
        self.reason = reason
        if not self.composed:
            return
        self.query_one("#closed-title", Title).update(self.t(self.TITLES.get(reason, "closed.title")))
        key = f"closed.{reason}"
        self.query_one("#closed-reason", Notice).update(self.t(key) if key in TEXTS else "")
