"""A hostile visitor, in both launch modes: its "browser" (planting_browser.py) plants a secret in every channel the
session user can write to, the session ends, and the next session's browser (the same user, the same mode) tries to
read each one. Nothing may be readable, and the wipe in between must have said ok only because it was true."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from firmware_host.api import ClientError, call_once
from kiosk.wipe import SessionUser, Wiper, hand_over_home, make_home, user_processes
from tests import pid1
from tests.conftest import wait_until

from .conftest import TEST_USER, open_on_chromium, visitor_traces
from .cups import CupsServer
from .test_e2e_chromium import HEADLESS, Site, site  # noqa: F401 (a fixture)
from .test_session_unit import open_controller, session_units, systemd, write_config  # noqa: F401 (fixture)
from .test_wipe import as_visitor

PLANTING = str(Path(__file__).with_name("planting_browser.py"))
# What a session user can always do; each must have been planted for "nothing found" to mean anything.
PLANTED_IN_BOTH = {
    "files /tmp",
    "files /var/tmp",
    "files /dev/shm",
    "files /run/lock",
    "files /var/lock",
    "deep folder in /tmp",
    "deep folder in Downloads",
    "big file in /var/tmp",
    "System V IPC",
    "POSIX message queue",
    "keyrings",
    "escaped process",
    "held print job on bus as someone-else",
    "held print job on slow as someone-else",
}


async def plant_end_and_look(cfg: Any, controller: Any, cups: str) -> tuple[dict, dict, dict]:
    """(what was planted, the wipe between the sessions, what the next session found)."""
    token = f"akt-secret-{secrets.token_hex(8)}"
    await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"}, timeout=30)
    browser = controller.kiosk.session.browser
    planted = await browser.cdp.send("Test.plant", {"token": token, "cups": cups}, timeout=120)
    ended = await call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=60)

    await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"}, timeout=30)
    browser = controller.kiosk.session.browser
    look = {"token": token, "cups": cups, "jobs": planted["jobs"]}
    found = await browser.cdp.send("Test.look", look, timeout=60)
    again = await call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=60)
    assert again["wipe"]["ok"] is True, controller.kiosk.wipe_problems
    return planted, ended["wipe"], found["found"]


async def test_direct_mode_a_hostile_visitor_leaves_nothing_the_next_one_can_read(
    run_controller: Any, kiosk_config: Any, cupsd: CupsServer, visitor: Any
) -> None:
    cfg = kiosk_config(
        browser_command=[PLANTING, "--user-data-dir={profile_dir}", "--url={url}"],
        printer="bus",
        cups_server=cupsd.server,
    )
    controller = await run_controller(cfg)
    await wait_until(lambda: controller.kiosk.phase == "idle")
    await call_once(cfg.api.control_socket, "kiosk.open", {})

    planted, wipe, found = await plant_end_and_look(cfg, controller, cupsd.server)
    # Outside a unit the visitor's user can use cron and at (the installer denies them on the bus: see doctor).
    assert PLANTED_IN_BOTH | {"cron", "at"} <= set(planted["planted"]), planted["refused"]
    assert "files /run" in planted["refused"]  # root's, 0755
    assert wipe["ok"] is True, controller.kiosk.wipe_problems
    assert found == {}
    assert user_processes(uid=visitor.pw_uid) == [] and visitor_traces(visitor.pw_uid) == []


async def test_unit_mode_a_hostile_visitor_leaves_nothing_the_next_one_can_read(
    run_controller: Any,
    tmp_path: Path,
    visitor: Any,
    cupsd: CupsServer,
    systemd: tuple[pid1.PrivateSystemd, Path],  # noqa: F811 (the fixture imported above)
) -> None:
    manager, work = systemd
    path = write_config(
        tmp_path,
        work,
        browser_command=[PLANTING, "--user-data-dir={profile_dir}", "--url={url}"],
        printer="bus",
        cups_server=cupsd.server,
    )
    cfg, controller = await open_controller(run_controller, path)

    planted, wipe, found = await plant_end_and_look(cfg, controller, cupsd.server)
    assert set(planted["planted"]) >= PLANTED_IN_BOTH, planted["refused"]
    # The unit's NoNewPrivileges= keeps crontab and at from their set-group/user-id: refused at the source.
    assert {"cron", "at", "files /run"} <= set(planted["refused"]), planted["planted"]
    assert wipe["ok"] is True, controller.kiosk.wipe_problems
    assert found == {}
    await wait_until(lambda: session_units(manager) == [], message="the session units gone")
    assert user_processes(uid=visitor.pw_uid) == []


async def test_what_the_sweep_cannot_remove_makes_the_wipe_say_so(visitor: Any, sessions_root: Path) -> None:
    """A visitor's folder the wipe cannot remove (a mount point: rmdir answers EBUSY): ok is false, naming it."""
    user = SessionUser.lookup(TEST_USER)
    stuck = Path("/tmp") / f"akt-stuck-{os.getpid()}"
    as_visitor(visitor, "mkdir", str(stuck))
    owner = f"size=1M,mode=0700,uid={visitor.pw_uid},gid={visitor.pw_gid}"  # the visitor's, as the folder was
    subprocess.run(["mount", "-t", "tmpfs", "-o", owner, "akt-stuck", str(stuck)], check=True)
    try:
        as_visitor(visitor, "sh", "-c", f"echo secret > {stuck}/inside")
        result = await Wiper(user, str(sessions_root / "sessions")).wipe()
        assert result.ok is False
        assert any(f"left in /tmp ('{stuck}')" in p for p in result.problems), result.problems
    finally:
        subprocess.run(["umount", str(stuck)], check=True)
    result = await Wiper(user, str(sessions_root / "sessions")).wipe()
    assert result.ok is True, result.problems
    assert not stuck.exists()


