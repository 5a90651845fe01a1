"""A flapping link: over an emulated LEO hop (network namespace, 50 ms round trip, TLS), the connection is cut every
few seconds for two minutes, with hand-overs (two seconds of nothing) in between, while the bus logs events. Nothing
is lost, nothing arrives out of the log's order for the first time, and no event is delivered more than a few
times."""

from __future__ import annotations

import asyncio
import collections
import random
import time
from pathlib import Path
from typing import Any

import pytest

from ..conftest import make_config, wait_until
from .hop import LEO, EmulatedHop
from .mosquitto import Broker, Watcher, free_port, make_ca, make_server_cert, seqs_in_order

PREFIX = "allervers/bus-test"
FLAP_S = 120.0


@pytest.mark.timeout(FLAP_S + 120)  # two minutes of flapping is the point; then the backlog and teardown
async def test_a_flapping_link_loses_nothing_and_repeats_little(tmp_path: Path, run_controller: Any) -> None:
    port = free_port()
    hop = EmulatedHop(port, **LEO)
    try:
        ca = make_ca(tmp_path, "fleet-ca")
        crt, key = make_server_cert(tmp_path, "fleet-ca", "broker", f"IP:{hop.host}")
        with Broker(tmp_path / "broker", extra=hop.listener(crt, key)) as broker:
            hop.start()
            office = Watcher(broker.port, [f"{PREFIX}/events"]).start()
            try:
                cfg = make_config(
                    tmp_path,
                    vehicle={"id": "bus-test", "name": "Bus test"},
                    mqtt={"host": hop.host, "port": hop.port, "ca_file": str(ca), "link_gate": "always"},
                )
                controller = await run_controller(cfg)
                link = controller.mqtt
                await wait_until(lambda: link.listening, message="first connection")
                rng = random.Random(14)
                cuts = holds = 0

                async def log_events() -> None:
                    while True:
                        await controller.store.append_event("kiosk.session_started", service="caf", lang="fr")
                        await asyncio.sleep(0.05)

                logger = asyncio.ensure_future(log_events())
                deadline = time.monotonic() + FLAP_S
                try:
                    while time.monotonic() < deadline:
                        await asyncio.sleep(rng.uniform(2.0, 5.0))
                        if rng.random() < 0.3:
                            hop.hold(2.0)  # a hand-over: the connection survives
                            holds += 1
                        else:
                            hop.down()  # the connection is cut, and none is possible for a moment
                            cuts += 1
                            await asyncio.sleep(rng.uniform(0.5, 2.0))
                            hop.up()
                finally:
                    logger.cancel()
                last = controller.store.last_seq
                await wait_until(lambda: link.outbox.delivered >= last, timeout=120, message="the backlog delivered")
                await wait_until(
                    lambda: set(range(1, last + 1)) <= {e["seq"] for e in office.events(PREFIX)},
                    timeout=30,
                    message="every event at the office",
                )
                seqs = [e["seq"] for e in office.events(PREFIX)]
                copies = collections.Counter(seqs)
                first_arrivals = [s for s in seqs_in_order(office.events(PREFIX)) if s <= last]
                assert cuts >= 15 and link.connects >= cuts // 2, (cuts, link.connects)
                assert first_arrivals == sorted(first_arrivals)  # new events arrive in the log's order
                assert max(copies[s] for s in range(1, last + 1)) <= 3, copies.most_common(5)
                # The repeats are the few events in flight at each cut, not the backlog again and again.
                assert sum(copies.values()) - last <= 20 * cuts, (sum(copies.values()) - last, cuts)
                assert last > 500 and holds >= 1  # events kept coming throughout (20 a second when idle)
            finally:
                office.stop()
    finally:
        hop.close()
