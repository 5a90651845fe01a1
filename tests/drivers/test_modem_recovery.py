"""A hung modem brought back without a human: AT reset, USB re-enumeration, power cut, against the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero import DigitalOutputDevice
from gpiozero.pins.mock import MockFactory

from drivers.modem import Modem
from drivers.modem_recovery import HangRecovery, RecoverySchedule, usb_device_of
from drivers.modem_sim import ModemSimulator
from firmware_host.api import call_once
from firmware_host.controller import DevicePoller

from ..conftest import make_config, sim_sections, wait_until

FAST = RecoverySchedule(at_reset_s=0.3, usb_reset_s=0.6, power_cut_s=0.9, power_off_s=0.2, usb_rebind_s=0.05)


@pytest.fixture
def power() -> Iterator[DigitalOutputDevice]:
    factory = MockFactory()
    device = DigitalOutputDevice(26, initial_value=True, pin_factory=factory)
    yield device
    device.close()
    factory.close()


@pytest.fixture
def sim(tmp_path: Path, power: DigitalOutputDevice) -> Iterator[ModemSimulator]:
    simulator = ModemSimulator("3gpp", seed=1)
    simulator.start_pty(str(tmp_path / "modem"))
    simulator.start_sysfs(str(tmp_path / "sys"))
    simulator.attach_power_pin(power.pin)
    yield simulator
    simulator.stop()


async def test_hung_modem_needs_the_whole_ladder_and_comes_back(
    tmp_path: Path, sim: ModemSimulator, power: DigitalOutputDevice
) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    recovery = HangRecovery(
        FAST, sysfs=str(tmp_path / "sys"), power=power, on_event=lambda etype, **data: events.append((etype, data))
    )
    modem = Modem(sim.link_path, timeout_s=0.3, resync_s=0.2, recovery=recovery)
    poller = DevicePoller(modem, "modem", 0.2, lambda values: events.append(("values", values)), lambda r: None)
    task = asyncio.create_task(poller.run())
    try:
        await wait_until(lambda: poller.polls >= 1, message="first poll")
        sim.fault = "hung"
        await wait_until(lambda: any(e == "modem.recovered" for e, _ in events), timeout=30, message="recovered")
        steps = [(data["step"], data["result"]) for etype, data in events if etype == "modem.recovery"]
        assert [step for step, _ in steps] == ["at_reset", "usb_reset", "power_cut"]
        assert steps[0][1] == "sent AT+CFUN=1,1"
        assert steps[1][1] == "USB device 1-1 de-authorised and authorised again (re-enumerated)"
        assert steps[2][1] == "supply cut for 0.2 s"
        # A true hang survived the reset and the re-enumeration: only the power cut cured it.
        assert sim.reenumerations == 1 and sim.power_cycles == 1 and sim.fault is None
        recovered = next(data for etype, data in events if etype == "modem.recovered")
        assert recovered["steps"] == ["at_reset", "usb_reset", "power_cut"]
        polls = poller.polls
        await wait_until(lambda: poller.polls > polls, message="polling again")
        assert modem.component()["link"] == "up"
        assert "AT+CFUN=1,1" not in sim.commands  # a hung modem never read it
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await modem.close()


async def test_a_modem_that_answers_again_ends_the_episode_early(sim: ModemSimulator) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    recovery = HangRecovery(FAST, usb_device="", on_event=lambda etype, **data: events.append((etype, data)))
    modem = Modem(sim.link_path, timeout_s=0.3, resync_s=0.2, recovery=recovery)
    await modem.open()
    sim.fault = "silent"
    with pytest.raises(Exception, match="no answer"):
        await modem.poll()
    sim.fault = None
    await modem.open()
    assert await modem.poll()
    assert events == [] and recovery.silent_since is None  # no step was due, nothing to report
    await modem.close()


async def test_at_reset_reboots_a_modem_that_still_reads_commands(sim: ModemSimulator) -> None:
    # A modem whose answers are lost (a wedged serial path) still reads the reset and re-enumerates.
    recovery = HangRecovery(FAST, usb_device="")
    Modem(sim.link_path, timeout_s=0.3, resync_s=0.2, recovery=recovery)  # gives the recovery its reset
    before = Path(sim.link_path).resolve()
    assert recovery.reset is not None and await recovery.reset() == "AT+CFUN=1,1"  # what the at_reset step calls
    await wait_until(lambda: Path(sim.link_path).exists() and Path(sim.link_path).resolve() != before, message="reboot")
    assert "AT+CFUN=1,1" in sim.commands


async def test_iridium_has_no_reset_and_no_power_pin_is_said(tmp_path: Path) -> None:
    sim = ModemSimulator("iridium", csq_delay_s=0.05, seed=1)
    sim.start_pty(str(tmp_path / "iridium"))
    events: list[dict[str, Any]] = []
    recovery = HangRecovery(FAST, usb_device="", on_event=lambda etype, **data: events.append(data))
    modem = Modem(sim.link_path, 19200, profile="iridium", timeout_s=0.2, recovery=recovery)
    try:
        sim.fault = "hung"
        for _ in range(20):
            with pytest.raises(Exception, match="no answer"):
                await modem.open()
            if len(events) == 3:
                break
            await asyncio.sleep(0.1)
        assert [e["result"] for e in events] == [
            "skipped: this modem profile has no reset command",
            "skipped: modem.usb_device is empty",
            "skipped: no modem.power_pin",
        ]
    finally:
        await modem.close()
        sim.stop()


def test_usb_device_is_found_from_the_tty_and_a_non_usb_port_is_named(tmp_path: Path, sim: ModemSimulator) -> None:
    assert usb_device_of(sim.link_path, str(tmp_path / "sys")) == "1-1"
    with pytest.raises(FileNotFoundError, match=r"/dev/ttyS0 \(ttyS0\) has no .*: not a USB serial port"):
        usb_device_of("/dev/ttyS0", str(tmp_path / "sys"))


async def test_a_step_that_cannot_act_says_why_and_the_ladder_goes_on(tmp_path: Path) -> None:
    # A sysfs file it cannot write (here not a file at all): the USB step says why, the power cut still comes.
    sysfs = tmp_path / "sys"
    (sysfs / "bus" / "usb" / "devices" / "1-1" / "authorized").mkdir(parents=True)  # not writable as a file
    events: list[dict[str, Any]] = []
    clock = [0.0]
    recovery = HangRecovery(
        FAST, usb_device="1-1", sysfs=str(sysfs), on_event=lambda e, **d: events.append(d), monotonic=lambda: clock[0]
    )
    for clock[0] in (0.0, 0.35, 0.65, 0.95):
        await recovery.silent()
    assert [e["step"] for e in events] == ["at_reset", "usb_reset", "power_cut"]
    assert events[1]["result"].startswith("failed: [Errno 21] Is a directory")
    assert events[2]["result"] == "skipped: no modem.power_pin"


async def test_a_modem_that_stays_dead_gets_ladders_further_and_further_apart() -> None:
    events: list[dict[str, Any]] = []
    clock = [0.0]
    schedule = RecoverySchedule(at_reset_s=15, usb_reset_s=40, power_cut_s=75)
    recovery = HangRecovery(
        schedule, usb_device="", on_event=lambda e, **d: events.append(d), monotonic=lambda: clock[0]
    )
    for clock[0] in range(0, 2000, 5):  # an attempt every 5 s for over half an hour, never an answer
        await recovery.silent()
    cuts = [e["silent_s"] for e in events if e["step"] == "power_cut"]
    # Ladder 1 cuts at 75 s; the next ladders start 75, 150, 300, 600 s after the previous cut, plus 75 s each.
    assert cuts == [75.0, 225.0, 450.0, 825.0, 1500.0]
    assert [e["ladder"] for e in events if e["step"] == "at_reset"] == [1, 2, 3, 4, 5]
    recovery.answered()
    assert recovery.silent_since is None and recovery.ladders == 0


def test_steps_out_of_order_are_refused() -> None:
    with pytest.raises(ValueError, match="steps must come in order"):
        RecoverySchedule(at_reset_s=60, usb_reset_s=50, power_cut_s=90)


def test_default_schedule_brings_a_hung_modem_back_within_3_minutes(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, modem={"port": "/dev/allervers-modem"})
    m = cfg.modem
    schedule = RecoverySchedule(
        at_reset_s=m.recovery_at_reset_s,
        usb_reset_s=m.recovery_usb_reset_s,
        power_cut_s=m.recovery_power_cut_s,
        power_off_s=m.power_off_s,
    )
    assert schedule == RecoverySchedule()  # the config's defaults are the schedule's
    # Silence seen within one poll and its 5 s command timeout; a Quectel EG25 answers AT ~15 s after power-up
    # and registers within ~30 s more (45 s boot, generous); the poller reopens within its 8 s backoff.
    assert schedule.worst_case_s(poll_s=m.poll_s, timeout_s=5.0, boot_s=45.0) <= 180


async def test_controller_brings_a_hung_modem_back_through_its_power_pin(tmp_path: Path, run_controller: Any) -> None:
    modem = {
        "recovery_at_reset_s": 1.0,
        "recovery_usb_reset_s": 2.0,
        "recovery_power_cut_s": 3.0,
        "power_off_s": 0.2,
        "timeout_s": 0.5,
        "power_pin": 26,
        "sysfs": str(tmp_path / "sys"),
    }
    bus = await run_controller(make_config(tmp_path, **sim_sections(tmp_path, modem=modem)))
    await asyncio.wait_for(bus.ready.wait(), 10)
    assert bus.io.outputs["modem_power"].value == 1
    await call_once(bus.config.api.control_socket, "sim.set", {"modem.fault": "hung"})
    await wait_until(lambda: bus.state.components["modem"].stale, timeout=15, message="modem stale")
    await wait_until(lambda: "modem.stale" in bus.alarms.active, message="modem stale alarm")
    await wait_until(lambda: not bus.state.components["modem"].stale, timeout=60, message="modem back")
    events = await bus.store.events_after(0, 1000)
    steps = [e["step"] for e in events if e["type"] == "modem.recovery"]
    assert steps == ["at_reset", "usb_reset", "power_cut"]
    assert bus.simulation.modem.power_cycles == 1
    assert bus.io.outputs["modem_power"].value == 1  # powered again
    await wait_until(lambda: "modem.stale" not in bus.alarms.active, message="stale alarm cleared")
    await wait_until(lambda: bus.state.value("modem", "link") == "up", message="link up")