async def refused_while_a_visitor_runs(cfg: Any, controller: Any, visitor: Any, *, the_wipe_kills: bool) -> None:
    """A visitor process running before a session: refused, the terminal closed with the alarm naming it."""
    lingering = as_visitor(visitor, "sleep", "600", background=True)
    try:
        with pytest.raises(ClientError, match=rf"wipe_failed: 1 process\(es\) of {TEST_USER} running before"):
            await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
        assert controller.kiosk.status()["closed_reason"] == "wipe_failed"
        alarm = {a["id"]: a for a in controller.alarms.as_list()}["kiosk.wipe_failed"]
        assert f"process(es) of {TEST_USER} running before a session (pid {lingering.pid})" in alarm["message"]
        if not the_wipe_kills:
            # Unit mode: the controller holds no privilege to kill it; once someone has, opening verifies again.
            lingering.kill()
        # The driver opening again runs the wipe (which in direct mode ends the process) and verifies.
        await call_once(cfg.api.control_socket, "kiosk.open", {}, timeout=30)
        lingering.wait(5)
        assert controller.kiosk.status()["available"] is True
    finally:
        if lingering.poll() is None:
            lingering.kill()
            lingering.wait()


async def test_direct_mode_no_session_while_a_visitor_process_runs(
    run_controller: Any, kiosk_config: Any, visitor: Any
) -> None:
    cfg = kiosk_config()
    controller = await run_controller(cfg)
    await wait_until(lambda: controller.kiosk.phase == "idle")
    await call_once(cfg.api.control_socket, "kiosk.open", {})
    await refused_while_a_visitor_runs(cfg, controller, visitor, the_wipe_kills=True)


async def test_unit_mode_no_session_while_a_visitor_process_runs(
    run_controller: Any,
    tmp_path: Path,
    visitor: Any,
    systemd: tuple[pid1.PrivateSystemd, Path],  # noqa: F811 (the fixture imported above)
) -> None:
    _manager, work = systemd
    cfg, controller = await open_controller(run_controller, write_config(tmp_path, work))
    await refused_while_a_visitor_runs(cfg, controller, visitor, the_wipe_kills=False)


HOSTILE_PAGE = """<!doctype html><html><head><title>Page</title></head><body><script>
const report = (data) => fetch("/report?" + new URLSearchParams({data: JSON.stringify(data)}));
const tick = (ms) => new Promise((r) => setTimeout(r, ms));
async function bar() {
  for (let i = 0; i < 100; i++) {
    const b = document.getElementById("allervers-bar");
    if (b && b.dataset.state && b.dataset.state !== "inactive") return b;
    await tick(50);
  }
  return null;
}
(async () => {
  const first = await bar();
  if (!first) return report({error: "no bar"});
  // Fake input, to keep the session alive for ever.
  for (const type of ["keydown", "pointerdown", "wheel", "touchstart"]) window.dispatchEvent(new Event(type));
  document.body.dispatchEvent(new KeyboardEvent("keydown", {key: "a", bubbles: true}));
  const sent = first.dataset.sent;
  // Away with the bar: removed, then hidden by an inline style and by a style sheet.
  first.remove();
  const back = await bar();
  if (!back) return report({sent, back: false});
  back.style.display = "none";
  back.hidden = true;
  const sheet = document.createElement("style");
  sheet.textContent = "#allervers-bar { display: none !important; visibility: hidden !important; }";
  document.head.appendChild(sheet);
  await tick(0);
  report({sent, back: back === first && back.isConnected, display: getComputedStyle(back).display,
          visibility: getComputedStyle(back).visibility});
})();
</script></body></html>
"""


async def test_a_pages_script_can_neither_fake_activity_nor_remove_the_bar(
    run_controller: Any,
    kiosk_config: Any,
    site: Site,  # noqa: F811 (the fixture imported above)
    system_policy_dir: str,
    visitor: Any,
) -> None:
    site.page = HOSTILE_PAGE
    cfg, controller = await open_on_chromium(run_controller, kiosk_config, site.url, HEADLESS, system_policy_dir)
    await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"}, timeout=60)
    started = controller.kiosk.session.last_activity_mono
    await wait_until(lambda: site.reports, timeout=30, message="the page's report")
    assert site.reports[-1] == {"sent": "0", "back": True, "display": "block", "visibility": "visible"}
    assert controller.kiosk.session.last_activity_mono == started  # nothing reached the idle timer either
    ended = await call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=60)
    assert ended["wipe"]["ok"] is True


def test_handing_the_home_over_never_follows_a_link(visitor: Any, sessions_root: Path, tmp_path: Path) -> None:
    """Root changes owners by descriptor, never through a symbolic link: a link in the home (as a visitor's job
    racing the controller would plant) is given to the visitor itself, its target stays root's."""
    user = SessionUser.lookup(TEST_USER)
    target = tmp_path / "roots-file"
    target.write_text("root's")
    home = make_home(str(sessions_root / "sessions"), "0123456789abcdef", user, hand_over=False)
    assert home.stat().st_uid == 0 and (home / "profile").stat().st_uid == 0  # nobody else can enter it yet
    (home / "profile" / "NativeMessagingHosts").symlink_to(target)
    hand_over_home(home, user)
    assert target.stat().st_uid == 0
    assert (home / "profile" / "NativeMessagingHosts").lstat().st_uid == visitor.pw_uid
    assert home.stat().st_uid == visitor.pw_uid and (home / "Downloads").stat().st_uid == visitor.pw_uid
