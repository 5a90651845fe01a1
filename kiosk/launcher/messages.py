"""Messages the launcher's screens send to the app (the app alone talks to the controller); Textual runs a
dataclass message's own set-up from ``__post_init__``."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message


@dataclass
class StartTouched(Message):
    """The welcome screen was touched."""


@dataclass
class LanguageToggled(Message):
    """French <-> English."""


@dataclass
class ZoomCycled(Message):
    """ "Agrandir le texte": the browser's zoom for this visitor, 100 -> 125 -> 150 -> 200 -> 100 %."""


@dataclass
class ServiceChosen(Message):
    service: str


@dataclass
class BackToWelcome(Message):
    """The visitor went back, or the end screen is over."""


@dataclass
class EndConfirmed(Message):
    """ "Terminer et tout effacer", confirmed."""


@dataclass
class ScanRequested(Message):
    """ "Numériser un document": the scanning page, in the session's browser."""


@dataclass
class StillHere(Message):
    """The answer to "Êtes-vous toujours là ?"."""


@dataclass
class FeedbackGiven(Message):
    rating: str | None  # good / neutral / bad, None when skipped
