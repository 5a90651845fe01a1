"""`allervers console` as the driver gets it: a real process on a real terminal (tmux), the PIN file checks."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from firmware_host import config as config_mod
from firmware_host.api import call_once
from firmware_host.console.settings import MAX_TRIES, PinError, PinLock, read_pin

from ..conftest import sim_sections, wait_until, write_config
from .test_checklist import ROOT, day_clock

ALLERVERS = str(Path(sys.executable).parent / "allervers")


def console_config(tmp_path: Path, pin_file: Path | None) -> Path:
    console: dict[str, Any] = {"language": "fr"} | ({"pin_file": str(pin_file)} if pin_file else {})
    return write_config(
        tmp_path,
        vehicle={"name": "Bus de test"},
        checklist={"schedule": str(ROOT / "config" / "tour.toml")},
        console=console,
    )


def pin_file(tmp_path: Path, text: str = "4821\n", mode: int = 0o600) -> Path:
    path = tmp_path / "console-pin"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("text", "mode", "problem"),
    [
        ("4821\n", 0o644, "readable by everyone: chmod 600"),
        ("48a1\n", 0o600, "must be 4 to 8 digits"),
        ("123\n", 0o600, "must be 4 to 8 digits"),
        ("123456789\n", 0o600, "must be 4 to 8 digits"),
        ("", 0o600, "must be 4 to 8 digits"),
    ],
)
def test_bad_pin_files_are_refused_naming_the_file(tmp_path: Path, text: str, mode: int, problem: str) -> None:
    path = pin_file(tmp_path, text, mode)
    with pytest.raises(PinError) as err:
        read_pin(str(path))
    assert str(err.value).startswith(f"{path}: ") and problem in str(err.value)
    with pytest.raises(PinError, match="cannot read the console PIN file"):
        read_pin(str(tmp_path / "missing"))


def test_pin_lock_doubles_the_pause() -> None:
    now = [0.0]
    lock = PinLock("2468", monotonic=lambda: now[0])
    for _ in range(MAX_TRIES):
        assert not lock.check("0000")
    assert lock.wait_s() == 30
    assert not lock.check("2468")  # refused during the pause, even right
    now[0] += 30
    assert not lock.check("0000")
    assert lock.wait_s() == 60  # the next wrong one doubles the pause
    now[0] += 60
    assert lock.check(" 2468 ") and lock.failures == 0


def test_the_console_refuses_to_start_with_a_readable_pin_file(tmp_path: Path) -> None:
    import subprocess

    cfg = console_config(tmp_path, pin_file(tmp_path, mode=0o644))
    out = subprocess.run([ALLERVERS, "console", "-c", str(cfg)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "console-pin: the console PIN file is readable by everyone" in out.stderr


async def tmux(server: str, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "tmux", "-L", server, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_the_console_command_on_a_real_terminal(tmp_path: Path, run_controller: Any) -> None:
    assert shutil.which("tmux"), "tmux is needed (scripts/test installs it)"
    cfg_path = console_config(tmp_path, None)  # the PIN is covered by the Pilot tests; here, the real terminal
    controller = await run_controller(config_mod.load(cfg_path), clock=day_clock())
    server = f"allervers-test-{os.getpid()}"
    env = f"TERM=xterm-256color LANG=C.UTF-8 {ALLERVERS} console -c {cfg_path}"
    await tmux(server, "new-session", "-d", "-x", "100", "-y", "32", "-s", "console", env)
    try:

        async def screen() -> str:
            return await tmux(server, "capture-pane", "-p", "-t", "console")

        async def shows(text: str) -> bool:
            return text in await screen()

        await wait_until(lambda: shows("Console du conducteur - Bus de test"), timeout=20, message="login screen")
        await tmux(server, "send-keys", "-t", "console", "Marie", "Enter")
        await wait_until(lambda: shows("Sur la route"), timeout=15, message="the road view")
        await wait_until(lambda: shows("Menat, Place de l'église   (prochain)"), message="the day's stops")
        await tmux(server, "send-keys", "-t", "console", "Enter")
        await wait_until(lambda: controller.state.value("checklist", "phase") == "arrival", message="arrival")
        await wait_until(lambda: shows("Arrivée à Menat"), message="the arrival checklist")
        assert controller.state.value("checklist", "stop")["commune"] == "Menat"
    finally:
        await tmux(server, "kill-server")


def english_texts() -> list[str]:
    """Every English text of the console's tables that differs from its French (format fields cut out)."""
    import re

    from firmware_host.console.i18n import ALARMS, DEVICE_NAMES, INVERTER_ALARM_NAMES, TEXTS

    texts = []
    for table in (TEXTS, ALARMS, INVERTER_ALARM_NAMES, DEVICE_NAMES):
        for fr, en in table.values():
            if en == fr:
                continue
            texts += [part.strip() for part in re.split(r"\{[a-z_]+\}", en) if len(part.strip().split()) >= 2]
    return texts


