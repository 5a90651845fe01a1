"""An emulated link between the bus and the broker, measured at the IP level: a network namespace, two veth pairs
and the userspace relay (tests/firmware_host/relay.py) inside it.

::

    bus (this process)  --veth "a" (counted)--  [namespace: relay, delay + rate]  --veth "b"--  broker (this host)
         10.213.K.1                 10.213.K.2:LISTEN                    10.213.K.5            10.213.K.6:port

The bus connects to ``hop.host:hop.port``; every frame it exchanges with the broker crosses veth "a", whose kernel
counters (``/sys/class/net/X/statistics``) give the bytes on the wire: TCP/IP headers, ACK segments, TLS records and
handshakes included. The broker needs a listener on ``hop.broker_host`` (:meth:`listener`). The delay and rate
are the kernel's netem qdisc where it exists, else the relay's. Root only (network namespaces); nothing leaves the
machine.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LISTEN_PORT = 8883
ETHERNET = 14  # bytes of Ethernet header per frame above the IP packet
_serial = itertools.count()

GEO = {"delay_s": 0.3, "rate_bps": 2_000_000}  # 600 ms round trip, 2 Mbit/s
LEO = {"delay_s": 0.025, "rate_bps": 0}  # 50 ms round trip; its drops are "hold 2" commands


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")


def _tc(ns: str | None, *args: str) -> None:
    cmd = ["tc", *args] if ns is None else ["ip", "netns", "exec", ns, "tc", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip() or done.returncode}")


def netem_available(ns: str) -> bool:
    """Whether this kernel has the netem qdisc: tried on the namespace's own loopback, then removed. (This project's
    machines answer "Specified qdisc kind is unknown".)"""
    try:
        _tc(ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms")
    except RuntimeError:
        return False
    _tc(ns, "qdisc", "del", "dev", "lo", "root")
    return True


@dataclass
class Counters:
    """Bytes and frames through one interface, both ways."""

    bytes: int
    packets: int

    @property
    def ip_bytes(self) -> int:
        """IP packets' bytes (headers included), without the Ethernet framing that a satellite link does not carry."""
        return self.bytes - ETHERNET * self.packets

    def __sub__(self, other: Counters) -> Counters:
        return Counters(self.bytes - other.bytes, self.packets - other.packets)


class EmulatedHop:
    """One namespace with its relay; ``close()`` removes everything (the namespace takes its veth ends along)."""

    def __init__(self, broker_port: int, *, delay_s: float = 0.0, rate_bps: float = 0, queue_bytes: int = 64 * 1024):
        if os.geteuid() != 0:
            raise PermissionError("an emulated hop needs root (network namespaces)")
        n = next(_serial)
        tag = f"{os.getpid() % 100000}x{n}"
        self.ns = f"allervers-hop-{tag}"
        self.dev = f"avh{tag}a"
        subnet = (os.getpid() * 7 + n) % 250 + 1
        self.host, self.bus_host = f"10.213.{subnet}.2", f"10.213.{subnet}.1"
        self.broker_host, relay_side = f"10.213.{subnet}.6", f"10.213.{subnet}.5"
        self.port = LISTEN_PORT
        self.broker_port = broker_port
        self.relay: subprocess.Popen | None = None
        self.netem = False
        try:
            _ip("netns", "add", self.ns)
            _ip("-n", self.ns, "link", "set", "lo", "up")
            for side, (here, there) in (("a", (self.bus_host, self.host)), ("b", (self.broker_host, relay_side))):
                dev, peer = f"avh{tag}{side}", f"avh{tag}{side}n"
                _ip("link", "add", dev, "type", "veth", "peer", "name", peer)
                _ip("link", "set", peer, "netns", self.ns)
                _ip("addr", "add", f"{here}/30", "dev", dev)
                _ip("link", "set", dev, "up")
                _ip("-n", self.ns, "addr", "add", f"{there}/30", "dev", peer)
                _ip("-n", self.ns, "link", "set", peer, "up")
            # Where the kernel has netem, the hop's delay and rate are the kernel's, on both ends of veth "a" (the
            # bus's TCP then sees the real round trip), and the relay only forwards (and still obeys down/hold).
            self.netem = bool(delay_s or rate_bps) and netem_available(self.ns)
            if self.netem:
                shape = ["netem", "delay", f"{delay_s * 1000:.0f}ms", "limit", str(max(10, queue_bytes // 1500))]
                shape += ["rate", f"{rate_bps:.0f}bit"] if rate_bps else []
                _tc(None, "qdisc", "add", "dev", self.dev, "root", *shape)
                _tc(self.ns, "qdisc", "add", "dev", self.dev + "n", "root", *shape)
                delay_s, rate_bps = 0.0, 0
        except Exception:
            self.close()
            raise
        self.delay_s, self.rate_bps, self.queue_bytes = delay_s, rate_bps, queue_bytes

    @property
    def emulation(self) -> str:
        """How the delay and rate are made: "netem" (the kernel's qdisc) or "relay" (userspace, this module's)."""
        return "netem" if self.netem else "relay"

    def listener(self, cert: Path, key: Path) -> str:
        """The broker config lines for its TLS listener on this hop's far side."""
        return f"listener {self.broker_port} {self.broker_host}\ncertfile {cert}\nkeyfile {key}\n"

    def start(self) -> EmulatedHop:
        """Start the relay (the broker must already listen on ``broker_host``)."""
        cmd = [
            "ip", "netns", "exec", self.ns, sys.executable, "-m", "tests.firmware_host.relay",
            f"{self.host}:{self.port}", f"{self.broker_host}:{self.broker_port}",
            "--delay", str(self.delay_s), "--rate", str(self.rate_bps), "--queue", str(self.queue_bytes),
        ]  # fmt: skip
        self.relay = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.relay.stdout is not None
        ready = self.relay.stdout.readline().strip()
        if ready != "ready":
            self.close()
            raise RuntimeError(f"relay in {self.ns} did not start (said {ready!r})")
        return self

    def _say(self, command: str) -> None:
        assert self.relay is not None and self.relay.stdin is not None and self.relay.stdout is not None
        self.relay.stdin.write(command + "\n")
        self.relay.stdin.flush()
        answer = self.relay.stdout.readline().strip()
        if answer != "ok":
            raise RuntimeError(f"relay in {self.ns}: {command!r} answered {answer!r}")

    def down(self) -> None:
        """The link is lost: every connection cut, new ones refused."""
        self._say("down")

    def up(self) -> None:
        self._say("up")

    def hold(self, seconds: float) -> None:
        """Nothing gets through for ``seconds`` (a LEO hand-over); connections survive."""
        self._say(f"hold {seconds}")

    def counters(self) -> Counters:
        stats = Path("/sys/class/net") / self.dev / "statistics"

        def read(name: str) -> int:
            return int((stats / name).read_text())

        return Counters(read("rx_bytes") + read("tx_bytes"), read("rx_packets") + read("tx_packets"))

    def close(self) -> None:
        if self.relay is not None:
            with contextlib.suppress(Exception):
                assert self.relay.stdin is not None
                self.relay.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.relay.wait(3)
            if self.relay.poll() is None:
                self.relay.kill()
                self.relay.wait(3)
            self.relay = None
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        for side in ("a", "b"):  # normally gone with the namespace
            subprocess.run(["ip", "link", "del", self.dev[:-1] + side], capture_output=True)

    def __enter__(self) -> EmulatedHop:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
