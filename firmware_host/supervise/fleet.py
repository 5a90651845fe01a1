"""The office's picture of the fleet, built from the buses' MQTT messages, and the link that feeds it and sends
commands. No Textual here: the app renders a :class:`Fleet` and calls a :class:`FleetLink`."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho

from ..mqtt.client import BrokerOptions, MqttConnectError, MqttSetupError, Session
from ..mqtt.protocol import FleetTopics, decode_reply, make_request

log = logging.getLogger("allervers.supervise")

SEVERITY_RANK = {"info": 1, "warning": 2, "alarm": 3, "critical": 4}
LOW_SOC = 30.0  # % under which a bus without shore power is worth a look
RECENT_EVENTS = 50
STOP_GRACE_S = 1800.0  # a bus still without a link this long after a planned stop began is "silent"
DEFAULT_REFRESH_S = 3600.0  # the bus's refresh period when it has not said (its [mqtt] refresh_s default)
DEFAULT_KEEPALIVE_S = 900.0


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _clock_time(day: str, hhmm: Any) -> float | None:
    """Epoch of ``hhmm`` ("09:30") on ``day`` ("2026-06-15"), local time; None when either is missing or broken."""
    if not isinstance(hhmm, str):
        return None
    try:
        return dt.datetime.combine(dt.date.fromisoformat(day), dt.time.fromisoformat(hhmm)).timestamp()
    except ValueError:
        return None


@dataclass
class BusView:
    """One bus as last heard: its status, the latest state of each component, its recent events."""

    id: str
    online: bool | None = None
    last_seen: float | None = None  # the office clock when its last message arrived
    state: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: collections.deque[dict[str, Any]] = field(default_factory=lambda: collections.deque(maxlen=RECENT_EVENTS))
    version: int = 0  # bumped on every change, so a screen knows whether to redraw
    offline_at: float | None = None  # the office clock when a live "offline" (its will, or a clean goodbye) came
    link: dict[str, Any] = field(default_factory=dict)  # <p>/link: since, down_since, backlog, last_seq, periods
    day: dict[str, Any] = field(default_factory=dict)  # <p>/day: today's stops and visitors per stop
    max_seq: int = 0  # the newest event seq received

    def value(self, component: str, key: str) -> Any:
        comp = self.state.get(component)
        return None if comp is None else comp.get(key)

    def fresh(self, component: str) -> bool:
        comp = self.state.get(component)
        return comp is not None and not comp.get("stale", False)

    @property
    def alarms(self) -> list[dict[str, Any]]:
        alarms = self.value("controller", "alarms")
        return [a for a in alarms if isinstance(a, dict)] if isinstance(alarms, list) else []

    @property
    def worst_severity(self) -> str | None:
        ranked = [a.get("severity") for a in self.alarms if a.get("severity") in SEVERITY_RANK]
        return max(ranked, key=lambda s: SEVERITY_RANK[s]) if ranked else None

    @property
    def stop(self) -> str | None:
        stop = self.value("checklist", "stop")
        if isinstance(stop, dict):
            commune, place = stop.get("commune"), stop.get("place")
            return f"{commune} ({place})" if commune and place else commune or place
        return stop if isinstance(stop, str) and stop else None

    def connectivity(self, now: float) -> tuple[str, float | None]:
        """("up" | "down" | "silent" | "unknown", since when). "down": the link is gone and nothing says that is
        wrong (out of coverage, on the road, the day is over): the bus keeps everything and sends it once back.
        "silent": quiet beyond its expected schedule, either connected but saying nothing for longer than its
        refresh period and keepalive allow, or still without a link well after a planned stop began."""
        if self.online is None:
            return "unknown", None
        if self.online:
            refresh = _number(self.link.get("refresh_s")) or DEFAULT_REFRESH_S
            keepalive = _number(self.link.get("keepalive_s")) or DEFAULT_KEEPALIVE_S
            if self.last_seen is not None and now - self.last_seen > refresh + 1.5 * keepalive:
                return "silent", self.last_seen
            return "up", _number(self.link.get("since"))
        since = self.offline_at if self.offline_at is not None else self.last_seen
        stop = self.stop_in_progress(now)
        if stop is not None and now - stop >= STOP_GRACE_S and (since is None or since < now - STOP_GRACE_S):
            return "silent", since
        return "down", since

    def stop_in_progress(self, now: float) -> float | None:
        """The start (epoch) of today's planned stop under way at ``now``, from the bus's day summary."""
        day = self.day.get("date")
        planned = self.day.get("planned")
        if not isinstance(day, str) or not isinstance(planned, list):
            return None
        for stop in planned:
            if not isinstance(stop, dict):
                continue
            start, end = _clock_time(day, stop.get("arrive")), _clock_time(day, stop.get("depart"))
            if start is not None and end is not None and start <= now < end:
                return start
        return None

    def backlog(self) -> int | None:
        """Events the bus still has to send, as far as the office knows: what it reported at its last connection,
        less what has arrived since."""
        reported, last_seq = self.link.get("backlog"), self.link.get("last_seq")
        if not isinstance(reported, int) or not isinstance(last_seq, int):
            return None
        if self.max_seq <= last_seq - reported:  # nothing of that backlog seen here (the app started later)
            return reported
        return max(0, last_seq - self.max_seq)

    def day_of(self, now: float) -> dict[str, Any]:
        """The bus's day summary if it is for the day of ``now`` (a bus not heard from today still has yesterday's
        retained at the broker: not today's stops)."""
        if self.day.get("date") != dt.datetime.fromtimestamp(now).date().isoformat():
            return {}
        return self.day

    def today(self, now: float) -> list[dict[str, Any]]:
        """Today's stops: each planned one (with when it was reached, if it was) then the unplanned ones, with the
        visitors of each (sessions at the public terminal)."""
        day = self.day_of(now)
        visitors = {v.get("key"): v.get("visitors") for v in day.get("visitors") or [] if isinstance(v, dict)}
        reached: dict[Any, Any] = {}
        labels: dict[Any, str] = {}
        for stop in day.get("stops") or []:
            if isinstance(stop, dict):
                reached.setdefault(stop.get("key"), stop.get("at"))
                labels[stop.get("key")] = stop.get("commune") or ""
        rows = []
        for stop in day.get("planned") or []:
            if isinstance(stop, dict):
                key = stop.get("key")
                rows.append(
                    {
                        "label": stop.get("commune") or "?",
                        "place": stop.get("place") or "",
                        "planned": f"{stop.get('arrive') or '?'}-{stop.get('depart') or '?'}",
                        "at": reached.pop(key, None),
                        "visitors": visitors.pop(key, 0),
                    }
                )
        unplanned = {
            key: {"label": labels.get(key) or "?", "place": "", "planned": None, "at": at, "visitors": 0}
            for key, at in reached.items()
        }
        for v in day.get("visitors") or []:
            if isinstance(v, dict) and v.get("key") in visitors:  # sessions at a stop the tour does not list
                row = unplanned.setdefault(
                    v.get("key"), {"label": v.get("label") or "?", "place": "", "planned": None, "at": None}
                )
                row["visitors"] = visitors.pop(v.get("key"))
        rows.extend(unplanned.values())
        return rows

    def visitors_today(self, now: float) -> int | None:
        day = self.day_of(now)
        if not day:
            return None
        return sum(v.get("visitors") or 0 for v in day.get("visitors") or [] if isinstance(v, dict))

    def problems(self, now: float) -> list[str]:
        """Problem keys, worst first (the screens translate them). A link that is merely down is not one."""
        out = []
        worst = self.worst_severity
        if worst in ("critical", "alarm"):
            out.append(f"alarm.{worst}")
        if self.connectivity(now)[0] == "silent":
            out.append("silent")
        if worst == "warning":
            out.append("alarm.warning")
        soc = self.value("power", "soc")
        if isinstance(soc, (int, float)) and soc < LOW_SOC and not self.value("shore", "connected"):
            out.append("low_soc")
        if any(c.get("stale") and c.get("stale_reason") != "not configured" for c in self.state.values()):
            out.append("stale")
        return out

    def rank(self, now: float) -> int:
        weights = {"alarm.critical": 50, "alarm.alarm": 40, "silent": 30, "alarm.warning": 20, "low_soc": 15}
        return max((weights.get(p, 5) for p in self.problems(now)), default=0)


