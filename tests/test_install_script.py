"""scripts/install-pi.sh and uninstall-pi.sh run for real against a temporary root that looks like a fresh Pi."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_host import doctor
from firmware_host.doctor import OK

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "scripts" / "install-pi.sh"
UNINSTALL = REPO / "scripts" / "uninstall-pi.sh"
UNITS = [
    "allervers.service",
    "allervers-kiosk.service",
    "allervers-console@.service",
    "srv-allervers-sessions.mount",
    "allervers-session.socket",
    "allervers-session@.service",
]
USERS = {
    "allervers": {"dialout", "gpio"},
    "allervers-kiosk": {"video", "render", "input", "allervers-display"},
    "allervers-visitor": {"allervers-display", "scanner"},
    "allervers-console": {"allervers"},
}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="useradd --root and chown need root (CI runs as root)")


@pytest.fixture
def fresh_pi(tmp_path: Path) -> Iterator[Path]:
    """The bits of a fresh Raspberry Pi OS the script reads: passwd/group/shadow (with pi) and nologin.

    Removed afterwards: its files belong to the tree's own system users, whose uids can be this machine's (the
    kiosk tests' session user), and a kiosk wipe must not find them in /tmp."""
    root = tmp_path / "pi"
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\ndialout:x:20:pi\nvideo:x:44:pi\npi:x:1000:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\npi:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\ndialout:*::pi\nvideo:*::pi\npi:!::\n")
    for name in ("shadow", "gshadow"):
        (etc / name).chmod(0o640)
    (root / "usr" / "sbin").mkdir(parents=True)
    shutil.copy("/usr/sbin/nologin", root / "usr" / "sbin" / "nologin")
    yield root
    shutil.rmtree(tmp_path, ignore_errors=True)


def run(script: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["bash", str(script), "--root", str(root), *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, mode, owner and content: what 'changed nothing' means."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if path.is_symlink():
                content = "-> " + os.readlink(path)
            elif path.is_file():
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                content = "dir"
            out[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, content)
    return out


def passwd(root: Path) -> dict[str, list[str]]:
    return {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}


def groups(root: Path) -> dict[str, list[str]]:
    return {line.split(":")[0]: line.split(":") for line in (root / "etc/group").read_text().splitlines()}


def actions(output: str, verb: str) -> list[str]:
    return [line.strip()[len(verb) :].strip() for line in output.splitlines() if line.strip().startswith(verb + " ")]


def test_scripts_are_shellcheck_clean() -> None:
    scripts = [INSTALL, UNINSTALL, REPO / "scripts" / "pi-common.sh"]
    result = subprocess.run(["shellcheck", "-x", *map(str, scripts)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout


def test_dry_run_prints_every_action_and_changes_nothing(fresh_pi: Path) -> None:
    before = snapshot(fresh_pi)
    out = run(INSTALL, fresh_pi, "--dry-run").stdout
    assert snapshot(fresh_pi) == before
    would = actions(out, "would")
    assert not actions(out, "doing")
    for user, user_groups in USERS.items():
        assert any(a.startswith(f"create system user {user} ") for a in would), (user, would)
        for group in user_groups:
            assert group in next(a for a in would if a.startswith(f"create system user {user} "))
    for path in ("/opt/allervers", "/etc/allervers", "/var/lib/allervers", "/srv/allervers/sessions"):
        assert any(a.startswith(f"create {path} (") for a in would), path
    for unit in UNITS:
        assert f"install /etc/systemd/system/{unit}" in would
    for unit in ("allervers.service", "allervers-kiosk.service", "allervers-console@tty2.service"):
        assert f"enable {unit}" in would
    assert "enable allervers-session.socket" in would
    assert "install /etc/systemd/journald.conf.d/allervers.conf" in would
    assert any(a.startswith("install /etc/udev/rules.d/78-allervers.rules") for a in would)
    assert any(a.startswith("create /etc/allervers/allervers.toml") for a in would)
    assert "create the venv /opt/allervers/venv" in would
    assert "link /usr/local/bin/allervers -> /opt/allervers/venv/bin/allervers" in would
    assert any(a.startswith("pip install ") for a in would)
    assert out.rstrip().endswith(f"{len(would)} action(s) would be taken (dry run: nothing changed)")


def test_install_for_real_then_a_second_run_changes_nothing(fresh_pi: Path) -> None:
    first = run(INSTALL, fresh_pi, "--skip", "venv").stdout
    assert len(actions(first, "doing")) > 20

    users, grp = passwd(fresh_pi), groups(fresh_pi)
    for user, user_groups in USERS.items():
        assert users[user][6] == "/usr/sbin/nologin"
        assert int(users[user][2]) < 1000  # system users
        for group in user_groups:
            assert user in grp[group][3].split(","), (user, group)
    assert users["allervers-visitor"][5] == "/srv/allervers/sessions"  # the visitor's home is the tmpfs
    assert "allervers-kiosk" not in grp["allervers"][3]  # the public screen never reaches the control socket

    def owner(path: str) -> tuple[str, str, str]:
        st = (fresh_pi / path.lstrip("/")).stat()
        by_uid = {int(v[2]): k for k, v in users.items()}
        by_gid = {int(v[2]): k for k, v in grp.items()}
        return oct(st.st_mode & 0o7777), by_uid[st.st_uid], by_gid[st.st_gid]

    assert owner("/var/lib/allervers") == ("0o750", "allervers", "allervers")
    assert owner("/etc/allervers") == ("0o750", "root", "allervers")
    assert owner("/etc/allervers/allervers.toml") == ("0o640", "root", "allervers")
    assert owner("/etc/chromium/policies/managed") == ("0o775", "root", "allervers")  # the controller writes it
    assert "lpadmin" in grp  # named by the kiosk drop-in (SupplementaryGroups=): must exist
    assert (fresh_pi / "etc/allervers/allervers.toml").read_text() == (REPO / "config/example-bus.toml").read_text()
    for unit in UNITS:
        assert (fresh_pi / "etc/systemd/system" / unit).read_text() == (REPO / "systemd" / unit).read_text()
    wants = fresh_pi / "etc/systemd/system/multi-user.target.wants"
    assert os.readlink(wants / "allervers.service") == "/etc/systemd/system/allervers.service"
    assert os.readlink(wants / "allervers-console@tty2.service") == "/etc/systemd/system/allervers-console@.service"
    assert (fresh_pi / "etc/systemd/system/local-fs.target.wants/srv-allervers-sessions.mount").is_symlink()
    assert (fresh_pi / "etc/systemd/system/sockets.target.wants/allervers-session.socket").is_symlink()
    assert (fresh_pi / "etc/systemd/journald.conf.d/allervers.conf").exists()
    dropin = fresh_pi / "etc/systemd/system/allervers.service.d/kiosk.conf"
    assert dropin.read_text() == (REPO / "systemd/allervers.service.d/kiosk.conf").read_text()
    assert "allervers-visitor" not in grp["allervers-kiosk"][3]  # the visitor never reaches the kiosk socket
    assert (fresh_pi / "etc/udev/rules.d/78-allervers.rules").exists()
    # The CLI on the PATH, as the README writes it (on the Pi: the venv's entry point).
    assert os.readlink(fresh_pi / "usr/local/bin/allervers") == "/opt/allervers/venv/bin/allervers"
    # cron and at denied to the visitor (a job of one visitor would run in the next one's session).
    assert doctor.check_schedulers("allervers-visitor", str(fresh_pi / "etc")).status == OK

    after_first = snapshot(fresh_pi)
    second = run(INSTALL, fresh_pi, "--skip", "venv").stdout
    assert actions(second, "doing") == []
    assert second.rstrip().endswith("nothing to do: already in place")
    assert snapshot(fresh_pi) == after_first
    third = run(INSTALL, fresh_pi, "--skip", "venv", "--dry-run").stdout
    assert actions(third, "would") == []


def test_the_config_and_edited_udev_rules_are_never_overwritten(fresh_pi: Path) -> None:
    run(INSTALL, fresh_pi, "--skip", "venv")
    config = fresh_pi / "etc/allervers/allervers.toml"
    config.write_text('[vehicle]\nid = "bus-07"\n')
    rules = fresh_pi / "etc/udev/rules.d/78-allervers.rules"
    rules.write_text(rules.read_text() + '# our adapter\nSUBSYSTEM=="tty", ATTRS{serial}=="A1", SYMLINK+="x"\n')
    out = run(INSTALL, fresh_pi, "--skip", "venv").stdout
    assert config.read_text() == '[vehicle]\nid = "bus-07"\n'
    assert "our adapter" in rules.read_text()
    assert "kept" in out and actions(out, "doing") == []


def test_an_upgrade_changes_only_what_differs(fresh_pi: Path) -> None:
    run(INSTALL, fresh_pi, "--skip", "venv")
    unit = fresh_pi / "etc/systemd/system/allervers.service"
    unit.write_text(unit.read_text().replace("WatchdogSec=30s", "WatchdogSec=5s"))
    (fresh_pi / "var/lib/allervers").chmod(0o777)
    out = run(INSTALL, fresh_pi, "--skip", "venv").stdout
    assert actions(out, "doing") == [
        "fix /var/lib/allervers (0750 allervers:allervers)",
        "update /etc/systemd/system/allervers.service",
    ]
    assert unit.read_text() == (REPO / "systemd/allervers.service").read_text()


def test_without_a_public_terminal_the_controller_keeps_its_strict_sandbox(fresh_pi: Path) -> None:
    run(INSTALL, fresh_pi, "--skip", "venv")
    out = run(INSTALL, fresh_pi, "--skip", "venv", "--no-kiosk").stdout
    assert any(a.startswith("remove /etc/systemd/system/allervers.service.d/kiosk.conf") for a in actions(out, "doing"))
    assert not (fresh_pi / "etc/systemd/system/allervers.service.d/kiosk.conf").exists()
    again = run(INSTALL, fresh_pi, "--skip", "venv", "--no-kiosk").stdout
    assert actions(again, "doing") == []
    fresh = fresh_pi.parent / "fresh2"
    shutil.copytree(fresh_pi / "etc", fresh / "etc", ignore=shutil.ignore_patterns("systemd", "allervers", "udev"))
    (fresh / "usr/sbin").mkdir(parents=True)
    shutil.copy("/usr/sbin/nologin", fresh / "usr/sbin/nologin")
    out = run(INSTALL, fresh, "--skip", "venv", "--no-kiosk").stdout
    for unit in ("allervers-kiosk.service", "allervers-session.socket", "allervers-session@.service"):
        assert f"install /etc/systemd/system/{unit}" not in actions(out, "doing")
    assert "enable allervers-kiosk.service" not in actions(out, "doing")
    assert "enable allervers-session.socket" not in actions(out, "doing")


def test_a_removed_group_membership_is_restored(fresh_pi: Path) -> None:
    run(INSTALL, fresh_pi, "--skip", "venv")
    group = fresh_pi / "etc/group"
    group.write_text(group.read_text().replace("dialout:x:20:pi,allervers", "dialout:x:20:pi"))
    out = run(INSTALL, fresh_pi, "--skip", "venv").stdout
    assert actions(out, "doing") == ["add allervers to group dialout"]
    assert "allervers" in groups(fresh_pi)["dialout"][3].split(",")


def test_read_only_root_puts_the_state_on_its_own_partition(fresh_pi: Path) -> None:
    out = run(INSTALL, fresh_pi, "--skip", "venv", "--read-only-root").stdout
    assert "install /etc/systemd/system/var-lib-allervers.mount" in actions(out, "doing")
    requires = fresh_pi / "etc/systemd/system/allervers.service.requires/var-lib-allervers.mount"
    assert os.readlink(requires) == "/etc/systemd/system/var-lib-allervers.mount"
    again = run(INSTALL, fresh_pi, "--skip", "venv", "--read-only-root").stdout
    assert actions(again, "doing") == []


def test_uninstall_undoes_the_install_and_keeps_the_records(fresh_pi: Path) -> None:
    before_install = snapshot(fresh_pi)
    run(INSTALL, fresh_pi, "--skip", "venv")
    (fresh_pi / "var/lib/allervers/allervers.db").write_bytes(b"events")

    installed = snapshot(fresh_pi)
    dry = run(UNINSTALL, fresh_pi, "--dry-run").stdout
    assert snapshot(fresh_pi) == installed
    assert "remove user allervers (and its group)" in actions(dry, "would")

    out = run(UNINSTALL, fresh_pi).stdout
    assert len(actions(out, "doing")) == len(actions(dry, "would"))
    users = passwd(fresh_pi)
    assert not set(USERS) & set(users) and "pi" in users
    assert not set(USERS) & set(groups(fresh_pi))
    assert "dialout" in groups(fresh_pi)
    assert not list((fresh_pi / "etc/systemd/system").rglob("allervers*"))
    assert not (fresh_pi / "opt/allervers").exists()
    assert not (fresh_pi / "usr/local/bin/allervers").is_symlink()
    assert not (fresh_pi / "etc/udev/rules.d/78-allervers.rules").exists()
    assert (fresh_pi / "etc/allervers/allervers.toml").exists()  # the association's config ...
    assert (fresh_pi / "var/lib/allervers/allervers.db").read_bytes() == b"events"  # ... and records stay

    again = run(UNINSTALL, fresh_pi).stdout
    assert actions(again, "doing") == [] and "nothing to do" in again

    run(UNINSTALL, fresh_pi, "--purge")
    assert not (fresh_pi / "etc/allervers").exists() and not (fresh_pi / "var/lib/allervers").exists()
    # What is left is the fresh Pi, plus the system groups the install added and empty parent folders.
    left = {p for p in snapshot(fresh_pi) if p not in before_install and not p.endswith("-")}
    assert all((fresh_pi / p).is_dir() or p in ("etc/.pwd.lock",) for p in left), left


def test_the_cli_link_replaces_a_demo_link_and_uninstall_keeps_a_link_not_its_own(fresh_pi: Path) -> None:
    link = fresh_pi / "usr/local/bin/allervers"
    link.parent.mkdir(parents=True)
    link.symlink_to("/home/pi/allervers/.venv/bin/allervers")  # what scripts/demo links on a developer's Pi
    out = run(INSTALL, fresh_pi, "--skip", "venv").stdout
    assert "replace /usr/local/bin/allervers -> /opt/allervers/venv/bin/allervers" in actions(out, "doing")
    assert os.readlink(link) == "/opt/allervers/venv/bin/allervers"
    link.unlink()
    link.symlink_to("/home/pi/other/.venv/bin/allervers")  # someone's own, after the install
    run(UNINSTALL, fresh_pi)
    assert os.readlink(link) == "/home/pi/other/.venv/bin/allervers"


def test_bad_options_are_refused_naming_them(fresh_pi: Path) -> None:
    result = subprocess.run(["bash", str(INSTALL), "--frobnicate"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown option --frobnicate" in result.stderr
    result = subprocess.run(
        ["bash", str(INSTALL), "--root", str(fresh_pi / "nowhere"), "--dry-run"], capture_output=True, text=True
    )
    assert result.returncode == 1 and "no such directory" in result.stderr
