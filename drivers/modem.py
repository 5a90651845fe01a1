"""Satellite/cellular modem over AT: command-table profiles (3GPP, Iridium) and the polled driver.

Wiring, with the simulator (drivers/modem_sim.py) standing in for the modem (the demo and the tests do exactly this)::

    sim = ModemSimulator("3gpp")
    sim.start_pty("/tmp/allervers-modem")          # or: port = sim.start_tcp("127.0.0.1")
    modem = Modem("/tmp/allervers-modem")          # or: Modem(f"socket://127.0.0.1:{port}")
    await modem.open()
    print(await modem.poll())   # {'link': 'up', 'registered': True, 'registration': 'home', 'signal_bars': 4, ...}
    sim.set(reg_stat=2)         # a +CREG URC reaches the driver; modem.on_change(component) fires
    await modem.close(); sim.stop()
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from drivers.at import (
    ATChannel,
    ATParseError,
    CommandFailed,
    parse_cereg,
    parse_cgpaddr,
    parse_ciev,
    parse_cops,
    parse_creg,
    parse_csq,
    parse_csqf,
    parse_sbdreg,
)
from drivers.base import DeviceError, DeviceGone, DeviceTimeout
from drivers.modem_recovery import HangRecovery, RecoverySchedule
from drivers.registry import AlarmRule, AlarmText, DeviceProfile

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------------------
# Status model shared by the profiles

REGISTRATION = {0: "not_registered", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming",
                6: "home", 7: "roaming", 8: "not_registered", 9: "home", 10: "roaming"}  # fmt: skip
REGISTERED = {"home", "roaming"}
# Which of +CREG/+CEREG to believe when they disagree: the one closer to service.
REGISTRATION_RANK = {"home": 5, "roaming": 4, "searching": 3, "denied": 2, "not_registered": 1, "unknown": 0}
SBDREG_REGISTRATION = {0: "not_registered", 1: "not_registered", 2: "home", 3: "denied"}

# 3GPP rssi -> bars, by dBm (rssi n = -113 + 2n dBm), close to ModemManager's/Android's GSM levels:
#   0..1 (<= -111 dBm) 0 bars, 2..5 (-109..-103) 1, 6..9 (-101..-95) 2, 10..14 (-93..-85) 3,
#   15..19 (-83..-75) 4, 20..31 (>= -73 dBm) 5; 99 (unknown) and out-of-range values 0 bars.
CSQ_BAR_FLOORS = ((20, 5), (15, 4), (10, 3), (6, 2), (2, 1))


def bars_3gpp(rssi: int | None) -> int:
    if rssi is None or not 0 <= rssi <= 31:
        return 0
    return next((bars for floor, bars in CSQ_BAR_FLOORS if rssi >= floor), 0)


@dataclass
class ModemStatus:
    """What the driver knows, from polls and URCs; turned into the component by the profile."""

    rssi: int | None = None
    creg: int | None = None
    cereg: int | None = None
    operator: str | None = None
    ip: str | None = None
    sbdreg: int | None = None
    service: bool | None = None
    antenna_fault: bool | None = None


@dataclass(frozen=True)
class Step:
    """One init command; ``required=False`` tolerates an error result (optional features)."""

    command: str
    required: bool = True
    hardware_only: bool = False  # needs real RTS/CTS wiring (Modem(rtscts=True))


Ask = Callable[..., Awaitable[list[str]]]


async def _ask_one(ask: Ask, command: str, prefix: str, parser: Callable[[str], Any], timeout_s: float) -> Any:
    lines = await ask(command, timeout_s, prefix)
    if not lines:
        raise DeviceError("modem", f"{command}: no {prefix} line in the answer")
    try:
        return parser(lines[0])
    except ATParseError as exc:
        raise DeviceError("modem", f"{command}: {exc}") from exc


class Profile:
    """A modem family: its init table, how to poll it, how to read its URCs, how to build the component."""

    name: ClassVar[str]
    init: ClassVar[tuple[Step, ...]]
    slow_timeout_s: ClassVar[float]  # for the one command allowed to be slow (+CSQ)
    reset_command: ClassVar[str | None]  # reboots the modem (the first step of hang recovery); None: none

    async def poll(self, ask: Ask, status: ModemStatus, timeout_s: float, slow_timeout_s: float) -> None:
        raise NotImplementedError

    def on_urc(self, line: str, status: ModemStatus) -> bool:
        """Update ``status`` from a URC; True when something changed."""
        raise NotImplementedError

    def component(self, status: ModemStatus) -> dict[str, Any]:
        raise NotImplementedError


class ThreeGppProfile(Profile):
    """TS 27.007 terminals: cellular modems and IP satellite terminals."""

    name = "3gpp"
    init = (
        Step("ATE0"),
        Step("ATV1"),
        Step("AT+CMEE=1", required=False),
        Step("AT+CREG=2", required=False),
        Step("AT+CEREG=2", required=False),
    )
    slow_timeout_s = 5.0  # unused: every 3GPP command is quick
    reset_command = "AT+CFUN=1,1"  # full functionality, then reset (TS 27.007; Quectel and Sierra honour it)

    async def poll(self, ask: Ask, status: ModemStatus, timeout_s: float, slow_timeout_s: float) -> None:
        status.rssi = (await _ask_one(ask, "AT+CSQ", "+CSQ", parse_csq, timeout_s)).rssi
        # 2G/3G report +CREG, LTE +CEREG; a modem may refuse either one, not both.
        failures = []
        for command, prefix, parser, attr in (
            ("AT+CREG?", "+CREG", parse_creg, "creg"),
            ("AT+CEREG?", "+CEREG", parse_cereg, "cereg"),
        ):
            try:
                setattr(status, attr, (await _ask_one(ask, command, prefix, parser, timeout_s)).stat)
            except CommandFailed as exc:
                setattr(status, attr, None)
                failures.append(exc)
        if len(failures) == 2:
            raise failures[0]
        try:
            status.operator = (await _ask_one(ask, "AT+COPS?", "+COPS", parse_cops, timeout_s)).name
        except CommandFailed:
            status.operator = None
        try:
            lines = await ask("AT+CGPADDR", timeout_s, "+CGPADDR")
        except CommandFailed:  # e.g. +CME ERROR when no PDP context is defined yet
            lines = []
        try:
            addresses = [a for line in lines for a in parse_cgpaddr(line).addresses]
        except ATParseError as exc:
            raise DeviceError("modem", f"AT+CGPADDR: {exc}") from exc
        # Prefer IPv4: it is what the uplink routes; an IPv6-only context still counts.
        status.ip = next((a for a in addresses if ":" not in a), addresses[0] if addresses else None)

    def on_urc(self, line: str, status: ModemStatus) -> bool:
        for prefix, parser, attr in (("+CREG:", parse_creg, "creg"), ("+CEREG:", parse_cereg, "cereg")):
            if line.startswith(prefix):
                stat = parser(line).stat
                changed = getattr(status, attr) != stat
                setattr(status, attr, stat)
                return changed
        return False

    def component(self, status: ModemStatus) -> dict[str, Any]:
        names = [REGISTRATION.get(s, "unknown") for s in (status.creg, status.cereg) if s is not None]
        registration = max(names, key=REGISTRATION_RANK.__getitem__, default="unknown")
        registered = registration in REGISTERED
        bars = bars_3gpp(status.rssi)
        return {
            "link": "up" if registered and bars >= 1 and status.ip else "down",
            "registered": registered,
            "registration": registration,
            "signal_bars": bars,
            "signal_raw": None if status.rssi in (None, 99) else status.rssi,
            "operator": status.operator,
            "ip": status.ip,
        }


class IridiumProfile(Profile):
    """Iridium SBD transceivers (9602/9603/9523): bars from +CSQ, registration from +SBDREG, no IP."""

    name = "iridium"
    init = (
        Step("ATE0"),
        Step("ATV1"),
        Step("AT&K3", required=False, hardware_only=True),
        Step("AT+CIER=1,1,1,1", required=False),
    )
    slow_timeout_s = 60.0  # +CSQ waits for a satellite while acquiring
    reset_command = None  # the 9602/9603 have no software reboot: only their supply or ON/OFF line restarts them

    async def poll(self, ask: Ask, status: ModemStatus, timeout_s: float, slow_timeout_s: float) -> None:
        try:
            status.rssi = (await _ask_one(ask, "AT+CSQ", "+CSQ", parse_csq, slow_timeout_s)).rssi
        except (CommandFailed, DeviceTimeout) as exc:
            # +CSQF answers at once with the last known value; good enough until the next poll.
            log.info("%s; falling back to AT+CSQF", exc)
            status.rssi = (await _ask_one(ask, "AT+CSQF", "+CSQF", parse_csqf, timeout_s)).rssi
        try:
            status.sbdreg = await _ask_one(ask, "AT+SBDREG?", "+SBDREG", parse_sbdreg, timeout_s)
        except CommandFailed:
            status.sbdreg = None

    def on_urc(self, line: str, status: ModemStatus) -> bool:
        if not line.startswith("+CIEV:"):
            return False
        ind = parse_ciev(line)
        attr, value = {
            0: ("rssi", ind.value),
            1: ("service", bool(ind.value)),
            2: ("antenna_fault", bool(ind.value)),
        }.get(ind.indicator, (None, None))
        if attr is None:
            return False
        changed = getattr(status, attr) != value
        setattr(status, attr, value)
        return changed

    def component(self, status: ModemStatus) -> dict[str, Any]:
        registration = SBDREG_REGISTRATION.get(status.sbdreg, "unknown")
        registered = status.sbdreg == 2
        bars = min(max(status.rssi or 0, 0), 5)
        return {
            "link": "up" if (registered or status.service) and bars >= 1 else "down",
            "registered": registered,
            "registration": registration,
            "signal_bars": bars,
            "signal_raw": status.rssi,
            "operator": "Iridium" if registered else None,
            "ip": None,
            "iridium_service": status.service,
            "antenna_fault": status.antenna_fault,
        }


PROFILES: dict[str, type[Profile]] = {p.name: p for p in (ThreeGppProfile, IridiumProfile)}

# ---------------------------------------------------------------------------------------------------------------
# Driver


class Modem:
    """The ``modem`` component: a PolledDevice over an AT port (device path or pyserial URL).

    ``on_change`` (optional) is called on the event loop with the new component dict whenever a URC changes
    it between polls, so the controller can publish at once.
    """

    def __init__(
        self,
        port: str,
        baudrate: int = 115200,
        profile: str = "3gpp",
        *,
        name: str = "modem",
        timeout_s: float = 5.0,
        slow_timeout_s: float | None = None,
        resync_s: float = 2.0,
        rtscts: bool = False,
        on_change: Callable[[dict[str, Any]], None] | None = None,
        recovery: HangRecovery | None = None,
    ):
        if profile not in PROFILES:
            raise ValueError(f"{name}: profile must be one of {', '.join(sorted(PROFILES))}, got {profile!r}")
        if not port:
            raise ValueError(f"{name}: port must be a device path or a pyserial URL")
        for option, value in (("timeout_s", timeout_s), ("slow_timeout_s", slow_timeout_s), ("resync_s", resync_s)):
            if value is not None and not 0 < value <= 600:
                raise ValueError(f"{name}: {option} must be in (0, 600] s, got {value}")
        if not 50 <= baudrate <= 4_000_000:
            raise ValueError(f"{name}: baudrate must be in 50..4000000, got {baudrate}")
        self.name = name
        self.port = port
        self.profile = PROFILES[profile]()
        self.timeout_s = timeout_s
        self.slow_timeout_s = slow_timeout_s or self.profile.slow_timeout_s
        self.rtscts = rtscts
        self.on_change = on_change
        self.status = ModemStatus()
        self._last: dict[str, Any] | None = None
        self._polling = False
        self._channel = ATChannel(
            port, baudrate, device=name, rtscts=rtscts, urc_handler=self._on_urc, resync_s=resync_s
        )
        self.recovery = recovery
        # The poller's backstop (DevicePoller): above any one attempt, so a silent modem fails on its own
        # command timeout and the recovery step (up to a power cut) runs inside the attempt.
        self.poll_timeout_s = self.slow_timeout_s + 6 * timeout_s
        if recovery is not None:
            self.poll_timeout_s += recovery.schedule.power_off_s + recovery.schedule.usb_rebind_s
            recovery.port = recovery.port or port
            recovery.reset = self._send_reset

    def component(self) -> dict[str, Any]:
        """The component as currently known (last poll plus URCs since)."""
        return self.profile.component(self.status)

    async def open(self) -> None:
        """Open the port and run the profile's init table; safe to call again after a failure or unplug."""
        await self._recovering(self._open())

    async def poll(self) -> dict[str, Any]:
        return await self._recovering(self._poll())

    async def _recovering(self, attempt: Awaitable[Any]) -> Any:
        # Silence (no answer, or the port gone) feeds the hang escalation; any answer, even an error, ends it.
        try:
            result = await attempt
        except (DeviceTimeout, DeviceGone) as exc:
            if self.recovery is None:
                raise
            await self._channel.close()
            step = await self.recovery.silent()
            if step is None:
                raise
            raise type(exc)(self.name, f"{exc.detail}; recovery: {step}") from exc
        except CommandFailed:
            if self.recovery is not None:
                self.recovery.answered()
            raise
        if self.recovery is not None:
            self.recovery.answered()
        return result

    async def _send_reset(self) -> str | None:
        """Write the profile's reset command without waiting: a hung modem never answers it."""
        command = self.profile.reset_command
        if command is None:
            return None
        await self._channel.open()
        try:
            await self._channel.send_blind(command)
        finally:
            await self._channel.close()
        return command

    async def _open(self) -> None:
        self.status = ModemStatus()  # after a re-plug the modem has rebooted: forget everything
        self._last = None
        await self._channel.open()
        try:
            for step in self.profile.init:
                if step.hardware_only and not self.rtscts:
                    continue
                try:
                    await self._ask(step.command, self.timeout_s)
                except CommandFailed as exc:
                    if step.required:
                        raise
                    log.info("%s (optional, ignored)", exc)
        except BaseException:
            await self._channel.close()
            raise

    async def _poll(self) -> dict[str, Any]:
        self._polling = True
        try:
            await self.profile.poll(self._ask, self.status, self.timeout_s, self.slow_timeout_s)
        finally:
            self._polling = False
        self._last = self.component()
        return dict(self._last)

    async def close(self) -> None:
        await self._channel.close()

    async def _ask(self, command: str, timeout_s: float, prefix: str | None = None) -> list[str]:
        return await self._channel.command(command, timeout_s, prefix)

    def _on_urc(self, line: str) -> None:
        try:
            changed = self.profile.on_urc(line, self.status)
        except ATParseError as exc:
            log.warning("%s: ignored URC: %s", self.name, exc)
            return
        # Before the first poll the component is mostly unknown, and during a poll its result is coming anyway.
        if not changed or self._last is None or self._polling:
            return
        component = self.component()
        if component == self._last:
            return
        self._last = component
        if self.on_change is not None:
            try:
                self.on_change(dict(component))
            except Exception:
                log.exception("%s: on_change callback failed", self.name)


