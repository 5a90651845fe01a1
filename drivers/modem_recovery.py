"""Bringing back a modem that stopped answering: AT reset, then USB re-enumeration, then a power cut.

Field reports of Quectel and Sierra modems: after hours without signal the firmware stops answering AT until the
modem is power-cycled. A true hang survives ``AT+CFUN=1,1`` (nothing reads it) and a USB re-enumeration (the
host re-probes the device, the baseband keeps running); only cutting its supply cures it. The cheaper steps still
come first because they cure the lesser faults without a reboot of the whole radio: a wedged AT parser that
still takes a reset, a USB serial driver stuck on the host side.

The escalation runs while the modem stays silent (no answer, or its port gone), timed from the first silent
poll: each step once, when its delay has passed, one step per failed attempt so the next attempt judges whether
it worked. Every step is an event (``modem.recovery``), the modem answering again ends the episode
(``modem.recovered``, with how long it took and which steps ran). After the last step the ladder starts over,
after a pause that doubles each time (from ``power_cut_s`` up to 30 minutes), so a dead or missing modem is not
power-cycled every minute and a half for ever.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STEPS = ("at_reset", "usb_reset", "power_cut")
MAX_PAUSE_S = 1800.0  # longest wait between two whole ladders for a modem that stays dead (relay wear, log noise)


@dataclass(frozen=True)
class RecoverySchedule:
    """When each step runs, in seconds of silence, and how long the supply stays cut.

    The defaults bring a hung modem back within 3 minutes (``worst_case_s``): silence is seen within one poll
    and its command timeout (10 + 5 s); the power cut is due 75 s into it and runs at the next failed attempt
    (a timeout and the poller's backoff, up to 5 + 8 s); 5 s off; a Quectel EG25 enumerates about 13 s after
    power-up and registers within about 30 s more (45 s allowed); the poller reopens within its 8 s backoff:
    15 + 75 + 13 + 5 + 45 + 8 = 161 s. The steps before it leave the modem time to show a cure: 25 s after
    the reset (a Quectel reboots in about 15 s), 35 s after the re-enumeration.
    """

    at_reset_s: float = 15.0
    usb_reset_s: float = 40.0
    power_cut_s: float = 75.0
    power_off_s: float = 5.0
    usb_rebind_s: float = 1.0  # de-authorised this long: the host lets go of the device and its interfaces

    def __post_init__(self) -> None:
        if not 0 < self.at_reset_s < self.usb_reset_s < self.power_cut_s:
            raise ValueError(
                f"modem recovery: steps must come in order, got at_reset {self.at_reset_s:g} s, "
                f"usb_reset {self.usb_reset_s:g} s, power_cut {self.power_cut_s:g} s"
            )

    def due(self) -> tuple[tuple[str, float], ...]:
        return (("at_reset", self.at_reset_s), ("usb_reset", self.usb_reset_s), ("power_cut", self.power_cut_s))

    def worst_case_s(self, poll_s: float, timeout_s: float, boot_s: float, backoff_max_s: float = 8.0) -> float:
        """Seconds from the modem hanging to its answering again, at worst, when only the power cut cures it."""
        detect = poll_s + timeout_s
        next_attempt = timeout_s + backoff_max_s  # a step runs on the first failed attempt after it is due
        return detect + self.power_cut_s + next_attempt + self.power_off_s + boot_s + backoff_max_s


def usb_device_of(port: str, sysfs: str = "/sys") -> str:
    """The USB device name (e.g. ``1-1.3``) behind a tty path such as /dev/ttyUSB2 or a udev symlink to it.

    Walks /sys/class/tty/<tty>/device up to the first directory that has ``idVendor`` (the USB device, not its
    interface). OSError naming the port when it is not a USB tty.
    """
    tty = os.path.basename(os.path.realpath(port))
    node = Path(sysfs, "class", "tty", tty, "device")
    if not node.exists():
        raise FileNotFoundError(f"{port} ({tty}) has no {node}: not a USB serial port")
    current = node.resolve()
    root = Path(sysfs).resolve()
    while current != root and current != current.parent:
        if (current / "idVendor").exists():
            return current.name
        current = current.parent
    raise FileNotFoundError(f"{port} ({tty}): no USB device above {node.resolve()}")


class HangRecovery:
    """The escalation for one modem. ``Modem`` calls ``silent()`` after a failed attempt and ``answered()``.

    ``reset`` sends the profile's reset command without waiting for an answer (None: the profile has none, as on
    an Iridium 9603). ``usb_device``: a USB device name, "auto" (found from ``port`` in sysfs) or "" (no USB
    step). ``power``: a gpiozero output driving the modem's supply (on = powered), or None.
    """

    def __init__(
        self,
        schedule: RecoverySchedule | None = None,
        *,
        port: str = "",
        usb_device: str = "auto",
        sysfs: str = "/sys",
        power: Any = None,
        on_event: Callable[..., Any] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.schedule = schedule or RecoverySchedule()
        self.port = port
        self.usb_device = usb_device
        self.sysfs = sysfs
        self.power = power
        self.on_event = on_event
        self.monotonic = monotonic
        self.reset: Callable[[], Awaitable[str | None]] | None = None  # set by the Modem: returns the command sent
        self.silent_since: float | None = None  # the episode: from the first silent attempt
        self.ladder_since: float | None = None  # the current ladder (a new one after a pause)
        self.ladders = 0  # whole ladders run in this episode
        self.done: list[str] = []  # steps of the current ladder
        self.steps_run: list[str] = []  # every step of the episode
        self.last_step: str | None = None
        self._last_step_at = 0.0

    def answered(self) -> None:
        """The modem answered: the episode (if any) is over."""
        if self.silent_since is not None and self.steps_run:
            after_s = round(self.monotonic() - self.silent_since, 1)
            log.warning("modem answers again after %.0f s of silence (%s)", after_s, ", ".join(self.steps_run))
            self._event("modem.recovered", after_s=after_s, steps=list(self.steps_run))
        self.silent_since = self.ladder_since = self.last_step = None
        self.ladders, self.done, self.steps_run = 0, [], []

    async def silent(self) -> str | None:
        """Run the next due step, if any; returns a short description of what was done (for the stale reason)."""
        now = self.monotonic()
        if self.silent_since is None or self.ladder_since is None:
            self.silent_since = self.ladder_since = now
        if len(self.done) == len(STEPS):
            # The whole ladder ran and the modem is still silent: start over after a pause rather than give up.
            if now - self._last_step_at < self.pause_s():
                return None
            self.ladders += 1
            self.ladder_since, self.done = now, []
        elapsed = now - self.ladder_since
        for step, after_s in self.schedule.due():
            if step in self.done:
                continue
            if elapsed < after_s:
                return None
            self.done.append(step)
            self.steps_run.append(step)
            result = await self._run(step)
            self._last_step_at = self.monotonic()
            silent_s = round(now - self.silent_since, 1)
            self.last_step = f"{step} after {silent_s:.0f} s: {result}"
            log.warning("modem silent for %.0f s: %s %s", silent_s, step, result)
            self._event("modem.recovery", step=step, silent_s=silent_s, ladder=self.ladders + 1, result=result)
            return self.last_step
        return None

    def pause_s(self) -> float:
        """How long after a whole ladder the next one starts: power_cut_s, doubling each time, at most 30 min."""
        return min(MAX_PAUSE_S, self.schedule.power_cut_s * 2**self.ladders)

    async def _run(self, step: str) -> str:
        try:
            if step == "at_reset":
                if self.reset is None:
                    return "skipped: no reset"
                command = await self.reset()
                return f"sent {command}" if command else "skipped: this modem profile has no reset command"
            if step == "usb_reset":
                return await self._usb_reset()
            if self.power is None:
                return "skipped: no modem.power_pin"
            self.power.off()
            await asyncio.sleep(self.schedule.power_off_s)
            self.power.on()
            return f"supply cut for {self.schedule.power_off_s:g} s"
        except OSError as exc:
            return f"failed: {exc}"

    async def _usb_reset(self) -> str:
        """Re-enumerate the modem's USB device through its ``authorized`` attribute (the kernel's device
        authorization, Documentation/usb/authorization): 0 removes its configuration and interfaces (the tty
        goes), 1 configures it and probes its interfaces again. Unlike the driver core's bind/unbind files (root
        only), this one file can be handed to the controller's group by a udev rule
        (systemd/udev/78-allervers.rules), so the step works from the unprivileged service."""
        if not self.usb_device:
            return "skipped: modem.usb_device is empty"
        device = self.usb_device if self.usb_device != "auto" else usb_device_of(self.port, self.sysfs)
        authorized = Path(self.sysfs, "bus", "usb", "devices", device, "authorized")
        try:
            await asyncio.to_thread(authorized.write_text, "0")
        except PermissionError as exc:
            return f"failed: {exc} (78-allervers.rules lets the group dialout write it: is the rule installed?)"
        await asyncio.sleep(self.schedule.usb_rebind_s)
        await asyncio.to_thread(authorized.write_text, "1")
        return f"USB device {device} de-authorised and authorised again (re-enumerated)"

    def _event(self, etype: str, **data: Any) -> None:
        if self.on_event is not None:
            try:
                self.on_event(etype, **data)
            except Exception:
                log.exception("modem recovery: event callback failed")
