"""The systemd units, journald drop-in and udev rules: verified by systemd itself, and consistent with the code."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from firmware_host import config as config_mod
from firmware_host import sdnotify

REPO = Path(__file__).resolve().parents[1]
UNITS = REPO / "systemd"
CHECK = REPO / "scripts" / "check-units"


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections -> [(key, value)] in order; keys may repeat, as systemd allows."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}: not a key=value line: {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}: expected one value, got {found}"
    return found[0]


def seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        total += float(number) * units[unit or "s"]
    return total


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHECK), *args], capture_output=True, text=True, timeout=120)


# --- systemd's own verdict -----------------------------------------------------------------------------------


def test_every_unit_verifies_and_meets_its_exposure_threshold() -> None:
    result = run_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verify OK" in result.stdout
    for name in ("allervers.service", "allervers-kiosk.service", "allervers-console@tty2.service"):
        assert re.search(rf"{re.escape(name)}: exposure [0-9.]+ \(threshold", result.stdout), result.stdout
    controller = re.search(r"allervers\.service: exposure ([0-9.]+)", result.stdout)
    assert controller and float(controller.group(1)) <= 2.5


def test_a_warning_from_verify_fails_the_check(tmp_path: Path) -> None:
    # systemd-analyze verify exits 0 on an unknown key: the check must fail on the line it prints.
    unit = tmp_path / "allervers.service"
    unit.write_text((UNITS / "allervers.service").read_text().replace("[Service]\n", "[Service]\nRestartSecs=5\n"))
    result = run_check(str(unit))
    assert result.returncode == 1
    assert "Unknown key 'RestartSecs'" in result.stdout


def test_a_missing_executable_fails_the_check(tmp_path: Path) -> None:
    unit = tmp_path / "allervers.service"
    text = (UNITS / "allervers.service").read_text()
    unit.write_text(text.replace("/opt/allervers/venv/bin/allervers run", "/usr/bin/no-such-allervers run"))
    result = run_check(str(unit))
    assert result.returncode == 1
    assert "/usr/bin/no-such-allervers is not executable" in result.stdout


def test_a_weakened_unit_fails_the_exposure_threshold(tmp_path: Path) -> None:
    unit = tmp_path / "allervers.service"
    text = (UNITS / "allervers.service").read_text()
    weakened = text.split("# --- hardening")[0] + "\n[Install]\nWantedBy=multi-user.target\n"
    unit.write_text(weakened)
    result = run_check(str(unit))
    assert result.returncode == 1
    assert "is above 2.5" in result.stdout


def test_check_units_is_shellcheck_clean() -> None:
    result = subprocess.run(["shellcheck", str(CHECK)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# --- the controller unit -------------------------------------------------------------------------------------


def test_controller_unit_is_a_watched_notify_service() -> None:
    unit = parse_unit(UNITS / "allervers.service")
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert one(unit, "Service", "Restart") == "on-failure"
    watchdog = seconds(one(unit, "Service", "WatchdogSec"))
    assert 5 <= watchdog <= 120
    # READY=1 is sent by the deadline at the latest, well before systemd gives up on the start.
    assert seconds(one(unit, "Service", "TimeoutStartSec")) >= sdnotify.READY_TIMEOUT_S + 30
    assert seconds(one(unit, "Unit", "StartLimitIntervalSec")) > 0
    assert int(one(unit, "Unit", "StartLimitBurst")) >= 3
    exec_start = shlex.split(one(unit, "Service", "ExecStart"))
    assert exec_start[:2] == ["/opt/allervers/venv/bin/allervers", "run"]
    assert exec_start[exec_start.index("-c") + 1] == config_mod.DEFAULT_CONFIG_PATH


def test_controller_runs_unprivileged_with_only_serial_and_gpio() -> None:
    unit = parse_unit(UNITS / "allervers.service")
    assert one(unit, "Service", "User") == "allervers"
    assert sorted(one(unit, "Service", "SupplementaryGroups").split()) == ["dialout", "gpio"]
    assert one(unit, "Service", "CapabilityBoundingSet") == ""
    for key, expected in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "DevicePolicy": "closed",
        "MemoryDenyWriteExecute": "yes",
    }.items():
        assert one(unit, "Service", key) == expected, key
    assert "@system-service" in values(unit, "Service", "SystemCallFilter")
    allowed = values(unit, "Service", "DeviceAllow")
    assert {"char-ttyUSB rw", "char-ttyACM rw", "/dev/gpiochip0 rw"} <= set(allowed)
    assert "AF_PACKET" not in one(unit, "Service", "RestrictAddressFamilies")
    # Serial ports rule out PrivateDevices=yes (it would hide /dev/ttyUSB*).
    assert values(unit, "Service", "PrivateDevices") in ([], ["no"])
    assert "modprobe@usbserial.service" in one(unit, "Unit", "After")


def test_controller_directories_match_the_default_config() -> None:
    unit = parse_unit(UNITS / "allervers.service")
    defaults = config_mod.validate({}, "<defaults>", Path("/"))
    state = Path("/var/lib") / one(unit, "Service", "StateDirectory")
    runtime = Path("/run") / one(unit, "Service", "RuntimeDirectory")
    assert Path(defaults.storage.path).parent == state
    assert Path(defaults.api.control_socket).parent == runtime
    assert Path(defaults.api.kiosk_socket).parent == runtime
    # The kiosk socket is handed to the kiosk user's group, by its default path.
    post = one(unit, "Service", "ExecStartPost")
    assert post.endswith(f"chgrp allervers-kiosk {defaults.api.kiosk_socket}")


# --- the public screen and the console ------------------------------------------------------------------------


def test_public_screen_runs_cage_and_the_launcher_as_the_kiosk_user() -> None:
    unit = parse_unit(UNITS / "allervers-kiosk.service")
    assert one(unit, "Service", "User") == "allervers-kiosk"
    cmd = shlex.split(one(unit, "Service", "ExecStart"))
    cage = cmd[cmd.index("/usr/bin/cage") :]
    assert "-s" not in cage[: cage.index("--")]  # no VT switching for visitors
    # cage's Wayland socket lands where the browser (group allervers-display) can reach it.
    assert cmd[:2] == ["/usr/bin/env", f"XDG_RUNTIME_DIR=/run/{one(unit, 'Service', 'RuntimeDirectory')}"]
    assert one(unit, "Service", "Group") == "allervers-display"
    assert one(unit, "Service", "SupplementaryGroups") == "allervers-kiosk"
    launcher = cmd[cmd.index("/opt/allervers/venv/bin/allervers") :]
    assert launcher[:2] == ["/opt/allervers/venv/bin/allervers", "kiosk"]
    assert launcher[launcher.index("-c") + 1] == config_mod.DEFAULT_CONFIG_PATH
    assert re.search(r"size=(\d+)", one(unit, "Service", "ExecStart"))  # the large terminal font
    assert one(unit, "Service", "Restart") == "always"
    assert "srv-allervers-sessions.mount" in one(unit, "Unit", "Requires")
    assert "getty@tty1.service" in one(unit, "Unit", "Conflicts")
    assert one(unit, "Service", "CapabilityBoundingSet") == ""  # the browser and the wipe are the controller's
    assert one(unit, "Service", "NoNewPrivileges") == "yes"


def test_visitor_sessions_live_in_a_bounded_tmpfs() -> None:
    unit = parse_unit(UNITS / "srv-allervers-sessions.mount")
    where = one(unit, "Mount", "Where")
    # systemd requires a mount unit to be named after its mount point.
    escaped = subprocess.run(["systemd-escape", "--path", where], capture_output=True, text=True, check=True)
    assert escaped.stdout.strip() + ".mount" == "srv-allervers-sessions.mount"
    assert one(unit, "Mount", "Type") == "tmpfs"
    options = one(unit, "Mount", "Options").split(",")
    assert {"nodev", "nosuid", "noexec"} <= set(options)
    assert any(o.startswith("size=") for o in options)
    # A session started as a unit gets its own tmpfs on the same path (the bus's config points there).
    session = parse_unit(UNITS / "allervers-session@.service")
    mounts = {m.split(":")[0]: m for v in values(session, "Service", "TemporaryFileSystem") for m in v.split()}
    assert "size=" in mounts[where]
    example = config_mod.load(str(REPO / "config" / "example-bus.toml"))
    assert example.kiosk.sessions_dir == where and example.kiosk.launch == "unit"


def test_kiosk_drop_in_keeps_the_controller_unprivileged() -> None:
    dropin = parse_unit(UNITS / "allervers.service.d" / "kiosk.conf")
    text = (UNITS / "allervers.service.d" / "kiosk.conf").read_text()
    assert "exposure-threshold" not in text  # the controller's own 2.5, with the public terminal too
    keys = {k for k, _ in dropin["Service"]}
    assert not keys & {"User", "CapabilityBoundingSet", "AmbientCapabilities", "PrivateTmp", "SystemCallFilter"}
    assert one(dropin, "Service", "ProtectProc") == "default"  # the wipe must see the visitor's processes
    assert values(dropin, "Service", "ReadWritePaths") == ["/etc/chromium/policies/managed"]
    result = run_check(str(UNITS / "allervers.service"))
    assert result.returncode == 0, result.stdout
    with_dropin = r"allervers\.service \(with allervers\.service\.d/kiosk\.conf\): exposure ([0-9.]+)"
    found = re.search(with_dropin, result.stdout)
    assert found and float(found.group(1)) <= 2.5, result.stdout


def test_visitor_sessions_are_socket_activated_units_of_the_visitor() -> None:
    socket_unit = parse_unit(UNITS / "allervers-session.socket")
    example = config_mod.load(str(REPO / "config" / "example-bus.toml"))
    assert one(socket_unit, "Socket", "ListenStream") == example.kiosk.launch_socket
    assert one(socket_unit, "Socket", "Accept") == "yes"  # one fresh unit per session
    controller = parse_unit(UNITS / "allervers.service")
    assert one(socket_unit, "Socket", "SocketGroup") == one(controller, "Service", "Group")
    assert one(socket_unit, "Socket", "SocketMode") == "0660"
    session = parse_unit(UNITS / "allervers-session@.service")
    assert one(session, "Service", "User") == example.kiosk.session_user
    assert one(session, "Service", "StandardInput") == "socket"
    assert one(session, "Service", "KillMode") == "control-group"
    assert one(session, "Service", "KillSignal") == "SIGKILL"
    script = one(session, "Service", "ExecStart").rsplit("/", 1)[1]
    assert f'{script} = "kiosk.sessionhost:main"' in (REPO / "pyproject.toml").read_text()
    mounts = {m.split(":")[0] for v in values(session, "Service", "TemporaryFileSystem") for m in v.split()}
    assert {"/tmp", "/var/tmp", "/dev/shm", example.kiosk.sessions_dir} <= mounts  # RAM only, the unit's own
    assert one(session, "Service", "ProtectSystem") == "strict"
    assert one(session, "Service", "PrivateIPC") == "yes"
    assert one(session, "Service", "CapabilityBoundingSet") == ""


def test_a_weakening_drop_in_fails_its_threshold(tmp_path: Path) -> None:
    unit = tmp_path / "allervers.service"
    unit.write_text((UNITS / "allervers.service").read_text())
    (tmp_path / "allervers.service.d").mkdir()
    (tmp_path / "allervers.service.d" / "loose.conf").write_text(
        "# exposure-threshold: 30\n[Service]\nCapabilityBoundingSet=~\nProtectSystem=no\nSystemCallFilter=\n"
    )
    result = run_check(str(unit))
    assert result.returncode == 1
    assert "(with allervers.service.d/loose.conf): exposure" in result.stdout and "is above 3.0" in result.stdout


def test_state_partition_mount_is_named_after_the_state_directory() -> None:
    unit = parse_unit(UNITS / "var-lib-allervers.mount")
    where = one(unit, "Mount", "Where")
    escaped = subprocess.run(["systemd-escape", "--path", where], capture_output=True, text=True, check=True)
    assert escaped.stdout.strip() + ".mount" == "var-lib-allervers.mount"
    assert where == str(Path(config_mod.validate({}, "<d>", Path("/")).storage.path).parent)


def test_console_is_a_tty_template_that_reaches_only_the_control_socket() -> None:
    unit = parse_unit(UNITS / "allervers-console@.service")
    cmd = shlex.split(one(unit, "Service", "ExecStart"))
    assert cmd[:2] == ["/opt/allervers/venv/bin/allervers", "console"]
    assert one(unit, "Service", "TTYPath") == "/dev/%I"
    assert one(unit, "Install", "DefaultInstance") == "tty2"
    assert one(unit, "Service", "SupplementaryGroups") == "allervers"
    assert one(unit, "Service", "RestrictAddressFamilies") == "AF_UNIX"
    assert one(unit, "Service", "PrivateNetwork") == "yes"


# --- journald and udev --------------------------------------------------------------------------------------


def test_journald_drop_in_uses_keys_journald_knows_and_bounds_the_journal() -> None:
    conf = parse_unit(UNITS / "journald.conf.d" / "allervers.conf")
    assert list(conf) == ["Journal"]
    journald = next(
        (p for p in (Path("/lib/systemd/systemd-journald"), Path("/usr/lib/systemd/systemd-journald")) if p.exists()),
        None,
    )
    assert journald is not None, "systemd-journald not found (Debian package systemd)"
    binary = journald.read_bytes()
    for key, _ in conf["Journal"]:
        # journald's own parser table holds "Journal.<Key>" for every key it accepts.
        assert f"Journal.{key}".encode() in binary, f"journald does not know {key}="
    assert one(conf, "Journal", "SystemMaxUse")
    assert one(conf, "Journal", "ForwardToSyslog") == "no"


UDEV_MATCH = {"ACTION", "SUBSYSTEM", "KERNEL", "ATTRS", "ATTR", "ENV", "DRIVERS"}
UDEV_ASSIGN = {"SYMLINK", "GROUP", "MODE", "OWNER", "ENV", "TAG", "RUN"}
AUTHORIZED_RUN = ["/bin/chgrp dialout $sys$devpath/authorized", "/bin/chmod 0664 $sys$devpath/authorized"]


def udev_rules() -> list[list[tuple[str, str, str]]]:
    rules = []
    for raw in (UNITS / "udev" / "78-allervers.rules").read_text().splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        tokens = re.findall(r'\s*([A-Z_]+(?:\{[^}]+\})?)\s*(==|!=|\+=|-=|:=|=)\s*"([^"]*)"\s*(?:,|$)', raw)
        rebuilt = ", ".join(f'{k}{op}"{v}"' for k, op, v in tokens)
        assert rebuilt == raw.strip(), f"cannot parse udev rule: {raw}"
        rules.append(tokens)
    return rules


def test_udev_rules_give_stable_names_and_keep_modemmanager_off_the_modem() -> None:
    rules = udev_rules()
    assert rules
    links: set[str] = set()
    modems: set[tuple[str, str]] = set()  # (idVendor, idProduct) of the modems' AT ports
    authorized: set[tuple[str, str]] = set()  # ... of the USB devices whose `authorized` the controller may write
    for tokens in rules:
        for key, op, _value in tokens:
            name = key.split("{")[0]
            allowed = UDEV_MATCH if op in ("==", "!=") else UDEV_ASSIGN
            assert name in allowed, f"unexpected {key}{op} in a rule"
        matched = {k: v for k, op, v in tokens if op == "=="}
        runs = [v for k, op, v in tokens if k == "RUN"]
        if runs:
            # The recovery's USB step: the whole USB device (not an interface, not a tty), only its `authorized`.
            assert matched["SUBSYSTEM"] == "usb" and matched["ENV{DEVTYPE}"] == "usb_device", tokens
            assert runs == AUTHORIZED_RUN, tokens
            authorized.add((matched["ATTR{idVendor}"], matched["ATTR{idProduct}"]))
            continue
        assigned = {k: v for k, op, v in tokens if op in ("=", "+=")}
        if assigned.get("SYMLINK") == "allervers-modem":
            modems.add((matched["ATTRS{idVendor}"], matched["ATTRS{idProduct}"]))
        link = assigned.get("SYMLINK")
        assert link in ("allervers-modem", "allervers-rs485"), tokens
        links.add(link)
        assert assigned.get("ENV{ID_MM_DEVICE_IGNORE}") == "1", f"{link}: ModemManager would probe it"
        assert assigned.get("GROUP") == "dialout"  # the controller's group, nobody else's
    assert links == {"allervers-modem", "allervers-rs485"}
    assert authorized == modems, "each modem the rules name can be re-enumerated by the controller"
    # The unit lets the controller write there: /sys/devices only, the rest of /sys stays read-only.
    unit = parse_unit(UNITS / "allervers.service")
    assert values(unit, "Service", "ReadWritePaths") == ["-/sys/devices"]
    assert one(unit, "Service", "ProtectKernelTunables") == "yes"
    # The example config names the same devices.
    example = (REPO / "config" / "example-bus.toml").read_text()
    assert "/dev/allervers-rs485" in example


@pytest.mark.parametrize("tool", ["systemd-analyze", "systemd-escape", "shellcheck"])
def test_tools_are_installed(tool: str) -> None:
    assert shutil.which(tool), f"{tool} missing: scripts/test installs it (APT_PACKAGES)"
