"""The MQTT session's flow control against a real Mosquitto: it keeps within the broker's Receive Maximum (MQTT 5
forbids more, and paho ignores it), sends the rest in order as PUBACKs free the window, and gets the fleet
broker's window from the shipped config; over TLS, held messages leave with the next one in one record."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import paho.mqtt.client as paho

from firmware_host.mqtt.client import Ack, BrokerOptions, Session

from ..conftest import wait_until, wait_until_sync
from .mosquitto import Broker, PacketHeaders, Proxy, free_port, make_chain

BURST = 300


async def open_session(port: int, acks: list[Ack]) -> Session:
    options = BrokerOptions("127.0.0.1", port, tls=False)
    session = Session("window-test", options, loop=asyncio.get_running_loop(), on_acks=acks.extend)
    await session.open()
    return session


def test_packet_headers_split_a_stream_cut_anywhere() -> None:
    # A QoS 1 PUBLISH with a 200-byte body (two-byte remaining length), a PUBACK, a QoS 0 PUBLISH.
    stream = bytes([0x32, 0xC8, 0x01]) + bytes(200) + bytes([0x40, 0x02, 0x00, 0x01]) + bytes([0x30, 0x03, 0, 1, 9])
    for cut in range(len(stream) + 1):
        headers = PacketHeaders()
        assert headers.feed(stream[:cut]) + headers.feed(stream[cut:]) == [(3, 1), (4, 0), (3, 0)], cut


async def test_session_keeps_within_the_brokers_receive_maximum(tmp_path: Path) -> None:
    with Broker(tmp_path / "broker", extra="max_inflight_messages 5") as broker:
        proxy = Proxy(broker.port)
        acks: list[Ack] = []
        session = await open_session(proxy.port, acks)
        try:
            assert session.receive_maximum == 5
            ids = [session.publish("allervers/bus-test/events", b'{"n": %d}' % i) for i in range(BURST)]
            await wait_until(lambda: len(acks) == BURST, message="every PUBACK")
            assert [mid for mid, _, _ in acks] == ids and all(ok for _, ok, _ in acks)
            assert session.connected
            assert 1 < proxy.max_in_flight <= 5  # pipelined, never past the window
        finally:
            await session.close()
            proxy.close()


def test_the_proxy_sees_a_client_that_ignores_the_receive_maximum(tmp_path: Path) -> None:
    # The check above can fail: paho on its own (no in-flight limit) sends the whole burst at once, and Mosquitto
    # 2.0 accepts it without a word.
    with Broker(tmp_path / "broker", extra="max_inflight_messages 5") as broker:
        proxy = Proxy(broker.port)
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="no-window", protocol=paho.MQTTv5)
        client.max_inflight_messages_set(0)
        acked: list[int] = []
        client.on_publish = lambda c, u, mid, rc, p: acked.append(mid)
        client.connect("127.0.0.1", proxy.port)
        client.loop_start()
        try:
            wait_until_sync(client.is_connected, message="CONNACK")
            for i in range(BURST):
                client.publish("allervers/bus-test/events", b'{"n": %d}' % i, qos=1)
            wait_until_sync(lambda: len(acked) == BURST, message="every PUBACK")
            assert proxy.max_in_flight > 5
        finally:
            client.disconnect()
            client.loop_stop()
            proxy.close()


async def test_the_fleet_broker_gives_buses_a_window_of_1000(tmp_path: Path) -> None:
    # Mosquitto's default is 20: over a 600 ms satellite hop, 20 events per round trip (~30 events/s). 1,000 covers
    # the GEO hop's bandwidth-delay product (2 Mbit/s x ~0.9 s with the modem's queue, ~300 B per event).
    with Broker(tmp_path / "broker") as broker:
        session = await open_session(broker.port, [])
        try:
            assert session.receive_maximum == 1000
        finally:
            await session.close()


class RecordCounter:
    """A TCP relay that counts the TLS records a client sends (each record's 5-byte header gives its length)."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.records = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def upstream() -> None:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                while True:
                    header = await reader.readexactly(5)
                    body = await reader.readexactly(int.from_bytes(header[3:5], "big"))
                    self.records += 1
                    up_writer.write(header + body)

        async def downstream() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await up_reader.read(65536):
                    writer.write(data)

        await asyncio.gather(upstream(), downstream())
        for w in (writer, up_writer):
            w.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_over_tls_held_messages_leave_with_the_next_one_in_one_record(tmp_path: Path) -> None:
    """What is published with ``hold`` waits (up to hold_s) for a message that may not wait; then all of them go
    as one TLS record. Alone, a held message goes when hold_s is over."""
    pki = tmp_path / "pki"
    pki.mkdir()
    ca, chain, key = make_chain(pki, "IP:127.0.0.1")
    port = free_port()
    conf = f"listener {port} 127.0.0.1\ncertfile {chain}\nkeyfile {key}\nallow_anonymous true\n"
    with Broker(tmp_path / "broker", port=port, conf=conf):
        counter = RecordCounter(port)
        relay_port = await counter.start()
        acks: list[Ack] = []
        options = BrokerOptions("127.0.0.1", relay_port, tls=True, ca_file=str(ca))
        session = Session("hold-test", options, loop=asyncio.get_running_loop(), on_acks=acks.extend, hold_s=30.0)
        await session.open()
        try:
            await asyncio.sleep(0.3)  # the handshake's last records
            before = counter.records
            held = [session.publish(f"allervers/bus-test/state/c{i}", b"{}", hold=True) for i in range(3)]
            assert session.holding
            await asyncio.sleep(0.3)
            assert counter.records == before and not acks  # still held
            event = session.publish("allervers/bus-test/events", b'{"seq": 1}')
            await wait_until(lambda: len(acks) == 4, message="the four PUBACKs")
            assert [mid for mid, _, _ in acks] == [*held, event] and not session.holding
            assert counter.records == before + 1  # one record for the four messages

            session.hold_s = 0.2
            alone = session.publish("allervers/bus-test/state/c0", b"{}", hold=True)
            await wait_until(lambda: len(acks) == 5, message="the held message, alone, after hold_s")
            assert acks[-1][0] == alone and counter.records == before + 2
        finally:
            await session.close()
            counter.close()