class Fleet:
    """Every bus seen, updated message by message; ``dirty`` says which buses changed since the screen last
    looked, so the screen redraws in batches however fast messages come."""

    def __init__(self, topics: FleetTopics | None = None, *, clock: Callable[[], float] = time.time):
        self.topics = topics or FleetTopics()
        self.clock = clock
        self.buses: dict[str, BusView] = {}
        self.dirty: set[str] = set()
        self.messages = 0
        self.errors: collections.deque[str] = collections.deque(maxlen=20)
        self.on_reply: Callable[[str, str, dict[str, Any]], None] | None = None

    def bus(self, bus_id: str) -> BusView:
        view = self.buses.get(bus_id)
        if view is None:
            view = self.buses[bus_id] = BusView(bus_id)
        return view

    def apply(self, topic: str, payload: bytes, retained: bool = False) -> str | None:
        """Fold one message in; returns the bus it concerned (None for a foreign or broken message)."""
        parsed = self.topics.parse(topic)
        if parsed is None:
            return None
        bus_id, kind, rest = parsed
        self.messages += 1
        data: Any = None
        try:
            if kind == "status":
                text = payload.decode()
                if text not in ("online", "offline"):
                    raise ValueError(f"status must be online or offline, got {text[:20]!r}")
                view = self.bus(bus_id)
                view.online = text == "online"
                if not view.online and not retained:
                    view.offline_at = self.clock()
                elif view.online:
                    view.offline_at = None
            elif kind == "state" and rest and "/" not in rest:
                data = json.loads(payload)
                if not isinstance(data, dict):
                    raise ValueError("a state must be a JSON object")
                view = self.bus(bus_id)
                view.state[rest] = data
            elif kind in ("link", "day") and not rest:
                data = json.loads(payload)
                if not isinstance(data, dict):
                    raise ValueError(f"the {kind} message must be a JSON object")
                view = self.bus(bus_id)
                setattr(view, kind, data)
                data = {}  # carries no reading time of its own
            elif kind == "events" and not rest:
                event = json.loads(payload)
                if not isinstance(event, dict) or not isinstance(event.get("seq"), int):
                    raise ValueError('an event must be a JSON object with an integer "seq"')
                view = self.bus(bus_id)
                if not any(e.get("seq") == event["seq"] for e in view.events):  # re-sent after an outage
                    view.events.append(event)
                view.max_seq = max(view.max_seq, event["seq"])
            elif kind == "cmd" and rest.endswith("/reply"):
                reply = decode_reply(payload)
                if self.on_reply is not None:
                    self.on_reply(bus_id, rest.split("/", 1)[0], reply)
                return None
            else:
                return None
        except (ValueError, UnicodeDecodeError) as exc:
            self.errors.append(f"{topic}: {exc}")
            return None
        # A retained message is old news of unknown age: a state's own "ts" (when the bus read it) is the best
        # guess (the bus's clock, which may be off until NTP syncs); a retained status says nothing.
        seen = self.clock() if not retained else (data.get("ts") if kind == "state" else None)
        if isinstance(seen, (int, float)) and not isinstance(seen, bool):
            view.last_seen = seen if view.last_seen is None else max(view.last_seen, seen)
        view.version += 1
        self.dirty.add(bus_id)
        return bus_id

    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    def order(self) -> list[str]:
        """Problems first (worst first), then by bus id."""
        now = self.clock()
        return sorted(self.buses, key=lambda b: (-self.buses[b].rank(now), b))


