"""One MQTT connection through paho-mqtt 2.x, driven by the asyncio loop (bus and office alike).

paho runs in its "external loop" mode: no network thread of its own; the asyncio loop watches the socket and calls
paho's ``loop_read``/``loop_write``/``loop_misc``, so every paho callback already runs on the loop and the whole
program stays single-threaded (no second thread contending for the interpreter lock, no hand-over per packet). Only
the blocking connect (DNS, TCP, TLS handshake) runs on a worker thread.
A :class:`Session` is one connection: it never reconnects by itself. Whoever owns it decides when to open the
next one, which keeps every retry, back-off and resend decision in our code instead of in paho's memory (paho's
in-flight queue is lost on a power cut anyway; the durable outbox is the only source of truth).

Flow control is ours too: at most the broker's CONNACK Receive Maximum QoS 1 messages are unacknowledged at once
(MQTT 5 forbids more); the rest wait in order in the session, and go out as PUBACKs come back.

>>> session = Session("office-1", BrokerOptions("127.0.0.1", 1883, tls=False), loop=loop, on_messages=print)
>>> await session.open()         # raises MqttConnectError naming the broker and the reason
>>> session.subscribe([("allervers/+/status", 1)])
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import select
import socket
import ssl
import time
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
READ_BURST = 20  # loop_read calls per readable socket before the loop gets a turn (an office flood: a key press)
MISC_PERIOD_S = 1.0  # paho's keepalive bookkeeping (PINGREQ, a missing PINGRESP)
_CORK = getattr(socket, "TCP_CORK", None)  # Linux
RECEIVE_MAXIMUM_DEFAULT = 65535  # MQTT 5: no Receive Maximum in the CONNACK means 65,535


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


class BatchingSSLSocket(ssl.SSLSocket):
    """A TLS socket that can gather several writes into one TLS record (and one TCP segment when it fits).

    paho sends each MQTT packet with its own ``send()``: over TLS, each becomes a record of its own (22 bytes of
    header and tag with TLS 1.3) and, written apart, often a segment of its own (52 bytes of TCP/IP headers) and an
    ACK. Between ``hold()`` and ``release()`` sends are only collected; ``release()`` writes them with one
    ``SSL_write``. Bytes that could not be written yet (the send buffer is full) are kept and written first by the
    next ``release()``, in order: paho has counted them as sent."""

    _held: bytearray | None = None
    _stalled: bytes | None = None  # what a write refused (SSL_write must be retried with the same bytes)
    _queued: bytearray | None = None  # what came after it

    def hold(self) -> None:
        """Collect sends until ``release()``."""
        if self._held is None:
            self._held = bytearray()

    @property
    def unsent(self) -> bool:
        """Bytes paho counts as sent that are not in the kernel yet (wait until writable, then ``release()``)."""
        return bool(self._stalled or self._queued)

    def send(self, data: Any, flags: int = 0) -> int:
        if self._held is not None:
            self._held += data
            return len(data)
        if self.unsent:
            self._queue(data)
            self.release()
            return len(data)
        return super().send(data, flags)

    def _queue(self, data: Any) -> None:
        if self._queued is None:
            self._queued = bytearray()
        self._queued += data

    def release(self) -> bool:
        """Write what was collected (after anything still pending); True once the kernel has all of it."""
        held, self._held = self._held, None
        if held:
            self._queue(held)
        while True:
            if self._stalled is None:
                if not self._queued:
                    return True
                self._stalled, self._queued = bytes(self._queued), None
            try:
                sent = super().send(self._stalled)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                return False
            except OSError:
                # The connection is gone: drop the bytes and let the reader see it (paho reports the loss).
                self._stalled = self._queued = None
                with contextlib.suppress(OSError):
                    self.shutdown(socket.SHUT_RDWR)
                return True
            self._stalled = self._stalled[sent:] or None

    def close(self) -> None:
        # paho closes the socket right after writing a DISCONNECT: what was collected goes out first.
        with contextlib.suppress(Exception):
            self.release()
        super().close()


class ResumingContext(ssl.SSLContext):
    """A client TLS context that offers the broker the session ticket of the previous connection: a reconnect then
    skips the certificate exchange and key agreement (measured over the emulated hop: see the README)."""

    resume: ssl.SSLSession | None = None
    sslsocket_class = BatchingSSLSocket  # the standard hook: wrap_socket builds this class

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        resume = self.resume
        if resume is not None and time.time() - resume.time >= resume.timeout:
            resume = self.resume = None  # past its lifetime (Mosquitto's: 2 h): offering it would only cost bytes
        if resume is not None:
            kwargs.setdefault("session", resume)
        return super().wrap_socket(sock, *args, **kwargs)

    def remember(self, sock: Any) -> None:
        """Keep the socket's session (TLS 1.3 tickets arrive after the handshake: call it once data came back)."""
        session = getattr(sock, "session", None)
        if isinstance(sock, ssl.SSLSocket) and session is not None and session.has_ticket:
            self.resume = session


