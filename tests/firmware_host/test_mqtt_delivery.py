"""Store-and-forward over a real Mosquitto: broker restarts, kill -9, the link gate, the backlog bound, SD writes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_host.mqtt import link as link_mod
from firmware_host.mqtt.outbox import event_payload
from firmware_host.store import Store, event_row_to_dict

from ..conftest import make_config, wait_until, write_config
from .mosquitto import Broker, Proxy, Watcher, seqs_in_order

PREFIX = "allervers/bus-test"
GPIO = {"pin_factory": "mock", "ignition_pin": 17, "antenna_stowed_pin": 27, "debounce_s": 0.0}


def mqtt_config(tmp_path: Path, port: int, **mqtt: Any) -> Any:
    return make_config(
        tmp_path,
        gpio=GPIO,
        mqtt={"host": "127.0.0.1", "port": port, "tls": False, "link_gate": "always", **mqtt},
    )


def store_seqs(db_path: str) -> list[int]:
    with sqlite3.connect(db_path) as conn:
        return [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]


def delivered_on_disk(db_path: str) -> int:
    with sqlite3.connect(db_path) as conn:
        row = conn.execute("SELECT value FROM meta WHERE namespace = 'mqtt' AND key = 'delivered_seq'").fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    # The fleet broker's flow control (config/mosquitto/allervers.conf): a loopback drain (>10,000 events/s) outruns
    # the office Watcher in this process, and with Mosquitto's default queue of 1000 messages per client the broker
    # would drop QoS 1 messages for that subscriber after acknowledging them to the bus.
    with Broker(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # The production back-off (1 s doubling to 5 min) would make these tests wait for nothing.
    monkeypatch.setattr(link_mod, "BACKOFF_MIN_S", 0.05)
    monkeypatch.setattr(link_mod, "BACKOFF_MAX_S", 0.2)


async def test_publishes_status_state_and_events_in_seq_order(tmp_path: Path, broker: Broker, run_controller) -> None:
    watcher = Watcher(broker.port, [f"{PREFIX}/#"]).start()
    try:
        controller = await run_controller(mqtt_config(tmp_path, broker.port))
        controller.io.drive("ignition", True)
        for i in range(20):
            await controller.store.append_event("test.tick", n=i)
        await wait_until(
            lambda: set(store_seqs(controller.config.storage.path)) <= {e["seq"] for e in watcher.events()},
            message="every event of the log published",
        )
        assert watcher.received(f"{PREFIX}/status")[0].payload == b"online"
        for component in ("power", "shore", "modem", "vehicle", "controller"):
            payload = watcher.received(f"{PREFIX}/state/{component}")[-1].json()
            # The same JSON as `allervers status --json` for the component, without its null fields.
            status = {k: v for k, v in controller.snapshot()[component].items() if v is not None}
            assert set(payload) == set(status)
            assert {k: v for k, v in payload.items() if k not in ("ts", "uptime_s")} == {
                k: v for k, v in status.items() if k not in ("ts", "uptime_s")
            }
        events = watcher.events()
        assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
        ticks = [e for e in events if e["type"] == "test.tick"]
        assert [e["n"] for e in ticks] == list(range(20))
        assert set(ticks[0]) == {"seq", "ts", "clock_synced", "type", "n"}
        assert any(e["type"] == "vehicle.ignition" and e["value"] is True for e in events)
    finally:
        watcher.stop()


async def test_broker_stopped_then_restarted_loses_nothing(
    tmp_path: Path, broker: Broker, run_controller, fast_retries
) -> None:
    watcher = Watcher(broker.port, [f"{PREFIX}/events"]).start()
    controller = await run_controller(mqtt_config(tmp_path, broker.port))
    link = controller.mqtt
    await wait_until(lambda: link.outbox.delivered >= controller.store.last_seq > 0, message="initial events delivered")
    watcher.stop()
    broker.stop()
    await wait_until(lambda: link.connect_failures >= 1, message="the bus noticing the broker is gone")
    # Events while the broker is down: readings that are transitions, alarms, and plain events.
    controller.io.drive("antenna_stowed", False)
    controller.io.drive("ignition", True)  # ignition with the dish up: interlock alarm raised
    await asyncio.gather(*(controller.store.append_event("test.offline", n=i) for i in range(200)))
    await wait_until(lambda: link.connect_failures >= 3, message="more failed attempts")
    assert link.outbox.backlog >= 200
    # Same port, empty broker (no persistence): the subscriber is back before the bus can reconnect.
    broker.start()
    watcher = Watcher(broker.port, [f"{PREFIX}/events"]).start()
    try:
        await wait_until(
            lambda: link.outbox.delivered == controller.store.last_seq and not link.outbox.in_flight,
            message="the backlog delivered after the restart",
        )
        await wait_until(
            lambda: controller.store.last_seq in {e["seq"] for e in watcher.events()}, message="last event seen"
        )
        received = watcher.events()
        first = received[0]["seq"]
        expected = [s for s in store_seqs(controller.config.storage.path) if s >= first]
        assert seqs_in_order(received) == expected  # all of them, oldest first, none lost
        types = [e["type"] for e in received]
        assert types.count("test.offline") >= 200
        assert "alarm.raised" in types and "vehicle.ignition" in types
        assert "mqtt.disconnected" in types
    finally:
        watcher.stop()


async def test_link_gate_modem_publishes_nothing_while_the_link_is_down(
    tmp_path: Path, broker: Broker, run_controller, fast_retries
) -> None:
    proxy = Proxy(broker.port)
    watcher = Watcher(broker.port, [f"{PREFIX}/#"]).start()
    try:
        controller = await run_controller(mqtt_config(tmp_path, proxy.port, link_gate="modem"))
        link = controller.mqtt
        state = controller.state
        state.update("modem", {"link": "down", "registered": False, "signal_bars": 0})
        controller.io.drive("ignition", True)
        for i in range(30):
            await controller.store.append_event("test.quiet", n=i)
        state.update("power", {"soc": 80.0, "battery_v": 26.1})
        await asyncio.sleep(0)
        assert not link.gate_open()
        assert proxy.connections == 0 and proxy.total_bytes == 0  # not even a connection attempt
        assert watcher.received() == []

        state.update("modem", {"link": "up", "registered": True, "signal_bars": 3})
        await wait_until(lambda: link.outbox.delivered == controller.store.last_seq, message="backlog after link up")
        await wait_until(lambda: watcher.received(f"{PREFIX}/state/power"), message="state after link up")
        assert watcher.received(f"{PREFIX}/status")[0].payload == b"online"
        assert [e["n"] for e in watcher.events() if e["type"] == "test.quiet"] == list(range(30))

        state.update("modem", {"link": "down", "signal_bars": 0})
        await wait_until(lambda: link.session is None, message="the link closing its connection")
        # The broker tells the office at once ("offline" will, sent with the disconnect), then silence.
        await wait_until(lambda: watcher.received(f"{PREFIX}/status")[-1].payload == b"offline", message="will")
        before_msgs, before_bytes = len(watcher.received()), proxy.bytes_up
        for i in range(10):
            await controller.store.append_event("test.gated", n=i)
        state.update("power", {"soc": 40.0})
        controller.io.drive("ignition", False)
        await wait_until(lambda: controller.state.value("vehicle", "ignition") is False, message="ignition off")
        await asyncio.sleep(0)
        assert len(watcher.received()) == before_msgs
        assert proxy.bytes_up == before_bytes
        assert link.connects == 1

        state.update("modem", {"link": "up", "signal_bars": 2})
        await wait_until(
            lambda: [e["n"] for e in watcher.events() if e["type"] == "test.gated"] == list(range(10)),
            message="events of the outage after the link came back",
        )
        await wait_until(lambda: watcher.received(f"{PREFIX}/state/power")[-1].json()["soc"] == 40.0, message="soc")
        assert link.connects == 2
    finally:
        watcher.stop()
        proxy.close()


async def test_backlog_bound_drops_the_oldest_with_one_event(
    tmp_path: Path, broker: Broker, run_controller, fast_retries
) -> None:
    watcher = Watcher(broker.port, [f"{PREFIX}/events"]).start()
    try:
        controller = await run_controller(mqtt_config(tmp_path, broker.port, link_gate="modem", max_backlog_events=100))
        link = controller.mqtt
        for i in range(150):
            await controller.store.append_event("test.backlog", n=i)
        await wait_until(lambda: link.outbox.dropped_total > 0, message="a drop")
        for i in range(150, 260):
            await controller.store.append_event("test.backlog", n=i)
        await wait_until(lambda: link.outbox.backlog <= 100, message="backlog back under the bound")

        async def drops() -> list[dict[str, Any]]:
            return [e for e in await controller.store.events_after(0, 1000) if e["type"] == "backlog.dropped"]

        # One event per drop, saying how many: together they account for every event given up.
        await wait_until(
            lambda: _count(drops(), link.outbox.dropped_total), message="drop events accounting for every drop"
        )
        assert all(d["max_backlog_events"] == 100 for d in await drops())
        assert len(await drops()) <= 260 // 10
        assert link.outbox.backlog <= 100

        controller.state.update("modem", {"link": "up"})
        await wait_until(lambda: link.outbox.delivered == controller.store.last_seq, message="delivered")
        await wait_until(lambda: watcher.events() and watcher.events()[-1]["seq"] >= controller.store.last_seq - 2)
        received = watcher.events()
        ticks = [e["n"] for e in received if e["type"] == "test.backlog"]
        # The newest are all there, in order; the oldest went, and the drop events say how many.
        assert ticks == list(range(ticks[0], 260))
        assert ticks[0] > 0
        sent_drops = [e for e in received if e["type"] == "backlog.dropped"]
        assert sent_drops and sent_drops[-1]["last_seq"] < received[0]["seq"] + len(received)
        assert len(seqs_in_order(received)) <= 100 + 2  # the bound, plus events of the reconnection itself
    finally:
        watcher.stop()


async def test_watermark_is_written_in_batches_not_per_event(tmp_path: Path, broker: Broker, run_controller) -> None:
    controller = await run_controller(mqtt_config(tmp_path, broker.port))
    link = controller.mqtt
    await asyncio.gather(*(controller.store.append_event("test.burst", n=i) for i in range(2500)))
    await wait_until(lambda: link.outbox.delivered == controller.store.last_seq, message="delivered")
    # 2,500 events acknowledged: a write every 1,000 at most, not one per event.
    assert 1 <= link.outbox.watermark_writes <= 3
    await link.outbox.persist()
    assert delivered_on_disk(controller.config.storage.path) == controller.store.last_seq


async def test_nothing_is_marked_delivered_before_the_broker_acknowledges(
    tmp_path: Path, broker: Broker, run_controller
) -> None:
    proxy = Proxy(broker.port)
    try:
        controller = await run_controller(mqtt_config(tmp_path, proxy.port))
        link = controller.mqtt
        await wait_until(lambda: link.outbox.delivered == controller.store.last_seq > 0, message="first events")
        delivered = link.outbox.delivered
        proxy.freeze()  # the link hangs: packets leave, no PUBACK comes back
        for i in range(50):
            await controller.store.append_event("test.hanging", n=i)
        await wait_until(lambda: link.outbox.in_flight == 50, message="50 events in flight")
        assert link.outbox.delivered == delivered
        await link.outbox.persist()
        assert delivered_on_disk(controller.config.storage.path) == delivered
        proxy.thaw()
        await wait_until(lambda: link.outbox.delivered == controller.store.last_seq, message="acks after the thaw")
    finally:
        proxy.close()


async def _count(drops: Any, total: int) -> bool:
    return sum(d["count"] for d in await drops) == total


def prefill(db_path: Path, count: int) -> None:
    store = Store(str(db_path))
    rows = [(time.time(), 0, "test.prefill", json.dumps({"n": i})) for i in range(count)]
    store.run_sync(
        lambda db: db.conn.executemany("INSERT INTO events (ts, clock_synced, type, data) VALUES (?, ?, ?, ?)", rows)
    )
    store.close_sync()


async def test_kill_9_with_undelivered_events_sends_them_after_restart(tmp_path: Path, broker: Broker) -> None:
    db_path = tmp_path / "state" / "allervers.db"
    prefill(db_path, 5000)
    proxy = Proxy(broker.port)
    toml = write_config(tmp_path, mqtt={"host": "127.0.0.1", "port": proxy.port, "tls": False, "link_gate": "always"})
    watcher = Watcher(broker.port, [f"{PREFIX}/events"], client_id="office", clean_start=False, session_expiry_s=600)
    watcher.start()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "firmware_host.cli", "run", "-c", str(toml)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        await wait_until(lambda: len(watcher.events()) >= 500, timeout=20, message="delivery under way")
        proxy.freeze()  # hold the rest in flight, so the crash lands in the middle of the drain
        got_before_kill = seqs_in_order(watcher.events())
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proxy.cut()
        proxy.thaw()
        on_disk = delivered_on_disk(db_path)
        assert on_disk < 5000, "the crash was meant to land in the middle of the drain"
        # Never marked delivered before its PUBACK: whatever the disk says was delivered did reach the office.
        await wait_until(
            lambda: set(range(1, on_disk + 1)) <= {e["seq"] for e in watcher.events()},
            message="every event marked delivered on disk received",
        )
        assert len(got_before_kill) < 5000

        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        all_seqs = set(range(1, 5001))
        await wait_until(
            lambda: all_seqs <= {e["seq"] for e in watcher.events()}, timeout=30, message="all events after restart"
        )
        received = watcher.events()
        assert seqs_in_order(received)[:5000] == list(range(1, 5001))
        assert [e["n"] for e in received if e["type"] == "test.prefill"][:5000] != []
        # Re-sent after the crash: at most what had been acknowledged since the last watermark write, plus the
        # window that was in flight.
        duplicates = len(received) - len(set(e["seq"] for e in received))
        assert duplicates <= 5000 - on_disk
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if proc.stderr:
            proc.stderr.close()
        watcher.stop()
        proxy.close()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


KEYS = st.sampled_from(["seq", "ts", "type", "value", "é", 'a"b', "x"])


@settings(max_examples=150, deadline=None)
@given(
    seq=st.integers(1, 2**62),
    ts=st.floats(0, 4e9, allow_nan=False),
    synced=st.integers(0, 1),
    etype=st.text(min_size=1, max_size=30),
    data=st.dictionaries(KEYS | st.text(max_size=6), _json),
)
def test_published_event_is_exactly_the_stored_event(
    seq: int, ts: float, synced: int, etype: str, data: dict[str, Any]
) -> None:
    """The outbox builds payloads from the stored text; they must decode to what the store itself returns."""
    text = json.dumps(data, separators=(",", ":"), default=str)
    row = {"seq": seq, "ts": ts, "clock_synced": synced, "type": etype, "data": text}
    assert json.loads(event_payload(seq, ts, synced, etype, text)) == event_row_to_dict(row)
