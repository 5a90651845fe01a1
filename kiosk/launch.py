"""The two ways a session starts (``[kiosk] launch``): each owns the home, the bar's socket, the browser and its share
of the wipe, so the rest of the kiosk never asks which mode it runs in."""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path
from typing import Any

from firmware_host.api import Registry, SocketServer

from .browser import Browser, UnitBrowser, install_native_host
from .printing import SessionPrinting
from .wipe import SessionUser, Wiper, filesystem_type, hand_over_home, make_home

log = logging.getLogger("allervers.kiosk")

SOCKET_PATH_MAX = 107  # bytes: sun_path of a Unix socket, without its final NUL


class DirectLaunch:
    """``launch = "direct"``: the controller makes the home, binds the bar's socket in it and starts the browser as
    the session user itself (root on a bus, oneself while developing); its wipe kills and removes everything.

    Every file operation of root in the home happens while the home is still root's (0700), before it is handed
    over: the visitor never gets a chance to aim one at another file through a symbolic link."""

    starts_browser = True  # for another user than its own, the controller needs root

    def __init__(self, user: SessionUser, sessions_dir: str, bar_host: Path | None):
        self.user = user
        self.sessions_dir = sessions_dir
        self.bar_host = bar_host

    @classmethod
    def of_config(cls, cfg: Any, user: SessionUser, bar_host: Path | None, api_dir: Path) -> DirectLaunch:
        return cls(user, cfg.sessions_dir, bar_host)

    def setup_warnings(self) -> list[str]:
        fstype = filesystem_type(self.sessions_dir)
        if fstype in ("tmpfs", "ramfs"):
            return []
        return [f"kiosk.sessions_dir {self.sessions_dir} is on {fstype}, not tmpfs: visitors' files go to storage"]

    def wiper(self, printing: SessionPrinting | None) -> Wiper:
        return Wiper(self.user, self.sessions_dir, printing=printing, acts=True)

    async def prepare(self, session_id: str, registry: Registry) -> tuple[Path, SocketServer | None]:
        """The session's home, and the bar's socket in it (None: no bar)."""
        home = await asyncio.to_thread(make_home, self.sessions_dir, session_id, self.user, hand_over=False)
        bar = None
        try:
            if self.bar_host is not None:
                path = home / "bar.sock"
                if _fits(path):
                    bar = SocketServer("bar", str(path), registry, mode=0o600)
                    await bar.start()
                    await asyncio.to_thread(install_native_host, home / "profile", self.bar_host)
            await asyncio.to_thread(hand_over_home, home, self.user)  # the socket and the manifest too
        except BaseException:
            if bar is not None:
                await bar.stop()
            raise
        return home, bar

    def browser(self, argv: list[str], home: Path, env: dict[str, str], with_bar: bool) -> Browser:
        return Browser(argv, user=self.user, home=home, env=env)


class UnitLaunch:
    """``launch = "unit"``: a connection to ``allervers-session.socket`` starts an ``allervers-session@`` unit as
    the session user, whose host makes the home in the unit's own tmpfs and starts the browser. The controller
    holds no privilege: its wipe only verifies, and the unit's end takes everything with it."""

    starts_browser = False  # systemd does, as the unit's User=

    def __init__(self, user: SessionUser, sessions_dir: str, bar_host: Path | None, launch_socket: str, api_dir: Path):
        self.user = user
        self.sessions_dir = sessions_dir
        self.bar_host = bar_host
        self.launch_socket = launch_socket
        self.api_dir = api_dir

    @classmethod
    def of_config(cls, cfg: Any, user: SessionUser, bar_host: Path | None, api_dir: Path) -> UnitLaunch:
        return cls(user, cfg.sessions_dir, bar_host, cfg.launch_socket, api_dir)

    def setup_warnings(self) -> list[str]:
        return []  # the home is the unit's own tmpfs, whatever sessions_dir is on outside it

    def wiper(self, printing: SessionPrinting | None) -> Wiper:
        return Wiper(self.user, self.sessions_dir, printing=printing, acts=False)

    async def prepare(self, session_id: str, registry: Registry) -> tuple[Path, SocketServer | None]:
        home = Path(self.sessions_dir) / session_id  # made by the session host, inside the unit
        bar = None
        if self.bar_host is not None:
            # Beside the controller's own sockets (a directory others may cross but not list), under a name nobody
            # can guess: the session host's sandbox sees it read-only, which is enough to connect.
            path = self.api_dir / f"bar-{secrets.token_hex(16)}.sock"
            if _fits(path):
                bar = SocketServer("bar", str(path), registry, mode=0o666)
                await bar.start()
        return home, bar

    def browser(self, argv: list[str], home: Path, env: dict[str, str], with_bar: bool) -> UnitBrowser:
        native = self.bar_host if with_bar else None
        return UnitBrowser(self.launch_socket, argv, home=home, env=env, native_host=native)


def _fits(path: Path) -> bool:
    if len(str(path).encode()) <= SOCKET_PATH_MAX:
        return True
    log.warning("kiosk: %s too long for a socket: no session bar", path)
    return False


# ``[kiosk] launch`` -> its class.
LAUNCH_MODES: dict[str, type[DirectLaunch] | type[UnitLaunch]] = {"direct": DirectLaunch, "unit": UnitLaunch}
