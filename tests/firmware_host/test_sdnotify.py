"""sd_notify and the watchdog against a fake NOTIFY_SOCKET bound by the test, with a real controller."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.victron_gx import GXSimulator
from firmware_host import sdnotify
from firmware_host.sdnotify import Notifier, ServiceNotifier, one_line, summary
from tests.conftest import make_config, wait_until, wait_until_sync, write_config
from tests.firmware_host.fake_systemd import FakeSystemd

REPO = Path(__file__).resolve().parents[2]


def send_marker(fake: FakeSystemd) -> None:
    """Datagrams keep their order: whatever the fake receives after this was sent after this."""
    address = fake.address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"MARK", "\0" + address[1:] if address.startswith("@") else address)


@pytest.fixture(params=["path", "abstract"])
def fake_systemd(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeSystemd]:
    address = str(tmp_path / "notify.sock") if request.param == "path" else f"@allervers-test-{uuid.uuid4().hex}"
    fake = FakeSystemd(address)
    yield fake
    fake.close()


@pytest.fixture
def under_systemd(monkeypatch: pytest.MonkeyPatch, fake_systemd: FakeSystemd) -> FakeSystemd:
    """The environment systemd gives a Type=notify service with WatchdogSec=0.2s."""
    monkeypatch.setenv("NOTIFY_SOCKET", fake_systemd.address)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    return fake_systemd


# --- the protocol ---------------------------------------------------------------------------------------


def test_notifier_speaks_the_datagram_protocol(fake_systemd: FakeSystemd) -> None:
    n = Notifier.from_environ({"NOTIFY_SOCKET": fake_systemd.address}, unset=False)
    assert n.enabled and n.watchdog_interval_s is None
    assert n.ready("first\nline")
    assert n.watchdog()
    assert n.stopping()
    wait_until_sync(lambda: len(fake_systemd.texts()) == 3, timeout=5, message="three datagrams")
    # A newline in a status would start a new assignment: it is flattened.
    assert fake_systemd.texts() == ["READY=1\nSTATUS=first line", "WATCHDOG=1", "STOPPING=1"]
    n.close()


def test_environment_is_read_and_hidden_from_children() -> None:
    env = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}
    n = Notifier.from_environ(env, pid=4242)
    assert n.watchdog_interval_s == 15.0
    assert env == {}  # children (a shell, the browser) must not ping on our behalf
    other = Notifier.from_environ({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=2)
    assert other.enabled and other.watchdog_interval_s is None  # the watchdog is meant for another process
    bad = Notifier.from_environ({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "soon"}, unset=False)
    assert bad.watchdog_interval_s is None
    assert not Notifier.from_environ({}, unset=False).enabled
    assert not Notifier("vsock:2:1234").enabled  # not a Unix socket: refused, not crashed on


def test_a_vanished_systemd_is_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier(str(tmp_path / "gone.sock"), watchdog_usec=1_000_000)
    for _ in range(5):
        assert n.watchdog() is False
    assert n.sent == 0
    assert len([r for r in caplog.records if "sd_notify failed" in r.message]) == 1  # logged once, not per ping


def test_status_summary_is_one_short_line() -> None:
    snap = {
        "shore": {"connected": True, "stale": False},
        "power": {"soc": 78.4, "battery_v": 26.31, "stale": False},
        "modem": {"link": "up", "signal_bars": 3, "stale": False},
        "controller": {"alarms": [{"id": "power.low_soc"}]},
    }
    assert summary(snap) == "shore connected; battery 78 % 26.3 V; link up (3/5); 1 alarm: power.low_soc"
    snap["modem"] = {"stale": True, "stale_reason": "modem: no answer"}
    snap["controller"] = {"alarms": []}
    assert summary(snap) == "shore connected; battery 78 % 26.3 V; no data: modem; no alarm"
    assert summary(snap, ["inverter (refused)"]).startswith("waiting for inverter (refused); ")
    assert len(one_line("x" * 1000)) == sdnotify.STATUS_MAX_CHARS


# --- a real controller ------------------------------------------------------------------------------------


def inverter_config(tmp_path: Path, port: int):
    return make_config(
        tmp_path,
        inverter={"host": "127.0.0.1", "port": port, "poll_s": 0.2, "timeout_s": 0.5},
    )


async def test_ready_only_after_the_first_complete_state(
    tmp_path: Path, under_systemd: FakeSystemd, run_controller
) -> None:
    sim = GXSimulator()
    port = await sim.start()
    sim.fault = "exception"  # the GX answers, but with errors: no complete state yet
    try:
        controller = await run_controller(inverter_config(tmp_path, port))
        await wait_until(lambda: controller.pollers["inverter"].failures >= 3, timeout=10, message="failed polls")
        assert "READY=1" not in "\n".join(under_systemd.texts())
        statuses = under_systemd.assignments("STATUS")
        assert statuses and statuses[0].startswith("starting: waiting for inverter")
        assert not controller.ready.is_set()

        sim.fault = None
        await wait_until(lambda: "READY=1" in "\n".join(under_systemd.texts()), timeout=10, message="READY=1")
        assert controller.first_complete_s is not None
        ready = next(t for t in under_systemd.texts() if t.startswith("READY=1"))
        assert "STATUS=" in ready and "battery" in ready and "waiting" not in ready
        assert under_systemd.assignments("READY") == ["1"]  # exactly once
    finally:
        await sim.stop()


async def test_ready_anyway_after_the_deadline_naming_the_silent_device(
    tmp_path: Path, under_systemd: FakeSystemd, run_controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sdnotify, "READY_TIMEOUT_S", 0.5)
    sim = GXSimulator()
    port = await sim.start()
    await sim.stop()  # nothing listens there any more: connection refused
    controller = await run_controller(inverter_config(tmp_path, port))
    await wait_until(lambda: "READY=1" in "\n".join(under_systemd.texts()), timeout=10, message="READY=1")
    assert not controller.ready.is_set()
    ready = next(t for t in under_systemd.texts() if t.startswith("READY=1"))
    assert "waiting for inverter" in ready


async def test_watchdog_pings_at_half_the_period_from_the_loop(
    tmp_path: Path, under_systemd: FakeSystemd, run_controller
) -> None:
    controller = await run_controller(make_config(tmp_path))
    interval = 0.1  # WATCHDOG_USEC=200000 / 2
    await wait_until(lambda: len(under_systemd.pings()) >= 8, timeout=10, message="eight pings")
    pings = under_systemd.pings()
    gaps = sorted(b - a for a, b in itertools.pairwise(pings))
    median = gaps[len(gaps) // 2]
    assert 0.5 * interval <= median <= 2 * interval, gaps

    # Block the event loop itself: the pings must stop. A marker datagram sent as the block starts orders
    # the queue: anything after it was sent while the loop was stuck.
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    result: dict[str, object] = {}

    def stuck() -> None:
        send_marker(under_systemd)
        result["marked"] = under_systemd.wait_for(lambda: "MARK" in under_systemd.texts(), timeout=5)
        # Three whole ping periods with the loop stuck: systemd would see none.
        under_systemd.wait_for(lambda: under_systemd.texts()[-1] != "MARK", timeout=3 * interval)
        texts = under_systemd.texts()
        result["after"] = texts[texts.index("MARK") + 1 :] if "MARK" in texts else None
        done.set_result(None)

    loop.call_soon(stuck)
    await done
    assert result == {"marked": True, "after": []}, "pings went on while the loop was blocked"
    count = len(under_systemd.texts())
    await wait_until(lambda: "WATCHDOG=1" in under_systemd.texts()[count:], timeout=5, message="pings resuming")
    assert controller.store is not None


async def test_a_stuck_store_writer_withholds_the_pings(
    tmp_path: Path, under_systemd: FakeSystemd, run_controller
) -> None:
    controller = await run_controller(make_config(tmp_path))
    await wait_until(lambda: len(under_systemd.pings()) >= 2, timeout=10, message="pings")
    release = threading.Event()
    blocked = asyncio.ensure_future(controller.store.run(lambda _db: release.wait(10)))
    try:
        # The loop is fine but nothing can be logged: after one watchdog period the pings stop.
        await wait_until(
            lambda: time.monotonic() - under_systemd.pings()[-1] > 0.5, timeout=10, message="pings stopping"
        )
    finally:
        release.set()
        await blocked
    before = len(under_systemd.pings())
    await wait_until(lambda: len(under_systemd.pings()) > before, timeout=5, message="pings resuming")


async def test_status_follows_the_state_and_stopping_is_said(
    tmp_path: Path, under_systemd: FakeSystemd, run_controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sdnotify, "STATUS_MIN_INTERVAL_S", 0.0)
    controller = await run_controller(make_config(tmp_path, shore_power={"presence_pin": 5}))
    await wait_until(lambda: "READY=1" in "\n".join(under_systemd.texts()), timeout=10, message="READY=1")
    assert controller.io is not None
    controller.io.drive("shore_presence", True)
    await wait_until(
        lambda: any("shore connected" in s for s in under_systemd.assignments("STATUS")),
        timeout=10,
        message="a status saying shore connected",
    )
    before = len(under_systemd.assignments("STATUS"))
    for _ in range(5):  # the same summary again and again: no new datagram
        controller.state.update("shore", {"connected": True})
    await controller.stop()
    statuses = under_systemd.assignments("STATUS")
    assert "shore connected" not in "".join(statuses[before:])
    await wait_until(lambda: under_systemd.assignments("STOPPING") == ["1"], timeout=5, message="STOPPING=1")


async def test_status_updates_are_rate_limited(
    tmp_path: Path, under_systemd: FakeSystemd, run_controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sdnotify, "STATUS_MIN_INTERVAL_S", 0.3)
    controller = await run_controller(make_config(tmp_path, shore_power={"presence_pin": 5}))
    await wait_until(lambda: "READY=1" in "\n".join(under_systemd.texts()), timeout=10, message="READY=1")
    assert under_systemd.assignments("STATUS")[-1].startswith("shore unplugged")
    before = len(under_systemd.assignments("STATUS"))
    for i in range(21):  # a flickering contact: 21 summaries within a few milliseconds, ending "connected"
        controller.state.update("shore", {"connected": i % 2 == 0})
    # At most the first goes out at once (if the interval since READY had passed); the rest are coalesced
    # and the last word arrives when the interval has passed.
    await wait_until(
        lambda: under_systemd.assignments("STATUS")[-1].startswith("shore connected"),
        timeout=5,
        message="the coalesced status",
    )
    sent = [s.split(";")[0] for s in under_systemd.assignments("STATUS")[before:]]
    assert sent in (["shore connected"], ["shore connected", "shore connected"]), sent


def test_not_under_systemd_nothing_is_attached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert ServiceNotifier.attach_if_systemd(object()) is None  # type: ignore[arg-type]


# --- the real process, as systemd runs it -------------------------------------------------------------------


def test_allervers_run_under_a_fake_systemd(tmp_path: Path, under_systemd: FakeSystemd) -> None:
    conf = write_config(tmp_path, vehicle={"id": "bus-sd"}, gpio={"ignition_pin": 17})
    # systemd sets WATCHDOG_PID to the service's pid; the test's own pid must not leak into the child.
    env = {k: v for k, v in os.environ.items() if k != "WATCHDOG_PID"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware_host.cli", "run", "-c", str(conf)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert under_systemd.wait_for(lambda: any(m.startswith("READY=1") for _, m in under_systemd.messages), 30)
        assert under_systemd.wait_for(lambda: len(under_systemd.pings()) >= 3, 10)
        # SIGSTOP freezes the whole process, as a stuck loop would: no ping for several periods.
        proc.send_signal(signal.SIGSTOP)
        os.waitpid(proc.pid, os.WUNTRACED)  # returns once the process is really stopped
        send_marker(under_systemd)
        assert under_systemd.wait_for(lambda: "MARK" in under_systemd.texts(), 5)
        # Five ping periods: systemd would see nothing after the marker.
        assert not under_systemd.wait_for(lambda: under_systemd.texts()[-1] != "MARK", 0.5), "pings while frozen"
        proc.send_signal(signal.SIGCONT)
        count = len(under_systemd.pings())
        assert under_systemd.wait_for(lambda: len(under_systemd.pings()) > count, 10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.stderr.read().decode() if proc.stderr else ""
        assert "1" in under_systemd.assignments("STOPPING")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