# ---------------------------------------------------------------------------------------------------------------
# Registry: the profiles as the config names them


def _build(section: Any, name: str) -> Modem:
    recovery = HangRecovery(
        RecoverySchedule(
            at_reset_s=section.recovery_at_reset_s,
            usb_reset_s=section.recovery_usb_reset_s,
            power_cut_s=section.recovery_power_cut_s,
            power_off_s=section.power_off_s,
        ),
        usb_device=section.usb_device,
        sysfs=section.sysfs,
    )
    return Modem(
        section.port,
        baudrate=section.baudrate,
        profile=section.profile,
        name=name,
        timeout_s=section.timeout_s,
        recovery=recovery,
    )


def _iridium_alarm_rules(device: str) -> list[AlarmRule]:
    def antenna_fault(state: Any) -> AlarmText | None:
        if state.value("modem", "antenna_fault") and state.is_fresh("modem"):
            return AlarmText("the Iridium modem reports an antenna fault: check the antenna cable and connector", {})
        return None

    return [AlarmRule(f"{device}.antenna_fault", "alarm", antenna_fault)]


DEVICE_PROFILES = (
    DeviceProfile("modem", "3gpp", "3GPP TS 27.007 modem (cellular, IP satellite terminal)", build=_build),
    DeviceProfile(
        "modem", "iridium", "Iridium SBD transceiver (9602/9603/9523)", build=_build, alarm_rules=_iridium_alarm_rules
    ),
)