async def test_a_whole_stop_on_a_real_terminal_in_french(tmp_path: Path, run_controller: Any) -> None:
    """Arrival, open, departure and "Prêt à partir" with an overloaded inverter and a silent modem, driven by keys
    on a real terminal: no English reaches any French screen on the way."""
    from .test_console import english_in

    assert shutil.which("tmux"), "tmux is needed (scripts/test installs it)"
    cfg_path = write_config(
        tmp_path,
        **sim_sections(tmp_path),
        vehicle={"name": "Bus de test"},
        checklist={"schedule": str(ROOT / "config" / "tour.toml")},
        console={"language": "fr"},
    )
    controller = await run_controller(config_mod.load(str(cfg_path)), clock=day_clock())
    await asyncio.wait_for(controller.ready.wait(), 10)
    sock = controller.config.api.control_socket
    await call_once(sock, "sim.set", {"inverter.alarms.overload": "alarm", "modem.fault": "silent"})
    english = english_texts()
    server = f"allervers-stop-{os.getpid()}"
    env = f"TERM=xterm-256color LANG=C.UTF-8 {ALLERVERS} console -c {cfg_path}"
    await tmux(server, "new-session", "-d", "-x", "100", "-y", "32", "-s", "console", env)
    seen: list[str] = []

    async def screen() -> str:
        text = await tmux(server, "capture-pane", "-p", "-t", "console")
        seen.append(text)
        return text

    async def shows(text: str) -> bool:
        return text in await screen()

    async def keys(*names: str) -> None:
        await tmux(server, "send-keys", "-t", "console", *names)

    def phase() -> str:
        return controller.state.value("checklist", "phase")

    def pending() -> list[str]:
        return controller.state.value("checklist", "pending_required")

    try:
        await wait_until(lambda: shows("Console du conducteur - Bus de test"), timeout=20, message="login screen")
        await keys("Marie", "Enter")
        await wait_until(lambda: shows("Menat, Place de l'église   (prochain)"), timeout=15, message="the road")
        await wait_until(lambda: "modem.stale" in controller.alarms.active, timeout=20, message="modem silent")
        await wait_until(lambda: shows("Alarme de l'onduleur : surcharge"), message="the overload, in French")
        await keys("Enter")  # the suggested stop has the focus
        await wait_until(lambda: phase() == "arrival", message="arrival")
        await wait_until(lambda: shows("Arrivée à Menat"), message="the arrival checklist")
        await keys("Enter", "Down", "Enter")  # parked, shore cable plugged
        await wait_until(lambda: pending() == ["link_up"], message="two ticks")
        await keys("Down", "Down", "Down", "Down", "Down")
        await wait_until(lambda: shows("capteur muet : confirmez à la main"), message="the silent modem's step")
        await keys("Enter")  # the link, confirmed by hand (the modem is silent)
        await wait_until(lambda: pending() == [], message="arrival done")
        await wait_until(lambda: shows("Tout est prêt."), message="ready")

        await keys("F4")  # the alarms: acknowledge the first, then back
        await wait_until(lambda: shows("Alarmes en cours"), message="alarms screen")
        await wait_until(lambda: shows("Le modem satellite ne répond plus"), message="modem alarm in French")
        await keys("Enter")
        await wait_until(lambda: controller.alarms.active["inverter.overload"].acknowledged, message="acknowledged")
        await keys("Escape")
        await wait_until(lambda: shows("(acquittée)"), message="back, acknowledged mark")

        await keys("Enter")  # "Ouvrir au public" took the focus with the last tick
        await wait_until(lambda: phase() == "open", message="open")
        await wait_until(lambda: shows("Ouvert au public à Menat"), message="open view")
        await keys("Enter")  # "Fermer et préparer le départ"
        await wait_until(lambda: phase() == "departure", message="departure")
        await wait_until(lambda: shows("Départ de Menat"), message="departure checklist")
        await call_once(sock, "sim.set", {"gpio.antenna_stowed": True, "shore.connected": False})
        await wait_until(lambda: set(pending()) == {"equipment_stowed", "inverter_driving"}, message="stowed")
        assert "shore.lost" not in controller.alarms.active
        await keys("Enter")  # equipment stowed (the first step to do has the focus)
        await wait_until(lambda: pending() == ["inverter_driving"], message="equipment ticked")
        await keys("Down", "Down", "Down", "Enter")  # the inverter's step: the console offers its modes
        await wait_until(lambda: shows("Mode de l'onduleur"), message="mode dialog")
        await keys("Enter")
        await wait_until(lambda: pending() == [], timeout=15, message="inverter in driving mode")
        await wait_until(lambda: shows("Tout est prêt."), message="ready to leave")
        await keys("Enter")  # "Prêt à partir"
        await wait_until(lambda: phase() == "on_the_road", message="on the road")
        await wait_until(lambda: shows("Départ validé : bonne route !"), message="departure done")
        await wait_until(lambda: shows("Manzat, Place du marché   (prochain)"), message="next stop")
        assert "shore.lost" not in controller.alarms.active
    finally:
        print(seen[-1] if seen else "")  # the last screen, for a failure
        await tmux(server, "kill-server")
    for text in seen:
        found = english_in(text) + [e for e in english if e in text]
        assert not found, f"English on a French screen: {found}\n{text}"
    assert any("Le modem satellite ne répond plus" in text for text in seen)
