"""What systemd does with $NOTIFY_SOCKET, for the tests and the Pi benchmark: a datagram socket read by a thread."""

from __future__ import annotations

import socket
import threading
import time


class FakeSystemd:
    """What systemd does with $NOTIFY_SOCKET: a bound AF_UNIX datagram socket, read by a thread."""

    def __init__(self, address: str):
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []  # (monotonic time received, datagram)
        self.changed = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self.changed:
                self.messages.append((time.monotonic(), data.decode()))
                self.changed.notify_all()

    def texts(self) -> list[str]:
        with self.changed:
            return [m for _, m in self.messages]

    def assignments(self, key: str) -> list[str]:
        """Every value sent for KEY (a datagram may hold several KEY=value lines)."""
        out = []
        for text in self.texts():
            for line in text.split("\n"):
                k, _, v = line.partition("=")
                if k == key:
                    out.append(v)
        return out

    def pings(self) -> list[float]:
        with self.changed:
            return [t for t, m in self.messages if "WATCHDOG=1" in m.split("\n")]

    def first(self, prefix: str) -> float | None:
        """When the first datagram starting with ``prefix`` arrived (monotonic), or None."""
        with self.changed:
            return next((t for t, m in self.messages if m.startswith(prefix)), None)

    def wait_for(self, predicate, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()
