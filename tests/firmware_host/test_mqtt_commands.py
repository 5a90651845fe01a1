"""Remote commands over a real Mosquitto: every rejection, replay memory across restarts, MQTT 5 request/response,
history paging, the kiosk and inverter commands."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drivers.victron_gx import GXSimulator
from firmware_host.mqtt.protocol import MAX_REPLY_BYTES, make_request

from ..conftest import make_config, wait_until
from .mosquitto import Broker, Watcher

PREFIX = "allervers/bus-test"
GPIO = {"pin_factory": "mock", "ignition_pin": 17, "antenna_stowed_pin": 27, "debounce_s": 0.0}


def config(tmp_path: Path, port: int, **sections: Any) -> Any:
    return make_config(
        tmp_path,
        gpio=GPIO,
        mqtt={"host": "127.0.0.1", "port": port, "tls": False, "link_gate": "always"},
        **sections,
    )


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    with Broker(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def office(broker: Broker) -> Any:
    watcher = Watcher(broker.port, [f"{PREFIX}/#", "office/#"]).start()
    yield watcher
    watcher.stop()


async def ask(office: Watcher, name: str, payload: bytes, properties: Any = None) -> dict[str, Any]:
    """Publish a request as the office does and return the reply that follows it."""
    topic = f"{PREFIX}/cmd/{name}/reply"
    before = len(office.received(topic))
    office.publish(f"{PREFIX}/cmd/{name}", payload, properties=properties)
    await wait_until(lambda: len(office.received(topic)) > before, message=f"a reply to {name}")
    return office.received(topic)[before].json()


def request(args: dict[str, Any] | None = None, *, rid: str | None = None, ttl_s: float = 300.0) -> bytes:
    return make_request(args, rid=rid or uuid.uuid4().hex, ttl_s=ttl_s)


async def command_events(controller: Any) -> list[dict[str, Any]]:
    return [e for e in await controller.store.events_after(0, 1000) if e["type"] == "mqtt.command"]


async def test_ping_reply_shape_and_event(tmp_path: Path, broker: Broker, office: Watcher, run_controller) -> None:
    controller = await run_controller(config(tmp_path, broker.port))
    await wait_until(lambda: controller.mqtt.listening, message="listening for commands")
    reply = await ask(office, "ping", request(rid="ping-1"))
    assert set(reply) == {"id", "ok", "error", "result"}
    assert reply["id"] == "ping-1" and reply["ok"] is True and reply["error"] is None
    assert reply["result"]["pong"] is True and reply["result"]["vehicle"] == "bus-test"
    assert reply["result"]["last_seq"] >= reply["result"]["delivered_seq"] >= 0
    events = await command_events(controller)
    assert events[-1] | {"seq": 0, "ts": 0} == {
        "seq": 0,
        "ts": 0,
        "clock_synced": False,
        "type": "mqtt.command",
        "command": "ping",
        "id": "ping-1",
        "ok": True,
        "error": None,
    }


async def test_every_rejection_is_answered_with_its_reason_logged_and_not_acted_on(
    tmp_path: Path, broker: Broker, office: Watcher, run_controller
) -> None:
    controller = await run_controller(config(tmp_path, broker.port))
    await wait_until(lambda: controller.mqtt.listening, message="listening for commands")
    calls: list[dict[str, Any]] = []

    class Kiosk:
        """The kiosk feature's lock (kiosk.session.KioskManager.lock): counts what is really acted on."""

        async def lock(self, reason: object = None) -> dict[str, Any]:
            calls.append({"reason": reason})
            return {"locked": True}

    controller.features["kiosk"] = Kiosk()

    accepted = await ask(office, "kiosk.lock", request({"reason": "fin de journée"}, rid="lock-1"))
    assert accepted == {"id": "lock-1", "ok": True, "error": None, "result": {"locked": True}}
    assert calls == [{"reason": "fin de journée"}]

    now = time.time()
    cases = [
        (
            "kiosk.lock",
            json.dumps({"id": "big", "expires": now + 60, "args": {"pad": "x" * 5000}}).encode(),
            None,  # not even parsed
            "request too large: ",
        ),
        ("kiosk.lock", b"{not json", None, "malformed JSON"),
        ("kiosk.lock", b"[1, 2]", None, "must be a JSON object"),
        ("kiosk.lock", json.dumps({"expires": now + 60}).encode(), None, "id must be a string of 1..64"),
        (
            "kiosk.lock",
            json.dumps({"id": "x" * 65, "expires": now + 60}).encode(),
            None,
            "id must be a string of 1..64",
        ),
        ("kiosk.lock", json.dumps({"id": 42, "expires": now + 60}).encode(), None, "id must be a string"),
        ("kiosk.lock", json.dumps({"id": "no-exp"}).encode(), "no-exp", "missing expires"),
        (
            "kiosk.lock",
            json.dumps({"id": "bad-exp", "expires": "soon"}).encode(),
            "bad-exp",
            "expires must be a number",
        ),
        ("kiosk.lock", json.dumps({"id": "old", "expires": now - 30}).encode(), "old", "expired: expires"),
        ("kiosk.lock", json.dumps({"id": "lock-1", "expires": now + 60}).encode(), "lock-1", "replay: id 'lock-1'"),
        (
            "kiosk.lock",
            json.dumps({"id": "args", "expires": now + 60, "args": [1]}).encode(),
            "args",
            "args must be an object",
        ),
        (
            "kiosk.lock",
            json.dumps({"id": "extra", "expires": now + 60, "cmd": "x"}).encode(),
            "extra",
            "unknown request field(s): cmd",
        ),
        ("reboot", request(rid="reboot-1"), "reboot-1", "unknown command 'reboot'"),
        ("ping", request({"verbose": True}, rid="ping-args"), "ping-args", "bad args: ping takes no args"),
        (
            "history",
            request({"metrics": ["soc"], "start": 0, "end": 60}, rid="h1"),
            "h1",
            "bad args: unknown metric 'soc'",
        ),
        (
            "history",
            request({"metrics": ["power.soc"], "start": 60, "end": 0}, rid="h2"),
            "h2",
            "bad args: end must be after start",
        ),
        ("refresh", request({"components": ["engine"]}, rid="r1"), "r1", "bad args: unknown component(s) engine"),
    ]
    for name, payload, rid, reason in cases:
        reply = await ask(office, name, payload)
        assert reply["ok"] is False, (name, payload[:80])
        assert reply["id"] == rid
        assert reason in reply["error"], (reason, reply["error"])
        assert reply["result"] is None
    # Replays of a rejected id are rejected too: an id is spent once seen.
    again = await ask(office, "kiosk.lock", json.dumps({"id": "old", "expires": now + 60}).encode())
    assert again["error"] == "replay: id 'old' was already seen"
    assert calls == [{"reason": "fin de journée"}]  # nothing rejected was acted on
    events = await command_events(controller)
    assert len(events) == 1 + len(cases) + 1  # every command, accepted or rejected, is an event
    assert [e["ok"] for e in events] == [True] + [False] * (len(cases) + 1)
    assert events[2]["error"].startswith("malformed JSON")


