"""`./scripts/demo` as a newcomer starts it: from inside tmux, at 80 x 24, then the README's commands as typed.

It runs the real script on a private tmux server (its own socket: no other tmux session is touched), with the
`allervers` link put in a folder of this test (ALLERVERS_LINK) instead of /usr/local/bin. The demo's config has
fixed ports (15020, 15021) and sockets in .run/: a demo already running in this checkout would be stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from .conftest import wait_until_sync

ROOT = Path(__file__).resolve().parents[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_demo_from_inside_tmux_then_the_readme_commands_as_typed(tmp_path: Path) -> None:
    assert shutil.which("tmux"), "tmux is needed (scripts/test installs it)"
    assert (ROOT / ".venv" / "bin" / "allervers").exists(), "the demo reuses this checkout's venv"
    assert port_free(15020) and port_free(15021), "another demo is running on this machine (ports 15020/15021)"
    server = f"allervers-demo-test-{os.getpid()}"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {
        "PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(tmp_path),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "ALLERVERS_LINK": str(bin_dir / "allervers"),
    }

    def tmux(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", server, *args], env=env, capture_output=True, text=True, check=check)

    def screen(target: str) -> str:
        return tmux("capture-pane", "-p", "-t", target, check=False).stdout

    def typed(*args: str) -> subprocess.CompletedProcess:
        """A command typed in the project folder: `allervers` found on the PATH, no -c."""
        return subprocess.run(list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    tmux("new-session", "-d", "-s", "outer", "-x", "80", "-y", "24", "bash --norc")
    try:
        tmux("send-keys", "-t", "outer", f"cd {ROOT} && ./scripts/demo", "Enter")
        wait_until_sync(
            lambda: tmux("has-session", "-t", "allervers", check=False).returncode == 0, 60, message="demo session"
        )
        # The script opens its windows one after the other: wait for the last, then check the set.
        wait_until_sync(
            lambda: (
                tmux("list-windows", "-t", "allervers", "-F", "#{window_name}").stdout.split()
                == ["controller", "console", "kiosk"]
            ),
            60,
            message="the demo's three windows",
        )
        assert "nested" not in screen("outer")
        wait_until_sync(
            lambda: "Ctrl-C here stops the whole demo" in screen("allervers:controller"), 30, message="view"
        )
        view = screen("allervers:controller")
        lines = view.rstrip("\n").split("\n")
        assert len(lines) <= 24 and all(len(line) <= 80 for line in lines), view
        for row in ("alarms", "power", "shore", "modem", "vehicle", "checklist", "try: allervers status"):
            assert row in view, (row, view)
        assert os.readlink(bin_dir / "allervers") == str(ROOT / ".venv" / "bin" / "allervers")

        wait_until_sync(lambda: typed("allervers", "status", "--json").returncode == 0, 30, message="status")
        snap = json.loads(typed("allervers", "status", "--json").stdout)
        assert snap["controller"]["version"]
        assert typed("allervers", "sim-set", "gpio.ignition=true").returncode == 0
        wait_until_sync(lambda: "interlock.antenna_up" in typed("allervers", "alarms").stdout, message="interlock")
        assert typed("allervers", "alarms", "--ack").returncode == 0
        assert " yes " in typed("allervers", "alarms").stdout
        assert typed("allervers", "sim-set", "gpio.ignition=false").returncode == 0
        wait_until_sync(lambda: "Console du conducteur" in screen("allervers:console"), 30, message="console")

        tmux("send-keys", "-t", "allervers:controller", "C-c")  # Ctrl-C stops the whole demo, not one window
        wait_until_sync(
            lambda: tmux("has-session", "-t", "allervers", check=False).returncode != 0, 30, message="demo gone"
        )
        assert tmux("has-session", "-t", "outer", check=False).returncode == 0  # the outer session stays
        wait_until_sync(lambda: not (ROOT / ".run" / "control.sock").exists(), 10, message="sockets removed")
    finally:
        tmux("kill-server", check=False)
    assert sys.executable  # the interpreter running this test is the venv the demo reused
