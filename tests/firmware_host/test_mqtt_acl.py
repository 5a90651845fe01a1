"""The shipped broker config (config/mosquitto/) in a real Mosquitto: TLS, users made by create-user.sh, and the
ACL confining each bus to its own prefix while only supervisors publish commands."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from firmware_host.api import call_once
from firmware_host.mqtt.protocol import make_request

from ..conftest import make_config, wait_until, wait_until_sync
from .mosquitto import MOSQUITTO, Broker, Watcher, free_port, make_ca, make_server_cert

REPO = Path(__file__).resolve().parents[2]
MOSQ = REPO / "config" / "mosquitto"


def create_user(passwd: Path, role: str, name: str, out: Path) -> str:
    subprocess.run([str(MOSQ / "create-user.sh"), str(passwd), role, name, str(out)], check=True, capture_output=True)
    secret = out / f"{name}.password"
    assert secret.stat().st_mode & 0o077 == 0  # readable by its owner only
    return secret.read_text().strip()


def shipped_conf(tmp: Path, port: int, certs: dict[str, Path], passwd: Path, **changes: str) -> str:
    """config/mosquitto/allervers.conf with its /etc and /var paths pointed into the test's folder (and ``changes``:
    another value for an option it sets)."""
    text = (MOSQ / "allervers.conf").read_text()
    replacements = {
        **{f"\n{option} ": f"\n{option} {value}\n# was: " for option, value in changes.items()},
        "listener 8883": f"listener {port} 127.0.0.1",
        "/etc/mosquitto/certs/broker.crt": str(certs["crt"]),
        "/etc/mosquitto/certs/broker.key": str(certs["key"]),
        "/etc/mosquitto/allervers.passwd": str(passwd),
        "/etc/mosquitto/allervers.acl": str(MOSQ / "allervers.acl"),
        "/var/lib/mosquitto/": f"{tmp}/",
        "log_dest syslog": f"log_dest file {tmp / 'mosquitto.log'}",
    }
    for old, new in replacements.items():
        assert old in text, f"allervers.conf no longer contains {old!r}"
        text = text.replace(old, new)
    return text


@pytest.fixture
def fleet(tmp_path: Path) -> Any:
    """A broker running the shipped config: TLS, passwords for bus-a, bus-b and office, the fleet ACL."""
    started = start_fleet(tmp_path)
    yield started
    started["broker"].stop()


def start_fleet(tmp_path: Path, **changes: str) -> dict[str, Any]:
    pki = tmp_path / "pki"
    pki.mkdir(parents=True)
    ca = make_ca(pki, "fleet-ca")
    crt, key = make_server_cert(pki, "fleet-ca", "broker", "DNS:localhost,IP:127.0.0.1")
    passwd, secrets = tmp_path / "allervers.passwd", tmp_path / "secrets"
    passwords = {
        "bus-a": create_user(passwd, "bus", "bus-a", secrets),
        "bus-b": create_user(passwd, "bus", "bus-b", secrets),
        "office": create_user(passwd, "office", "office", secrets),
    }
    port = free_port()
    conf = shipped_conf(tmp_path, port, {"crt": crt, "key": key}, passwd, **changes)
    broker = Broker(tmp_path / "broker", port=port, conf=conf)
    broker.start()
    log = tmp_path / "mosquitto.log"  # where shipped_conf sends the broker's log
    return {"port": port, "ca": str(ca), "passwords": passwords, "secrets": secrets, "pki": pki, "broker": broker,
            "log": log}  # fmt: skip


def bus_config(tmp_path: Path, fleet: dict[str, Any], bus: str, **mqtt: Any) -> Any:
    return make_config(
        tmp_path / bus,
        vehicle={"id": bus, "name": bus},
        mqtt={
            "host": "localhost",
            "port": fleet["port"],
            "tls": True,
            "ca_file": fleet["ca"],
            "username": bus,
            "password_file": str(fleet["secrets"] / f"{bus}.password"),
            "link_gate": "always",
            **mqtt,
        },
    )


def client(fleet: dict[str, Any], user: str, filters: list[str]) -> Watcher:
    return Watcher(
        fleet["port"], filters, username=user, password=fleet["passwords"][user], ca_file=fleet["ca"]
    ).start()


def script_rejects(*args: str) -> str:
    done = subprocess.run([str(MOSQ / "create-user.sh"), *args], capture_output=True, text=True)
    assert done.returncode == 2
    return done.stderr


def test_create_user_script_checks_its_arguments(tmp_path: Path) -> None:
    assert "usage" in script_rejects(str(tmp_path / "p"), "bus")
    assert "must match [a-z0-9-]{1,32}" in script_rejects(str(tmp_path / "p"), "bus", "Bus_01")
    assert "usage" in script_rejects(str(tmp_path / "p"), "admin", "x")
    assert not (tmp_path / "p").exists()


async def test_bus_b_can_neither_read_bus_a_commands_nor_publish_under_its_prefix(
    tmp_path: Path, fleet: dict[str, Any], run_controller
) -> None:
    office = client(fleet, "office", ["allervers/#"])
    bus_b = client(fleet, "bus-b", ["allervers/bus-a/#", "allervers/+/cmd/+"])  # the second includes its own
    try:
        # Bus A is the real controller, over TLS with its password file: everything it sends is allowed.
        controller = await run_controller(bus_config(tmp_path, fleet, "bus-a"))
        link = controller.mqtt
        await wait_until(lambda: link.outbox.delivered == controller.store.last_seq > 0, message="A's events")
        assert link._refused is None and link.connect_failures == 0
        await wait_until(lambda: office.received("allervers/bus-a/state/power"), message="A's state at the office")

        # The office commands A: A answers, B hears nothing of it.
        office.publish("allervers/bus-a/cmd/ping", make_request(rid="office-1"))
        office.publish("allervers/bus-b/cmd/ping", make_request(rid="sentinel-b"))  # after A's, to B's own topic
        await wait_until(lambda: office.received("allervers/bus-a/cmd/ping/reply"), message="A's reply")
        assert office.received("allervers/bus-a/cmd/ping/reply")[0].json()["ok"] is True
        await wait_until(lambda: bus_b.received("allervers/bus-b/cmd/ping"), message="B's own command")
        assert [m.topic for m in bus_b.received()] == ["allervers/bus-b/cmd/ping"]

        # B tries to speak for A: status, state, events, a reply, a command. None of it reaches anyone.
        forged = {
            "allervers/bus-a/status": b"offline",
            "allervers/bus-a/state/power": b'{"soc": 5}',
            "allervers/bus-a/events": b'{"seq": 999999, "type": "forged"}',
            "allervers/bus-a/cmd/ping/reply": b'{"id": "office-2", "ok": true}',
            "allervers/bus-a/cmd/kiosk.lock": make_request(rid="forged"),
        }
        mids = {topic: bus_b.publish(topic, payload) for topic, payload in forged.items()}
        bus_b.publish("allervers/bus-b/status", b"online")  # B's own: allowed, and after the forgeries
        await wait_until(lambda: office.received("allervers/bus-b/status"), message="B's own status")
        assert not [m for m in office.received() if m.topic in forged and m.payload == forged[m.topic]]
        assert {bus_b.acks[mid] for mid in mids.values()} == {"Not authorized"}

        # A bus cannot command anyone, itself included.
        bus_a_too = client(fleet, "bus-a", [])
        try:
            bus_a_too.publish("allervers/bus-a/cmd/ping", make_request(rid="self-command"))
            bus_a_too.publish("allervers/bus-b/cmd/ping", make_request(rid="a-to-b"))
        finally:
            bus_a_too.stop()
        office.publish("allervers/bus-a/cmd/ping", make_request(rid="office-2"))
        await wait_until(lambda: len(office.received("allervers/bus-a/cmd/ping/reply")) == 2, message="reply 2")
        assert [m.json()["id"] for m in office.received("allervers/bus-a/cmd/ping/reply")] == ["office-1", "office-2"]
        assert [m.json()["id"] for m in bus_b.received("allervers/bus-b/cmd/ping")] == ["sentinel-b"]
    finally:
        office.stop()
        bus_b.stop()


async def test_tls_server_is_verified_and_failures_are_named(
    tmp_path: Path, fleet: dict[str, Any], run_controller
) -> None:
    other_ca = make_ca(fleet["pki"], "stranger-ca")
    controller = await run_controller(bus_config(tmp_path, fleet, "bus-a", ca_file=str(other_ca)))
    await wait_until(lambda: controller.mqtt.last_error, message="a connection error")
    assert "TLS certificate not trusted" in controller.mqtt.last_error
    assert f"mqtts://localhost:{fleet['port']}" in controller.mqtt.last_error
    # The rest of the controller keeps running.
    pong = await call_once(controller.config.api.control_socket, "ping")
    assert pong["pong"] is True
    status = await call_once(controller.config.api.control_socket, "mqtt.status")
    assert status["connected"] is False and "TLS" in status["last_error"]
    errors = [e for e in await controller.store.events_after(0, 100) if e["type"] == "mqtt.error"]
    assert len(errors) == 1  # retried, but logged once while the reason stays the same

    # The right CA but a certificate for another host name: refused too (names are checked).
    crt, key = make_server_cert(fleet["pki"], "fleet-ca", "elsewhere", "DNS:broker.elsewhere.example")
    port = free_port()
    extra = f"listener {port} 127.0.0.1\ncertfile {crt}\nkeyfile {key}\nallow_anonymous true\n"
    with Broker(tmp_path / "b2", port=port, conf=extra):
        wrong_name = await run_controller(bus_config(tmp_path / "n", fleet, "bus-b", port=port))
        await wait_until(lambda: wrong_name.mqtt.last_error, message="host name error")
        assert "TLS certificate not trusted" in wrong_name.mqtt.last_error
        assert "localhost" in wrong_name.mqtt.last_error


async def test_bad_password_and_missing_password_file(tmp_path: Path, fleet: dict[str, Any], run_controller) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text(uuid.uuid4().hex + "\n")
    controller = await run_controller(bus_config(tmp_path, fleet, "bus-a", password_file=str(wrong)))
    await wait_until(lambda: controller.mqtt.last_error, message="refusal")
    assert "refused" in controller.mqtt.last_error and "Not authorized" in controller.mqtt.last_error

    missing = tmp_path / "nowhere" / "mqtt-password"
    other = await run_controller(bus_config(tmp_path / "m", fleet, "bus-b", password_file=str(missing)))
    await wait_until(lambda: other.mqtt.last_error, message="file error")
    assert other.mqtt.last_error == f"{missing}: cannot read the MQTT password file: No such file or directory"


# --- the broker's queue: Mosquitto 2.0.11's "no maximum", and a slow office ----------------------------------


def mosquitto_version() -> tuple[int, ...]:
    out = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True).stdout
    return tuple(int(n) for n in out.split("version ", 1)[1].split()[0].split("."))


def refusal_disconnects(fleet: dict[str, Any]) -> bool:
    """bus-b publishes under bus-a's prefix (refused by the ACL: a PUBACK "Not authorized"), then its own status:
    whether the broker dropped bus-b's connection in between (paho reconnects and sends the second one again)."""
    bus_b = client(fleet, "bus-b", [])
    try:
        bus_b.publish("allervers/bus-a/status", b"offline")
        assert bus_b.acks == {1: "Not authorized"}
        try:
            bus_b.client.publish("allervers/bus-b/status", b"online", qos=1).wait_for_publish(5)
        except RuntimeError:  # "not currently connected": the drop came before paho could even send it
            return True
        return f"Bad socket read/write on client {bus_b.client_id}" in fleet["log"].read_text()
    finally:
        bus_b.stop()


