"""One MQTT connection through paho-mqtt 2.x, its callbacks delivered on the asyncio loop (bus and office alike).

paho runs its network loop on its own thread; everything it reports is handed to the asyncio loop in batches (one
wake-up per burst of PUBACKs or messages, not one per packet), so the rest of the program stays single-threaded.
A :class:`Session` is one connection: it never reconnects by itself. Whoever owns it decides when to open the
next one, which keeps every retry, back-off and resend decision in our code instead of in paho's memory (paho's
in-flight queue is lost on a power cut anyway; the durable outbox is the only source of truth).

>>> session = Session("office-1", BrokerOptions("127.0.0.1", 1883, tls=False), loop=loop, on_messages=print)
>>> await session.open()         # raises MqttConnectError naming the broker and the reason
>>> session.subscribe([("allervers/+/status", 1)])
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger("allervers.mqtt")

Ack = tuple[int, bool, str]  # (mid, delivered, reason)
INBOX_SLICE = 200  # incoming messages handed to the loop per turn


class MqttSetupError(ValueError):
    """A problem with how the connection is set up (credentials file, certificate files): names the file."""


class MqttConnectError(ConnectionError):
    """The broker could not be reached or refused us; the message names the broker and the reason."""


@dataclass(frozen=True)
class BrokerOptions:
    """Where and how to connect. Credentials come from files only (never from the TOML or the command line)."""

    host: str
    port: int | None = None
    tls: bool = True
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password_file: str | None = None
    keepalive_s: int = 60
    connect_timeout_s: float = 30.0

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)

    @property
    def address(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.effective_port}"

    @classmethod
    def from_section(cls, section: Any) -> BrokerOptions:
        """From the validated ``[mqtt]`` config section."""
        return cls(
            host=section.host,
            port=section.port,
            tls=section.tls,
            ca_file=section.ca_file,
            cert_file=section.cert_file,
            key_file=section.key_file,
            username=section.username,
            password_file=section.password_file,
            keepalive_s=section.keepalive_s,
        )


def read_password(path: str) -> str:
    """The password is the file's first line (a trailing newline from `echo` is not part of it)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise MqttSetupError(f"{path}: cannot read the MQTT password file: {reason}") from None
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise MqttSetupError(f"{path}: the MQTT password file is empty")
    return lines[0]


def _check_readable(kind: str, path: str | None) -> None:
    if path is not None and not Path(path).is_file():
        raise MqttSetupError(f"{path}: {kind} not found")


def publish_properties(**values: Any) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    for key, value in values.items():
        setattr(props, key, value)
    return props