# One context per client, broker and set of files, for the life of the process: a ticket can only be resumed by the
# context that received it.
_CONTEXTS: dict[tuple[Any, ...], ResumingContext] = {}


def tls_context(client_id: str, o: BrokerOptions) -> ResumingContext:
    """The TLS context of ``client_id`` for ``o``: the server verified against ``ca_file`` (None: the system's trust
    store), its host name checked, a client certificate when configured, and session resumption across reconnects."""
    key = (client_id, o.host, o.effective_port, o.ca_file, o.cert_file, o.key_file)
    context = _CONTEXTS.get(key)
    if context is None:
        context = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
        if o.ca_file is not None:
            context.load_verify_locations(cafile=o.ca_file)
        else:
            context.load_default_certs()
        if o.cert_file is not None:
            context.load_cert_chain(o.cert_file, o.key_file)
        _CONTEXTS[key] = context
    return context


class PackedProperties(Properties):
    """PUBLISH properties that never change once built (a topic alias): packed once, not once per message (paho's
    ``pack`` walks every known property name, a good part of the cost of a publish)."""

    _packed: bytes | None = None

    def pack(self) -> bytes:
        if self._packed is None:
            object.__setattr__(self, "_packed", super().pack())
        return self._packed  # type: ignore[return-value]


def publish_properties(*, packed: bool = False, **values: Any) -> Properties:
    """PUBLISH properties; ``packed``: ones that will never change, packed once (:class:`PackedProperties`)."""
    props = (PackedProperties if packed else Properties)(PacketTypes.PUBLISH)
    for key, value in values.items():
        setattr(props, key, value)
    return props


