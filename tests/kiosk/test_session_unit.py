"""Sessions as systemd units (``launch = "unit"``), under a real systemd: the shipped allervers-session.socket and
allervers-session@.service, booted in a private PID 1 (tests/pid1.py) with only paths and users adjusted.

The controller here holds no part of the clean-up: in unit mode its wipe neither kills nor removes anything, it only
verifies. So every "nothing left" below is the unit's doing: the host's kill, the cgroup, the tmpfs mounts.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_host import config as config_mod
from firmware_host.api import ClientError, call_once
from kiosk.wipe import user_processes
from tests import pid1
from tests.conftest import base_config, wait_until

from .conftest import FAKE_BROWSER, TEST_USER, to_toml, visitor_traces
from .test_crash import ControllerProcess, _phase_is, restart_and_watch
from .test_e2e_chromium import HEADLESS, site  # noqa: F401 (a fixture)
from .test_session import events_of, start_open

REPO = Path(__file__).resolve().parents[2]
SESSIONS_DIR = "/srv/allervers/sessions"  # the unit's own tmpfs (TemporaryFileSystem=)

why_not = pid1.available()
pytestmark = pytest.mark.skipif(why_not is not None, reason=f"private systemd: {why_not}")


@pytest.fixture(scope="module")
def systemd(visitor: Any) -> Iterator[tuple[pid1.PrivateSystemd, Path]]:
    """The shipped session units in a private systemd. The drop-ins change only what differs on a test machine:
    the socket's path and group, the user, and the host program (the repository's, run by the system Python)."""
    # Not under /tmp, /var/tmp or /dev/shm: the session unit hides those behind its own tmpfs.
    work = Path(tempfile.mkdtemp(prefix="allervers-pid1-", dir="/var/lib"))
    work.chmod(0o755)
    units = pid1.session_units(REPO, work / "session.sock", TEST_USER)
    manager = pid1.PrivateSystemd(work / "systemd", units)
    manager.start()
    try:
        manager.systemctl("start", "allervers-session.socket")
        yield manager, work
    finally:
        manager.stop()
        shutil.rmtree(work, ignore_errors=True)


def unit_kiosk(work: Path, tmp_path: Path, *browser_args: str) -> dict[str, Any]:
    return {
        "launch": "unit",
        "launch_socket": str(work / "session.sock"),
        "sessions_dir": SESSIONS_DIR,
        "session_user": TEST_USER,
        "browser_command": [FAKE_BROWSER, "--user-data-dir={profile_dir}", "--url={url}", *browser_args],
        "policy_dir": str(tmp_path / "policies"),
        "session_bar": False,
        "print_wait_s": 0.0,
        "services": [{"id": "caf", "label": "CAF", "url": "https://www.caf.fr/", "allow": ["caf.fr"]}],
    }


def api_outside_tmp(work: Path, tmp_path: Path) -> dict[str, str]:
    """The controller's sockets where the session unit can reach them (the session bar's socket goes beside them):
    not under pytest's /tmp, which the unit replaces with its own."""
    where = work / tmp_path.name[-40:]
    where.mkdir(exist_ok=True)
    where.chmod(0o751)
    return {"control_socket": str(where / "control.sock"), "kiosk_socket": str(where / "kiosk.sock")}


def write_config(tmp_path: Path, work: Path, *browser_args: str, **kiosk: Any) -> Path:
    """A bus config with sessions as units; ``kiosk`` overrides keys of the section."""
    section = unit_kiosk(work, tmp_path, *browser_args) | kiosk
    raw = base_config(tmp_path, kiosk=section, api=api_outside_tmp(work, tmp_path))
    path = tmp_path / "bus.toml"
    path.write_text(to_toml(raw))
    return path


async def open_controller(run_controller: Any, config_path: Path) -> tuple[Any, Any]:
    """(config, controller): started, its start-up wipe done, the terminal open."""
    cfg = config_mod.load(config_path)
    return cfg, await start_open(run_controller, cfg)


