"""The `allervers` command as a newcomer types it: finding the running demo from the project folder, alarms."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from firmware_host import config as config_mod
from firmware_host.api import call_once

from ..conftest import free_port, sim_sections, wait_until, write_config

ROOT = Path(__file__).resolve().parents[2]
ALLERVERS = str(Path(sys.executable).parent / "allervers")


async def allervers(*args: str, cwd: Path) -> tuple[int, str, str]:
    """Run the installed `allervers` without blocking this loop (the controller under test lives in it)."""
    env = {k: v for k, v in os.environ.items() if k != "ALLERVERS_CONFIG"}
    proc = await asyncio.create_subprocess_exec(
        ALLERVERS, *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def demo_checkout(tmp_path: Path) -> Path:
    """A copy of the project's layout: the shipped config/simulated.toml (free ports, no kiosk) and its tour."""
    project = tmp_path / "allervers"
    (project / "config").mkdir(parents=True)
    (project / "docs").mkdir()
    text = (ROOT / "config" / "simulated.toml").read_text(encoding="utf-8")
    text = text.split("\n[kiosk]")[0].replace("15020", str(free_port())).replace("15021", str(free_port()))
    (project / "config" / "simulated.toml").write_text(text, encoding="utf-8")
    (project / "config" / "tour.toml").write_text((ROOT / "config" / "tour.toml").read_text(encoding="utf-8"))
    return project


async def test_status_finds_the_running_demo_from_the_project_folder(tmp_path: Path, run_controller: Any) -> None:
    assert not Path(config_mod.DEFAULT_CONFIG_PATH).exists(), "a system config would (rightly) win over the demo"
    project = demo_checkout(tmp_path)
    code, _out, err = await allervers("status", cwd=project)  # the demo not started yet
    assert code == 3 and "for the demo, start ./scripts/demo" in err, err
    controller = await run_controller(config_mod.load(str(project / "config" / "simulated.toml")))
    await asyncio.wait_for(controller.ready.wait(), 15)
    assert (project / ".run" / "control.sock").is_socket()
    code, out, err = await allervers("status", "--json", cwd=project / "docs")  # from any folder of the checkout
    assert code == 0, err
    assert json.loads(out)["controller"]["version"] and "using the running demo's ../config/simulated.toml" in err
    code, out, err = await allervers("sim-set", "gpio.door_open=true", cwd=project)
    assert code == 0 and json.loads(out) == {"gpio.door_open": True}, err
    await wait_until(lambda: controller.state.value("vehicle", "door_open") is True, message="door opened")
    for command in ("status", "report"):  # outside the checkout: nothing found, a hint where to look
        code, _out, err = await allervers(command, cwd=tmp_path)
        assert code != 0 and "give -c config/simulated.toml" in err, (command, err)


async def test_alarms_says_which_are_acknowledged(tmp_path: Path, run_controller: Any) -> None:
    path = write_config(tmp_path, **sim_sections(tmp_path))
    controller = await run_controller(config_mod.load(str(path)))
    await asyncio.wait_for(controller.ready.wait(), 10)
    sock = controller.config.api.control_socket
    await call_once(sock, "sim.set", {"gpio.ignition": True})  # dish raised, cable plugged: two interlocks
    await wait_until(lambda: len(controller.alarms.active) >= 2, message="interlocks")
    await call_once(sock, "alarms.ack", {"id": "interlock.antenna_up"})
    code, out, err = await allervers("alarms", "-c", str(path), cwd=tmp_path)
    assert code == 0, err
    lines = {line.split()[1]: line.split() for line in out.splitlines()[1:]}
    assert out.splitlines()[0].split()[:4] == ["SEVERITY", "ID", "ACK", "SINCE"]
    assert lines["interlock.antenna_up"][2] == "yes" and lines["interlock.shore_connected"][2] == "no"
