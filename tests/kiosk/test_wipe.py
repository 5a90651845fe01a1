"""The wipe on its own, with real processes and files of the session user: what goes, what stays, what is checked."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

from kiosk.wipe import SessionUser, Wiper, keys_problem, make_home, owned_entries, user_processes

from .conftest import TEST_USER, visitor_traces


def as_visitor(visitor: Any, *argv: str, background: bool = False) -> Any:
    kwargs: dict[str, Any] = {
        "user": visitor.pw_uid,
        "group": visitor.pw_gid,
        "extra_groups": [],
        "env": {"PATH": "/usr/bin:/bin"},
        "cwd": "/",
    }
    if background:
        return subprocess.Popen(list(argv), start_new_session=True, **kwargs)
    return subprocess.run(list(argv), check=True, **kwargs)


async def test_everything_of_the_user_goes_and_nothing_else(visitor: Any, sessions_root: Path, tmp_path: Path) -> None:
    user = SessionUser.lookup(TEST_USER)
    sessions = str(sessions_root / "sessions")
    home = make_home(sessions, "0123456789abcdef", user)
    (home / "Documents" / "avis.pdf").write_text("impôts")
    # The visitor's traces outside the home: a file, a folder, a symlink pointing at a system file.
    as_visitor(
        visitor,
        "sh",
        "-c",
        "echo x > /tmp/akt-visitor-file; mkdir -p /var/tmp/akt-dir/sub; echo y > /var/tmp/akt-dir/sub/f",
    )
    as_visitor(visitor, "ln", "-s", "/etc/hostname", "/dev/shm/akt-link-to-etc")
    # Someone else's file in /tmp, and a root file inside a world-writable folder holding a visitor file.
    other = tmp_path / "not-the-visitors"
    other.write_text("keep")
    shared = Path("/tmp/akt-shared")
    shared.mkdir(exist_ok=True)
    shared.chmod(0o1777)
    (shared / "root-file").write_text("keep")
    as_visitor(visitor, "sh", "-c", "echo z > /tmp/akt-shared/visitor-file")
    sleeper = as_visitor(visitor, "sleep", "600", background=True)
    assert user_processes(uid=visitor.pw_uid)

    result = await Wiper(user, sessions).wipe()
    sleeper.wait(5)
    assert result.ok, result.problems
    assert result.processes_killed >= 1 and result.files_removed >= 9
    assert user_processes(uid=visitor.pw_uid) == [] and visitor_traces(visitor.pw_uid) == []
    assert not home.exists() and os.listdir(sessions) == []
    assert Path("/etc/hostname").exists()  # the link went, not what it pointed at
    assert other.read_text() == "keep" and (shared / "root-file").read_text() == "keep"
    assert not (shared / "visitor-file").exists()
    (shared / "root-file").unlink()
    shared.rmdir()


async def test_verification_reports_what_is_left(visitor: Any, sessions_root: Path) -> None:
    user = SessionUser.lookup(TEST_USER)
    sessions = str(sessions_root / "sessions")
    wiper = Wiper(user, sessions, shared_dirs=("/tmp",))
    left = "/var/tmp/akt-outside-the-swept-folders"
    as_visitor(visitor, "sh", "-c", f"echo x > {left}")
    try:
        problems = wiper._verify([])
        assert problems == []  # /var/tmp is not swept by this wiper, so not verified either
        wiper.shared_dirs = ("/tmp", "/var/tmp")
        problems = wiper._verify([])
        assert problems == [f"1 file(s) of {TEST_USER} left in /var/tmp ({left!r})"]
    finally:
        os.unlink(left)


async def test_own_user_mode_kills_only_the_browsers_session(sessions_root: Path) -> None:
    """Developing as oneself: "every process of the user" would include the controller, so only the browser's
    process session goes, and only the sessions folder is cleared."""
    me = SessionUser("me", os.geteuid(), os.getegid())
    sessions = str(sessions_root / "sessions")
    home = make_home(sessions, "fedcba9876543210", me)
    browser = subprocess.Popen(["sh", "-c", "sleep 600 & sleep 600"], start_new_session=True)
    bystander = subprocess.Popen(["sleep", "600"])
    try:
        await asyncio.sleep(0.05)
        assert len(user_processes(sid=browser.pid)) >= 2
        result = await Wiper(me, sessions).wipe(session_ids=[browser.pid])
        browser.wait(5)
        assert result.ok, result.problems
        assert user_processes(sid=browser.pid) == [] and not home.exists()
        assert bystander.poll() is None  # not ours to kill
    finally:
        bystander.kill()
        bystander.wait()


def test_owned_entries_do_not_descend_into_the_users_folders(visitor: Any) -> None:
    as_visitor(visitor, "sh", "-c", "mkdir -p /tmp/akt-tree/a/b && touch /tmp/akt-tree/a/b/c")
    try:
        assert [p for p in owned_entries("/tmp", visitor.pw_uid) if "akt-tree" in p] == ["/tmp/akt-tree"]
    finally:
        subprocess.run(["rm", "-rf", "/tmp/akt-tree"], check=True)


def test_keys_left_in_a_keyring_fail_the_verification_naming_them() -> None:
    user = SessionUser("visitor", 990, 990)
    assert keys_problem(user, None) is None  # no session host ran: the next one empties them first
    assert keys_problem(user, {"keys": {"@u": 0, "@us": 0, "persistent": 0}}) is None
    problem = keys_problem(user, {"keys": {"@u": 2, "@us": 0, "persistent": 1}})
    assert problem == "keys of visitor left in its keyrings: 2 in @u, 1 in persistent"
    assert keys_problem(user, {"error": "keyctl not found"}) == "keyrings of visitor not emptied: keyctl not found"
