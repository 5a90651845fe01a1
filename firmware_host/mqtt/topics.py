"""The MQTT topic contract of one bus (``<p>/status``, ``<p>/state/<component>``, ``<p>/events``, ``<p>/cmd/...``)."""

from __future__ import annotations

from dataclasses import dataclass

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
