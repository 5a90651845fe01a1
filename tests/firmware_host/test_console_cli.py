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
from firmware_host.console.settings import MAX_TRIES, PinError, PinLock, read_pin

from ..conftest import wait_until, write_config
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
