"""`allervers doctor` against a real running controller, a real Mosquitto, and with things broken on purpose."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_host import config as config_mod
from firmware_host import doctor
from firmware_host.doctor import FAIL, INFO, OK, WARN, Check, Options
from tests.conftest import free_port, wait_until
from tests.firmware_host.mosquitto import Broker

REPO = Path(__file__).resolve().parents[2]
ALLERVERS = str(Path(sys.executable).parent / "allervers")  # the installed entry point, as an admin runs it


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "bus.toml"
    path.write_text(
        f"""
[vehicle]
id = "bus-doc"
[gpio]
pin_factory = "mock"
ignition_pin = 17
[storage]
path = "{tmp_path}/state/allervers.db"
[api]
control_socket = "{tmp_path}/run/control.sock"
kiosk_socket = "{tmp_path}/run/kiosk.sock"
{extra}
"""
    )
    return path


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


@pytest.fixture
def synced(tmp_path: Path) -> str:
    flag = tmp_path / "synchronized"
    flag.touch()
    return str(flag)


@pytest.fixture
def broker(tmp_path: Path):
    """A Mosquitto that wants a user name and password, as the association's broker does."""
    passwords = tmp_path / "broker" / "passwd"
    passwords.parent.mkdir()
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "bus-doc", "s3cret"], check=True)
    passwords.chmod(0o600)
    with Broker(tmp_path / "broker", anonymous=False, extra=f"user root\npassword_file {passwords}") as b:
        yield b


def mqtt_section(port: int, password_file: Path) -> str:
    return f"""
[mqtt]
host = "127.0.0.1"
port = {port}
tls = false
username = "bus-doc"
password_file = "{password_file}"
link_gate = "always"
"""


async def test_a_healthy_installation(tmp_path: Path, run_controller, synced: str, broker: Broker) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret\n")
    path = write_config(tmp_path, mqtt_section(broker.port, secret))
    await run_controller(config_mod.load(path))
    checks = await doctor.run_checks(Options(str(path), sample_s=0.2, timesync_flag=synced))
    found = by_name(checks)
    assert found["config"].status == OK and "bus-doc" in found["config"].detail
    assert found["control socket"].status == OK and "0660" in found["control socket"].detail
    assert found["kiosk socket"].status == OK
    assert found["controller"].status == OK
    for device in ("inverter", "modem", "shore power"):
        assert found[device].status == INFO  # GPIO only: nothing else configured
    assert found["alarms"].status == OK
    assert found["clock"].status == OK
    assert found["broker"].status == OK and "credentials accepted" in found["broker"].detail
    assert found["disk"].status == OK
    # This machine may write a lot (other tests run): only the measurement itself is checked here.
    assert found["SD card writes"].status in (OK, WARN, INFO)
    assert not [c for c in checks if c.status == FAIL], doctor.render(checks)


