"""The shipped allervers.service under a real systemd (a private PID 1, tests/pid1.py), on the built-in simulators.

What only a running systemd can show: the controller really starts inside its own sandbox (ProtectSystem=strict,
the system call filter, MemoryDenyWriteExecute, DevicePolicy...), ``systemctl start`` returns only once READY=1
came (Type=notify), the STATUS= line is the one-line summary, and a stuck event loop is killed by the watchdog and
restarted. The drop-in changes only what differs on a test machine: the config path, and the user (root without
any capability, as the unit's CapabilityBoundingSet= leaves it: the allervers user does not exist here, and the
venv's interpreter may live under /root, which ProtectHome= hides, so it is bound back read-only).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pid1
from tests.conftest import base_config, sim_sections, to_toml, wait_until_sync

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

why_not = pid1.available()
pytestmark = pytest.mark.skipif(why_not is not None, reason=f"private systemd: {why_not}")


@pytest.fixture
def controller_unit() -> Iterator[pid1.PrivateSystemd]:
    work = Path(tempfile.mkdtemp(prefix="allervers-pid1-", dir="/var/lib"))
    work.chmod(0o755)
    raw = base_config(work, **sim_sections(work))
    # The sockets in the unit's RuntimeDirectory= (the private systemd's own /run). The store stays in the work
    # folder: StateDirectory= would be this machine's real /var/lib/allervers.
    raw["api"] = {"control_socket": "/run/allervers/control.sock", "kiosk_socket": "/run/allervers/kiosk.sock"}
    (work / "bus.toml").write_text(to_toml(raw))
    interpreter_home = Path(os.path.realpath(sys.executable)).parents[1]
    dropin = (
        "[Service]\nUser=root\nGroup=root\nSupplementaryGroups=\nStateDirectory=\n"
        "ExecStartPost=\n"  # the kiosk socket's group (allervers-kiosk) does not exist here
        f"ExecStart=\nExecStart={VENV_BIN / 'allervers'} run -c {work / 'bus.toml'}\n"
        f"ProtectHome=tmpfs\nBindReadOnlyPaths={interpreter_home}\nBindReadOnlyPaths=-{REPO}\n"
        f"ReadWritePaths={work}\n"  # the simulators' pty symlink lives beside the config
        "WatchdogSec=2s\nRestartSec=0.2s\n"
    )
    units = {
        "allervers.service": (REPO / "systemd" / "allervers.service").read_text(),
        "allervers.service.d/test.conf": dropin,
    }
    manager = pid1.PrivateSystemd(work / "systemd", units)
    manager.start()
    try:
        yield manager
    finally:
        manager.stop()
        shutil.rmtree(work, ignore_errors=True)


def show(manager: pid1.PrivateSystemd, *props: str) -> dict[str, str]:
    out = manager.systemctl("show", "allervers.service", *(f"--property={p}" for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_the_controller_starts_in_its_sandbox_and_is_ready_only_with_a_complete_state(
    controller_unit: pid1.PrivateSystemd,
) -> None:
    started = controller_unit.systemctl("start", "allervers.service", check=False)
    assert started.returncode == 0, started.stdout + started.stderr + controller_unit.log()
    # Type=notify: `systemctl start` came back, so READY=1 was sent, and only after the first complete state.
    props = show(controller_unit, "ActiveState", "SubState", "StatusText", "NRestarts", "MainPID")
    assert (props["ActiveState"], props["SubState"]) == ("active", "running"), props
    assert "battery" in props["StatusText"] and "%" in props["StatusText"], props
    sockets = controller_unit.run("ls", "-l", "/run/allervers").stdout
    assert "control.sock" in sockets and "srw-rw----" in sockets, sockets


def test_a_stuck_event_loop_is_killed_by_the_watchdog_and_restarted(controller_unit: pid1.PrivateSystemd) -> None:
    controller_unit.systemctl("start", "allervers.service")
    first = show(controller_unit, "MainPID", "NRestarts")
    assert first["NRestarts"] == "0"
    # Freeze the whole process: no WATCHDOG=1 any more, exactly as a loop stuck in a blocking call.
    main_pid = int(first["MainPID"])
    host_pid = next(
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit() and _ns_pid(int(p)) == main_pid and _in_namespace_of(int(p), controller_unit.pid)
    )
    os.kill(host_pid, signal.SIGSTOP)

    def restarted() -> bool:
        props = show(controller_unit, "NRestarts", "ActiveState", "MainPID")
        return props["NRestarts"] != "0" and props["ActiveState"] == "active" and props["MainPID"] != str(main_pid)

    wait_until_sync(restarted, timeout=30, interval=0.1, message="the watchdog's restart")
    # The new process is ready again (READY=1 after its own first complete state).
    wait_until_sync(lambda: "battery" in show(controller_unit, "StatusText")["StatusText"], message="ready again")


def _ns_pid(pid: int) -> int | None:
    """The pid as the innermost PID namespace sees it (NSpid's last field)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def _in_namespace_of(pid: int, init_pid: int | None) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{init_pid}/ns/pid")
    except OSError:
        return False
