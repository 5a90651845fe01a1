#!/usr/bin/python3
"""Native-messaging bridge: the session bar (browser extension) <-> the controller's per-session bar socket.

Chromium starts this program as the session user when the bar connects (stdin/stdout carry messages framed by a
4-byte native-endian length). It relays the session's status to the bar once a second when it changes, and the
bar's requests (end, activity) to the controller. The socket path comes from ALLERVERS_BAR_SOCKET, which the
controller puts in the browser's environment; the socket accepts only session.status, session.end and
session.activity. Standard library only: it runs under the system Python, outside the controller's venv.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import threading
from typing import Any

POLL_S = 1.0
COMMANDS = {"end": "session.end", "activity": "session.activity"}


class Bridge:
    def __init__(self, socket_path: str, stdin: Any, stdout: Any):
        self.socket_path = socket_path
        self.stdin = stdin
        self.stdout = stdout
        self._out_lock = threading.Lock()
        self._sock_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._next_id = 0
        self.done = threading.Event()

    # --- browser side ---

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, ensure_ascii=False).encode()
        with self._out_lock:
            self.stdout.write(struct.pack("=I", len(data)) + data)
            self.stdout.flush()

    def receive(self) -> dict[str, Any] | None:
        header = self.stdin.read(4)
        if len(header) < 4:
            return None
        (length,) = struct.unpack("=I", header)
        if length > 1024 * 1024:
            return None
        return json.loads(self.stdin.read(length))

    # --- controller side ---

    def call(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        with self._sock_lock:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._sock.settimeout(10)
                self._sock.connect(self.socket_path)
                self._file = self._sock.makefile("rwb")
            self._next_id += 1
            request = {"cmd": cmd, "args": args or {}, "id": self._next_id}
            try:
                self._file.write(json.dumps(request).encode() + b"\n")
                self._file.flush()
                line = self._file.readline()
            except OSError:
                self._drop()
                raise
            if not line:
                self._drop()
                raise ConnectionError("the controller closed the bar socket")
            reply = json.loads(line)
            if not reply.get("ok"):
                raise RuntimeError(reply.get("error", "error"))
            return reply.get("result")

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = self._file = None

    # --- loops ---

    def relay_requests(self) -> None:
        """Bar -> controller, until the browser closes our stdin."""
        while True:
            try:
                message = self.receive()
            except (OSError, ValueError):
                message = None
            if message is None:
                self.done.set()
                return
            cmd = COMMANDS.get(str(message.get("cmd")))
            if cmd is None:
                continue
            try:
                self.call(cmd, {})
            except (OSError, RuntimeError, ValueError) as exc:
                self.send({"type": "error", "error": str(exc)})

    def relay_status(self) -> None:
        """Controller -> bar: the session's status when it changes (the time left changes every minute or so)."""
        last: Any = None
        while not self.done.is_set():
            try:
                status = self.call("session.status")
            except (OSError, RuntimeError, ValueError):
                status = {"active": False, "ending": True}
            if status != last:
                self.send({"type": "status", **status})
                last = status
            self.done.wait(POLL_S)


def main() -> int:
    path = os.environ.get("ALLERVERS_BAR_SOCKET")
    if not path:
        print("ALLERVERS_BAR_SOCKET is not set: started outside a kiosk session", file=sys.stderr)
        return 2
    bridge = Bridge(path, sys.stdin.buffer, sys.stdout.buffer)
    threading.Thread(target=bridge.relay_requests, daemon=True).start()
    bridge.relay_status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
