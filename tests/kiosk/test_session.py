"""Sessions on a real controller: start, every way of ending, the wipe and its verification, the kiosk state."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from firmware_host.api import ClientError, call_once
from kiosk import policies
from kiosk.wipe import user_processes
from tests.conftest import wait_until

from .conftest import FakeClock, visitor_traces


async def start_open(run_controller: Any, cfg: Any) -> Any:
    controller = await run_controller(cfg)
    kiosk = controller.kiosk
    await wait_until(lambda: kiosk.phase == "idle", message="the start-up wipe")
    await call_once(cfg.api.control_socket, "kiosk.open", {"stop": "Saint-Macaire"})
    return controller


async def events_of(controller: Any, prefix: str = "kiosk.") -> list[dict[str, Any]]:
    return [e for e in await controller.store.events_after(0, 1000) if e["type"].startswith(prefix)]


async def test_session_start_launches_the_browser_as_the_session_user_and_end_wipes_everything(
    run_controller: Any, kiosk_config: Any, visitor: Any
) -> None:
    cfg = kiosk_config()
    controller = await start_open(run_controller, cfg)
    sock = cfg.api.kiosk_socket
    reply = await call_once(sock, "session.start", {"service": "caf"})
    home = Path(reply["home"])
    assert len(reply["session"]) == 16 and home.name == reply["session"]
    assert reply["time_limit_s"] == 30 * 60
    await wait_until(lambda: (home / "Downloads" / "attestation.pdf").exists(), message="the browser's download")
    assert home.stat().st_uid == visitor.pw_uid and oct(home.stat().st_mode & 0o777) == "0o700"
    await wait_until(lambda: len(visitor_traces(visitor.pw_uid)) >= 3, message="the browser's temp files")
    assert user_processes(uid=visitor.pw_uid), "the browser runs as the session user"
    policy = (Path(cfg.kiosk.policy_dir) / policies.POLICY_FILE).read_text()
    assert '"caf.fr"' in policy and str(home / "Downloads") in policy

    state = controller.state.get("kiosk")
    assert state["session_active"] is True and state["session_service"] == "caf" and state["sessions_today"] == 1

    ended = await call_once(sock, "session.end", {})
    assert ended["ended"] is True and ended["reason"] == "visitor"
    assert ended["wipe"]["ok"] is True and ended["wipe"]["files_removed"] >= 8
    assert not home.exists()
    assert not list(Path(cfg.kiosk.sessions_dir).iterdir())
    assert visitor_traces(visitor.pw_uid) == []
    assert user_processes(uid=visitor.pw_uid) == []
    assert not (Path(cfg.kiosk.policy_dir) / policies.POLICY_FILE).exists()
    state = controller.state.get("kiosk")
    assert state["session_active"] is False and state["session_service"] is None
    assert state["last_wipe"]["ok"] is True and state["open"] is True

    types = [e["type"] for e in await events_of(controller)]
    assert types[-3:] == ["kiosk.session_started", "kiosk.wipe", "kiosk.session_ended"]
    ended_event = (await events_of(controller, "kiosk.session_ended"))[-1]
    assert ended_event["ended_by"] == "visitor" and ended_event["services"] == ["caf"]
    assert ended_event["stop_label"] == "Saint-Macaire"
    assert "session" not in ended_event and "home" not in ended_event  # nothing that names a session


async def test_session_start_refusals_name_the_problem(run_controller: Any, kiosk_config: Any) -> None:
    cfg = kiosk_config()
    controller = await run_controller(cfg)
    await wait_until(lambda: controller.kiosk.phase == "idle")
    sock = cfg.api.kiosk_socket
    with pytest.raises(ClientError, match=r"session.start: the terminal is not available \(closed\)"):
        await call_once(sock, "session.start", {"service": "caf"})
    await call_once(cfg.api.control_socket, "kiosk.open", {})
    with pytest.raises(ClientError, match=r"unknown service 'nope' \(offered: caf, impots, guide\)"):
        await call_once(sock, "session.start", {"service": "nope"})
    with pytest.raises(ClientError, match="unknown service 'libre'"):
        await call_once(sock, "session.start", {"service": "libre"})  # disabled tile
    with pytest.raises(ClientError, match="needs"):
        await call_once(sock, "session.start", {})
    with pytest.raises(ClientError, match="lang must be one of fr, en"):
        await call_once(sock, "session.start", {"service": "caf", "lang": "de"})
    with pytest.raises(ClientError, match="not allowed on the kiosk socket"):
        await call_once(sock, "kiosk.open", {})
    with pytest.raises(ClientError, match="no session is running"):
        await call_once(sock, "session.end", {})
    await call_once(sock, "session.start", {"service": "caf"})
    with pytest.raises(ClientError, match="a session is already running"):
        await call_once(sock, "session.start", {"service": "impots"})
    assert controller.state.get("kiosk")["sessions_today"] == 1


async def test_a_browser_that_cannot_start_leaves_nothing_and_the_terminal_usable(
    run_controller: Any, kiosk_config: Any, visitor: Any
) -> None:
    cfg = kiosk_config(browser_args=["--no-answer-exit"])
    controller = await start_open(run_controller, cfg)
    with pytest.raises(ClientError, match=r"the browser could not start: .*did not start"):
        await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    assert not list(Path(cfg.kiosk.sessions_dir).iterdir())
    assert controller.kiosk.session is None and controller.kiosk.status()["available"] is True
    assert "intent" not in await controller.store.meta("kiosk").all()


@pytest.mark.parametrize(
    ("command", "args", "reason", "open_after", "locked_after"),
    [
        ("kiosk.end_session", {}, "remote", True, False),
        ("kiosk.close", {}, "closed", False, False),
        ("kiosk.lock", {"reason": "maintenance"}, "locked", True, True),  # open bus, terminal locked
    ],
)
async def test_control_commands_end_the_session(
    run_controller: Any,
    kiosk_config: Any,
    visitor: Any,
    command: str,
    args: dict[str, Any],
    reason: str,
    open_after: bool,
    locked_after: bool,
) -> None:
    cfg = kiosk_config()
    controller = await start_open(run_controller, cfg)
    await call_once(cfg.api.kiosk_socket, "session.start", {"service": "impots"})
    await call_once(cfg.api.control_socket, command, args)
    await wait_until(lambda: controller.kiosk.session is None)
    assert user_processes(uid=visitor.pw_uid) == []
    state = controller.state.get("kiosk")
    assert state["open"] is open_after and state["locked"] is locked_after
    ended = (await events_of(controller, "kiosk.session_ended"))[-1]
    assert ended["ended_by"] == reason
    status = await call_once(cfg.api.kiosk_socket, "kiosk.status", {})
    assert status["available"] is (reason == "remote")
    if locked_after:
        assert status["closed_reason"] == "locked" and status["lock_reason"] == "maintenance"
        assert (await events_of(controller, "kiosk.locked"))[-1]["reason"] == "maintenance"
        await call_once(cfg.api.control_socket, "kiosk.unlock", {})
        assert (await call_once(cfg.api.kiosk_socket, "kiosk.status", {}))["available"] is True


async def test_remote_end_without_a_session_says_so(run_controller: Any, kiosk_config: Any) -> None:
    cfg = kiosk_config()
    await start_open(run_controller, cfg)
    assert await call_once(cfg.api.control_socket, "kiosk.end_session", {}) == {
        "ended": False,
        "reason": "no session was running",
    }


async def test_ignition_ends_the_session_and_blocks_new_ones(
    run_controller: Any, kiosk_config: Any, visitor: Any
) -> None:
    cfg = kiosk_config(sections={"gpio": {"pin_factory": "mock", "ignition_pin": 17}})
    controller = await start_open(run_controller, cfg)
    await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    controller.io.drive("ignition", True)
    await wait_until(lambda: controller.kiosk.session is None, message="the ignition end")
    assert (await events_of(controller, "kiosk.session_ended"))[-1]["ended_by"] == "ignition"
    with pytest.raises(ClientError, match=r"not available \(ignition\)"):
        await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    controller.io.drive("ignition", False)
    await wait_until(lambda: controller.kiosk.status()["available"])


async def test_shore_lost_with_a_low_battery_ends_the_session(
    run_controller: Any, kiosk_config: Any, visitor: Any
) -> None:
    cfg = kiosk_config(low_battery_soc=30.0)
    controller = await start_open(run_controller, cfg)
    controller.state.update("power", {"soc": 28.0})
    controller.state.update("shore", {"connected": True})
    await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    controller.state.update("shore", {"connected": False})
    await wait_until(lambda: controller.kiosk.session is None, message="the low-battery end")
    assert (await events_of(controller, "kiosk.session_ended"))[-1]["ended_by"] == "low_battery"


async def test_shore_lost_with_a_good_battery_keeps_the_session(
    run_controller: Any, kiosk_config: Any, visitor: Any
) -> None:
    cfg = kiosk_config(low_battery_soc=30.0)
    controller = await start_open(run_controller, cfg)
    controller.state.update("power", {"soc": 80.0})
    controller.state.update("shore", {"connected": True})
    await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    controller.state.update("shore", {"connected": False})
    await asyncio.sleep(0)  # listeners run synchronously; nothing may have been scheduled
    assert controller.kiosk.session is not None and controller.kiosk._ending is None
    controller.state.update("power", {"soc": 29.0})
    await wait_until(lambda: controller.kiosk.session is None)


async def test_a_browser_that_dies_ends_and_wipes_the_session(
    run_controller: Any, kiosk_config: Any, visitor: Any
) -> None:
    cfg = kiosk_config(browser_args=["--exit-after=0.3"])
    controller = await start_open(run_controller, cfg)
    await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    await wait_until(lambda: controller.kiosk.session is None, message="the end after the crash")
    assert (await events_of(controller, "kiosk.session_ended"))[-1]["ended_by"] == "browser_exited"
    assert user_processes(uid=visitor.pw_uid) == []  # its orphaned renderer too
    assert visitor_traces(visitor.pw_uid) == []


async def test_idle_prompt_then_end_with_a_controllable_clock(
    run_controller: Any, kiosk_config: Any, visitor: Any
) -> None:
    cfg = kiosk_config(idle_timeout_s=300.0, idle_grace_s=60.0)
    controller = await start_open(run_controller, cfg)
    kiosk = controller.kiosk
    clock = FakeClock()
    kiosk.monotonic = clock
    sock = cfg.api.kiosk_socket
    await call_once(sock, "session.start", {"service": "caf"})

    clock.advance(299)
    kiosk.tick()
    assert (await call_once(sock, "session.status", {}))["idle_prompt"] is False
    clock.advance(2)
    kiosk.tick()
    status = await call_once(sock, "session.status", {})
    assert status["idle_prompt"] is True and status["idle_left_s"] == 60
    await call_once(sock, "session.activity", {})  # "Oui, je suis là"
    assert (await call_once(sock, "session.status", {}))["idle_prompt"] is False

    clock.advance(300)
    kiosk.tick()
    clock.advance(59)
    kiosk.tick()
    assert kiosk.session is not None and kiosk._ending is None
    clock.advance(1)
    kiosk.tick()
    await wait_until(lambda: kiosk.session is None, message="the idle end")
    assert (await events_of(controller, "kiosk.session_ended"))[-1]["ended_by"] == "idle"


async def test_time_limit_warnings_at_5_and_1_minute_then_the_end(
    run_controller: Any, kiosk_config: Any, visitor: Any
) -> None:
    cfg = kiosk_config(idle_timeout_s=3600.0)
    controller = await start_open(run_controller, cfg)
    kiosk = controller.kiosk
    clock = FakeClock()
    kiosk.monotonic = clock
    sock = cfg.api.kiosk_socket
    await call_once(sock, "session.start", {"service": "impots"})  # time_limit_min = 10
    status = await call_once(sock, "session.status", {})
    assert status["time_left_s"] == 600 and status["warning"] is None
    clock.advance(299)
    assert (await call_once(sock, "session.status", {}))["warning"] is None
    clock.advance(1)
    assert (await call_once(sock, "session.status", {}))["warning"] == "5min"
    clock.advance(240)
    status = await call_once(sock, "session.status", {})
    assert status["warning"] == "1min" and status["time_left_s"] == 60
    clock.advance(59)
    kiosk.tick()
    assert kiosk.session is not None
    clock.advance(1)
    kiosk.tick()
    await wait_until(lambda: kiosk.session is None, message="the time-limit end")
    ended = (await events_of(controller, "kiosk.session_ended"))[-1]
    assert ended["ended_by"] == "time_limit" and ended["duration_s"] == 600


async def test_offline_only_services_without_a_link_are_offered(
    run_controller: Any, kiosk_config: Any, visitor: Any
) -> None:
    cfg = kiosk_config()
    controller = await start_open(run_controller, cfg)
    # A bus with a modem whose link is down (the modem driver would write this).
    object.__setattr__(controller.config, "_values", {**controller.config._values, "modem": object()})
    controller.state.update("modem", {"link": "down"})
    status = await call_once(cfg.api.kiosk_socket, "kiosk.status", {})
    assert status["link_up"] is False
    assert {s["id"]: s["usable"] for s in status["services"]} == {"caf": False, "impots": False, "guide": True}
    with pytest.raises(ClientError, match="needs the Internet link, which is down"):
        await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    reply = await call_once(cfg.api.kiosk_socket, "session.start", {"service": "guide"})
    assert reply["service"] == "guide"
    controller.state.update("modem", {"link": "up"})
    assert (await call_once(cfg.api.kiosk_socket, "kiosk.status", {}))["link_up"] is True


async def test_satisfaction_is_recorded_once_for_the_last_session(
    run_controller: Any, kiosk_config: Any, visitor: Any
) -> None:
    cfg = kiosk_config()
    controller = await start_open(run_controller, cfg)
    sock = cfg.api.kiosk_socket
    with pytest.raises(ClientError, match="no finished session is waiting"):
        await call_once(sock, "session.feedback", {"rating": "good"})
    await call_once(sock, "session.start", {"service": "caf"})
    await call_once(sock, "session.end", {})
    assert (await call_once(sock, "kiosk.status", {}))["satisfaction"] is True
    with pytest.raises(ClientError, match="rating must be one of good, neutral, bad"):
        await call_once(sock, "session.feedback", {"rating": "5 stars"})
    assert await call_once(sock, "session.feedback", {"rating": "good"}) == {"recorded": "good"}
    with pytest.raises(ClientError, match="no finished session is waiting"):
        await call_once(sock, "session.feedback", {"rating": "bad"})
    rows = await controller.store.run(
        lambda db: db.execute("SELECT satisfaction, ended_by, services, pages FROM kiosk_sessions").fetchall()
    )
    assert rows == [("good", "visitor", '["caf"]', 0)]
    assert [e["rating"] for e in await events_of(controller, "kiosk.satisfaction")] == ["good"]


async def test_a_failed_verification_keeps_the_terminal_closed_and_raises_an_alarm(
    run_controller: Any, kiosk_config: Any, visitor: Any
) -> None:
    cfg = kiosk_config()
    controller = await start_open(run_controller, cfg)
    kiosk = controller.kiosk
    # A file appearing behind the wipe's back (a process it could not see, a full disk...): verification must catch
    # it, whatever the cause.
    sessions = Path(cfg.kiosk.sessions_dir)
    await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    original = kiosk.wiper._remove_files

    def remove_but_leave_one() -> int:
        removed = original()
        (sessions / "left-behind").write_text("x")
        return removed

    kiosk.wiper._remove_files = remove_but_leave_one
    ended = await call_once(cfg.api.kiosk_socket, "session.end", {})
    assert ended["wipe"]["ok"] is False
    status = await call_once(cfg.api.kiosk_socket, "kiosk.status", {})
    assert status["available"] is False and status["closed_reason"] == "wipe_failed"
    assert controller.state.get("kiosk")["open"] is False
    alarms = {a["id"]: a for a in controller.alarms.as_list()}
    assert "left-behind" in alarms["kiosk.wipe_failed"]["message"]
    with pytest.raises(ClientError, match="not available"):
        await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})

    kiosk.wiper._remove_files = original  # the mediator fixed it: opening again retries the wipe
    reply = await call_once(cfg.api.control_socket, "kiosk.open", {})
    assert reply["open"] is True
    assert "kiosk.wipe_failed" not in {a["id"] for a in controller.alarms.as_list()}
    assert not list(sessions.iterdir())
    assert os.path.exists(cfg.storage.path)


async def test_larger_text_per_session_cycles_and_the_next_visitor_starts_at_100(
    run_controller: Any, kiosk_config: Any
) -> None:
    cfg = kiosk_config()
    controller = await start_open(run_controller, cfg)
    sock = cfg.api.kiosk_socket
    for bad in (110, "150", True, None):
        with pytest.raises(ClientError, match=r"zoom must be one of 100, 125, 150, 200 \(%\), not"):
            await call_once(sock, "session.start", {"service": "caf", "zoom": bad})
    assert controller.kiosk.session is None

    await call_once(sock, "session.start", {"service": "caf", "zoom": 150})
    assert (await call_once(sock, "session.status", {}))["zoom"] == 150
    steps = [(await call_once(sock, "session.zoom", {}))["zoom"] for _ in range(3)]
    assert steps == [200, 100, 125]  # "Agrandir le texte" cycles, back to normal after the largest
    assert (await call_once(sock, "session.zoom", {"zoom": 200}))["zoom"] == 200
    with pytest.raises(ClientError, match="zoom must be one of"):
        await call_once(sock, "session.zoom", {"zoom": 300})
    await call_once(sock, "session.end", {})
    with pytest.raises(ClientError, match="no session is running"):
        await call_once(sock, "session.zoom", {})

    await call_once(sock, "session.start", {"service": "caf"})
    assert (await call_once(sock, "session.status", {}))["zoom"] == 100
    await call_once(sock, "session.end", {})
