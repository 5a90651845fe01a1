"""The ``[console]`` config section and the console PIN (read from ``pin_file``, checked with a lockout)."""

from __future__ import annotations

import hmac
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..schema import Key, Table

LANGUAGES = ("fr", "en")
PIN_DIGITS = (4, 8)
MAX_TRIES = 5  # wrong PINs in a row before a pause
LOCKOUT_S = 30.0  # first pause; doubles with each further wrong PIN


SECTION = "console"


def schema() -> Any:
    """The ``[console]`` section for config.SCHEMA (the console runs as its own process: nothing to attach)."""
    return Table(
        {
            "pin_file": Key("path", None),
            "language": Key(str, "fr", choices=LANGUAGES),
            "lock_after_s": Key(float, 900.0, min=0, max=86400),
        }
    )


class PinError(ValueError):
    """The PIN file cannot be used (names the file); the console refuses to start rather than run unlocked."""


def read_pin(path: str) -> str:
    """The PIN in ``path``: one line of 4 to 8 digits. A file others can read is refused."""
    p = Path(path)
    try:
        info = p.stat()
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PinError(f"{p}: cannot read the console PIN file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PinError(f"{p}: the console PIN file must hold digits only") from None
    if info.st_mode & stat.S_IROTH:
        raise PinError(f"{p}: the console PIN file is readable by everyone: chmod 600 (or 640) it")
    pin = text.strip()
    low, high = PIN_DIGITS
    if not (pin.isascii() and pin.isdigit() and low <= len(pin) <= high):
        raise PinError(f"{p}: the console PIN must be {low} to {high} digits on one line")
    return pin


class PinLock:
    """Checks typed PINs; after MAX_TRIES wrong ones it refuses any for LOCKOUT_S, doubling each time."""

    def __init__(self, pin: str, *, monotonic: Callable[[], float] = time.monotonic):
        self._pin = pin.encode()
        self.monotonic = monotonic
        self.failures = 0
        self.locked_until = 0.0

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> PinLock:
        return cls(read_pin(str(path)))

    def wait_s(self) -> float:
        """Seconds before another try is accepted (0 when a try is allowed now)."""
        return max(0.0, self.locked_until - self.monotonic())

    def check(self, typed: str) -> bool:
        if self.wait_s() > 0:
            return False
        if hmac.compare_digest(typed.strip().encode(), self._pin):
            self.failures = 0
            return True
        self.failures += 1
        if self.failures >= MAX_TRIES:
            self.locked_until = self.monotonic() + LOCKOUT_S * 2 ** (self.failures - MAX_TRIES)
        return False
