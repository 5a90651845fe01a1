"""systemd as PID 1 of a private PID and mount namespace, holding only the units a test gives it.

CI machines and containers do not run systemd as PID 1, but as root a test can start one of its own: ``unshare``
makes a PID and a mount namespace, a tmpfs hides every unit and generator the machine has (so nothing of the host,
such as tmpfiles' /tmp clean-up, ever starts), and systemd boots into a target of ours. Units then run for real:
socket activation, User=, cgroups, namespaces, TemporaryFileSystem=. Killing that systemd ends the namespace and
every process in it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

TARGET = "allervers-test.target"
# Units that the default dependencies of ordinary services and sockets name: empty stand-ins.
STUB_TARGETS = ("sysinit", "basic", "sockets", "shutdown", "multi-user", "default", "local-fs", "network", "timers")
HIDDEN = ("/usr/lib/systemd/system", "/usr/lib/systemd/system-generators", "/etc/systemd/system", "/run")


def available() -> str | None:
    """Why a private systemd cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (unshare, mounts)"
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} not found (util-linux)"
    if not Path("/lib/systemd/systemd").exists():
        return "/lib/systemd/systemd not found (apt-get install systemd)"
    return None


class PrivateSystemd:
    """``with PrivateSystemd(workdir, {"name.service": text, ...}) as sd: sd.systemctl("start", ...)``."""

    def __init__(self, workdir: Path, units: dict[str, str]):
        self.workdir = workdir
        self.units = units
        self.process: subprocess.Popen | None = None
        self.pid: int | None = None  # systemd's pid, seen from here

    def __enter__(self) -> PrivateSystemd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        units = self.workdir / "units"
        units.mkdir(parents=True)
        (units / TARGET).write_text("[Unit]\nDescription=allervers test target\n")
        for name, text in self.units.items():
            path = units / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        stubs = "".join(f"printf '[Unit]\\n' > /usr/lib/systemd/system/{t}.target\n" for t in STUB_TARGETS)
        boot = self.workdir / "boot.sh"
        boot.write_text(
            "set -e\n"
            + "".join(f"mount -t tmpfs -o mode=0755 tmpfs {path}\n" for path in HIDDEN)
            + "mkdir -p /run/systemd /run/lock\n"
            # As on Debian: /run/lock a tmpfs anyone may write to (the hostile-visitor test plants there).
            + "mount -t tmpfs -o mode=1777,size=5M tmpfs /run/lock\n"
            + stubs
            + f"cp -r {units}/. /etc/systemd/system/\n"
            + "mount -t proc proc /proc\n"
            + f"exec env -i container=allervers-test /lib/systemd/systemd --system --unit={TARGET}"
            + " --log-target=console --log-level=warning\n"
        )
        log = open(self.workdir / "systemd.log", "wb")  # noqa: SIM115 (kept open for the child)
        self.process = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount", "--propagation", "private", "--kill-child=SIGKILL", "bash", boot],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"private systemd exited: {self.log()}")
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            pids = children.read_text().split() if children.exists() else []
            if pids and Path(f"/proc/{pids[0]}/exe").exists():
                with_exe = os.readlink(f"/proc/{pids[0]}/exe")
                if with_exe.endswith("/systemd"):
                    self.pid = int(pids[0])
                    state = self.systemctl("is-system-running", check=False).stdout.strip()
                    if state in ("running", "degraded"):
                        return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"private systemd not running after {timeout:.0f} s: {self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        path = self.workdir / "systemd.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command inside the namespaces (its /run, its systemd)."""
        assert self.pid is not None
        result = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "-p", *argv], capture_output=True, text=True, timeout=30
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: exit {result.returncode}: {result.stdout}{result.stderr}")
        return result

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--no-pager", *args, check=check)

    def units_matching(self, pattern: str) -> list[str]:
        """Loaded units matching ``pattern`` (any state but inactive/dead)."""
        out = self.systemctl("list-units", "--all", "--plain", "--no-legend", pattern, check=False).stdout
        return [line.split()[0] for line in out.splitlines() if line.strip() and " inactive " not in line]

    def stop(self) -> None:
        if self.process is None:
            return
        if self.pid is not None:
            # SIGKILL to the namespace's init ends the namespace: the kernel kills every process in it.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None


def session_units(repo: Path, socket_path: Path, user: str) -> dict[str, str]:
    """The shipped allervers-session.socket and template, with drop-ins for a test machine: the socket's path and
    group (root: the allervers group does not exist here), the session user, and the repository's session host run
    by the system Python (bound back in case the checkout is under /root or /home, which ProtectHome=tmpfs hides)."""
    return {
        "allervers-session.socket": (repo / "systemd" / "allervers-session.socket").read_text(),
        "allervers-session@.service": (repo / "systemd" / "allervers-session@.service").read_text(),
        "allervers-session.socket.d/test.conf": (
            f"[Socket]\nListenStream=\nListenStream={socket_path}\nSocketGroup=root\n"
        ),
        "allervers-session@.service.d/test.conf": (
            f"[Service]\nUser={user}\nGroup={user}\n"
            "ExecStart=\nExecStart=/usr/bin/python3 -m kiosk.sessionhost\n"
            f"Environment=PYTHONPATH={repo}\nBindReadOnlyPaths={repo}\n"
        ),
    }
