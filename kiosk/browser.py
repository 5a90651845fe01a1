"""Chromium for one session: started as the unprivileged session user in the session's home, held by a DevTools pipe.

The controller keeps the browser's end of ``--remote-debugging-pipe`` (file descriptors 3 and 4 in the browser):
nobody else can reach it, unlike a debugging port. It is used for browser-level commands only (download behaviour,
closing, listing pages): the managed policy forbids DevTools on pages, and that also applies to this pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .policies import BAR_DIR, NATIVE_HOST_NAME, bar_extension_id
from .wipe import KioskError, SessionUser

log = logging.getLogger("allervers.kiosk")

START_TIMEOUT_S = 30.0
TMPDIR_MAX = 48  # characters: measured with Chromium 156, a longer TMPDIR makes it exit at start
LOCALES = {"fr": "fr_FR.UTF-8", "en": "en_GB.UTF-8"}


class CdpError(RuntimeError):
    """A DevTools command failed (names the method) or the pipe closed."""


class CdpPipe:
    """The DevTools protocol over a pair of pipes: JSON messages separated by NUL bytes."""

    def __init__(self, read_fd: int, write_fd: int):
        self._read_fd, self._write_fd = read_fd, write_fd
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.WriteTransport | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._next_id = 0
        self._task: asyncio.Task | None = None
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.closed = False

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._reader = asyncio.StreamReader(limit=32 * 1024 * 1024)
        protocol = asyncio.StreamReaderProtocol(self._reader)
        await loop.connect_read_pipe(lambda: protocol, os.fdopen(self._read_fd, "rb", buffering=0))
        self._writer, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(self._write_fd, "wb", buffering=0))
        self._task = loop.create_task(self._read_loop(), name="kiosk-cdp")

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                raw = await self._reader.readuntil(b"\0")
                message = json.loads(raw[:-1])
                future = self._pending.pop(message.get("id", -1), None)
                if future is not None:
                    if not future.done():
                        future.set_result(message)
                    continue
                for listener in list(self.listeners):
                    listener(message)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError, ValueError):
            pass
        finally:
            self.closed = True
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(CdpError("the browser closed its DevTools pipe"))
            self._pending.clear()

    async def send(
        self, method: str, params: dict[str, Any] | None = None, *, session_id: str | None = None, timeout: float = 10
    ) -> dict[str, Any]:
        if self.closed or self._writer is None or self._writer.is_closing():
            raise CdpError(f"{method}: the DevTools pipe is closed")
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        future = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        self._writer.write(json.dumps(message).encode() + b"\0")
        try:
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._pending.pop(message["id"], None)
            raise CdpError(f"{method}: no answer within {timeout:.0f} s") from None
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error'].get('message', reply['error'])}")
        return reply.get("result", {})

    async def page_urls(self) -> list[str]:
        """The URLs of the browser's open pages."""
        result = await self.send("Target.getTargets")
        return [t["url"] for t in result.get("targetInfos", []) if t.get("type") == "page"]

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def build_command(
    template: list[str], *, url: str, home: Path, lang: str, session_bar: bool, bar_dir: Path = BAR_DIR
) -> list[str]:
    """The browser's argv: the template's placeholders filled, plus the pipe and the session bar's switches."""
    values = {
        "url": url,
        "home": str(home),
        "profile_dir": str(home / "profile"),
        "downloads_dir": str(home / "Downloads"),
        "lang": lang,
    }
    argv = [item.format(**values) for item in template]
    argv.append("--remote-debugging-pipe")
    if session_bar:
        argv.append(f"--load-extension={bar_dir}")
        # Chromium 137+ ignores --load-extension unless this feature is off; merge with any --disable-features.
        features = ["DisableLoadExtensionCommandLineSwitch"]
        kept = []
        for item in argv:
            if item.startswith("--disable-features="):
                features = [*item.split("=", 1)[1].split(","), *features]
            else:
                kept.append(item)
        argv = [*kept, "--disable-features=" + ",".join(dict.fromkeys(f for f in features if f))]
    return argv


