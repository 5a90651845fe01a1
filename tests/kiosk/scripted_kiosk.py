"""A scripted double of the controller's kiosk socket, for the launcher's screen tests and scripts/screenshots:
it answers ``kiosk.status`` and the session commands the way kiosk/session.py does, from a status the caller sets;
and the moves that drive the launcher with the Pilot (wait for a screen, tap a widget once it is laid out, end a
session as a visitor does)."""

from __future__ import annotations

import copy
from typing import Any

from firmware_host.api import ClientError
from kiosk.launcher.screens import ConfirmEndScreen, EndScreen, SessionScreen
from kiosk.launcher.widgets import ServiceGrid
from kiosk.settings import DEFAULT_SERVICES
from tests.conftest import on_screen, wait_until

# Beyond the shipped list, what a bus might add (up to 12 tiles): for the screen-size tests and the screenshots.
MORE_SERVICES = [
    {"id": "msa", "label": "MSA", "label_en": "Farm welfare (MSA)", "hint": "Protection sociale agricole"},
    {
        "id": "cheque-energie",
        "label": "Chèque énergie",
        "label_en": "Energy voucher",
        "hint": "Aide pour payer l'énergie",
    },
    {"id": "guide", "label": "Guide de la borne", "hint": "Mode d'emploi, sans Internet", "needs_link": False},
]

SERVICES = [
    {
        "id": "caf",
        "label": "CAF",
        "label_en": "Family benefits (CAF)",
        "hint": "Allocations familiales, aide au logement",
        "hint_en": "Family and housing benefits",
        "needs_link": True,
        "usable": True,
        "time_limit_min": 30,
    },
    {
        "id": "impots",
        "label": "Impôts",
        "label_en": "Taxes",
        "hint": "Déclaration de revenus",
        "hint_en": None,
        "needs_link": True,
        "usable": True,
        "time_limit_min": 10,
    },
    {
        "id": "guide",
        "label": "Guide de la borne",
        "label_en": None,
        "hint": "Mode d'emploi, sans Internet",
        "hint_en": None,
        "needs_link": False,
        "usable": True,
        "time_limit_min": 30,
    },
]


class ScriptedKiosk:
    """A double of the kiosk socket that behaves like the controller for the launcher's needs."""

    def __init__(self, **status: Any):
        self.status: dict[str, Any] = {
            "vehicle": "Bus France Services",
            "available": True,
            "closed_reason": None,
            "open": True,
            "locked": False,
            "lock_reason": None,
            "link_up": True,
            "phase": "idle",
            "wipe_phase": None,
            "session": None,
            "last_end": None,
            "last_wipe": None,
            "satisfaction": False,
            "sessions_today": 0,
            "services": copy.deepcopy(SERVICES),
        }
        self.status.update(status)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failing: set[str] = set()
        self.wipe_ok = True

    def commands(self) -> list[str]:
        return [c for c, _ in self.calls if c != "kiosk.status"]

    async def call(self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        args = args or {}
        self.calls.append((cmd, args))
        if cmd in self.failing:
            raise ClientError(f"{cmd}: refused")
        if cmd == "kiosk.status":
            return copy.deepcopy(self.status)
        if cmd == "session.start":
            service = next(s for s in self.status["services"] if s["id"] == args["service"])
            self.status["session"] = {
                "service": service["id"],
                "label": service["label"],
                "label_en": service["label_en"],
                "lang": args.get("lang", "fr"),
                "time_left_s": service["time_limit_min"] * 60,
                "warning": None,
                "idle_prompt": False,
                "idle_left_s": None,
                "ending": False,
                "scanner": "ready",
                "scanned_pages": 0,
                "printing": None,
            }
            return {"session": "0123456789abcdef", "home": "/run/allervers/kiosk/0123456789abcdef"}
        if cmd == "session.end":
            return self.end("visitor")
        if cmd == "session.activity":
            self.status["session"]["idle_prompt"] = False
            return {"time_left_s": self.status["session"]["time_left_s"]}
        if cmd == "session.open_scan":
            return {"opened": True}
        if cmd == "session.feedback":
            self.status["satisfaction"] = False
            return {"recorded": args["rating"]}
        raise ClientError(f"unknown command {cmd!r}")

    def end(self, reason: str, pages: int = 2) -> dict[str, Any]:
        n = (self.status["last_end"] or {}).get("n", 0) + 1
        self.status["session"] = None
        self.status["last_end"] = {"n": n, "reason": reason, "ok": self.wipe_ok, "pages": pages, "service": "caf"}
        self.status["satisfaction"] = self.wipe_ok
        self.status["available"] = self.wipe_ok
        self.status["closed_reason"] = None if self.wipe_ok else "wipe_failed"
        return {"ended": True, "reason": reason, "wipe": {"ok": self.wipe_ok, "duration_s": 0.1}, "pages": pages}


def screen_services(count: int) -> list[dict[str, Any]]:
    """The first ``count`` tiles as ``kiosk.status`` lists them: the shipped services (the 8 enabled, then
    "Navigation libre" turned on), then MORE_SERVICES."""
    shipped = [s for s in DEFAULT_SERVICES if s.get("enabled", True)] + [
        s for s in DEFAULT_SERVICES if not s.get("enabled", True)
    ]
    out = []
    for service in (shipped + MORE_SERVICES)[:count]:
        out.append(
            {
                "id": service["id"],
                "label": service["label"],
                "label_en": service.get("label_en"),
                "hint": service.get("hint", ""),
                "hint_en": service.get("hint_en"),
                "needs_link": service.get("needs_link", True),
                "usable": True,
                "time_limit_min": service.get("time_limit_min") or 30,
            }
        )
    return out


async def tap(pilot: Any, selector: str, timeout: float = 10.0) -> None:
    """Click a widget once it is laid out on the current screen (under CPU load a screen can be mounted before
    its first layout, and a click computed then hits nothing)."""

    def placed() -> bool:
        try:
            widget = pilot.app.screen.query_one(selector)
        except Exception:
            return False
        return widget.region.area > 0 and widget.display

    await wait_until(placed, timeout, message=f"{selector} laid out")
    await pilot.pause()
    await pilot.click(selector)


async def settle(pilot: Any) -> None:
    """Wait for the services' grid (when it has tiles) to be shaped for its size, then for the screen to be drawn."""

    def shaped() -> bool:
        return all(g.shaped_for == g.size for g in pilot.app.screen.query(ServiceGrid) if g.children)

    await wait_until(shaped, message="the grid shaped")
    await pilot.pause()


async def end_as_the_visitor(app: Any, pilot: Any, kiosk: ScriptedKiosk, service: str = "caf") -> EndScreen:
    """Start a session, touch "Terminer et tout effacer", confirm: the end screen once the wipe's result is in."""
    await kiosk.call("session.start", {"service": service})
    await on_screen(app, SessionScreen)
    await tap(pilot, "#end")
    await on_screen(app, ConfirmEndScreen)
    await tap(pilot, "#yes")
    end = await on_screen(app, EndScreen)
    await wait_until(lambda: end.result is not None, message="the wipe result")
    return end
