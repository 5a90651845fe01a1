"""Vehicle GPIO through gpiozero: debounced inputs (ignition, antenna, door, shore) and buzzer/LED outputs.

Wiring assumed (and shipped in config/example-bus.toml): each input is a dry contact or opto-isolator output
between the BCM pin and ground, with the Pi's internal pull-up; the contact closed means "active" (ignition on,
antenna stowed, door open). The shore presence input may be wired either way (``active_high``). Outputs drive a
transistor for a 12 V buzzer and the status LED, active high.

The pin factory is injected as gpiozero does it: "lgpio" on a Pi 4/5, "mock" (gpiozero's MockFactory) in the
simulator and tests, None for gpiozero's own choice. The same code runs on all three:

>>> io = VehicleIO(factory="mock", inputs={"ignition": InputPin(17)})
>>> io.drive("ignition", True); io.read("ignition")
True
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpiozero import LED, Buzzer, Device, DigitalInputDevice, DigitalOutputDevice
from gpiozero.exc import GPIOZeroError

from .base import DeviceError


@dataclass(frozen=True)
class InputPin:
    pin: int
    pull_up: bool = True  # internal pull-up, contact to ground
    active_high: bool | None = None  # only for pull_up=False (an externally driven logic level)


class GPIOError(DeviceError):
    """A pin could not be claimed or driven (names the pin and its role)."""


def make_factory(name: str | None) -> Any:
    """Build the pin factory named in config; None lets gpiozero choose (and fail clearly off a Pi)."""
    if name == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    if name == "lgpio":
        try:
            from gpiozero.pins.lgpio import LGPIOFactory

            return LGPIOFactory()
        except (ImportError, OSError, GPIOZeroError) as exc:
            raise GPIOError("gpio", f"pin_factory = 'lgpio' unavailable: {exc}") from exc
    return None


class VehicleIO:
    """Owns every GPIO line of the bus. Input changes are reported on the event loop, debounced.

    ``on_change(role, value)`` runs on the loop after the level has held for ``debounce_s``; gpiozero's edge
    callbacks arrive on its own threads, so they are handed over with ``call_soon_threadsafe``.
    """

    def __init__(
        self,
        *,
        factory: Any = None,
        inputs: dict[str, InputPin] | None = None,
        buzzer_pin: int | None = None,
        status_led_pin: int | None = None,
        outputs: dict[str, int] | None = None,
        debounce_s: float = 0.1,
        debounce_overrides: dict[str, float] | None = None,
    ):
        self.factory = make_factory(factory) if isinstance(factory, str) or factory is None else factory
        self.debounce_s = debounce_s
        self.debounce_overrides = debounce_overrides or {}
        self.on_change: Callable[[str, bool], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._reported: dict[str, bool] = {}
        self._lock = threading.Lock()
        self.inputs: dict[str, DigitalInputDevice] = {}
        self.specs: dict[str, InputPin] = dict(inputs or {})
        self.buzzer: Buzzer | None = None
        self.status_led: LED | None = None
        # Other outputs by role, on at start (e.g. "modem_power": the modem's supply, cut to power-cycle it).
        self.outputs: dict[str, DigitalOutputDevice] = {}
        try:
            for role, spec in (inputs or {}).items():
                self.inputs[role] = self._claim(
                    role,
                    spec.pin,
                    lambda spec=spec: DigitalInputDevice(
                        spec.pin,
                        pull_up=spec.pull_up if spec.active_high is None else None,
                        active_state=spec.active_high,
                        pin_factory=self.factory,
                    ),
                )
            if buzzer_pin is not None:
                self.buzzer = self._claim("buzzer", buzzer_pin, lambda: Buzzer(buzzer_pin, pin_factory=self.factory))
            if status_led_pin is not None:
                self.status_led = self._claim(
                    "status_led", status_led_pin, lambda: LED(status_led_pin, pin_factory=self.factory)
                )
            for role, pin in (outputs or {}).items():
                self.outputs[role] = self._claim(
                    role, pin, lambda pin=pin: DigitalOutputDevice(pin, initial_value=True, pin_factory=self.factory)
                )
        except GPIOError:
            self.close()
            raise

    @staticmethod
    def _claim(role: str, pin: int, build: Callable[[], Any]) -> Any:
        try:
            return build()
        except (GPIOZeroError, OSError, RuntimeError, ValueError) as exc:
            raise GPIOError("gpio", f"{role} (GPIO{pin}): {exc}") from exc

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin reporting edges on ``loop``; the current levels are reported at once."""
        self._loop = loop
        for role, dev in self.inputs.items():
            dev.when_activated = lambda role=role: self._edge(role)
            dev.when_deactivated = lambda role=role: self._edge(role)
            self._reported[role] = bool(dev.value)
            if self.on_change:
                self.on_change(role, self._reported[role])

    def _edge(self, role: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.current_thread() is threading.main_thread() and _running_loop() is loop:
            self._schedule(role)
        else:
            loop.call_soon_threadsafe(self._schedule, role)

    def _schedule(self, role: str) -> None:
        timer = self._timers.pop(role, None)
        if timer:
            timer.cancel()
        assert self._loop
        delay = self.debounce_overrides.get(role, self.debounce_s)
        self._timers[role] = self._loop.call_later(delay, self._settle, role)

    def _settle(self, role: str) -> None:
        self._timers.pop(role, None)
        dev = self.inputs.get(role)
        if dev is None:
            return
        value = bool(dev.value)
        if self._reported.get(role) != value:
            self._reported[role] = value
            if self.on_change:
                self.on_change(role, value)

    def read(self, role: str) -> bool:
        return bool(self.inputs[role].value)

    def values(self) -> dict[str, bool]:
        return dict(self._reported)

    def set_buzzer(self, on: bool) -> None:
        if self.buzzer is not None and bool(self.buzzer.value) != on:
            if on:
                self.buzzer.beep(on_time=0.5, off_time=0.5)
            else:
                self.buzzer.off()

    def set_status_led(self, pattern: str) -> None:
        """ "ok" steady on, "warning" slow blink, "alarm" fast blink, "off"."""
        led = self.status_led
        if led is None:
            return
        if pattern == "ok":
            led.on()
        elif pattern == "warning":
            led.blink(on_time=1.0, off_time=1.0)
        elif pattern == "alarm":
            led.blink(on_time=0.2, off_time=0.2)
        else:
            led.off()

    # --- simulation: drive a MockFactory input as the real contact would -----------------------------------

    def drive(self, role: str, active: bool) -> None:
        """Set a mock input to its active or inactive level (simulator and tests only)."""
        dev = self.inputs.get(role)
        if dev is None:
            raise KeyError(f"no GPIO input {role!r} configured")
        pin = dev.pin
        if not hasattr(pin, "drive_high"):
            raise GPIOError("gpio", f"{role}: driving inputs needs pin_factory = 'mock'")
        spec = self.specs[role]
        active_high = spec.active_high if spec.active_high is not None else not spec.pull_up
        high = active if active_high else not active
        pin.drive_high() if high else pin.drive_low()

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        devices: list[Device | None] = [*self.inputs.values(), *self.outputs.values(), self.buzzer, self.status_led]
        for dev in devices:
            if dev is not None:
                dev.close()
        self.inputs.clear()
        self.outputs.clear()
        if self.factory is not None and hasattr(self.factory, "close"):
            self.factory.close()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