async def test_replayed_id_is_rejected_after_a_restart(
    tmp_path: Path, broker: Broker, office: Watcher, run_controller
) -> None:
    cfg = config(tmp_path, broker.port)
    first = await run_controller(cfg)
    await wait_until(lambda: first.mqtt.listening, message="listening for commands")
    payload = request(rid="once-only", ttl_s=3600)
    assert (await ask(office, "ping", payload))["ok"] is True
    await first.stop()

    second = await run_controller(cfg)
    await wait_until(lambda: second.mqtt.listening, message="listening again")
    reply = await ask(office, "ping", payload)  # the very same message, captured and sent again
    assert reply == {"id": "once-only", "ok": False, "error": "replay: id 'once-only' was already seen", "result": None}


async def test_seen_ids_are_forgotten_only_a_day_after_expiry(tmp_path: Path, broker: Broker, run_controller) -> None:
    now = [time.time()]
    controller = await run_controller(config(tmp_path, broker.port), clock=lambda: now[0])
    commands = controller.mqtt.commands
    await commands.handle("ping", make_request(rid="old-id", ttl_s=60, now=now[0]))
    await commands.handle("ping", make_request(rid="new-id", ttl_s=60, now=now[0]))
    now[0] += 23 * 3600
    assert await commands.prune() == 0
    await commands.handle("ping", make_request(rid="recent", ttl_s=60, now=now[0]))
    now[0] += 2 * 3600
    assert await commands.prune() == 2  # old-id and new-id: received 25 h ago, expired 25 h ago
    reply = await commands.handle("ping", make_request(rid="recent", ttl_s=60, now=now[0]))
    assert reply["error"] == "replay: id 'recent' was already seen"


