"""Benchmark of the modem hang recovery: a hung modem back with no human, on the default escalation schedule."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpiozero import DigitalOutputDevice  # noqa: E402
from gpiozero.pins.mock import MockFactory  # noqa: E402

from drivers.modem import Modem  # noqa: E402
from drivers.modem_recovery import HangRecovery, RecoverySchedule  # noqa: E402
from drivers.modem_sim import ModemSimulator  # noqa: E402
from firmware_host.controller import DevicePoller  # noqa: E402

Row = tuple[str, str, str]
BOOT_S = 13.0  # Quectel EG25-G: power-up to the USB ports enumerating (its hardware design guide)
REGISTER_S = 30.0  # network registration after boot, in good coverage: not simulated, added to the figure


async def _measure(scale: float, tmp: Path) -> tuple[float, list[str]]:
    """Seconds from the hang to the first good poll, with every timing (schedule, poll, boot) times ``scale``."""
    d = RecoverySchedule()
    schedule = RecoverySchedule(
        at_reset_s=d.at_reset_s * scale,
        usb_reset_s=d.usb_reset_s * scale,
        power_cut_s=d.power_cut_s * scale,
        power_off_s=d.power_off_s * scale,
        usb_rebind_s=d.usb_rebind_s * scale,
    )
    factory = MockFactory()
    power = DigitalOutputDevice(26, initial_value=True, pin_factory=factory)
    sim = ModemSimulator("3gpp", boot_s=BOOT_S * scale, seed=1)
    sim.start_pty(str(tmp / "modem"))
    sim.start_sysfs(str(tmp / "sys"))
    sim.attach_power_pin(power.pin)
    steps: list[str] = []
    recovery = HangRecovery(
        schedule, sysfs=str(tmp / "sys"), power=power, on_event=lambda etype, **data: steps.append(data.get("step"))
    )
    modem = Modem(sim.link_path, timeout_s=5.0 * scale, resync_s=2.0 * scale, recovery=recovery)
    poller = DevicePoller(modem, "modem", 10.0 * scale, lambda values: None, lambda reason: None)
    poller.backoff_max_s = 8.0 * scale
    task = asyncio.create_task(poller.run())
    try:
        while poller.polls < 1:
            await asyncio.sleep(0.01)
        hung_at = time.monotonic()
        sim.fault = "hung"
        deadline = hung_at + 400 * scale
        while not sim.power_cycles and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        polls = poller.polls  # none succeed while hung: the next one is the modem back
        while poller.polls == polls and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        took = time.monotonic() - hung_at if poller.polls > polls else float("nan")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await modem.close()
        sim.stop()
        power.close()
        factory.close()
    return took / scale, [s for s in steps if s]


def run(quick: bool = False) -> list[Row]:
    scale = 0.1 if quick else 1.0
    with tempfile.TemporaryDirectory(prefix="allervers-bench-modem-") as tmpdir:
        took_s, steps = asyncio.run(_measure(scale, Path(tmpdir)))
    clock = "clock x10 (--quick), figure scaled back" if quick else "real time"
    return [
        (
            f"hung modem (only a power cut cures it) -> answering AT again, default schedule, {BOOT_S:.0f} s boot "
            f"simulated ({clock}); steps: {', '.join(steps)}",
            f"{took_s:.0f} s; + {REGISTER_S:.0f} s registration (not simulated) = {took_s + REGISTER_S:.0f} s",
            "<= 180 s with no human",
        )
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(" | ".join(row))