def session_units(manager: pid1.PrivateSystemd) -> list[str]:
    return manager.units_matching("allervers-session@*")


async def test_a_unit_session_runs_sandboxed_as_the_visitor_and_the_unit_takes_everything_with_it(
    run_controller: Any, tmp_path: Path, visitor: Any, systemd: tuple[pid1.PrivateSystemd, Path]
) -> None:
    manager, work = systemd
    cfg, controller = await open_controller(run_controller, write_config(tmp_path, work, "--escape"))
    reply = await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    assert reply["home"] == f"{SESSIONS_DIR}/{reply['session']}"
    assert session_units(manager) and len(session_units(manager)) == 1
    # The browser, its renderer and the process that left its session: all the visitor's, all in the unit.
    await wait_until(lambda: len(user_processes(uid=visitor.pw_uid)) >= 4, message="host, browser and children")
    commands = {
        subprocess.run(["ps", "-o", "args=", "-p", str(p)], capture_output=True, text=True).stdout.strip()
        for p in user_processes(uid=visitor.pw_uid)
    }
    assert any("kiosk.sessionhost" in c for c in commands) and "sleep 601" in commands, commands
    # What the browser wrote to /tmp, /var/tmp, /dev/shm and its home is in the unit's tmpfs, not on this machine.
    assert visitor_traces(visitor.pw_uid) == []
    assert not Path(reply["home"]).exists()
    assert controller.state.get("kiosk")["session_active"] is True

    ended = await call_once(cfg.api.kiosk_socket, "session.end", {})
    assert ended["wipe"]["ok"] is True, controller.kiosk.wipe_problems
    assert ended["wipe"]["files_removed"] == 0  # the controller removed nothing: nothing was left to remove
    assert user_processes(uid=visitor.pw_uid) == []
    await wait_until(lambda: session_units(manager) == [], message="the session unit gone")
    assert controller.kiosk.status()["available"] is True
    types = [e["type"] for e in await events_of(controller)]
    assert types[-3:] == ["kiosk.session_started", "kiosk.wipe", "kiosk.session_ended"]

    # The next visitor gets a new unit, a new home, nothing of the first.
    again = await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    assert again["session"] != reply["session"] and len(session_units(manager)) == 1
    ended = await call_once(cfg.api.kiosk_socket, "session.end", {})
    assert ended["wipe"]["ok"] is True


async def test_a_browser_that_dies_in_its_unit_ends_and_verifies_the_session(
    run_controller: Any, tmp_path: Path, visitor: Any, systemd: tuple[pid1.PrivateSystemd, Path]
) -> None:
    manager, work = systemd
    cfg, controller = await open_controller(run_controller, write_config(tmp_path, work, "--exit-after=0.5"))
    await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    await wait_until(lambda: controller.kiosk.last_end is not None, timeout=20, message="the session's end")
    assert controller.kiosk.last_end["reason"] == "browser_exited" and controller.kiosk.last_end["ok"] is True
    assert user_processes(uid=visitor.pw_uid) == []
    await wait_until(lambda: session_units(manager) == [], message="the session unit gone")


async def test_a_browser_that_cannot_start_in_its_unit_is_named_and_leaves_the_terminal_usable(
    run_controller: Any, tmp_path: Path, visitor: Any, systemd: tuple[pid1.PrivateSystemd, Path]
) -> None:
    manager, work = systemd
    cfg, controller = await open_controller(run_controller, write_config(tmp_path, work, "--no-answer-exit"))
    with pytest.raises(ClientError, match=r"the browser could not start: .*did not start"):
        await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    assert controller.kiosk.status()["available"] is True
    await wait_until(lambda: session_units(manager) == [], message="the session unit gone")


