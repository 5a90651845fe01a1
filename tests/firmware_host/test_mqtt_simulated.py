"""The supervision link on a whole simulated bus (GX, SDM120, AT modem on a pty, GPIO), gated by the modem's link."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from firmware_host.api import call_once
from firmware_host.mqtt import link as link_mod
from firmware_host.mqtt.protocol import make_request

from ..conftest import make_config, sim_sections, wait_until
from .mosquitto import Broker, Watcher, seqs_in_order

PREFIX = "allervers/bus-test"


async def test_a_simulated_bus_goes_quiet_when_the_modem_loses_its_link(
    tmp_path: Path, run_controller, monkeypatch
) -> None:
    monkeypatch.setattr(link_mod, "BACKOFF_MAX_S", 0.2)
    with Broker(tmp_path / "broker") as broker:
        office = Watcher(broker.port, [f"{PREFIX}/#"]).start()
        try:
            sections = sim_sections(tmp_path)
            sections["mqtt"] = {"host": "127.0.0.1", "port": broker.port, "tls": False}  # link_gate = "modem"
            controller = await run_controller(make_config(tmp_path, **sections))
            control = controller.config.api.control_socket
            link = controller.mqtt
            # The modem simulator registers and reports a signal: the gate opens by itself.
            await wait_until(lambda: link.session is not None, timeout=20, message="link up through the modem")
            await wait_until(
                lambda: any(m.json().get("soc") is not None for m in office.received(f"{PREFIX}/state/power")),
                message="the inverter's state",
            )
            # The signal goes: the modem driver says link down, the bus disconnects and publishes nothing more.
            await call_once(control, "sim.set", {"modem.rssi": 99})
            await wait_until(lambda: controller.state.value("modem", "link") == "down", message="link down")
            await wait_until(lambda: link.session is None, message="disconnected")
            await wait_until(lambda: office.received(f"{PREFIX}/status")[-1].payload == b"offline", message="will")
            quiet_from = len(office.received())
            await call_once(control, "sim.set", {"gpio.ignition": True, "shore.connected": True})
            await wait_until(
                lambda: controller.state.value("vehicle", "ignition") and controller.state.value("shore", "connected"),
                message="the changes seen by the controller",
            )
            assert len(office.received()) == quiet_from
            # The signal comes back: what happened meanwhile arrives, in order.
            await call_once(control, "sim.set", {"modem.rssi": 20})
            await wait_until(
                lambda: any(e["type"] == "alarm.raised" for e in office.events()), timeout=20, message="backlog"
            )
            await wait_until(lambda: link.outbox.delivered == controller.store.last_seq, message="all delivered")
            received = seqs_in_order(office.events())
            assert received == sorted(received)
            assert {"vehicle.ignition", "shore.connected", "modem.link"} <= {e["type"] for e in office.events()}

            # A remote inverter mode change reaches the simulated GX (allow_writes = true on this bus).
            office.publish(f"{PREFIX}/cmd/inverter.mode", make_request({"mode": "charger_only"}, rid="mode-1"))
            await wait_until(lambda: office.received(f"{PREFIX}/cmd/inverter.mode/reply"), message="reply")
            reply = office.received(f"{PREFIX}/cmd/inverter.mode/reply")[0].json()
            assert reply["ok"] is True, reply
            await wait_until(lambda: controller.state.value("power", "mode") == "charger_only", message="mode")
            sim: Any = await call_once(control, "sim.get")
            assert sim["inverter.mode"] == "charger_only"
        finally:
            office.stop()