class Session:
    """One MQTT 5 connection. ``open()`` connects (TCP, TLS, CONNECT/CONNACK) or raises MqttConnectError.

    Callbacks, all on the asyncio loop: ``on_acks(list[(mid, delivered, reason)])`` for PUBACKs,
    ``on_messages(list[paho.MQTTMessage])`` for incoming messages, ``on_closed(reason)`` once when the connection
    ends (not after a ``close()`` we asked for).
    """

    def __init__(
        self,
        client_id: str,
        options: BrokerOptions,
        *,
        loop: asyncio.AbstractEventLoop,
        clean_start: bool = True,
        session_expiry_s: int = 0,
        will: tuple[str, bytes, bool] | None = None,
        on_acks: Callable[[list[Ack]], None] | None = None,
        on_messages: Callable[[list[paho.MQTTMessage]], None] | None = None,
        on_closed: Callable[[str], None] | None = None,
        max_inflight: int = 20,
    ):
        self.client_id = client_id
        self.options = options
        self.loop = loop
        self.clean_start = clean_start
        self.session_expiry_s = session_expiry_s
        self.will = will
        self.on_acks = on_acks
        self.on_messages = on_messages
        self.on_closed = on_closed
        self.max_inflight = max_inflight
        self.connected = False
        self.session_present = False
        self.subscribed = False
        self.topic_alias_max = 0
        self.messages_out = 0
        self.payload_bytes_out = 0  # topic + payload as handed to paho (the proxy in the benchmark counts the wire)
        self._aliases: dict[str, int] = {}
        self._alias_props: dict[int, Properties] = {}
        self._client: paho.Client | None = None
        self._connack: asyncio.Future | None = None
        self._acks: collections.deque[Ack] = collections.deque()
        self._acks_scheduled = False
        self._inbox: collections.deque[paho.MQTTMessage] = collections.deque()
        self._inbox_scheduled = False
        self._closing = False
        self._closed_reported = False
        self._lock = threading.Lock()

    # --- connecting -----------------------------------------------------------------------------------------

    def _build(self) -> paho.Client:
        o = self.options
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5,
            reconnect_on_failure=False,
        )
        client.max_inflight_messages_set(self.max_inflight)
        client.connect_timeout = o.connect_timeout_s
        if o.username is not None:
            client.username_pw_set(o.username, read_password(o.password_file) if o.password_file else None)
        if o.tls:
            _check_readable("CA certificate file", o.ca_file)
            _check_readable("client certificate file", o.cert_file)
            _check_readable("client key file", o.key_file)
            try:
                # ca_file None: the system's trust store. Host names are checked (paho's default).
                client.tls_set(
                    ca_certs=o.ca_file, certfile=o.cert_file, keyfile=o.key_file, cert_reqs=ssl.CERT_REQUIRED
                )
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise MqttSetupError(f"TLS setup for {o.address}: {exc}") from exc
        if self.will is not None:
            topic, payload, retain = self.will
            client.will_set(topic, payload, qos=1, retain=retain)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    async def open(self, timeout: float | None = None) -> None:
        """Connect and wait for a successful CONNACK."""
        o = self.options
        client = self._client = self._build()
        self._connack = self.loop.create_future()
        props = Properties(PacketTypes.CONNECT)
        if self.session_expiry_s:
            props.SessionExpiryInterval = self.session_expiry_s

        def connect() -> None:
            # Blocking (DNS, TCP, TLS handshake): on a worker thread, never on the loop.
            client.connect(o.host, o.effective_port, o.keepalive_s, clean_start=self.clean_start, properties=props)

        try:
            await asyncio.to_thread(connect)
        except ssl.SSLCertVerificationError as exc:
            raise MqttConnectError(f"{o.address}: TLS certificate not trusted: {exc.verify_message}") from None
        except (ssl.SSLError, OSError) as exc:
            raise MqttConnectError(f"{o.address}: {exc.strerror or exc}") from None
        client.loop_start()
        try:
            await asyncio.wait_for(asyncio.shield(self._connack), timeout or o.connect_timeout_s)
        except TimeoutError:
            await self._stop_thread()
            raise MqttConnectError(f"{o.address}: no CONNACK within {timeout or o.connect_timeout_s:.0f} s") from None
        except MqttConnectError:
            await self._stop_thread()
            raise

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            self.loop.call_soon_threadsafe(
                self._resolve_connack, MqttConnectError(f"{self.options.address}: refused: {rc}")
            )
            return
        alias_max = getattr(props, "TopicAliasMaximum", 0) if props is not None else 0
        self.loop.call_soon_threadsafe(self._connected, bool(flags.session_present), int(alias_max or 0))

    def _connected(self, session_present: bool, alias_max: int) -> None:
        self.connected = True
        self.session_present = session_present
        self.topic_alias_max = alias_max
        self._resolve_connack(None)

    def _resolve_connack(self, error: Exception | None) -> None:
        fut = self._connack
        if fut is None or fut.done():
            return
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self.loop.call_soon_threadsafe(self._lost, f"{self.options.address}: connection closed: {rc}")

    def _lost(self, reason: str) -> None:
        was_connected, self.connected = self.connected, False
        self._resolve_connack(MqttConnectError(reason))
        self._drain_acks()
        self._drain_inbox()
        if was_connected and not self._closing and not self._closed_reported:
            self._closed_reported = True
            if self.on_closed is not None:
                self.on_closed(reason)

    # --- traffic ------------------------------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        alias: bool = False,
        properties: Properties | None = None,
    ) -> int:
        """Queue a message; returns its mid (its PUBACK comes through ``on_acks``). ``alias`` uses an MQTT 5
        topic alias when the broker allows one: the topic is sent once per connection, then 2 bytes instead."""
        assert self._client is not None
        sent_topic = topic
        if alias and self.topic_alias_max and properties is None:
            number = self._aliases.get(topic)
            if number is None and len(self._aliases) < self.topic_alias_max:
                number = self._aliases[topic] = len(self._aliases) + 1
            elif number is not None:
                sent_topic = ""
            if number is not None:
                # One Properties object per alias, shared by every message (paho's Properties are costly to build
                # and never modified once handed over).
                properties = self._alias_props.get(number)
                if properties is None:
                    properties = self._alias_props[number] = publish_properties(TopicAlias=number)
        info = self._client.publish(sent_topic, payload, qos=qos, retain=retain, properties=properties)
        self.messages_out += 1
        self.payload_bytes_out += len(sent_topic.encode()) + len(payload)
        return info.mid

    def subscribe(self, filters: list[tuple[str, int]]) -> None:
        """Subscribe; ``subscribed`` turns True when the broker has granted every filter (SUBACK)."""
        assert self._client is not None
        self.subscribed = False
        self._client.subscribe(filters)

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Any) -> None:
        granted = all(not c.is_failure for c in codes)
        if not granted:
            log.error("%s: subscription refused: %s", self.options.address, ", ".join(str(c) for c in codes))
        self.loop.call_soon_threadsafe(setattr, self, "subscribed", granted)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        # paho's thread. The flag is cleared by the drain before it empties the deque, so no ack is stranded.
        self._acks.append((mid, not rc.is_failure, str(rc)))
        if not self._acks_scheduled:
            self._acks_scheduled = True
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self.loop.call_soon_threadsafe(self._drain_acks)

    def _drain_acks(self) -> None:
        self._acks_scheduled = False
        batch: list[Ack] = []
        while self._acks:
            batch.append(self._acks.popleft())
        if batch and self.on_acks is not None:
            self.on_acks(batch)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._inbox.append(message)
        if not self._inbox_scheduled:
            self._inbox_scheduled = True
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._drain_inbox)

    def _drain_inbox(self) -> None:
        self._inbox_scheduled = False
        batch: list[paho.MQTTMessage] = []
        while self._inbox and len(batch) < INBOX_SLICE:
            batch.append(self._inbox.popleft())
        if self._inbox and not self._inbox_scheduled:
            # A flood is handed over in slices, so that whatever else the loop does (a key press) gets a turn.
            self._inbox_scheduled = True
            self.loop.call_soon(self._drain_inbox)
        if batch and self.on_messages is not None:
            self.on_messages(batch)

    # --- closing ------------------------------------------------------------------------------------------

    async def close(self, *, with_will: bool = False, timeout: float = 5.0) -> None:
        """End the connection. ``with_will``: MQTT 5 "disconnect with will message", so supervisors see the
        bus go offline at once rather than after 1.5 keepalives."""
        self._closing = True
        client = self._client
        if client is None:
            return
        if self.connected:
            reason = ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message") if with_will else None
            with contextlib.suppress(Exception):
                client.disconnect(reasoncode=reason)
        self.connected = False
        await self._stop_thread(timeout)

    async def _stop_thread(self, timeout: float = 5.0) -> None:
        client = self._client
        if client is None:
            return
        try:
            await asyncio.wait_for(asyncio.to_thread(client.loop_stop), timeout)
        except TimeoutError:
            log.warning("%s: the MQTT network thread did not stop within %.0f s", self.options.address, timeout)
        with contextlib.suppress(Exception):
            client.socket() and client.socket().close()  # type: ignore[union-attr]