class Session:
    """One MQTT 5 connection. ``open()`` connects (TCP, TLS, CONNECT/CONNACK) or raises MqttConnectError.

    Callbacks, all on the asyncio loop: ``on_acks(list[(mid, delivered, reason)])`` for PUBACKs (one call per
    burst read from the socket), ``on_messages(list[paho.MQTTMessage])`` for incoming messages, ``on_closed(reason)``
    once when the connection ends (not after a ``close()`` we asked for).

    ``publish`` returns our own message id (the ``mid`` of ``on_acks``), not paho's: a QoS 1 message beyond the
    broker's Receive Maximum waits in the session until a PUBACK frees a slot, and gets paho's id only then.
    ``max_inflight`` caps the window further (None: the broker's Receive Maximum alone).
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
        max_inflight: int | None = None,
        hold_s: float = 0.0,
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
        self.hold_s = hold_s
        self.connected = False
        self.session_present = False
        self.subscribed = False
        self.topic_alias_max = 0
        self.tls_resumed = False  # this connection's TLS session was resumed from the previous one's ticket
        self.receive_maximum = RECEIVE_MAXIMUM_DEFAULT
        self.messages_out = 0
        self.payload_bytes_out = 0  # topic + payload as handed to paho (the benchmark counts the wire on a veth)
        self._aliases: dict[str, int] = {}
        self._alias_props: dict[int, Properties] = {}
        self._client: paho.Client | None = None
        self._sock: Any = None
        self._connack: asyncio.Future | None = None
        self._acks: list[Ack] = []
        self._inbox: collections.deque[paho.MQTTMessage] = collections.deque()
        self._inbox_scheduled = False
        self._closing = False
        self._closed_reported = False
        self._next_id = 0
        self._quota = 0  # QoS 1 messages we may still hand to paho (0 until the CONNACK says how many)
        self._waiting: collections.deque[tuple[int, str, bytes, bool, Properties | None]] = collections.deque()
        self._by_paho_mid: dict[int, int] = {}
        self._flush_handle: asyncio.Handle | None = None  # a TimerHandle while held messages wait
        self._publishing_held = False
        self._unflushed = 0  # packets queued in paho since the last flush
        self._writer = False
        self._misc: asyncio.TimerHandle | None = None
        self._gone: asyncio.Event = asyncio.Event()

    # --- connecting -----------------------------------------------------------------------------------------

    def _build(self) -> paho.Client:
        o = self.options
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5,
            reconnect_on_failure=False,
        )
        # 0: paho keeps no queue of its own (its queue is rescanned on every PUBACK); the session's window is the
        # flow control, within the broker's Receive Maximum.
        client.max_inflight_messages_set(0)
        client.connect_timeout = o.connect_timeout_s
        if o.username is not None:
            client.username_pw_set(o.username, read_password(o.password_file) if o.password_file else None)
        if o.tls:
            _check_readable("CA certificate file", o.ca_file)
            _check_readable("client certificate file", o.cert_file)
            _check_readable("client key file", o.key_file)
            try:
                client.tls_set_context(tls_context(self.client_id, o))
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
            # Blocking (DNS, TCP, TLS handshake): on a worker thread, never on the loop. With no socket callbacks
            # set yet, paho writes the CONNECT packet right there; everything after it happens on the loop.
            client.connect(o.host, o.effective_port, o.keepalive_s, clean_start=self.clean_start, properties=props)

        try:
            await asyncio.to_thread(connect)
        except ssl.SSLCertVerificationError as exc:
            self._teardown()
            raise MqttConnectError(f"{o.address}: TLS certificate not trusted: {exc.verify_message}") from None
        except (ssl.SSLError, OSError) as exc:
            self._teardown()
            raise MqttConnectError(f"{o.address}: {exc.strerror or exc}") from None
        self._attach(client)
        try:
            await asyncio.wait_for(asyncio.shield(self._connack), timeout or o.connect_timeout_s)
        except TimeoutError:
            self._teardown()
            raise MqttConnectError(f"{o.address}: no CONNACK within {timeout or o.connect_timeout_s:.0f} s") from None
        except MqttConnectError:
            self._teardown()
            raise

    # --- paho on the asyncio loop -------------------------------------------------------------------------------

    def _attach(self, client: paho.Client) -> None:
        sock = self._sock = client.socket()
        if sock is None:
            self._lost(f"{self.options.address}: connection closed while connecting")
            return
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write
        client.on_socket_close = self._socket_closed
        self.loop.add_reader(sock, self._readable)
        if client.want_write():
            self._schedule_flush()
        self._misc = self.loop.call_later(MISC_PERIOD_S, self._tick)

    def _readable(self) -> None:
        client, sock = self._client, self._sock
        if client is None or sock is None:
            return
        for _ in range(READ_BURST):
            if client.loop_read() or client.socket() is None:
                break
            # loop_read stops after as many packets as paho has messages outstanding: go on while there is more
            # (decrypted bytes held by the TLS layer do not make the socket readable).
            pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
            if not pending and not select.select([sock], [], [], 0)[0]:
                break
        self._drain_acks()

    def _register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._schedule_flush(hold=self._publishing_held)

    @property
    def holding(self) -> bool:
        """Messages published with ``hold`` are waiting (at most ``hold_s``) for company on the wire."""
        return isinstance(self._flush_handle, asyncio.TimerHandle)

    def _schedule_flush(self, hold: bool = False) -> None:
        # Everything published during this turn of the loop is written in one pass, at the end of the turn; what
        # was published with ``hold`` waits up to hold_s for the next message that may not wait, and goes with it.
        handle = self._flush_handle
        if handle is not None:
            if hold or not isinstance(handle, asyncio.TimerHandle):
                return
            handle.cancel()
        if hold and self.hold_s > 0:
            self._flush_handle = self.loop.call_later(self.hold_s, self._flush)
        else:
            self._flush_handle = self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()  # called by the writer callback while a hold was pending: it goes now
            self._flush_handle = None
        client, sock = self._client, self._sock
        if client is None or sock is None or client.socket() is None:
            return
        # paho writes each packet with its own send(). Over TLS, what is ready in this turn of the loop goes out as
        # one TLS record (BatchingSSLSocket). Without TLS, a burst is corked so that the kernel sends full segments
        # (on a real link: fewer TCP/IP headers; on loopback: one trip through the stack, not hundreds).
        batching = isinstance(sock, BatchingSSLSocket)
        cork = self._unflushed > 1 and _CORK is not None and not batching
        self._unflushed = 0
        if cork:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, _CORK, 1)
        if batching:
            sock.hold()
        try:
            client.loop_write()
        finally:
            if batching:
                sock.release()
            if cork and self._sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, _CORK, 0)
        stalled = batching and sock.unsent
        if (client.want_write() or stalled) and not self._writer and self._sock is not None:
            # The socket's send buffer is full: wait until it drains.
            self._writer = True
            self.loop.add_writer(self._sock, self._flush)

    def _unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._writer:
            self._writer = False
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_writer(sock)

    def _socket_closed(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._unwatch(sock)

    def _unwatch(self, sock: Any) -> None:
        if sock is None:
            return
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(sock)
        if self._writer:
            self._writer = False
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_writer(sock)
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
        self._sock = None
        self._gone.set()

    def _tick(self) -> None:
        self._misc = None
        client = self._client
        if client is None or self._sock is None:
            return
        client.loop_misc()  # a PINGREQ when due; closes the socket when the PINGRESP never came
        if self._sock is not None:
            self._misc = self.loop.call_later(MISC_PERIOD_S, self._tick)

    def _teardown(self) -> None:
        """Forget the socket, whatever state it is in (a failed open, a close that did not complete)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        client = self._client
        sock = client.socket() if client is not None else None
        self._unwatch(self._sock or sock)
        if sock is not None:
            with contextlib.suppress(Exception):
                sock.close()

    # --- connection state ---------------------------------------------------------------------------------

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            self.loop.call_soon(self._resolve_connack, MqttConnectError(f"{self.options.address}: refused: {rc}"))
            return
        alias_max = getattr(props, "TopicAliasMaximum", 0) if props is not None else 0
        receive_max = getattr(props, "ReceiveMaximum", 0) if props is not None else 0
        self.receive_maximum = int(receive_max or RECEIVE_MAXIMUM_DEFAULT)
        window = self.receive_maximum if self.max_inflight is None else min(self.max_inflight, self.receive_maximum)
        self._quota = window
        self.connected = True
        self.session_present = bool(flags.session_present)
        sock = client.socket()
        if isinstance(sock, ssl.SSLSocket):
            self.tls_resumed = sock.session_reused
            context = sock.context
            if isinstance(context, ResumingContext):
                context.remember(sock)
        self.topic_alias_max = int(alias_max or 0)
        self.loop.call_soon(self._resolve_connack, None)

    def _resolve_connack(self, error: Exception | None) -> None:
        fut = self._connack
        if fut is None or fut.done():
            return
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self.loop.call_soon(self._lost, f"{self.options.address}: connection closed: {rc}")

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
        hold: bool = False,
    ) -> int:
        """Queue a message; returns its id (its PUBACK comes through ``on_acks``). ``alias`` uses an MQTT 5
        topic alias when the broker allows one: the topic is sent once per connection, then 2 bytes instead.
        ``hold``: the message may wait up to ``hold_s`` so that it shares a TLS record and a TCP segment with the
        next message that may not wait (an event following the state change it comes with)."""
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
                    properties = self._alias_props[number] = publish_properties(packed=True, TopicAlias=number)
        self._next_id += 1
        ident = self._next_id
        self.messages_out += 1
        self.payload_bytes_out += len(sent_topic.encode()) + len(payload)
        self._publishing_held = hold
        try:
            if qos == 0:
                self._unflushed += 1
                self._client.publish(sent_topic, payload, qos=0, retain=retain, properties=properties)
            elif self._quota > 0 and not self._waiting:
                self._send(ident, sent_topic, payload, retain, properties)
            else:
                # In order behind the others: an alias is defined by the first message that carries it.
                self._waiting.append((ident, sent_topic, payload, retain, properties))
        finally:
            self._publishing_held = False
        if not hold and self._client.want_write():
            self._schedule_flush()  # paho asked for a write earlier (held messages): this one may not wait
        return ident

    def _send(self, ident: int, topic: str, payload: bytes, retain: bool, properties: Properties | None) -> None:
        assert self._client is not None
        self._quota -= 1
        self._unflushed += 1
        info = self._client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        self._by_paho_mid[info.mid] = ident

    def _release(self) -> None:
        waiting = self._waiting
        while waiting and self._quota > 0 and self.connected:
            self._send(*waiting.popleft())

    def subscribe(self, filters: list[tuple[str, int]]) -> None:
        """Subscribe; ``subscribed`` turns True when the broker has granted every filter (SUBACK)."""
        assert self._client is not None
        self.subscribed = False
        self._client.subscribe(filters)

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Any) -> None:
        granted = all(not c.is_failure for c in codes)
        if not granted:
            log.error("%s: subscription refused: %s", self.options.address, ", ".join(str(c) for c in codes))
        self.subscribed = granted

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        # Inside paho's loop_read: only note it; the burst is handed over when loop_read returns.
        ident = self._by_paho_mid.pop(mid, None)
        if ident is not None:
            self._quota += 1
            self._acks.append((ident, not rc.is_failure, str(rc)))

    def _drain_acks(self) -> None:
        if not self._acks:
            return
        batch, self._acks = self._acks, []
        self._release()
        if self.on_acks is not None:
            self.on_acks(batch)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._inbox.append(message)
        if not self._inbox_scheduled:
            self._inbox_scheduled = True
            self.loop.call_soon(self._drain_inbox)

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
        if isinstance(self._sock, ssl.SSLSocket) and isinstance(self._sock.context, ResumingContext):
            self._sock.context.remember(self._sock)  # a ticket that came after the CONNACK
        if self.connected and self._sock is not None:
            reason = ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message") if with_will else None
            with contextlib.suppress(Exception):
                client.disconnect(reasoncode=reason)
            # paho closes the socket once the DISCONNECT is written.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._gone.wait(), timeout)
        self.connected = False
        self._waiting.clear()
        self._teardown()