def test_the_acl_flake_was_mosquitto_2_0_11_with_uncapped_queues(tmp_path: Path) -> None:
    """The reproducer of the old ACL-test flake. With ``max_queued_messages 0`` ("no maximum"), Mosquitto 2.0.11
    (Debian 12) closes a client's connection right after refusing one of its QoS 1 publishes ("Bad socket
    read/write ... Unknown error" in its log), so the next publish fails whenever it is not already on the wire:
    "about one run in two". With a cap, the refusal is only a refusal."""
    uncapped = start_fleet(tmp_path / "uncapped", max_queued_messages="0")
    try:
        if mosquitto_version() <= (2, 0, 11):
            assert refusal_disconnects(uncapped)
    finally:
        uncapped["broker"].stop()
    shipped = start_fleet(tmp_path / "shipped")
    try:
        assert not any(refusal_disconnects(shipped) for _ in range(3))
    finally:
        shipped["broker"].stop()


def test_a_slow_office_loses_no_event(fleet: dict[str, Any]) -> None:
    """An office subscriber (QoS 1) that stops reading while a bus sends 5,000 events gets every one of them once it
    reads again: the shipped queue cap (100,000) is far above Mosquitto's default (1,000), which would drop the
    newest after acknowledging them to the bus."""
    office = client(fleet, "office", ["allervers/bus-a/events"])
    office.client.loop_stop()  # stops reading its socket: the broker's queue for it grows
    bus_a = client(fleet, "bus-a", [])
    try:
        infos = [bus_a.client.publish("allervers/bus-a/events", b'{"seq": %d}' % i, qos=1) for i in range(5000)]
        for info in infos:
            info.wait_for_publish(30)
        assert all(info.is_published() for info in infos)
        office.client.loop_start()
        wait_until_sync(lambda: len(office.received()) >= 5000, timeout=60, message="every event at the office")
        assert sorted(json.loads(m.payload)["seq"] for m in office.received()) == list(range(5000))
        assert "dropped" not in fleet["log"].read_text()
    finally:
        bus_a.stop()
        office.stop()