async def test_mqtt5_response_topic_and_correlation_data(
    tmp_path: Path, broker: Broker, office: Watcher, run_controller
) -> None:
    controller = await run_controller(config(tmp_path, broker.port))
    await wait_until(lambda: controller.mqtt.listening, message="listening for commands")
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "office/replies/desk-3"
    props.CorrelationData = b"\x00\x01corr"
    office.publish(f"{PREFIX}/cmd/alarms", request(rid="a-1"), properties=props)
    await wait_until(lambda: office.received("office/replies/desk-3"), message="reply on the response topic")
    reply = office.received("office/replies/desk-3")[0]
    assert reply.json() == {"id": "a-1", "ok": True, "error": None, "result": []}
    assert reply.properties.CorrelationData == b"\x00\x01corr"
    assert office.received(f"{PREFIX}/cmd/alarms/reply") == []


async def test_alarms_and_refresh(tmp_path: Path, broker: Broker, office: Watcher, run_controller) -> None:
    controller = await run_controller(config(tmp_path, broker.port))
    await wait_until(lambda: controller.mqtt.listening, message="listening for commands")
    controller.io.drive("antenna_stowed", False)
    controller.io.drive("ignition", True)
    await wait_until(lambda: controller.alarms.active, message="interlock alarm")
    reply = await ask(office, "alarms", request())
    assert [a["id"] for a in reply["result"]] == ["interlock.antenna_up"]
    assert reply["result"][0]["severity"] == "critical"

    counts = {c: len(office.received(f"{PREFIX}/state/{c}")) for c in controller.state.components}
    reply = await ask(office, "refresh", request())
    assert sorted(reply["result"]["published"]) == sorted(controller.state.components)
    for component, count in counts.items():
        await wait_until(
            lambda component=component, count=count: len(office.received(f"{PREFIX}/state/{component}")) > count,
            message=f"{component} republished",
        )
    reply = await ask(office, "refresh", request({"components": ["vehicle"]}))
    assert reply["result"] == {"published": ["vehicle"]}


async def test_kiosk_commands_without_a_kiosk(tmp_path: Path, broker: Broker, office: Watcher, run_controller) -> None:
    controller = await run_controller(config(tmp_path, broker.port))
    await wait_until(lambda: controller.mqtt.listening, message="listening for commands")
    for name in ("kiosk.lock", "kiosk.unlock", "kiosk.end_session"):
        reply = await ask(office, name, request())
        assert reply["ok"] is False
        assert reply["error"] == "no kiosk is configured on this bus"


async def test_kiosk_commands_go_to_the_kiosk_feature(
    tmp_path: Path, broker: Broker, office: Watcher, run_controller
) -> None:
    controller = await run_controller(config(tmp_path, broker.port))
    await wait_until(lambda: controller.mqtt.listening, message="listening for commands")
    seen: list[tuple[str, object]] = []

    class Kiosk:
        """The methods of kiosk.session.KioskManager the commands call (test_session.py runs the real ones)."""

        async def lock(self, reason: object = None) -> dict[str, Any]:
            seen.append(("kiosk.lock", reason))
            return {"done": "kiosk.lock"}

        async def unlock(self) -> dict[str, Any]:
            seen.append(("kiosk.unlock", None))
            return {"done": "kiosk.unlock"}

        async def end_session_remotely(self) -> dict[str, Any]:
            seen.append(("kiosk.end_session", None))
            return {"done": "kiosk.end_session"}

    controller.features["kiosk"] = Kiosk()
    for name in ("kiosk.lock", "kiosk.unlock", "kiosk.end_session"):
        reply = await ask(office, name, request({"reason": "fin de journée"}))
        assert reply["ok"] is True and reply["result"] == {"done": name}
    assert seen == [("kiosk.lock", "fin de journée"), ("kiosk.unlock", None), ("kiosk.end_session", None)]