async def test_nothing_running_says_so_and_how_to_fix_it(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    found = by_name(await doctor.run_checks(Options(str(path), sample_s=0)))
    assert found["control socket"].status == FAIL
    assert "controller is not running" in found["control socket"].detail
    assert "systemctl status allervers" in found["control socket"].fix
    assert found["controller"].status == FAIL
    assert found["clock"].status in (OK, WARN)
    assert found["broker"].status == INFO


async def test_a_device_not_answering_is_named_with_its_fix(tmp_path: Path, run_controller, synced: str) -> None:
    path = write_config(tmp_path, f'[inverter]\nhost = "127.0.0.1"\nport = {free_port()}\npoll_s = 0.5\n')
    controller = await run_controller(config_mod.load(path))
    await wait_until(
        lambda: controller.state.get("power").get("stale_reason") not in (None, "no reading yet"),
        timeout=10,
        message="the inverter marked stale with a reason",
    )
    found = by_name(await doctor.run_checks(Options(str(path), sample_s=0, timesync_flag=synced)))
    assert found["inverter"].status == FAIL
    assert found["inverter"].detail.startswith("not answering: inverter")
    assert "Modbus-TCP" in found["inverter"].fix
    assert found["controller"].status == OK


async def test_a_socket_open_to_everyone_is_a_failure(tmp_path: Path, run_controller) -> None:
    path = write_config(tmp_path)
    cfg = config_mod.load(path)
    await run_controller(cfg)
    os.chmod(cfg.api.control_socket, 0o666)
    check = doctor.check_socket("control", cfg.api.control_socket, None)
    assert check.status == FAIL and "every user" in check.detail
    # A kiosk socket left in the controller's group: the public screen could not connect.
    check = doctor.check_socket("kiosk", cfg.api.kiosk_socket, "daemon")
    assert check.status == FAIL and "not daemon" in check.detail
    missing = doctor.check_socket("control", str(tmp_path / "nowhere.sock"), None)
    assert missing.status == FAIL and "does not exist" in missing.detail


async def test_a_bad_config_names_the_key_and_the_rest_still_runs(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[alarms]\nlow_soc = 140\n")
    checks = await doctor.run_checks(Options(str(path), sample_s=0))
    found = by_name(checks)
    assert found["config"].status == FAIL
    assert "alarms.low_soc" in found["config"].detail and "allervers config check" in found["config"].fix
    assert {"disk", "clock", "broker", "controller"} <= set(found)


async def test_broker_problems(tmp_path: Path, broker: Broker) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("guess\n")
    cfg = config_mod.load(write_config(tmp_path, mqtt_section(broker.port, wrong)))
    check = await doctor.check_broker(cfg, None, 5)
    assert check.status == FAIL and "refused" in check.detail and "password_file" in check.fix
    assert "not authorised" in broker.log()  # it really spoke MQTT: the broker judged the credentials

    nobody = free_port()
    cfg = config_mod.load(write_config(tmp_path, mqtt_section(nobody, wrong)))
    check = await doctor.check_broker(cfg, None, 5)
    assert check.status == FAIL and "unreachable" in check.detail
    # With the modem link down, an unreachable broker is expected: a warning that says why.
    check = await doctor.check_broker(cfg, {"modem": {"link": "down"}}, 5)
    assert check.status == WARN and "link is down" in check.detail


def test_missing_serial_device_points_at_the_udev_rules(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        '[shore_power.meter]\ntransport = "rtu"\nserial_port = "/dev/allervers-rs485-absent"\n'
        '[modem]\nport = "/dev/null"\n',
    )
    found = by_name(doctor.check_serial(config_mod.load(path)))
    assert found["meter port"].status == FAIL and "78-allervers.rules" in found["meter port"].fix
    assert found["modem port"].status == OK


def test_disk_space_thresholds(tmp_path: Path) -> None:
    assert doctor.check_disk(str(tmp_path / "x.db")).status == OK
    assert doctor.check_disk(str(tmp_path / "x.db"), warn_bytes=1 << 62, fail_bytes=0).status == WARN
    assert doctor.check_disk(str(tmp_path / "x.db"), warn_bytes=1 << 62, fail_bytes=1 << 61).status == FAIL


async def test_write_rate_from_the_block_layer(tmp_path: Path) -> None:
    entry = doctor.block_device_of(str(tmp_path))
    if entry is not None:  # a real block device under the test folder: read its counters
        assert doctor.sectors_written(Path(entry, "stat").read_text()) >= 0
    check = await doctor.check_writes(str(tmp_path / "x.db"), 0.1)
    assert check.status in (OK, WARN, INFO) and check.name == "SD card writes"
    with pytest.raises(ValueError, match="not a block stat line"):
        doctor.sectors_written("1 2 3")
    day = 86400
    quiet = doctor.write_rate_check(200 * 1024**2, day, (1024, 10), "/dev/mmcblk0")
    assert quiet.status == OK and "200.0 MB/day on average" in quiet.detail
    busy = doctor.write_rate_check(200 * 1024**2, day, (50 * 1024**2, 10), "/dev/mmcblk0")
    assert busy.status == WARN and "iotop" in busy.fix


def test_visitor_sessions_must_be_in_ram(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/mmcblk0p2 / ext4 rw,noatime 0 0\n"
        "tmpfs /run tmpfs rw,nosuid,nodev 0 0\n"
        "tmpfs /srv/allervers/sessions tmpfs rw,nodev,nosuid,noexec 0 0\n"
    )
    assert doctor.filesystem_type("/srv/allervers/sessions/abc", str(mounts)) == "tmpfs"
    assert doctor.filesystem_type("/srv/allervers", str(mounts)) == "ext4"
    assert doctor.filesystem_type("/run/allervers/kiosk", str(mounts)) == "tmpfs"
    # And on this machine, for real: /dev/shm is a tmpfs, a pytest folder is not RAM-only in general.
    assert doctor.filesystem_type("/dev/shm") == "tmpfs"
    cfg = config_mod.load(write_config(tmp_path))
    assert [c.status for c in doctor.check_kiosk(cfg)] == [INFO]


def test_the_scanner_is_checked_with_sane(tmp_path: Path) -> None:
    """SANE's test backend answers; a device that is not there is named with what to do."""
    ready = doctor.check_scanner("test", "")
    assert (ready.status, ready.detail) == (OK, "test answers")
    silent = doctor.check_scanner("test:7", "")
    assert silent.status == WARN and "test:7 does not answer (unreachable)" in silent.detail
    assert "scanimage -L" in silent.fix
    outside = doctor.check_scanner("epson2:libusb:001:004", "root")  # root is in no scanner group here
    assert outside.status == WARN and "usermod -aG scanner root" in outside.fix
    section = '[kiosk]\nsession_user = ""\nsessions_dir = "/dev/shm"\nscanner = "test"\n'
    cfg = config_mod.load(write_config(tmp_path, section))
    assert [c.name for c in doctor.check_kiosk(cfg)][-1] == "scanner"


def test_unit_sessions_need_the_session_socket(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "session.sock"
    absent = doctor.check_session_socket(str(path))
    assert absent.status == FAIL and "allervers-session.socket" in absent.fix
    path.write_text("")
    assert doctor.check_session_socket(str(path)).status == FAIL
    path.unlink()
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        assert doctor.check_session_socket(str(path)).status == OK


def test_cron_and_at_must_be_denied_to_the_session_user(tmp_path: Path) -> None:
    etc = tmp_path
    # Nothing written: Debian's cron is open to every user (at only to root).
    check = doctor.check_schedulers("allervers-visitor", str(etc))
    assert check.status == FAIL and "cron open to allervers-visitor" in check.detail and "cron.deny" in check.fix
    (etc / "cron.deny").write_text("allervers-visitor\n")
    (etc / "at.deny").write_text("guest\n")
    check = doctor.check_schedulers("allervers-visitor", str(etc))
    assert check.status == FAIL and check.detail.startswith("at open to")  # a deny file not naming it
    (etc / "at.deny").write_text("guest\nallervers-visitor\n")
    assert doctor.check_schedulers("allervers-visitor", str(etc)).status == OK
    (etc / "at.allow").write_text("allervers-visitor\n")  # an allow file wins over the deny file
    check = doctor.check_schedulers("allervers-visitor", str(etc))
    assert check.status == FAIL and check.detail.startswith("at open to")
    (etc / "at.allow").write_text("pi\n")
    assert doctor.check_schedulers("allervers-visitor", str(etc)).status == OK


def test_clock() -> None:
    assert doctor.check_clock("/nonexistent/synchronized").status == WARN


def test_units_without_systemd_are_reported_not_guessed() -> None:
    checks = doctor.check_units(doctor.UNITS)
    if Path("/run/systemd/system").is_dir():  # a machine with systemd: every unit gets a verdict
        assert [c.name for c in checks] == list(doctor.UNITS)
    else:
        assert [c.status for c in checks] == [INFO] and "not running" in checks[0].detail


async def test_the_command_line(tmp_path: Path, run_controller) -> None:
    path = write_config(tmp_path)
    await run_controller(config_mod.load(path))

    async def doctor_cli(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            ALLERVERS, "doctor", "-c", str(path), "--sample", "0", *args,
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode()

    code, out = await doctor_cli()
    assert code == 0, out  # warnings (clock, writes) do not fail
    assert "ok    config" in out and "ok    controller" in out
    code, out = await doctor_cli("--json")
    assert code == 0 and {c["name"] for c in json.loads(out)} >= {"config", "controller", "disk", "broker"}

    os.chmod(config_mod.load(path).api.control_socket, 0o666)
    code, out = await doctor_cli()
    assert code == 1 and "FAIL  control socket" in out and "fix: systemctl restart allervers" in out
