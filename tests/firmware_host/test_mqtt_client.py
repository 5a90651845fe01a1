"""The MQTT session's flow control against a real Mosquitto: it keeps within the broker's Receive Maximum (MQTT 5
forbids more, and paho ignores it), sends the rest in order as PUBACKs free the window, and gets the fleet
broker's window from the shipped config."""

from __future__ import annotations

import asyncio
from pathlib import Path

import paho.mqtt.client as paho

from firmware_host.mqtt.client import Ack, BrokerOptions, Session

from ..conftest import wait_until, wait_until_sync
from .mosquitto import Broker, PacketHeaders, Proxy

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
