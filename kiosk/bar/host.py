#!/usr/bin/python3
"""Native-messaging bridge: the session bar (browser extension) <-> the controller's per-session bar socket.

Chromium starts this program as the session user when the bar connects (stdin/stdout carry messages framed by a
4-byte native-endian length). It relays the session's status to the bar once a second when it changes, and the
bar's requests (end, activity, zoom) to the controller. The socket path comes from ALLERVERS_BAR_SOCKET, which the
controller puts in the browser's environment; the socket accepts only session.status, session.end,
session.activity, session.zoom and session.scan. It also scans for the scan page (kiosk/scan.py): as a process of
the visitor inside the session, the pages are the visitor's and the PDF lands in the session's Downloads; the
controller is only told whether the scanner answers and how many pages were saved. Standard library only: it runs
under the system Python, outside the controller's venv.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import sys
import threading
from pathlib import Path
from typing import Any

if not __package__:  # run as a file from a source tree (not the installed allervers-kiosk-bar): find kiosk/
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from kiosk.scan import SCAN_ENV, ScanJob, ScanSettings, probe

POLL_S = 1.0
COMMANDS = {"end": "session.end", "activity": "session.activity", "zoom": "session.zoom"}
SCAN_ACTIONS = ("state", "page", "restart", "save")
IMAGE_CHUNK = 512 * 1024  # base64 characters per message: Chromium takes at most 1 MB from a native host


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
        self.scan = ScanJob(
            ScanSettings.from_env(os.environ.get(SCAN_ENV)),
            str(Path(os.environ.get("HOME", ".")) / "Downloads"),
            notify=self._scan_changed,
            pages_saved=lambda n: self._report_scanner("ready", n),
        )
        self.asked = threading.Event()  # a request went through: relay the new status now, not at the next poll

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
                self.asked.set()
                return
            if message.get("cmd") == "scan":
                self.scan_request(message)
                continue
            cmd = COMMANDS.get(str(message.get("cmd")))
            if cmd is None:
                continue
            try:
                self.call(cmd, {})
            except (OSError, RuntimeError, ValueError) as exc:
                self.send({"type": "error", "error": str(exc)})
            self.asked.set()

    # --- scanning ---

    def scan_request(self, message: dict[str, Any]) -> None:
        """A request of the scan page: an action on the document (in a thread: a page takes seconds) or an image."""
        action = message.get("action")
        if action == "image":
            page = message.get("page")
            image = self.scan.page_image(page) if isinstance(page, int) else None
            if image is not None:
                self.send_image(page, image)
        elif action in SCAN_ACTIONS:
            threading.Thread(target=self.scan.handle, args=(action,), daemon=True).start()

    def send_image(self, page: int, jpeg: bytes) -> None:
        data = base64.b64encode(jpeg).decode()
        parts = max(1, -(-len(data) // IMAGE_CHUNK))
        for part in range(parts):
            chunk = data[part * IMAGE_CHUNK : (part + 1) * IMAGE_CHUNK]
            self.send({"type": "scan-image", "page": page, "part": part, "parts": parts, "data": chunk})

    def _scan_changed(self, message: dict[str, Any]) -> None:
        self.send(message)
        if message["state"] in ("ready", "error") and message["reason"] in ("unreachable", None):
            self._report_scanner("unreachable" if message["reason"] else "ready")

    def _report_scanner(self, state: str, pages: int = 0) -> None:
        with contextlib.suppress(OSError, RuntimeError, ValueError):  # the session is ending: nothing to count
            self.call("session.scan", {"scanner": state, "pages": pages})

    def check_scanner(self) -> None:
        """Tell the controller at once whether the scanner answers, so the bar's button says so before a tap."""
        if self.scan.settings is not None:
            self._report_scanner("ready" if probe(self.scan.settings) == "ready" else "unreachable")

    def relay_status(self) -> None:
        """Controller -> bar: the session's status when it changes (the time left changes every minute or so)."""
        last: Any = None
        while not self.done.is_set():
            self.asked.clear()
            try:
                status = self.call("session.status")
            except (OSError, RuntimeError, ValueError):
                status = {"active": False, "ending": True}
            if status != last:
                self.send({"type": "status", **status})
                last = status
            self.asked.wait(POLL_S)


def main() -> int:
    path = os.environ.get("ALLERVERS_BAR_SOCKET")
    if not path:
        print("ALLERVERS_BAR_SOCKET is not set: started outside a kiosk session", file=sys.stderr)
        return 2
    bridge = Bridge(path, sys.stdin.buffer, sys.stdout.buffer)
    threading.Thread(target=bridge.relay_requests, daemon=True).start()
    threading.Thread(target=bridge.check_scanner, daemon=True).start()
    bridge.relay_status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