class CommandFailed(RuntimeError):
    """No reply in time, or the link is down (the message says which)."""


class FleetLink:
    """The office's MQTT connection: subscribes to the whole fleet, feeds a :class:`Fleet`, sends commands.

    Reconnects by itself with a capped back-off; ``on_status(connected, error)`` reports the connection.
    """

    def __init__(
        self,
        options: BrokerOptions,
        fleet: Fleet,
        *,
        client_id: str | None = None,
        on_status: Callable[[bool, str | None], None] | None = None,
        on_batch: Callable[[set[str]], None] | None = None,
    ):
        self.options = options
        self.fleet = fleet
        self.topics = fleet.topics
        self.client_id = client_id or f"allervers-office-{uuid.uuid4().hex[:8]}"
        self.on_status = on_status
        self.on_batch = on_batch
        self.session: Session | None = None
        self.connected = False
        self.error: str | None = None
        self._pending: dict[str, asyncio.Future] = {}
        self._task: asyncio.Task | None = None
        self._lost = asyncio.Event()
        fleet.on_reply = self._reply

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fleet-link")

    async def _run(self) -> None:
        backoff = 0.5
        loop = asyncio.get_running_loop()
        while True:
            self._lost.clear()
            session = Session(
                self.client_id,
                self.options,
                loop=loop,
                on_messages=self._messages,
                on_closed=lambda reason: self._closed(reason),
            )
            try:
                await session.open()
            except (MqttConnectError, MqttSetupError) as exc:
                self._status(False, str(exc))
                await session.close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.5
            self.session = session
            session.subscribe(self.topics.filters())
            self._status(True, None)
            await self._lost.wait()
            self.session = None
            await session.close()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(CommandFailed("connection to the broker lost"))

    def _closed(self, reason: str) -> None:
        self._status(False, reason)
        self._lost.set()

    def _status(self, connected: bool, error: str | None) -> None:
        self.connected, self.error = connected, error
        if self.on_status is not None:
            self.on_status(connected, error)

    def _messages(self, messages: list[paho.MQTTMessage]) -> None:
        changed = set()
        for m in messages:
            bus = self.fleet.apply(m.topic, m.payload, bool(m.retain))
            if bus is not None:
                changed.add(bus)
        if changed and self.on_batch is not None:
            self.on_batch(changed)

    def _reply(self, bus_id: str, name: str, reply: dict[str, Any]) -> None:
        fut = self._pending.get(str(reply.get("id")))
        if fut is not None and not fut.done():
            fut.set_result(reply)

    async def command(
        self, bus_id: str, name: str, args: dict[str, Any] | None = None, *, timeout: float = 60.0, ttl_s: float = 300.0
    ) -> dict[str, Any]:
        """Send one command and wait for its reply ``{"id", "ok", "error", "result"}``. A bus out of reach keeps
        the request (its broker session does) until ``expires``: past that it will refuse it."""
        session = self.session
        if session is None or not session.connected:
            raise CommandFailed(f"not connected to {self.options.address}")
        rid = uuid.uuid4().hex
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        session.publish(self.topics.bus(bus_id).command(name), make_request(args, rid=rid, ttl_s=ttl_s))
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise CommandFailed(f"{bus_id}: no reply to {name} within {timeout:.0f} s") from None
        finally:
            self._pending.pop(rid, None)

    async def history(
        self, bus_id: str, metrics: list[str], start: float, end: float, *, step_min: int = 5, max_pages: int = 20
    ) -> dict[str, list[tuple[int, list[float] | None]]]:
        """Per-metric series ``[(minute, [min, max, mean, count]), ...]``, fetching every page of the reply."""
        series: dict[str, list[tuple[int, list[float] | None]]] = {m: [] for m in metrics}
        after = None
        for _ in range(max_pages):
            args: dict[str, Any] = {"metrics": metrics, "start": start, "end": end, "step_min": step_min}
            if after is not None:
                args["after_minute"] = after
            reply = await self.command(bus_id, "history", args)
            if not reply.get("ok"):
                raise CommandFailed(f"{bus_id}: history: {reply.get('error')}")
            result = reply["result"]
            for row in result["rows"]:
                for i, metric in enumerate(metrics):
                    series[metric].append((row[0], row[i + 1]))
            after = result.get("next_after_minute")
            if after is None:
                break
        return series

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.session is not None:
            await self.session.close()
            self.session = None