async def test_without_the_session_socket_the_start_fails_naming_the_setting(
    run_controller: Any, tmp_path: Path, visitor: Any, systemd: tuple[pid1.PrivateSystemd, Path]
) -> None:
    _manager, work = systemd
    path = write_config(tmp_path, work, launch_socket=str(work / "absent.sock"))
    cfg, controller = await open_controller(run_controller, path)
    with pytest.raises(ClientError, match=r"kiosk.launch_socket .*absent.sock: cannot start a session unit"):
        await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    assert controller.kiosk.status()["available"] is True


async def test_kill_9_of_the_controller_ends_the_unit_session_by_itself(
    tmp_path: Path, visitor: Any, systemd: tuple[pid1.PrivateSystemd, Path]
) -> None:
    manager, work = systemd
    path = write_config(tmp_path, work, "--escape")
    cfg = config_mod.load(path)
    process = ControllerProcess(path, tmp_path / "controller.log")
    process.start()
    try:
        await wait_until(lambda: _phase_is(cfg, "idle"), timeout=20, message="the controller, wiped and ready")
        await call_once(cfg.api.control_socket, "kiosk.open", {})
        await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
        await wait_until(lambda: len(user_processes(uid=visitor.pw_uid)) >= 4, message="the session running")
        process.kill9()
        # Nobody wipes: the host sees its connection close, kills everything, and systemd stops the unit.
        await wait_until(lambda: user_processes(uid=visitor.pw_uid) == [], message="every visitor process gone")
        await wait_until(lambda: session_units(manager) == [], message="the session unit gone")
        # The restarted controller finds the interrupted session, verifies, and opens again.
        samples = await restart_and_watch(process, cfg)
        assert all(not s["available"] or s["last_wipe"]["ok"] for s in samples)
        assert samples[-1]["last_wipe"]["ok"] is True
    finally:
        process.stop()


async def test_chromium_runs_in_the_unit_sandbox_and_the_next_session_finds_nothing(
    run_controller: Any,
    tmp_path: Path,
    visitor: Any,
    site: Any,  # noqa: F811 (the fixture imported above)
    system_policy_dir: str,
    systemd: tuple[pid1.PrivateSystemd, Path],
) -> None:
    """Debian's Chromium under the unit's hardening (system call filter, namespaces, private IPC and tmpfs): it
    starts, runs the page, shows the session bar (its bridge reaches the controller's socket from inside
    the sandbox); after the end the next session sees no cookie, storage or database of the first."""
    manager, work = systemd
    path = write_config(
        tmp_path,
        work,
        browser_command=HEADLESS,
        policy_dir=system_policy_dir,
        session_bar=True,
        services=[{"id": "caf", "label": "CAF", "url": site.url, "allow": ["127.0.0.1"]}],
    )
    cfg, controller = await open_controller(run_controller, path)

    first = await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"}, timeout=60)
    await wait_until(lambda: site.reports, timeout=30, message="the page's report")
    report = site.reports[-1]
    assert report["before"] == {"cookie": "", "local": None, "idb": None}
    assert report["bar"] and report["bar"]["state"] == "session", report
    assert report["lang"] == "fr-FR"  # the browser speaks French: the host passes the session's LANGUAGE on
    browser = controller.kiosk.session.browser
    assert site.url in await browser.page_urls()  # the DevTools pipe handed over by the host works
    assert visitor_traces(visitor.pw_uid) == []  # Chromium's /dev/shm and /tmp files are the unit's own

    ended = await call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=60)
    assert ended["wipe"]["ok"] is True, controller.kiosk.wipe_problems
    assert user_processes(uid=visitor.pw_uid) == []
    await wait_until(lambda: session_units(manager) == [], message="the session unit gone")

    site.reports.clear()
    second = await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf", "lang": "en"}, timeout=60)
    assert second["session"] != first["session"]
    await wait_until(lambda: site.reports, timeout=30, message="the second session's report")
    assert site.reports[-1]["before"] == {"cookie": "", "local": None, "idb": None}
    assert site.reports[-1]["lang"].startswith("en")  # this visitor chose English on the welcome screen
    ended = await call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=60)
    assert ended["wipe"]["ok"] is True