async def test_inverter_mode_only_with_allow_writes(
    tmp_path: Path, broker: Broker, office: Watcher, run_controller
) -> None:
    sim = GXSimulator()
    await sim.start()
    try:
        inverter = {"host": "127.0.0.1", "port": sim.port, "poll_s": 0.5}
        for allow, expected in ((False, "inverter.allow_writes = false"), (True, None)):
            controller = await run_controller(
                config(tmp_path / str(allow), broker.port, inverter={**inverter, "allow_writes": allow})
            )
            await wait_until(lambda c=controller: c.mqtt.listening, message="listening for commands")
            reply = await ask(office, "inverter.mode", request({"mode": "charger_only"}))
            if expected:
                assert reply["ok"] is False and expected in reply["error"]
                assert sim.values["vebus"]["/Mode"] != 1  # Victron's "Charger Only"
            else:
                assert reply == {"id": reply["id"], "ok": True, "error": None, "result": {"mode": "charger_only"}}
                assert sim.values["vebus"]["/Mode"] == 1
                bad = await ask(office, "inverter.mode", request({"mode": 3}))
                assert bad["ok"] is False and "bad args" in bad["error"]
                unknown = await ask(office, "inverter.mode", request({"mode": "turbo"}))
                assert unknown["ok"] is False and "'turbo' is not one of" in unknown["error"]
            await controller.stop()
    finally:
        await sim.stop()
    controller = await run_controller(config(tmp_path / "none", broker.port))
    await wait_until(lambda: controller.mqtt.listening, message="listening for commands")
    reply = await ask(office, "inverter.mode", request({"mode": "on"}))
    assert reply["error"] == "no inverter configured on this bus"


async def test_history_pages_fit_in_16_kib_and_buckets_merge(
    tmp_path: Path, broker: Broker, office: Watcher, run_controller
) -> None:
    t0 = (int(time.time()) // 3600 - 12) * 3600  # 12 h ago, on the hour
    now = [float(t0)]
    controller = await run_controller(config(tmp_path, broker.port), clock=lambda: now[0])
    store = controller.store
    expected: dict[int, list[float]] = {}
    for minute in range(600):  # ten hours of readings, three per minute
        for k in range(3):
            now[0] = t0 + minute * 60 + k * 20
            soc = 90 - minute * 0.05 + k * 0.01
            store.add_sample("power.soc", soc)
            store.add_sample("power.battery_v", 26.0 + (minute % 7) * 0.1)
            expected.setdefault(minute, []).append(soc)
    now[0] = time.time()
    await store.flush(everything=True)
    await wait_until(lambda: controller.mqtt.listening, message="listening for commands")

    rows: list[list[Any]] = []
    after = None
    pages = 0
    while True:
        args = {"metrics": ["power.soc", "power.battery_v"], "start": t0, "end": t0 + 600 * 60}
        if after is not None:
            args["after_minute"] = after
        raw_before = len(office.received(f"{PREFIX}/cmd/history/reply"))
        reply = await ask(office, "history", request(args))
        raw = office.received(f"{PREFIX}/cmd/history/reply")[raw_before].payload
        assert len(raw) <= MAX_REPLY_BYTES
        assert reply["ok"] is True, reply["error"]
        pages += 1
        rows += reply["result"]["rows"]
        after = reply["result"]["next_after_minute"]
        if after is None:
            break
    assert pages >= 2  # 600 minutes of two metrics do not fit in one 16 KiB reply
    assert [r[0] for r in rows] == [t0 // 60 + m for m in range(600)]
    soc = rows[100][1]
    assert soc[0] == pytest.approx(min(expected[100]), abs=1e-3)
    assert soc[1] == pytest.approx(max(expected[100]), abs=1e-3)
    assert soc[3] == 3

    reply = await ask(
        office,
        "history",
        request({"metrics": ["power.soc"], "start": t0, "end": t0 + 600 * 60, "step_min": 15}),
    )
    result = reply["result"]
    assert result["next_after_minute"] is None
    assert len(result["rows"]) == 40 and result["columns"] == ["minute", "power.soc"]
    first = result["rows"][0][1]
    values = [v for m in range(15) for v in expected[m]]
    assert first[0] == pytest.approx(min(values), abs=1e-3)
    assert first[1] == pytest.approx(max(values), abs=1e-3)
    assert first[2] == pytest.approx(sum(values) / len(values), abs=1e-3)
    assert first[3] == 45
