"""The public terminal as a controller feature: its ``[kiosk]`` section, and the session manager it attaches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import kiosk_schema

if TYPE_CHECKING:
    from firmware_host.controller import Controller

    from .session import KioskManager

SECTION = "kiosk"


def schema() -> Any:
    return kiosk_schema()


async def attach(controller: Controller) -> KioskManager | None:
    """The terminal's sessions, wipe and commands, when ``[kiosk]`` is enabled."""
    if not controller.config.kiosk.enabled:
        return None
    from .session import KioskManager  # the session machinery only where a terminal is enabled

    return await KioskManager.attach(controller)
