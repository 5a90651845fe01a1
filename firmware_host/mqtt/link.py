"""The bus's supervision link: connects when the link gate opens, publishes state by exception, drains the event
outbox in seq order, answers commands, and goes quiet (with an "offline" will) when the link drops.

Wiring (Controller.start)::

    link = MqttLink(controller)
    await link.start()
    controller.on_stop.append(link.stop)

One connection at a time, each a fresh :class:`Session`: on any loss everything not acknowledged is simply sent
again on the next connection from the durable watermark, oldest first.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho

from ..api import Connection
from .client import Ack, BrokerOptions, MqttConnectError, MqttSetupError, Session, publish_properties
from .commands import Commands
from .day import day_summary
from .discovery import HA_STATUS_TOPIC, digest, discovery_messages, removal_topics
from .outbox import Outbox, get_meta, set_meta
from .protocol import Topics, valid_topic_name
from .reporter import Reporter

log = logging.getLogger("allervers.mqtt")

WINDOW = 1000  # events handed to the connection but not yet acknowledged: a GEO hop's bandwidth-delay product
BATCH = 250  # events read from the store per query
SESSION_EXPIRY_S = 7 * 86400  # the broker keeps our subscriptions (and queued commands) through long outages
BACKOFF_MIN_S, BACKOFF_MAX_S = 1.0, 300.0
STOP_FLUSH_S = 2.0
# How long a state message (or the day summary, the link record) may wait for the next event to share its TLS record
# and TCP segment: a change logged as an event reaches the wire after its SQLite commit and read-back (milliseconds;
# tens on an SD card), the state change at once. Measured on the scripted day: see the README. Never for events,
# command replies, or a state message carrying a new alarm.
HOLD_S = 0.5
REFRESH_ALONG = 0.25  # a refresh takes along the components due within this fraction of refresh_s


def encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def state_wire(payload: dict[str, Any]) -> dict[str, Any]:
    """A state message as sent: the component's JSON without its null fields (a missing field is null). Fields a
    bus's devices never provide (battery_w on an inverter that has no such register, iridium_service on a GEO link)
    would otherwise cost their bytes in every message: about 2 kB on the scripted day."""
    return {key: value for key, value in payload.items() if value is not None}


class MqttLink:
    """Everything the bus says to (and hears from) the office over MQTT."""

    def __init__(
        self,
        controller: Any,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        persist_after_s: float = 60.0,
    ):
        cfg = controller.config.mqtt
        vehicle = controller.config.vehicle
        self.controller = controller
        self.cfg = cfg
        self.monotonic = monotonic
        self.client_id = cfg.client_id or f"allervers-{vehicle.id}"
        self.topics = Topics(cfg.topic_prefix or f"allervers/{vehicle.id}")
        self.options = BrokerOptions.from_section(cfg)
        self.reporter = Reporter(cfg.deadbands.as_dict())
        self.outbox = Outbox(controller.store, max_backlog=cfg.max_backlog_events, persist_after_s=persist_after_s)
        self.commands = Commands(controller, republish=self.republish, status=self._ping_status)
        self.session: Session | None = None
        self.connects = 0
        self.connect_failures = 0
        self.state_messages = 0
        self.day_messages = 0
        self.events_sent = 0
        self.last_error: str | None = None
        self.connected_since: float | None = None
        self._sent_state: dict[str, dict[str, Any]] = {}  # last state sent per component (in flight or acked)
        self._acked_state: dict[str, dict[str, Any]] = {}  # last state the broker acknowledged
        self._acked_at: dict[str, float] = {}  # monotonic time of that acknowledgement
        self._sent_at: dict[str, float] = {}  # monotonic time of the last send (the refresh clock)
        self._state_mids: dict[int, tuple[str, dict[str, Any]]] = {}
        self._discovery_mids: set[int] = set()
        self._reply_mids: set[int] = set()
        self._discovery_digest: str | None = None
        self._dirty: set[str] = set()
        self._down_since: float | None = None  # the bus's clock when the link was last lost
        self._day_acked: bytes | None = None  # the day's summary the broker holds (as far as we know)
        self._day_mids: dict[int, bytes] = {}
        self._day_changed = True  # a session ended or a stop was confirmed since the last summary
        self._day_urgent = True  # ... a stop, or a new connection: send without waiting for refresh_s
        self._day_sent_at = -1e18
        self._flush_scheduled = False
        self._refused: str | None = None
        self._wake = asyncio.Event()
        self._gate = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task] = []
        self._commands: asyncio.Queue[paho.MQTTMessage] = asyncio.Queue()
        self._unsubscribe: list[Callable[[], None]] = []

    # --- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        c = self.controller
        await self.outbox.open()
        await self.commands.open()
        self._discovery_digest = await get_meta(c.store, "discovery_digest")
        if self.cfg.link_gate == "modem" and c.config.modem is None:
            log.warning(
                "mqtt.link_gate = 'modem' but there is no [modem] section: nothing is published until modem.link "
                "is 'up' (use link_gate = 'always' on a wired link)"
            )
        self._unsubscribe.append(c.state.subscribe(self._on_state))
        self._unsubscribe.append(c.store.subscribe(self._on_event))
        self._update_gate()
        c.registry.add("mqtt.status", self._cmd_status, ("control",), "the supervision link: connection, backlog")
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(), name="mqtt-link"),
            loop.create_task(self._command_worker(), name="mqtt-commands"),
            loop.create_task(self._housekeeping(), name="mqtt-housekeeping"),
        ]

    async def stop(self) -> None:
        """Clean stop: finish what is in flight (briefly), say "offline", persist the watermark, disconnect."""
        if self._stopping:
            return
        self._stopping = True
        self._wake.set()
        self._gate.set()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        session = self.session
        if session is not None and session.connected:
            deadline = time.monotonic() + STOP_FLUSH_S  # real time, whatever clock the link was given
            mid = session.publish(self.topics.status, b"offline", retain=True)
            self._state_mids[mid] = ("", {})
            while session.connected and (self.outbox.in_flight or mid in self._state_mids):
                if time.monotonic() > deadline:
                    break
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.1)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.outbox.close()
        if session is not None:
            await session.close()
        self.session = None

    # --- the link gate ------------------------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        """Connected and subscribed to its commands (the broker kept the subscription, or granted it anew)."""
        session = self.session
        return session is not None and session.connected and (session.session_present or session.subscribed)

    def gate_open(self) -> bool:
        if self.cfg.link_gate == "always":
            return True
        return self.controller.state.value("modem", "link") == "up"

    def _update_gate(self) -> None:
        if self.gate_open():
            self._gate.set()
        else:
            self._gate.clear()
        self._wake.set()

    # --- the connection loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        loop = asyncio.get_running_loop()
        while not self._stopping:
            await self._gate.wait()
            if self._stopping:
                return
            session = Session(
                self.client_id,
                self.options,
                loop=loop,
                clean_start=False,
                session_expiry_s=SESSION_EXPIRY_S,
                will=(self.topics.status, b"offline", True),
                on_acks=self._on_acks,
                on_messages=self._on_messages,
                on_closed=self._on_closed,
                hold_s=HOLD_S,
            )
            try:
                await session.open()
            except (MqttConnectError, MqttSetupError) as exc:
                self.connect_failures += 1
                await self._error(str(exc))
                await session.close()
                await self._sleep_unless_gate_closes(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            self.session = session
            backoff = BACKOFF_MIN_S
            reason = await self._serve(session)
            self.session = None
            self._connection_ended()
            with_will = reason == "link down"
            if not self._stopping:
                self._down_since = self.controller.clock()
            await session.close(with_will=with_will)
            await self.outbox.persist()
            if not self._stopping:
                await self.controller.store.append_event("mqtt.disconnected", reason=reason)
            if self._refused:
                # The broker refuses what we send (ACL?): retrying at once would only burn bytes.
                await self._sleep_unless_gate_closes(60.0)
                self._refused = None

    async def _sleep_unless_gate_closes(self, seconds: float) -> None:
        jittered = seconds * random.uniform(0.8, 1.2)
        deadline = self.monotonic() + jittered
        while not self._stopping and self.gate_open() and self.monotonic() < deadline:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - self.monotonic()))

    async def _error(self, message: str) -> None:
        if message != self.last_error:
            log.error("mqtt: %s", message)
            self.last_error = message
            await self.controller.store.append_event("mqtt.error", error=message)

    async def _serve(self, session: Session) -> str:
        """Run one connection until it ends; returns why ("link down", "stopping", the broker's reason...)."""
        self.connects += 1
        self.connected_since = self.monotonic()
        self.last_error = None
        log.info("mqtt: connected to %s (session present: %s)", self.options.address, session.session_present)
        self._state_mids[session.publish(self.topics.status, b"online", retain=True, hold=True)] = ("", {})
        if not session.session_present:
            filters = [(self.topics.commands, 1)]
            if self.cfg.ha_discovery:
                filters.append((HA_STATUS_TOPIC, 1))
            session.subscribe(filters)
        if self.cfg.ha_discovery:
            self.publish_discovery(force=not session.session_present)
        link_info = {
            "since": round(self.controller.clock()),
            "down_since": None if self._down_since is None else round(self._down_since),
            "backlog": self.outbox.backlog,
            "last_seq": self.controller.store.last_seq,
            "keepalive_s": self.options.keepalive_s,
            "refresh_s": self.cfg.refresh_s,
        }
        self._state_mids[session.publish(self.topics.link, encode(link_info), retain=True, hold=True)] = ("", {})
        # Everything above and the state below go out before the first await: once the session is visible to the
        # rest of the program, the bus has already said who it is and what it looks like.
        self._publish_state(None, force=False)
        self._day_urgent = True  # checked against what the broker holds: nothing is sent when that is current
        self.day_tick()
        await self.controller.store.append_event(
            "mqtt.connected",
            broker=self.options.address,
            session_present=session.session_present,
            backlog=self.outbox.backlog,
        )
        return await self._pump(session)

    async def _pump(self, session: Session) -> str:
        """Send the event log from the watermark, in seq order, keeping up to WINDOW events in flight."""
        outbox = self.outbox
        while True:
            if self._stopping:
                return "stopping"
            if not session.connected:
                return self._closed_reason or "connection lost"
            if not self.gate_open():
                return "link down"
            if self._refused:
                return f"refused by the broker: {self._refused}"
            if self._window_full() or outbox.caught_up():
                self._wake.clear()
                if self._window_full() or outbox.caught_up():
                    await self._wake.wait()
                continue
            newest = self.controller.store.last_seq
            batch = await outbox.next_batch(min(BATCH, WINDOW - outbox.in_flight))
            if not session.connected:
                continue
            if not batch:
                outbox.cursor = max(outbox.cursor, newest)  # a seq lost to a rolled-back write
                continue
            topic = self.topics.events
            for seq, payload in batch:
                if seq <= outbox.cursor:
                    continue
                outbox.sent(seq, session.publish(topic, payload, alias=True))
                self.events_sent += 1

    _closed_reason: str | None = None

    def _window_full(self) -> bool:
        # Refill in whole batches: one store read per BATCH acknowledgements, not one per acknowledgement.
        return self.outbox.in_flight > WINDOW - BATCH

    def _on_closed(self, reason: str) -> None:
        self._closed_reason = reason
        log.warning("mqtt: %s", reason)
        self._wake.set()

    def _connection_ended(self) -> None:
        self.outbox.connection_lost()
        self._state_mids.clear()
        self._day_mids.clear()
        self._discovery_mids.clear()
        self._reply_mids.clear()
        self._pending_digest = None
        self._sent_state = dict(self._acked_state)
        self._sent_at = dict(self._acked_at)  # what was in flight may be lost: due again by the acked time
        self._closed_reason = None
        self.connected_since = None

    # --- acknowledgements and incoming messages -------------------------------------------------------------

    def _on_acks(self, acks: list[Ack]) -> None:
        now = self.monotonic()
        for mid, delivered, reason in acks:
            state = self._state_mids.pop(mid, None)
            if state is not None:
                component, payload = state
                if delivered and component:
                    self._acked_state[component] = payload
                    self._acked_at[component] = now
                elif not delivered:
                    what = f"{component} state" if component else "status or link record"
                    log.error("mqtt: the broker refused the %s (%s): check its ACL", what, reason)
            elif mid in self._day_mids:
                payload = self._day_mids.pop(mid)
                if delivered:
                    self._day_acked = payload
                else:
                    log.error("mqtt: the broker refused the day's summary (%s)", reason)
            elif mid in self._reply_mids:
                self._reply_mids.discard(mid)
                if not delivered:
                    log.warning("mqtt: the broker refused a command reply (%s): check the response topic", reason)
            elif mid in self._discovery_mids:
                self._discovery_mids.discard(mid)
                if delivered and not self._discovery_mids and self._pending_digest:
                    digest_value, self._pending_digest = self._pending_digest, None
                    self._discovery_digest = digest_value
                    asyncio.get_running_loop().create_task(
                        set_meta(self.controller.store, "discovery_digest", digest_value)
                    )
                if not delivered:
                    log.error("mqtt: the broker refused Home Assistant discovery (%s)", reason)
            else:
                self.outbox.acked(mid, delivered)
                if not delivered and self._refused is None:
                    # Events must get through: stop sending and retry later rather than burn bytes.
                    self._refused = reason
                    log.error("mqtt: the broker refused an event (%s): check the ACL of %s", reason, self.topics.events)
        self._wake.set()

    def _on_messages(self, messages: list[paho.MQTTMessage]) -> None:
        for message in messages:
            if message.topic == HA_STATUS_TOPIC:
                if message.payload == b"online" and self.cfg.ha_discovery:
                    self.publish_discovery(force=True)
            elif self.topics.command_name(message.topic) is not None:
                self._commands.put_nowait(message)

    async def _command_worker(self) -> None:
        # One at a time, in arrival order: a lock followed by an unlock must not be reordered.
        while True:
            message = await self._commands.get()
            name = self.topics.command_name(message.topic) or "?"
            try:
                reply = await self.commands.handle(name, message.payload)
            except Exception as exc:
                log.exception("mqtt: command %s failed", name)
                reply = {"id": None, "ok": False, "error": f"{name}: internal error: {exc}", "result": None}
            self._reply(name, message, reply)

    def _reply(self, name: str, message: paho.MQTTMessage, reply: dict[str, Any]) -> None:
        session = self.session
        if session is None or not session.connected:
            return  # the request came in on a connection that is gone; the office will ask again
        topic, props = self.topics.reply(name), None
        request_props = getattr(message, "properties", None)
        response_topic = getattr(request_props, "ResponseTopic", None) if request_props is not None else None
        if response_topic and valid_topic_name(response_topic):
            topic = response_topic
            correlation = getattr(request_props, "CorrelationData", None)
            if correlation is not None:
                props = publish_properties(CorrelationData=correlation)
        self._reply_mids.add(session.publish(topic, encode(reply), properties=props))

    # --- state ------------------------------------------------------------------------------------------

    def _on_state(self, component: str, changed: dict[str, Any], full: dict[str, Any]) -> None:
        if component == "modem" and "link" in changed:
            self._update_gate()
        self._dirty.add(component)
        if not self._flush_scheduled:
            # Coalesce the updates of one poll (power, then the shore derived from it, then alarms).
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_dirty)

    def _flush_dirty(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, set()
        self._publish_state(sorted(dirty), force=False)

    def _component_payload(self, component: str) -> dict[str, Any]:
        """Exactly what `allervers status --json` shows for the component (uptime computed now)."""
        payload = self.controller.state.get(component)
        if component == "controller":
            payload["uptime_s"] = round(time.monotonic() - self.controller.started_mono)
        return payload

    def _publish_state(self, components: list[str] | None, *, force: bool, refresh: bool = False) -> list[str]:
        """Publish the components (all when None) whose change is significant, or all of them with ``force``.
        ``refresh``: the periodic refresh, which skips a component whose payload is exactly what the broker already
        holds (retained): an event-driven component (the vehicle's inputs, the checklist) read at the same ``ts``
        would cost a message and say nothing new."""
        session = self.session
        if session is None or not session.connected or not self.gate_open() or self._stopping:
            return []
        known = self.controller.state.components
        published = []
        for component in list(known) if components is None else components:
            if component not in known:
                continue
            payload = self._component_payload(component)
            reasons = self.reporter.significant(self._sent_state.get(component), payload)
            if not force and not reasons:
                continue
            if refresh and payload == self._acked_state.get(component) == self._sent_state.get(component):
                self._sent_at[component] = self.monotonic()  # current at the broker: due again a period later
                continue
            hold = "alarms" not in reasons  # a new alarm goes at once
            wire = encode(state_wire(payload))
            mid = session.publish(self.topics.state(component), wire, retain=True, alias=True, hold=hold)
            self._state_mids[mid] = (component, payload)
            self._sent_state[component] = payload
            self._sent_at[component] = self.monotonic()
            self.state_messages += 1
            published.append(component)
        return published

    def republish(self, components: list[str] | None = None) -> list[str]:
        """Publish the state now, deadbands or not (the ``refresh`` command); with discovery when enabled."""
        if self.cfg.ha_discovery and components is None:
            self.publish_discovery(force=True)
        return self._publish_state(components, force=True)

    def refresh_due(self) -> list[str]:
        """Components not sent within ``refresh_s``, with those due within the next quarter period: the periodic
        full refresh, per component (one published by exception meanwhile is not sent again; one still waiting for
        its PUBACK is not sent twice)."""
        now = self.monotonic()
        components = self.controller.state.components
        ages = {c: now - self._sent_at.get(c, -1e18) for c in components}
        if not any(age >= self.cfg.refresh_s for age in ages.values()):
            return []
        # Those due within the next quarter period go along: one write for the round instead of one per component
        # (components sent by exception drift apart; each write costs its own TLS record, segment and ACKs).
        return [c for c, age in ages.items() if age >= self.cfg.refresh_s * (1 - REFRESH_ALONG)]

    def tick(self) -> list[str]:
        """The periodic work (also called by the benchmark with its own clock): the refresh, new components'
        discovery."""
        published = self._publish_state(self.refresh_due(), force=True, refresh=True)
        if self.cfg.ha_discovery:
            self.publish_discovery(force=False)
        self.day_tick()
        return published

    # --- the day's summary ----------------------------------------------------------------------------------

    def day_tick(self) -> asyncio.Task | None:
        """Send the day's summary when it is due (a stop confirmed at once; ended sessions at most once per
        ``refresh_s``, as the state's refresh): the task doing it, or None when nothing is due."""
        session = self.session
        if session is None or not session.connected or not (self._day_changed or self._day_urgent):
            return None
        if not self._day_urgent and self.monotonic() - self._day_sent_at < self.cfg.refresh_s:
            return None
        self._day_changed = self._day_urgent = False
        self._day_sent_at = self.monotonic()
        return asyncio.get_running_loop().create_task(self.publish_day(), name="mqtt-day")

    async def publish_day(self) -> bool:
        """Publish today's summary (retained) unless the broker already holds the same; True when sent."""
        today = dt.datetime.fromtimestamp(self.controller.clock()).date()
        payload = encode(await day_summary(self.controller, today))
        session = self.session
        if session is None or not session.connected or payload == self._day_acked:
            return False
        if payload in self._day_mids.values():
            return False
        self._day_mids[session.publish(self.topics.day, payload, retain=True, alias=True, hold=True)] = payload
        self.day_messages += 1
        return True

    _pending_digest: str | None = None

    def publish_discovery(self, *, force: bool) -> int:
        """Home Assistant discovery configs (retained); sent when they changed, when the broker lost our session,
        or when HA restarts. Returns how many messages were sent."""
        session = self.session
        if session is None or not session.connected:
            return 0
        c = self.controller
        components = list(c.state.components)
        messages = discovery_messages(
            vehicle_id=c.config.vehicle.id,
            vehicle_name=c.config.vehicle.name,
            topics=self.topics,
            version=c.state.value("controller", "version") or "",
            components=components,
        )
        value = digest(messages)
        if not force and value in (self._discovery_digest, self._pending_digest):
            return 0
        self._pending_digest = value
        for topic, config in messages:
            self._discovery_mids.add(session.publish(topic, encode(config), retain=True, hold=True))
        for topic in removal_topics(c.config.vehicle.id, components):
            self._discovery_mids.add(session.publish(topic, b"", retain=True, hold=True))
        return len(messages)

    # --- events -----------------------------------------------------------------------------------------

    def _on_event(self, event: dict[str, Any]) -> None:
        self.outbox.check_bound()
        kind = event.get("type")
        if kind == "checklist.stop":
            self._day_urgent = True
            asyncio.get_running_loop().call_soon(self.day_tick)
        elif kind == "kiosk.session_ended":
            self._day_changed = True
        self._wake.set()

    # --- housekeeping -------------------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        period = min(60.0, self.cfg.refresh_s / 4)
        since_prune = 0.0
        while True:
            await asyncio.sleep(period)
            self.tick()
            since_prune += period
            if since_prune >= 6 * 3600:
                since_prune = 0.0
                await self.commands.prune()

    # --- reporting ---------------------------------------------------------------------------------------

    def _ping_status(self) -> dict[str, Any]:
        return {"last_seq": self.controller.store.last_seq, "delivered_seq": self.outbox.delivered}

    def status(self) -> dict[str, Any]:
        session = self.session
        return {
            "broker": self.options.address,
            "client_id": self.client_id,
            "topic_prefix": self.topics.prefix,
            "link_gate": self.cfg.link_gate,
            "gate_open": self.gate_open(),
            "connected": bool(session and session.connected),
            "connected_for_s": None
            if self.connected_since is None
            else round(self.monotonic() - self.connected_since, 1),
            "connects": self.connects,
            "connect_failures": self.connect_failures,
            "last_error": self.last_error,
            "backlog": self.outbox.backlog,
            "delivered_seq": self.outbox.delivered,
            "last_seq": self.controller.store.last_seq,
            "in_flight": self.outbox.in_flight,
            "dropped_events": self.outbox.dropped_total,
            "watermark_writes": self.outbox.watermark_writes,
            "state_messages": self.state_messages,
            "day_messages": self.day_messages,
            "events_sent": self.events_sent,
            "commands_handled": self.commands.handled,
            "commands_rejected": self.commands.rejected,
            "payload_bytes_out": session.payload_bytes_out if session else 0,
        }

    def _cmd_status(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        return self.status()
