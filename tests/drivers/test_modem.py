"""The modem driver against its simulator over a pty and over TCP: components, URCs, errors, faults, unplug."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from drivers.at import ATChannel, CommandFailed
from drivers.base import DeviceError, DeviceGone, DeviceTimeout, PolledDevice
from drivers.modem import Modem, bars_3gpp
from drivers.modem_sim import ModemSimulator

FAST = {"timeout_s": 1.0, "resync_s": 0.5}


async def eventually(condition: Callable[[], object], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.01)


@pytest.fixture
def sim3(tmp_path) -> Iterator[ModemSimulator]:
    sim = ModemSimulator("3gpp", seed=1)
    sim.start_pty(str(tmp_path / "ttyMODEM"))
    sim.start_tcp("127.0.0.1")
    yield sim
    sim.stop()


@pytest.fixture
def simi(tmp_path) -> Iterator[ModemSimulator]:
    sim = ModemSimulator("iridium", csq_delay_s=0.05, seed=1)
    sim.start_pty(str(tmp_path / "ttyIRIDIUM"))
    sim.start_tcp("127.0.0.1")
    yield sim
    sim.stop()


def url(sim: ModemSimulator, transport: str) -> str:
    if transport == "pty":
        return sim.link_path
    return f"socket://127.0.0.1:{sim._tcp_addr[1]}"


@pytest.fixture
async def closing() -> AsyncIterator[list]:
    """Drivers and channels to close whatever the test outcome."""
    things: list = []
    yield things
    for thing in things:
        await thing.close()


def make(closing: list, sim: ModemSimulator, transport: str = "pty", **kwargs) -> Modem:
    modem = Modem(url(sim, transport), profile=sim.profile, **{**FAST, **kwargs})
    closing.append(modem)
    return modem


# ---------------------------------------------------------------------------------------------------------------
# Components


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_3gpp_component(sim3, closing, transport) -> None:
    modem = make(closing, sim3, transport)
    assert isinstance(modem, PolledDevice)
    await modem.open()
    assert await modem.poll() == {
        "link": "up",
        "registered": True,
        "registration": "home",
        "signal_bars": 4,
        "signal_raw": 17,
        "operator": "Allervers Mobile",
        "ip": "10.64.12.7",
    }
    sim3.set(rssi=99, reg_stat=2, operator=None, ip=None)
    assert await modem.poll() == {
        "link": "down",
        "registered": False,
        "registration": "searching",
        "signal_bars": 0,
        "signal_raw": None,
        "operator": None,
        "ip": None,
    }
    sim3.set(rssi=25, reg_stat=5, ip="2001:db8::7")
    component = await modem.poll()
    assert (component["link"], component["registration"], component["signal_bars"], component["ip"]) == (
        "up", "roaming", 5, "2001:db8::7"
    )  # fmt: skip


async def test_3gpp_link_needs_an_ip_address(sim3, closing) -> None:
    modem = make(closing, sim3)
    await modem.open()
    sim3.set(ip=None)
    component = await modem.poll()
    assert component["registered"] and component["signal_bars"] == 4 and component["link"] == "down"


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_iridium_component(simi, closing, transport) -> None:
    modem = make(closing, simi, transport)
    await modem.open()
    assert await modem.poll() == {
        "link": "up",
        "registered": True,
        "registration": "home",
        "signal_bars": 4,
        "signal_raw": 4,
        "operator": "Iridium",
        "ip": None,
        "iridium_service": True,
        "antenna_fault": False,
    }
    simi.set(rssi=0, sbdreg=1)
    component = await modem.poll()
    assert (component["link"], component["registered"], component["registration"], component["signal_bars"]) == (
        "down", False, "not_registered", 0
    )  # fmt: skip


def test_rssi_to_bars_thresholds() -> None:
    assert [bars_3gpp(r) for r in (0, 1, 2, 5, 6, 9, 10, 14, 15, 19, 20, 31, 99, None, 150)] == [
        0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 0, 0, 0
    ]  # fmt: skip


def test_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match="profile must be one of 3gpp, iridium"):
        Modem("/dev/null", profile="lora")
    with pytest.raises(ValueError, match="timeout_s"):
        Modem("/dev/null", timeout_s=0)
    with pytest.raises(KeyError, match="rssii"):
        ModemSimulator().set(rssii=3)
    with pytest.raises(ValueError, match="fault must be one of"):
        ModemSimulator().fault = "fire"


# ---------------------------------------------------------------------------------------------------------------
# Line protocol against the simulator


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_echo_before_ate0_is_not_taken_for_an_answer(sim3, closing, transport) -> None:
    channel = ATChannel(url(sim3, transport))
    closing.append(channel)
    await channel.open()
    assert await channel.command("AT+CGMI") == ["Allervers"]  # echo is still on: "AT+CGMI" comes back first
    assert await channel.command("ATE0") == []
    assert await channel.command("AT+CGMI") == ["Allervers"]


async def test_urc_between_command_and_ok_goes_to_the_urc_handler(sim3, closing) -> None:
    urcs: list[str] = []
    channel = ATChannel(sim3.link_path, urc_handler=urcs.append)
    closing.append(channel)
    await channel.open()
    await channel.command("ATE0")
    await channel.command("AT+CREG=2")
    sim3.urc_rate = 1.0
    assert await channel.command("AT+CSQ", prefix="+CSQ") == ["+CSQ: 17,99"]
    assert await channel.command("AT+CREG?", prefix="+CREG") == ['+CREG: 2,1,"1A2B","01C3D4E5",7']
    assert urcs == ['+CREG: 1,"1A2B","01C3D4E5",7'] * 2


async def test_urcs_update_the_component_and_call_on_change(sim3, closing) -> None:
    changes: list[dict] = []
    modem = make(closing, sim3, on_change=changes.append)
    await modem.open()
    sim3.urc_rate = 1.0  # URCs inside answers too, while polling
    assert (await modem.poll())["registration"] == "home"
    sim3.set(reg_stat=3)
    await eventually(lambda: changes and changes[-1]["registration"] == "denied")
    assert changes[-1]["registered"] is False and changes[-1]["link"] == "down"
    assert modem.component()["registration"] == "denied"


async def test_iridium_ciev_urcs_update_signal_service_and_antenna(simi, closing) -> None:
    changes: list[dict] = []
    modem = make(closing, simi, on_change=changes.append)
    await modem.open()
    await modem.poll()
    simi.set(rssi=2)
    await eventually(lambda: changes and changes[-1]["signal_bars"] == 2)
    simi.set(antenna_fault=True, service=False, sbdreg=0)
    await eventually(lambda: changes[-1]["antenna_fault"] is True and changes[-1]["iridium_service"] is False)
    assert (await modem.poll())["link"] == "down"


async def test_cme_error_numeric_names_command_and_meaning(sim3, closing) -> None:
    modem = make(closing, sim3)
    sim3.fault = "cme"
    await modem.open()  # basic commands still answer; the optional +CREG=2 error is tolerated
    with pytest.raises(CommandFailed) as err:
        await modem.poll()
    assert str(err.value) == "modem: AT+CSQ: +CME ERROR: 10 (SIM not inserted)"
    assert isinstance(err.value, DeviceError)


async def test_cme_error_text(sim3, closing) -> None:
    channel = ATChannel(sim3.link_path)
    closing.append(channel)
    await channel.open()
    await channel.command("AT+CMEE=2")
    sim3.fault = "cme"
    with pytest.raises(CommandFailed, match=r"^modem: AT\+COPS\?: \+CME ERROR: SIM not inserted$"):
        await channel.command("AT+COPS?")
    sim3.fault = None
    with pytest.raises(CommandFailed, match=r"^modem: AT\+BOGUS: ERROR$"):
        await channel.command("AT+BOGUS")


async def test_slow_iridium_csq_within_its_timeout(simi, closing) -> None:
    simi.csq_delay_s = 0.4
    modem = make(closing, simi, slow_timeout_s=3.0)
    await modem.open()
    simi.set(rssi=3)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    assert (await modem.poll())["signal_bars"] == 3
    ticking.cancel()
    assert ticks >= 10  # the event loop kept running while the modem took its time
    assert "AT+CSQF" not in simi.commands


async def test_iridium_csq_error_falls_back_to_csqf(simi, closing) -> None:
    modem = make(closing, simi)
    await modem.open()
    simi.set(service=False, rssi=2)  # no network: +CSQ answers ERROR, +CSQF the last known value
    component = await modem.poll()
    assert component["signal_bars"] == 2 and component["iridium_service"] is False
    assert simi.commands[-3:] == ["AT+CSQ", "AT+CSQF", "AT+SBDREG?"]


async def test_iridium_csq_timeout_falls_back_and_its_late_ok_is_discarded(simi, closing) -> None:
    simi.csq_delay_s = 0.3
    modem = make(closing, simi, slow_timeout_s=0.1, resync_s=2.0)
    await modem.open()
    assert (await modem.poll())["signal_bars"] == 4
    assert simi.commands[-3:] == ["AT+CSQ", "AT+CSQF", "AT+SBDREG?"]
    # Polls keep lining up: each answer goes to its own command (the late +CSQ/OK never completes +CSQF).
    simi.csq_delay_s = 0.0
    simi.set(rssi=1, sbdreg=3)
    component = await modem.poll()
    assert (component["signal_bars"], component["registration"]) == (1, "denied")


async def test_late_ok_of_a_timed_out_command_never_completes_the_next(simi, closing) -> None:
    simi.csq_delay_s = 0.3
    channel = ATChannel(simi.link_path, resync_s=2.0)
    closing.append(channel)
    await channel.open()
    await channel.command("ATE0")
    with pytest.raises(DeviceTimeout, match=r"^modem: AT\+CSQ: no answer within 0.05 s$"):
        await channel.command("AT+CSQ", 0.05, "+CSQ")
    assert await channel.command("AT+SBDREG?", 1.0, "+SBDREG") == ["+SBDREG:2"]
    assert await channel.command("AT+CSQF", 1.0, "+CSQF") == ["+CSQF:4"]


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_garbage_and_partial_lines_are_survived(sim3, closing, transport) -> None:
    modem = make(closing, sim3, transport)
    sim3.fault = "garbage"
    await modem.open()
    expected = {"link": "up", "registration": "home", "signal_raw": 17, "operator": "Allervers Mobile"}
    for _ in range(5):
        component = await modem.poll()
        assert {k: component[k] for k in expected} == expected


async def test_silent_modem_raises_timeout_naming_the_command_then_recovers(sim3, closing) -> None:
    modem = make(closing, sim3, timeout_s=0.3, resync_s=0.3)
    await modem.open()
    sim3.fault = "silent"
    with pytest.raises(DeviceTimeout, match=r"^modem: AT\+CSQ: no answer within 0.3 s$"):
        await modem.poll()
    with pytest.raises(DeviceTimeout, match="not answering AT"):
        await modem.poll()
    sim3.fault = None
    assert (await modem.poll())["link"] == "up"


# ---------------------------------------------------------------------------------------------------------------
# Transport loss


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "modem-reader" and t.is_alive()]


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_unplug_is_device_gone_and_replug_reruns_init(sim3, closing, transport) -> None:
    modem = make(closing, sim3, transport)
    await modem.open()
    await modem.poll()
    sim3.unplug()
    if transport == "pty":
        assert not os.path.lexists(sim3.link_path)
    with pytest.raises(DeviceGone):
        await modem.poll()
    await modem.close()
    with pytest.raises(DeviceGone, match="cannot open"):
        await modem.open()
    seen = len(sim3.commands)
    sim3.replug()
    await modem.open()
    assert sim3.commands[seen] == "ATE0"
    assert (await modem.poll())["link"] == "up"


async def test_replug_gives_a_new_pts_behind_the_same_link(sim3) -> None:
    before = os.path.realpath(sim3.link_path)
    sim3.unplug()
    sim3.replug()
    assert os.path.realpath(sim3.link_path) != before


async def test_port_is_opened_exclusively(sim3, closing) -> None:
    await make(closing, sim3).open()
    with pytest.raises(DeviceGone, match="exclusively lock"):
        await make(closing, sim3).open()


async def test_reconnect_loop_recovers_soon_after_replug_without_leaks(sim3, closing) -> None:
    modem = make(closing, sim3)
    fds_before = len(os.listdir("/proc/self/fd"))
    for _cycle in range(3):
        await modem.open()
        assert (await modem.poll())["link"] == "up"
        sim3.unplug()

        async def replug_later() -> float:
            await asyncio.sleep(0.3)  # the device stays away for a while, as a real unplug does
            sim3.replug()
            return time.monotonic()

        replugged = asyncio.create_task(replug_later())
        # What the controller's generic poller does: on DeviceError close, back off (capped), reopen.
        backoff, component = 0.05, None
        while component is None:
            try:
                component = await modem.poll()
            except DeviceError:
                await modem.close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                with contextlib.suppress(DeviceError):
                    await modem.open()
        assert component["link"] == "up"
        assert time.monotonic() - await replugged < 15
        assert len(reader_threads()) == 1
    await modem.close()
    await modem.close()  # idempotent
    assert reader_threads() == []
    assert len(os.listdir("/proc/self/fd")) <= fds_before


async def test_open_of_a_missing_device_is_device_gone(tmp_path) -> None:
    modem = Modem(str(tmp_path / "nothing"))
    with pytest.raises(DeviceGone, match=r"^modem: .*nothing: cannot open: .*No such file"):
        await modem.open()
    await modem.close()
    assert reader_threads() == []