def browser_env(user: SessionUser, home: Path, lang: str, extra: list[str], bar_socket: Path | None) -> dict[str, str]:
    """A clean environment: nothing of the controller's leaks into the visitor's session."""
    env = {
        "HOME": str(home),
        "USER": user.name,
        "LOGNAME": user.name,
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": LOCALES.get(lang, LOCALES["fr"]),
        "LANGUAGE": lang,
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_RUNTIME_DIR": str(home / "tmp"),  # private (0700) and wiped; browser_env may point elsewhere
    }
    # Temporary files in the session's tmpfs home rather than /tmp (on the SD card on a Pi), unless the path is
    # too long for the Unix socket Chromium makes there (org.chromium.Chromium.XXXXXX/SingletonSocket).
    if len(str(home / "tmp")) <= TMPDIR_MAX:
        env["TMPDIR"] = str(home / "tmp")
    if bar_socket is not None:
        env["ALLERVERS_BAR_SOCKET"] = str(bar_socket)
    for item in extra:
        name, _, value = item.partition("=")
        env[name] = value
    return env


def install_native_host(profile_dir: Path, host: Path, bar_dir: Path = BAR_DIR) -> Path:
    """Register the session bar's bridge for this profile only (Chromium reads <user-data-dir>/NativeMessagingHosts).

    Written by the home's owner of the moment: the session host in its unit, or root before it hands the home over
    (``wipe.hand_over_home``), never by root in a folder the visitor already holds."""
    hosts = profile_dir / "NativeMessagingHosts"
    hosts.mkdir(mode=0o700, exist_ok=True)
    manifest = hosts / f"{NATIVE_HOST_NAME}.json"
    manifest.write_text(
        json.dumps(
            {
                "name": NATIVE_HOST_NAME,
                "description": "allervers kiosk session bar bridge",
                "path": str(host),
                "type": "stdio",
                "allowed_origins": [f"chrome-extension://{bar_extension_id(bar_dir)}/"],
            }
        )
    )
    return manifest


class Browser:
    """One running browser. ``start()`` returns once it answers on the DevTools pipe."""

    def __init__(self, argv: list[str], *, user: SessionUser, home: Path, env: dict[str, str]):
        self.argv = argv
        self.user = user
        self.home = home
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self.cdp: CdpPipe | None = None
        self.started_s: float | None = None  # spawn to first DevTools answer (cold start)
        self.host_report: dict[str, Any] | None = None  # no session host: the wipe empties the keyrings itself

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def session_id(self) -> int | None:
        """The process session the browser leads (start_new_session): the wipe's handle in development mode."""
        return self.pid

    async def start(self, timeout: float = START_TIMEOUT_S) -> None:
        began = time.monotonic()
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # Move the child's ends above 9 so the shell below can place them on 3 and 4 without clobbering them.
        child_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_browser_r)
        os.close(from_browser_w)
        trampoline = ["/bin/bash", "-c", f'exec 3<&{child_r} 4>&{child_w} {child_r}<&- {child_w}>&- "$@"', "browser"]
        as_user: dict[str, Any] = {}
        if not self.user.is_self:
            # The user's own groups only (on the bus: allervers-display, to draw on cage's Wayland socket).
            as_user = {"user": self.user.uid, "group": self.user.gid, "extra_groups": list(self.user.groups)}
        try:
            self.process = await asyncio.create_subprocess_exec(
                *trampoline,
                *self.argv,
                env=self.env,
                cwd=self.home,
                pass_fds=(child_r, child_w),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,  # its log would hold the visitor's addresses
                start_new_session=True,
                **as_user,
            )
        except OSError as exc:
            for fd in (to_browser_w, from_browser_r):
                os.close(fd)
            raise KioskError(f"kiosk.browser_command: cannot start {self.argv[0]!r}: {exc}") from None
        finally:
            os.close(child_r)
            os.close(child_w)
        self.cdp = CdpPipe(from_browser_r, to_browser_w)
        await self.cdp.open()
        try:
            await self.cdp.send("Browser.getVersion", timeout=timeout)
            # Headless Chromium refuses downloads unless told; a windowed one already behaves this way.
            await self.cdp.send("Browser.setDownloadBehavior", {"behavior": "default"})
        except CdpError as exc:
            code = self.process.returncode
            await self.kill()
            detail = f"exited with status {code}" if code is not None else str(exc)
            raise KioskError(f"kiosk.browser_command: {self.argv[0]!r} did not start: {detail}") from None
        self.started_s = time.monotonic() - began

    async def page_urls(self) -> list[str]:
        assert self.cdp is not None
        return await self.cdp.page_urls()

    async def wait(self) -> int:
        assert self.process is not None
        return await self.process.wait()

    async def kill(self) -> None:
        """Kill the browser's whole process group now (the wipe then catches anything that escaped it)."""
        if self.process is None:
            return
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.process.wait(), 5)
        if self.cdp is not None:
            await self.cdp.close()


