"""The checklist with the real public terminal (kiosk/session.py): opened at arrival, closed and wiped at departure,
and the current stop tagging the visit statistics."""

from __future__ import annotations

from typing import Any

from firmware_host.api import call_once
from tests.conftest import wait_until
from tests.kiosk.conftest import kiosk_config, sessions_root, visitor  # noqa: F401  (fixtures)

from .test_checklist import ROOT, day_clock, steps


async def test_arrival_opens_the_kiosk_departure_closes_and_wipes_it(
    run_controller: Any,
    kiosk_config: Any,  # noqa: F811
    visitor: Any,  # noqa: F811
) -> None:
    cfg = kiosk_config(sections={"checklist": {"schedule": str(ROOT / "config" / "tour.toml")}})
    controller = await run_controller(cfg, clock=day_clock())
    await wait_until(lambda: controller.kiosk.phase == "idle", message="the kiosk's start-up wipe")
    control, kiosk = cfg.api.control_socket, cfg.api.kiosk_socket

    await call_once(control, "checklist.arrive", {"stop": "2026-06-02/63223/0900", "by": "Marie"})
    result = await call_once(control, "checklist.finish", {"by": "Marie", "reason": "test of the kiosk link"})
    assert (result["phase"], result["kiosk"]) == ("open", "opened")
    await wait_until(lambda: controller.state.value("kiosk", "open") is True, message="kiosk open")

    await call_once(kiosk, "session.start", {"service": "caf"})
    await wait_until(lambda: controller.state.value("kiosk", "session_active") is True, message="a visitor")

    # Closing with a visitor still there: the session ends and is wiped before the departure list is shown.
    status = await call_once(control, "checklist.depart", {"by": "Marie"})
    assert status["kiosk"] == "closed" and status["kiosk_result"]["ended_session"] is True
    assert status["kiosk_result"]["last_wipe"]["ok"] is True
    assert (steps(status)["kiosk_closed"]["status"], steps(status)["kiosk_closed"]["by"]) == ("done", "auto")

    ended = [e for e in await controller.store.events_after(0, 1000) if e["type"] == "kiosk.session_ended"]
    assert ended[-1]["stop_key"] == "2026-06-02/63223/0900"
    assert ended[-1]["stop_label"] == "Menat (Place de l'église)"

    # Reopened behind the driver's back: the departure step unticks itself.
    await call_once(control, "kiosk.open", {})
    await wait_until(lambda: "kiosk_closed" in controller.state.value("checklist", "pending_required"))
