"""The visitor's side of a session started as a systemd unit: makes the home, starts the browser, ends everything.

On the bus, the controller does not hold the privileges to run programs as another user or to kill them. Instead,
``allervers-session.socket`` (``Accept=yes``) gives every connection to its socket a fresh instance of
``allervers-session@.service``, which runs this program as ``allervers-visitor`` in its own sandbox: /tmp, /var/tmp,
/dev/shm, /run/lock and the sessions directory are tmpfs private to the unit, the rest of the system is read-only.
When this program exits, systemd kills whatever is left in the unit's cgroup and the unit's mounts, RAM only, die
with it: nothing the visitor did can outlive the session, even a power cut during the wipe.

The protocol, on the connection (our stdin, ``StandardInput=socket``), JSON lines:

- controller -> host, once: ``{"home", "argv", "env", "native_host"}`` (``native_host``: the bridge program
  registered for the session bar, or null);
- host -> controller: ``{"ok": true, "pid"}`` with the controller's ends of the browser's DevTools pipe attached
  (SCM_RIGHTS: read end, write end), or ``{"ok": false, "error"}``;
- host -> controller: ``{"exited": status}`` when the browser exits by itself;
- controller -> host: ``{"end": true}`` (or simply closing the connection): kill every process of the session user,
  empty its kernel keyrings (which outlive the unit), then exit;
- host -> controller, last: ``{"wiped": {"keys": {keyring: keys left}}}`` (or ``{"wiped": {"error"}}``), which the
  controller's verification reads.

Before starting the browser the host empties the keyrings too, and refuses to start if it cannot: whatever an
earlier session left there (a host killed before its end) never reaches the next visitor.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import sys
from pathlib import Path
from typing import Any

MAX_REQUEST = 256 * 1024  # bytes: the request line (argv, env); anything longer is refused
READ_TIMEOUT_S = 30.0  # the controller sends its request right after connecting


class HostError(RuntimeError):
    """A request the host refuses (names the field) or a browser it could not start."""


def _read_line(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while b"\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise HostError("the controller closed the connection before sending its request")
        data += chunk
        if len(data) > MAX_REQUEST:
            raise HostError(f"request longer than {MAX_REQUEST} bytes")
    return data.split(b"\n", 1)[0]


def parse_request(line: bytes) -> dict[str, Any]:
    """Check the request's shape; every problem names the field."""
    try:
        request = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HostError(f"request: not JSON ({exc})") from None
    if not isinstance(request, dict):
        raise HostError("request: not a JSON object")
    home = request.get("home")
    if not isinstance(home, str) or not home.startswith("/") or ".." in Path(home).parts:
        raise HostError("request.home: must be an absolute path without '..'")
    argv = request.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise HostError("request.argv: must be a non-empty list of strings")
    env = request.get("env")
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise HostError("request.env: must be an object of strings")
    native = request.get("native_host")
    if native is not None and not isinstance(native, str):
        raise HostError("request.native_host: must be a path or null")
    return request


def _send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode() + b"\n"
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.sendall(data)


def start_browser(request: dict[str, Any]) -> tuple[int, int, int]:
    """Make the home, register the bar's bridge, spawn the browser with its DevTools pipe on fds 3 and 4.

    Returns (pid, the controller's read end, the controller's write end)."""
    from .browser import install_native_host
    from .keyrings import empty_keyrings
    from .wipe import SessionUser, make_home

    left = {name: n for name, n in empty_keyrings().items() if n}
    if left:
        raise HostError(f"keys of an earlier session left in the keyrings and not removable: {left}")
    wanted = Path(request["home"])
    me = SessionUser.lookup("")
    home = make_home(str(wanted.parent), wanted.name, me)
    if request.get("native_host"):
        install_native_host(home / "profile", Path(request["native_host"]))
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the browser: its own process session, fds 3 and 4 the pipe, nothing else inherited
        try:
            os.setsid()
            os.dup2(to_browser_r, 3, inheritable=True)
            os.dup2(from_browser_w, 4, inheritable=True)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)  # stdout and stderr would hold the visitor's addresses
            os.closerange(5, 65536)
            os.chdir(home)
            os.execve(request["argv"][0], request["argv"], request["env"])
        except OSError:
            pass
        os._exit(127)
    for fd in (to_browser_r, from_browser_w):
        os.close(fd)
    for fd in (from_browser_r, to_browser_w):
        fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
    return pid, from_browser_r, to_browser_w


def _asks_end(buffered: bytes) -> bool:
    """Any complete line from the controller ends the session: ``{"end": true}``, or anything we do not expect."""
    return b"\n" in buffered


def kill_everything() -> dict[str, Any]:
    """SIGKILL every process of our user but ourselves, in one kernel walk (kill(-1) skips the caller), then empty
    the user's keyrings; returns what is left in them (the controller's verification reads it)."""
    from .keyrings import empty_keyrings

    with contextlib.suppress(ProcessLookupError):
        os.kill(-1, signal.SIGKILL)
    try:
        return {"keys": empty_keyrings()}
    except OSError as exc:
        return {"error": str(exc)}


def serve(sock: socket.socket) -> int:
    try:
        request = parse_request(_read_line(sock, READ_TIMEOUT_S))
        program = shutil.which(request["argv"][0], path=request["env"].get("PATH", os.defpath))
        if program is None:
            raise HostError(f"request.argv[0]: {request['argv'][0]!r} is not a program this user may run")
        request["argv"][0] = program
        pid, read_end, write_end = start_browser(request)
    except (HostError, OSError, TimeoutError) as exc:
        with contextlib.suppress(OSError):
            _send(sock, {"ok": False, "error": str(exc)})
        print(f"allervers-session-host: {exc}", file=sys.stderr)
        return 1
    try:
        _send(sock, {"ok": True, "pid": pid}, [read_end, write_end])
    except OSError:
        kill_everything()
        return 1
    for fd in (read_end, write_end):
        os.close(fd)  # the controller holds them now: the pipe closes when either side goes
    pidfd = os.pidfd_open(pid)
    sock.settimeout(None)
    buffered = b""
    while True:
        ready, _, _ = select.select([sock, pidfd], [], [])
        if pidfd in ready:
            _, status = os.waitpid(pid, 0)
            with contextlib.suppress(OSError):
                _send(sock, {"exited": os.waitstatus_to_exitcode(status)})
            break
        try:
            chunk = sock.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            break  # the controller closed (it ended the session, or it died: either way the session is over)
        buffered += chunk
        if len(buffered) > MAX_REQUEST or _asks_end(buffered):
            break
    report = kill_everything()
    with contextlib.suppress(OSError):
        _send(sock, {"wiped": report})
    return 0


def main() -> None:
    # systemd hands us the accepted connection as stdin (StandardInput=socket).
    try:
        sock = socket.socket(fileno=os.dup(0))
    except OSError:
        sock = None
    if sock is None or sock.family != socket.AF_UNIX:
        print("allervers-session-host: stdin must be the session's Unix socket (StandardInput=socket)", file=sys.stderr)
        sys.exit(2)
    sys.exit(serve(sock))


if __name__ == "__main__":
    main()
