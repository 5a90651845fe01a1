"""The supervision protocol both ends speak: topics, the command request and reply, their limits and encoding.

The bus's link (firmware_host/mqtt/) and the office app (firmware_host/supervise/) both use this module, which
imports nothing else of either. Topics: ``<p>/status``, ``<p>/state/<component>``, ``<p>/events``,
``<p>/cmd/<name>`` and its ``/reply``. A request is ``{"id": str <= 64 chars, "expires": epoch seconds, "args":
{...}}``; the reply is ``{"id", "ok", "error", "result"}``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

MAX_REQUEST_BYTES = 4096
MAX_REPLY_BYTES = 16384
MAX_ID_CHARS = 64
MAX_EXPIRES_AHEAD_S = 86400.0  # a request may not outlive the bus's memory of its id

# The kiosk's own local commands, called as they are when the kiosk feature is configured.
KIOSK_COMMANDS = ("kiosk.lock", "kiosk.unlock", "kiosk.end_session")
COMMANDS = ("ping", "refresh", "alarms", "history", *KIOSK_COMMANDS, "inverter.mode")

# MQTT topic names may not contain wildcards; command names are single topic levels.
_FORBIDDEN = set("#+")


def valid_topic_name(topic: str) -> bool:
    """A topic a client may publish to: non-empty, no wildcard, no NUL, at most 65535 UTF-8 bytes."""
    return bool(topic) and not (_FORBIDDEN & set(topic)) and "\0" not in topic and len(topic.encode()) <= 65535


@dataclass(frozen=True)
class Topics:
    """Every topic of one bus under its prefix (``allervers/<vehicle id>`` by default)."""

    prefix: str

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    @property
    def events(self) -> str:
        return f"{self.prefix}/events"

    @property
    def link(self) -> str:
        """Retained, at each connection: since when, the outage before it, the backlog it started with."""
        return f"{self.prefix}/link"

    @property
    def day(self) -> str:
        """Retained: today's stops and visitors per stop (firmware_host/mqtt/day.py)."""
        return f"{self.prefix}/day"

    @property
    def commands(self) -> str:
        """The filter the bus subscribes to: one level per command name, so replies (one level deeper) are not
        echoed back to it."""
        return f"{self.prefix}/cmd/+"

    def state(self, component: str) -> str:
        return f"{self.prefix}/state/{component}"

    def command(self, name: str) -> str:
        return f"{self.prefix}/cmd/{name}"

    def reply(self, name: str) -> str:
        return f"{self.prefix}/cmd/{name}/reply"

    def command_name(self, topic: str) -> str | None:
        """``<p>/cmd/<name>`` -> ``name``; None for any other topic."""
        head = f"{self.prefix}/cmd/"
        if not topic.startswith(head):
            return None
        name = topic[len(head) :]
        return name if name and "/" not in name else None


@dataclass(frozen=True)
class FleetTopics:
    """The office's view: every bus under a common root (``allervers`` by default, one level per bus)."""

    root: str = "allervers"

    def filters(self) -> list[tuple[str, int]]:
        """(filter, QoS). The view is QoS 0: a state is retained and superseded by the next one, and a broker
        holding QoS 1 messages for a busy screen drops the newest past its queue limit, which would leave the
        screen showing an older state. Replies are QoS 1: each is awaited."""
        r = self.root
        return [
            (f"{r}/+/status", 0),
            (f"{r}/+/state/+", 0),
            (f"{r}/+/link", 0),
            (f"{r}/+/day", 0),
            (f"{r}/+/events", 0),
            (f"{r}/+/cmd/+/reply", 1),
        ]

    def bus(self, bus_id: str) -> Topics:
        return Topics(f"{self.root}/{bus_id}")

    def parse(self, topic: str) -> tuple[str, str, str] | None:
        """``<root>/<bus>/<kind>[/<rest>]`` -> (bus, kind, rest); None when the topic is not a bus topic."""
        head = f"{self.root}/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head) :].split("/", 2)
        if len(parts) < 2 or not parts[0]:
            return None
        return parts[0], parts[1], parts[2] if len(parts) > 2 else ""


def encode(obj: Any) -> bytes:
    """A request, reply or payload as sent: compact UTF-8 JSON."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def make_request(
    args: dict[str, Any] | None = None, *, rid: str, ttl_s: float = 300.0, now: float | None = None
) -> bytes:
    """A request as the office sends it: refused by the bus after ``ttl_s`` seconds."""
    expires = (time.time() if now is None else now) + ttl_s
    return encode({"id": rid, "expires": expires, "args": args or {}})


def decode_reply(payload: bytes) -> dict[str, Any]:
    """A reply as the bus sends it; ValueError when it is not a JSON object."""
    reply = json.loads(payload)
    if not isinstance(reply, dict):
        raise ValueError("a reply must be a JSON object")
    return reply
