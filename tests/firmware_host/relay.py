"""A userspace satellite hop: a TCP relay that adds one-way delay and a rate limit, run inside a network namespace.

This project's kernels have no traffic-control qdiscs (``tc qdisc add ... netem`` answers "unknown qdisc"), so the
hop's delay and rate are emulated here. The relay terminates TCP on each side, as a satellite terminal's
performance-enhancing proxy does: the bus's TCP segments and ACKs cross the veth at once, every byte it sends
reaches the other side ``delay_s`` later, and no faster than ``rate_bps`` (counted with 52 B of TCP/IP header per
1,448-byte segment, so the rate is the link's IP rate). A small bottleneck buffer (``queue_bytes``) stops reading
when full, so a sender that outruns the link is held back by TCP, as behind a real modem, instead of filling an
unbounded queue here.

Run: ``python -m tests.firmware_host.relay LISTEN_HOST:PORT TARGET_HOST:PORT --delay 0.3 --rate 2000000``. It prints
``ready`` once listening, then obeys lines on stdin: ``down`` (cut every connection and refuse new ones: the link
is lost), ``up`` (accept again), ``hold SECONDS`` (deliver nothing for that long, then resume: a LEO hand-over;
nothing is lost, TCP-level state survives).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import socket
import sys
import time

SEGMENT = 1448  # TCP payload per segment with timestamps on a 1500-byte MTU
HEADERS = 52  # IPv4 + TCP with timestamps
SOCK_BUFFER = 32 * 1024  # small kernel buffers here: the hop's own queue is the one that counts


class Hop:
    """One direction's link: when each chunk leaves (rate) and arrives (delay)."""

    def __init__(self, delay_s: float, rate_bps: float, queue_bytes: int):
        self.delay_s = delay_s
        self.rate_bps = rate_bps
        self.queue_bytes = queue_bytes
        self.free_at = 0.0  # when the link has finished sending what it was given

    def backlog_s(self, now: float) -> float:
        return max(0.0, self.free_at - now)

    def admit(self, size: int, now: float) -> float:
        """The arrival time of ``size`` bytes handed to the link now."""
        if self.rate_bps:
            wire = size + HEADERS * math.ceil(size / SEGMENT)
            self.free_at = max(now, self.free_at) + wire * 8 / self.rate_bps
            return self.free_at + self.delay_s
        return now + self.delay_s

    def queue_wait_s(self, now: float) -> float:
        """How long a reader must wait before the bottleneck buffer has room again."""
        if not self.rate_bps:
            return 0.0
        return self.backlog_s(now) - self.queue_bytes * 8 / self.rate_bps


class Relay:
    def __init__(self, target: tuple[str, int], delay_s: float, rate_bps: float, queue_bytes: int):
        self.target = target
        self.delay_s = delay_s
        self.rate_bps = rate_bps
        self.queue_bytes = queue_bytes
        self.up = True
        self.held_until = 0.0
        self.writers: set[asyncio.StreamWriter] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            abort(writer)
            return
        small_buffers(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            abort(writer)
            return
        small_buffers(up_writer)
        self.writers |= {writer, up_writer}
        await asyncio.gather(
            self.pipe(reader, up_writer, Hop(self.delay_s, self.rate_bps, self.queue_bytes)),
            self.pipe(up_reader, writer, Hop(self.delay_s, self.rate_bps, self.queue_bytes)),
            return_exceptions=True,
        )
        for w in (writer, up_writer):
            self.writers.discard(w)
            abort(w)

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hop: Hop) -> None:
        line: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        deliver = asyncio.ensure_future(self.deliver(line, writer))
        try:
            while True:
                wait = hop.queue_wait_s(time.monotonic())
                if wait > 0:
                    await asyncio.sleep(wait)  # the bottleneck buffer is full: stop reading, TCP holds the sender
                data = await reader.read(SEGMENT * 4)
                if not data:
                    break
                line.put_nowait((hop.admit(len(data), time.monotonic()), data))
        finally:
            line.put_nowait(None)
            with contextlib.suppress(Exception):
                await deliver

    async def deliver(self, line: asyncio.Queue, writer: asyncio.StreamWriter) -> None:
        while (item := await line.get()) is not None:
            due, data = item
            due = max(due, self.held_until)
            while (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
                due = max(due, self.held_until)  # a hold that began meanwhile
            writer.write(data)
            await writer.drain()
        abort(writer)

    def command(self, text: str) -> None:
        words = text.split()
        if not words:
            return
        if words[0] == "down":
            self.up = False
            for w in list(self.writers):
                abort(w)
        elif words[0] == "up":
            self.up = True
        elif words[0] == "hold" and len(words) == 2:
            self.held_until = time.monotonic() + float(words[1])


def small_buffers(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCK_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCK_BUFFER)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def abort(writer: asyncio.StreamWriter) -> None:
    """Close with a reset (SO_LINGER 0): the peer learns at once that the link is gone."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(Exception):
        writer.transport.abort()


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("listen", type=address)
    parser.add_argument("target", type=address)
    parser.add_argument("--delay", type=float, default=0.0, help="one-way delay, seconds")
    parser.add_argument("--rate", type=float, default=0.0, help="bits per second each way (0: unlimited)")
    parser.add_argument("--queue", type=int, default=64 * 1024, help="bottleneck buffer, bytes")
    args = parser.parse_args()
    relay = Relay(args.target, args.delay, args.rate, args.queue)
    server = await asyncio.start_server(relay.serve, *args.listen)  # noqa: F841  (kept alive until exit)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while line := await stdin.readline():
        relay.command(line.decode())
        print("ok", flush=True)
    # stdin closed: the hop is being taken down. Leave at once (the namespace and its connections go with it).
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
