"""GPIO under gpiozero's MockFactory: debounced edges reach the loop, outputs drive their pins."""

from __future__ import annotations

import asyncio
import threading

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.gpio import GPIOError, InputPin, VehicleIO

from ..conftest import wait_until


def make_io(**kw: object) -> VehicleIO:
    return VehicleIO(
        factory=MockFactory(),
        inputs={"ignition": InputPin(17), "shore_presence": InputPin(5, pull_up=False, active_high=True)},
        buzzer_pin=23,
        status_led_pin=24,
        debounce_s=0.05,
        **kw,
    )


async def test_contact_closed_to_ground_is_active() -> None:
    io = make_io()
    seen: list[tuple[str, bool]] = []
    io.on_change = lambda role, value: seen.append((role, value))
    io.start(asyncio.get_running_loop())
    assert seen == [("ignition", False), ("shore_presence", False)]
    io.inputs["ignition"].pin.drive_low()  # the ignition contact closes to ground
    await wait_until(lambda: ("ignition", True) in seen, message="ignition on")
    io.close()


async def test_bounces_shorter_than_the_debounce_are_ignored() -> None:
    io = make_io()
    seen: list[tuple[str, bool]] = []
    io.on_change = lambda role, value: seen.append((role, value))
    io.start(asyncio.get_running_loop())
    seen.clear()
    pin = io.inputs["shore_presence"].pin
    for _ in range(5):  # plug bounce: high/low within a few ms, settling high
        pin.drive_high()
        pin.drive_low()
    pin.drive_high()
    await wait_until(lambda: seen, message="settled level reported")
    await asyncio.sleep(0.1)  # let any stray timer fire: exactly one report must remain
    assert seen == [("shore_presence", True)]
    io.close()


async def test_edges_from_another_thread_are_handed_to_the_loop() -> None:
    io = make_io()
    seen: list[tuple[str, bool, str]] = []
    io.on_change = lambda role, value: seen.append((role, value, threading.current_thread().name))
    io.start(asyncio.get_running_loop())
    seen.clear()
    t = threading.Thread(target=io.drive, args=("ignition", True), name="gpio-callback")
    t.start()
    t.join()
    await wait_until(lambda: seen, message="edge on the loop")
    assert seen[0][:2] == ("ignition", True) and seen[0][2] == threading.main_thread().name
    io.close()


async def test_buzzer_beeps_and_stops_and_led_patterns() -> None:
    io = make_io()
    io.start(asyncio.get_running_loop())
    io.set_buzzer(True)
    await wait_until(lambda: io.buzzer.pin.state == 1, message="buzzer on")
    io.set_buzzer(False)
    assert io.buzzer.value == 0 and io.buzzer.pin.state == 0
    io.set_status_led("ok")
    assert io.status_led.pin.state == 1
    io.set_status_led("off")
    assert io.status_led.pin.state == 0
    io.close()


def test_a_pin_used_twice_is_refused_naming_the_role() -> None:
    with pytest.raises(GPIOError, match=r"gpio: buzzer \(GPIO17\)"):
        VehicleIO(factory=MockFactory(), inputs={"ignition": InputPin(17)}, buzzer_pin=17)


def test_drive_needs_the_mock_factory_and_a_known_role() -> None:
    io = make_io()
    with pytest.raises(KeyError, match="door_open"):
        io.drive("door_open", True)
    io.close()
