"""`allervers supervise`: the office's Textual app over MQTT: the fleet, problems first, and each bus in detail."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.app import App
from textual.binding import Binding

from .fleet import Fleet, FleetLink
from .i18n import Words
from .messages import LinkChanged
from .screens import BusScreen, FleetScreen


class SuperviseApp(App[None]):
    """The office app. ``link`` is the data source (a FleetLink on the broker) feeding ``link.fleet``; the screens
    only read the Fleet and ask the link for commands, so tests run the app against a real broker and buses."""

    CSS_PATH = "supervise.tcss"
    TITLE = "allervers"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("ctrl+q", "quit", "Quitter", show=False)]

    def __init__(self, link: FleetLink, *, language: str = "fr", clock: Callable[[], float] = time.time):
        super().__init__()
        self.link = link
        self.fleet: Fleet = link.fleet
        self.words = Words(language)
        self.clock = clock
        link.on_status = lambda connected, error: self.post_message(LinkChanged(connected, error))

    async def on_mount(self) -> None:
        await self.push_screen(FleetScreen(self))
        await self.link.start()

    async def on_unmount(self) -> None:
        await self.link.close()

    def on_link_changed(self, message: LinkChanged) -> None:
        screen = self.screen_stack[-1] if self.screen_stack else None  # none while the app closes
        if isinstance(screen, FleetScreen):
            screen.show_status()

    def action_toggle_language(self) -> None:
        self.words.toggle()
        for screen in self.screen_stack:
            if isinstance(screen, FleetScreen):
                screen.relabel()

    def open_bus(self, bus_id: str) -> None:
        self.push_screen(BusScreen(self, bus_id))


def run(link: FleetLink, *, language: str = "fr") -> int:
    SuperviseApp(link, language=language).run()
    return 0