class UnitBrowser:
    """The browser of a session run as a systemd unit (``kiosk.launch = "unit"``), through its session host.

    Connecting to ``allervers-session.socket`` makes systemd start a fresh ``allervers-session@`` instance as the
    session user; :mod:`kiosk.sessionhost` there makes the home, starts the browser and hands back the controller's
    ends of the DevTools pipe. Closing the connection ends the unit, which kills everything the visitor started
    and drops its private mounts. Same interface as :class:`Browser`.
    """

    def __init__(self, socket_path: str, argv: list[str], *, home: Path, env: dict[str, str], native_host: Path | None):
        self.socket_path = socket_path
        self.argv = argv
        self.home = home
        self.env = env
        self.native_host = native_host
        self.cdp: CdpPipe | None = None
        self.started_s: float | None = None
        self.remote_pid: int | None = None  # the browser's pid as the host sees it
        self.exit_status: int | None = None
        # The host's last word: {"keys": {keyring: keys left}} or {"error": ...} once it has emptied the keyrings.
        self.host_report: dict[str, Any] | None = None
        self._sock: socket.socket | None = None
        self._closed: asyncio.Future | None = None
        self._reader: asyncio.Task | None = None

    pid = property(lambda self: self.remote_pid)
    session_id = None  # the unit's cgroup is the handle; the wipe needs no process session

    def _handshake(self, timeout: float) -> tuple[dict[str, Any], list[int]]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.socket_path)
            request = {"home": str(self.home), "argv": self.argv, "env": self.env, "native_host": None}
            if self.native_host is not None:
                request["native_host"] = str(self.native_host)
            sock.sendall(json.dumps(request).encode() + b"\n")
            data, fds, _flags, _addr = socket.recv_fds(sock, 65536, 2)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        try:
            reply = json.loads(data.split(b"\n", 1)[0]) if data else {"ok": False, "error": "closed the connection"}
        except ValueError:
            reply = {"ok": False, "error": f"answered {data[:80]!r}"}
        return reply, fds

    async def start(self, timeout: float = START_TIMEOUT_S) -> None:
        began = time.monotonic()
        where = f"kiosk.launch_socket {self.socket_path}"
        try:
            reply, fds = await asyncio.to_thread(self._handshake, timeout)
        except OSError as exc:
            raise KioskError(f"{where}: cannot start a session unit: {exc.strerror or exc}") from None
        if not reply.get("ok") or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            await self.kill()
            raise KioskError(f"{where}: the session host refused: {reply.get('error', 'no DevTools pipe')}")
        self.remote_pid = reply.get("pid")
        assert self._sock is not None
        self._sock.setblocking(False)
        loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        self._reader = loop.create_task(self._read_host(), name="kiosk-session-host")
        self.cdp = CdpPipe(fds[0], fds[1])
        await self.cdp.open()
        try:
            await self.cdp.send("Browser.getVersion", timeout=timeout)
            await self.cdp.send("Browser.setDownloadBehavior", {"behavior": "default"})
        except CdpError as exc:
            await self.kill()
            detail = f"exited with status {self.exit_status}" if self.exit_status is not None else str(exc)
            raise KioskError(f"kiosk.browser_command: {self.argv[0]!r} did not start: {detail}") from None
        self.started_s = time.monotonic() - began

    async def _read_host(self) -> None:
        """Messages from the host until it closes: the browser's exit status, then end of file."""
        assert self._sock is not None and self._closed is not None
        loop = asyncio.get_running_loop()
        buffered = b""
        try:
            while True:
                chunk = await loop.sock_recv(self._sock, 4096)
                if not chunk:
                    break
                buffered += chunk
                while b"\n" in buffered:
                    line, buffered = buffered.split(b"\n", 1)
                    with contextlib.suppress(ValueError, AttributeError, TypeError):
                        message = json.loads(line)
                        if isinstance(message.get("wiped"), dict):
                            self.host_report = message["wiped"]
                        elif "exited" in message:
                            self.exit_status = int(message["exited"])
        except OSError:
            pass
        finally:
            if not self._closed.done():
                self._closed.set_result(None)

    async def page_urls(self) -> list[str]:
        assert self.cdp is not None
        return await self.cdp.page_urls()

    async def wait(self) -> int:
        assert self._closed is not None
        await asyncio.shield(self._closed)
        return self.exit_status if self.exit_status is not None else -1

    async def kill(self) -> None:
        """Ask the host to end the session and wait until it has (it kills every process of the session user)."""
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.send(b'{"end": true}\n')
            if self._closed is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._closed), 5)
            if self._reader is not None:
                self._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reader
            sock.close()
            self._sock = None
        if self.cdp is not None:
            await self.cdp.close()
