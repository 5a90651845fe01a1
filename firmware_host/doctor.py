"""`allervers doctor`: check a live installation and say what is wrong and how to fix it, in plain words."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import grp
import json
import os
import shutil
import ssl
import stat
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import config as config_mod
from .api import ClientError, call_once
from .controller import TIMESYNC_FLAG
from .subcommands import Subcommand

OK, INFO, WARN, FAIL = "ok", "info", "warn", "FAIL"

# Which units a Pi installed by scripts/install-pi.sh has, and whether each must be running.
UNITS = (
    "allervers.service",
    "srv-allervers-sessions.mount",
    "allervers-session.socket",
    "allervers-kiosk.service",
    "allervers-console@tty2.service",
)
KIOSK_GROUP = "allervers-kiosk"
CONTROL_GROUP = "allervers"

# Free space on the state file system: below these the event log may stop growing.
DISK_WARN_BYTES = 500 * 1024 * 1024
DISK_FAIL_BYTES = 100 * 1024 * 1024
# Writes to the card per day above which its life shortens noticeably (a 32 GB card lasts years at this rate).
WRITE_WARN_BYTES_PER_DAY = 2 * 1024**3
SECTOR = 512

# Said when a device's profile (drivers/registry.py) has no fix of its own.
DEVICE_FIXES = {
    "power": "check the inverter's link and [inverter] host/port/unit in the config",
    "shore": "check the meter's RS-485 wiring (A/B), its Modbus address and baud rate, and /dev/allervers-rs485 "
    "(udev rule), and the presence contact",
    "modem": "check the modem is powered and /dev/allervers-modem exists (udev rule), and that nothing else "
    "(ModemManager, a getty) holds the port",
}
COMPONENT_DEVICE = {"power": "inverter", "shore": "shore power", "modem": "modem"}


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class Options:
    config_path: str | None = None
    sample_s: float = 2.0
    timesync_flag: str = TIMESYNC_FLAG
    units: tuple[str, ...] = UNITS
    connect_timeout_s: float = 5.0


# --- the checks ---------------------------------------------------------------------------------------------


def check_config(path: str | None) -> tuple[config_mod.Config, list[Check]]:
    """Load the config; on error, say which key, and go on with the built-in defaults for the other checks."""
    try:
        cfg = config_mod.load(path)
    except config_mod.ConfigError as exc:
        shown = path or os.environ.get("ALLERVERS_CONFIG") or config_mod.DEFAULT_CONFIG_PATH
        fix = f"edit {shown}, then `allervers config check {shown}` and `systemctl restart allervers`"
        defaults = config_mod.validate({}, "<built-in defaults>", Path.cwd())
        return defaults, [Check("config", FAIL, str(exc), fix)]
    devices = [n for n in ("inverter", "modem") if getattr(cfg, n) is not None]
    if cfg.shore_power.meter is not None:
        devices.append("shore meter")
    detail = f"{cfg.source_path} valid (vehicle {cfg.vehicle.id}; devices: {', '.join(devices) or 'none'})"
    return cfg, [Check("config", OK, detail)]


def check_socket(name: str, path: str, want_group: str | None) -> Check:
    """A socket must exist, be a socket, and be reachable only by its group (never by everyone)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Check(
            f"{name} socket",
            FAIL,
            f"{path} does not exist: the controller is not running",
            "systemctl status allervers; journalctl -u allervers -n 50",
        )
    except PermissionError:
        return Check(
            f"{name} socket",
            FAIL,
            f"{path}: permission denied",
            f"run as root, or add yourself to group {CONTROL_GROUP}: sudo usermod -aG {CONTROL_GROUP} $USER",
        )
    if not stat.S_ISSOCK(st.st_mode):
        return Check(f"{name} socket", FAIL, f"{path} is not a socket", "remove it: systemctl restart allervers")
    mode = stat.S_IMODE(st.st_mode)
    group = _group_name(st.st_gid)
    if mode & 0o007:
        return Check(
            f"{name} socket",
            FAIL,
            f"{path} is open to every user (mode {mode:04o}): anyone on the Pi could drive the bus",
            "systemctl restart allervers (it creates its sockets 0660)",
        )
    if want_group is not None and _group_exists(want_group) and group != want_group:
        return Check(
            f"{name} socket",
            FAIL,
            f"{path} belongs to group {group}, not {want_group}: the {name} side cannot connect",
            "systemctl restart allervers (ExecStartPost gives the socket to its group)",
        )
    return Check(f"{name} socket", OK, f"{path} (mode {mode:04o}, group {group})")


def _device_fix(cfg: config_mod.Config, component: str) -> str:
    """The configured brand's own advice for a silent device, else the generic one."""
    from drivers import registry

    kind, section = {
        "power": ("inverter", cfg.inverter),
        "shore": ("meter", cfg.shore_power.meter),
        "modem": ("modem", cfg.modem),
    }[component]
    fix = registry.get(kind, section.profile).fix if section is not None else ""
    return fix or DEVICE_FIXES[component]


async def check_controller(cfg: config_mod.Config, timeout_s: float) -> tuple[dict[str, Any] | None, list[Check]]:
    """Ask the running controller for its state: each device answering or not, active alarms."""
    path = cfg.api.control_socket
    try:
        snap = await asyncio.wait_for(call_once(path, "status"), timeout_s)
    except PermissionError:
        return None, [
            Check("controller", FAIL, f"{path}: permission denied", f"run as root or join group {CONTROL_GROUP}")
        ]
    except (ClientError, OSError, TimeoutError) as exc:
        return None, [
            Check(
                "controller",
                FAIL,
                f"no answer on {path}: {exc}",
                "systemctl status allervers; journalctl -u allervers -n 50",
            )
        ]
    checks = [Check("controller", OK, f"answering (version {snap['controller'].get('version')})")]
    for component, device in COMPONENT_DEVICE.items():
        comp = snap.get(component, {})
        reason = comp.get("stale_reason")
        if reason == "not configured":
            checks.append(Check(device, INFO, "not configured"))
        elif comp.get("stale"):
            checks.append(Check(device, FAIL, f"not answering: {reason}", _device_fix(cfg, component)))
        else:
            checks.append(Check(device, OK, "answering"))
    alarms = snap.get("controller", {}).get("alarms") or []
    if alarms:
        worst = FAIL if any(a["severity"] in ("alarm", "critical") for a in alarms) else WARN
        text = "; ".join(f"{a['severity']} {a['id']}: {a['message']}" for a in alarms)
        checks.append(Check("alarms", worst, text, "see the console, or `allervers alarms`"))
    else:
        checks.append(Check("alarms", OK, "no active alarm"))
    return snap, checks


def check_units(units: tuple[str, ...]) -> list[Check]:
    systemctl = shutil.which("systemctl")
    if systemctl is None or not Path("/run/systemd/system").is_dir():
        return [Check("units", INFO, "systemd is not running here (a container?): unit states not checked")]
    checks = []
    for unit in units:
        active = _run([systemctl, "is-active", unit])
        enabled = _run([systemctl, "is-enabled", unit])
        if enabled in ("", "not-found") or "No such file" in enabled:
            checks.append(Check(unit, WARN, "not installed", "sudo scripts/install-pi.sh"))
        elif active == "active":
            checks.append(Check(unit, OK, f"active, {enabled}"))
        elif active == "failed":
            checks.append(
                Check(unit, FAIL, f"failed ({enabled})", f"journalctl -u {unit} -n 50; systemctl restart {unit}")
            )
        else:
            checks.append(Check(unit, WARN, f"{active}, {enabled}", f"systemctl start {unit}"))
    return checks


def check_disk(path: str, *, warn_bytes: int = DISK_WARN_BYTES, fail_bytes: int = DISK_FAIL_BYTES) -> Check:
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    usage = shutil.disk_usage(folder)
    detail = f"{_size(usage.free)} free of {_size(usage.total)} on the file system of {folder}"
    fix = "journalctl --vacuum-size=50M; remove old files; storage.retention_days shorter"
    if usage.free < fail_bytes:
        return Check("disk", FAIL, detail + ": the event log may stop", fix)
    if usage.free < warn_bytes:
        return Check("disk", WARN, detail, fix)
    return Check("disk", OK, detail)


def block_device_of(path: str) -> str | None:
    """The /sys/dev/block entry of the disk (or partition) holding ``path``, e.g. /sys/dev/block/179:2."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    dev = os.stat(folder).st_dev
    entry = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    return str(entry) if (entry / "stat").exists() else None


def sectors_written(stat_text: str) -> int:
    """Field 7 of /sys/block/<dev>/stat (and field 10 of /proc/diskstats): 512-byte sectors written."""
    fields = stat_text.split()
    if len(fields) < 7:
        raise ValueError(f"not a block stat line: {stat_text!r}")
    return int(fields[6])


def write_rate_check(bytes_since_boot: int, uptime_s: float, sampled: tuple[int, float] | None, where: str) -> Check:
    """Judge the card's write rate: since boot (average), and over the short sample when there is one."""
    per_day_boot = bytes_since_boot / max(uptime_s, 1) * 86400
    detail = f"{where}: {_size(per_day_boot)}/day on average since boot"
    per_day = per_day_boot
    if sampled is not None:
        written, seconds = sampled
        per_day_now = written / max(seconds, 0.001) * 86400
        detail += f", {_size(per_day_now)}/day right now ({_size(written)} in {seconds:.0f} s)"
        per_day = max(per_day, per_day_now)
    if per_day > WRITE_WARN_BYTES_PER_DAY:
        return Check(
            "SD card writes",
            WARN,
            detail + f" (above {_size(WRITE_WARN_BYTES_PER_DAY)}/day: the card wears faster)",
            "find the writer: sudo iotop -ao; journalctl --disk-usage; consider --read-only-root",
        )
    return Check("SD card writes", OK, detail)


async def check_writes(path: str, sample_s: float) -> Check:
    entry = block_device_of(path)
    if entry is None:
        return Check("SD card writes", INFO, f"the file system of {path} is not on a block device here")
    stat_file = Path(entry) / "stat"
    name = Path(os.path.realpath(entry)).name
    before = sectors_written(stat_file.read_text())
    sampled = None
    if sample_s > 0:
        started = time.monotonic()
        await asyncio.sleep(sample_s)
        sampled = ((sectors_written(stat_file.read_text()) - before) * SECTOR, time.monotonic() - started)
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return write_rate_check(before * SECTOR, uptime, sampled, f"/dev/{name}")


def check_clock(flag: str) -> Check:
    if os.path.exists(flag):
        return Check("clock", OK, "synchronised (NTP)")
    return Check(
        "clock",
        WARN,
        "not synchronised yet: times may be off until the link is up (events keep their order by seq, and are "
        "marked clock_synced=false)",
        "normal right after boot without a link; otherwise: timedatectl timesync-status",
    )


async def check_broker(cfg: config_mod.Config, snap: dict[str, Any] | None, timeout_s: float) -> Check:
    """Connect to the broker the way the controller does (TCP, TLS with verification, MQTT CONNECT)."""
    m = cfg.mqtt
    if m is None:
        return Check("broker", INFO, "no [mqtt] section: remote supervision not configured")
    port = m.port or (8883 if m.tls else 1883)
    where = f"{m.host}:{port}"
    link = (snap or {}).get("modem", {}).get("link")
    severity = WARN if link not in (None, "up") else FAIL  # no link: an unreachable broker is expected
    try:
        result = await asyncio.wait_for(asyncio.to_thread(_mqtt_connect, m, port, timeout_s), timeout_s + 2)
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        text = f"{where} unreachable: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"
        if link not in (None, "up"):
            text += f" (the modem link is {link})"
        return Check("broker", severity, text, "check [mqtt] host/port, the link, and the broker's firewall")
    if result != 0:
        return Check(
            "broker",
            FAIL,
            f"{where} refused the connection: {result}",
            "check [mqtt] username and password_file, and the broker's password file / ACL",
        )
    return Check("broker", OK, f"{where} reachable{' over TLS' if m.tls else ''}, credentials accepted")


def _mqtt_connect(m: Any, port: int, timeout_s: float) -> int | str:
    """One MQTT CONNECT/CONNACK with our credentials, under a client id of its own (never the controller's)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"allervers-doctor-{os.getpid()}", clean_session=True
    )
    if m.username:
        password = Path(m.password_file).read_text().strip() if m.password_file else None
        client.username_pw_set(m.username, password)
    if m.tls:
        client.tls_set(ca_certs=m.ca_file, certfile=m.cert_file, keyfile=m.key_file)
    outcome: dict[str, Any] = {}

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        outcome["reason"] = reason

    client.on_connect = on_connect
    client.connect(m.host, port, keepalive=30)
    deadline = time.monotonic() + timeout_s
    while "reason" not in outcome and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    with contextlib.suppress(Exception):
        client.disconnect()
    if "reason" not in outcome:
        raise TimeoutError(f"no CONNACK within {timeout_s:.0f} s")
    reason = outcome["reason"]
    return 0 if not reason.is_failure else str(reason)


def check_serial(cfg: config_mod.Config) -> list[Check]:
    """The serial ports the config names must exist (the udev rules made the stable names)."""
    ports = []
    if cfg.modem is not None:
        ports.append(("modem port", cfg.modem.port))
    for name, section in (("inverter port", cfg.inverter), ("meter port", cfg.shore_power.meter)):
        if section is not None and section.transport == "rtu":
            ports.append((name, section.serial_port))
    checks = []
    for name, port in ports:
        if not port.startswith("/dev/"):
            continue  # socket:// or a simulator's pty link
        if os.path.exists(port):
            checks.append(Check(name, OK, f"{port} -> {os.path.realpath(port)}"))
        else:
            checks.append(
                Check(
                    name,
                    FAIL,
                    f"{port} does not exist",
                    "plug the adapter in; if it is, compare its ids (udevadm info --query=property "
                    "--name=/dev/ttyUSB0) with /etc/udev/rules.d/78-allervers.rules",
                )
            )
    return checks


def filesystem_type(path: str, mounts: str = "/proc/self/mounts") -> str | None:
    """The type of the file system holding ``path`` (the longest mount point that is a prefix of it)."""
    target = os.path.realpath(path)
    best, kind = "", None
    for line in Path(mounts).read_text().splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def check_session_socket(path: str) -> Check:
    """launch = "unit": systemd must be listening for sessions (connecting would start one: only look)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return Check(
            "session units", FAIL, f"{path}: {exc.strerror}", "sudo systemctl enable --now allervers-session.socket"
        )
    if not stat.S_ISSOCK(mode):
        return Check("session units", FAIL, f"{path} is not a socket", "check [kiosk] launch_socket")
    return Check("session units", OK, f"{path}: each session a unit of its own, in its own tmpfs")


def check_kiosk(cfg: config_mod.Config) -> list[Check]:
    """The public terminal's promise: nothing of a visitor reaches the SD card, and the session user exists."""
    kiosk = getattr(cfg, "kiosk", None)
    if kiosk is None or not kiosk.enabled:
        return [Check("public terminal", INFO, "not enabled")]
    checks = []
    kind = filesystem_type(kiosk.sessions_dir)
    if kiosk.launch == "unit":
        checks.append(check_session_socket(kiosk.launch_socket))
    elif kind in ("tmpfs", "ramfs"):
        checks.append(Check("visitor sessions", OK, f"{kiosk.sessions_dir} is in RAM ({kind})"))
    else:
        checks.append(
            Check(
                "visitor sessions",
                WARN,
                f"{kiosk.sessions_dir} is on {kind or 'an unknown file system'}: visitors' files reach the SD card",
                'set [kiosk] sessions_dir = "/srv/allervers/sessions" (the tmpfs srv-allervers-sessions.mount)',
            )
        )
    if kiosk.session_user:
        import pwd

        try:
            pwd.getpwnam(kiosk.session_user)
            checks.append(Check("session user", OK, kiosk.session_user))
        except KeyError:
            checks.append(
                Check("session user", FAIL, f"{kiosk.session_user} does not exist", "sudo scripts/install-pi.sh")
            )
        checks.append(check_schedulers(kiosk.session_user))
    if kiosk.scanner:
        checks.append(check_scanner(kiosk.scanner, kiosk.session_user))
    return checks


def check_scanner(device: str, session_user: str) -> Check:
    """The scanner of "Numériser un document": SANE installed, the visitor in group scanner, the device answering."""
    from kiosk.scan import ScanSettings, probe

    if shutil.which("scanimage") is None:
        return Check("scanner", FAIL, "scanimage is not installed", "sudo apt-get install sane-utils sane-airscan")
    members: list[str] = []
    with contextlib.suppress(KeyError):
        members = grp.getgrnam("scanner").gr_mem
    if session_user and session_user not in members and not device.startswith(("test", "airscan:")):
        return Check(
            "scanner",
            WARN,
            f"{session_user} is not in group scanner: a USB scanner stays out of its reach",
            f"sudo usermod -aG scanner {session_user} (or sudo scripts/install-pi.sh)",
        )
    answer = probe(ScanSettings(device))
    if answer != "ready":
        return Check(
            "scanner",
            WARN,
            f'{device} does not answer ({answer}): visitors are told "Le scanner ne répond pas"',
            "switch the scanner on and plug it in; `scanimage -L` lists what SANE sees ([kiosk] scanner)",
        )
    return Check("scanner", OK, f"{device} answers")


def check_schedulers(user: str, etc: str = "/etc") -> Check:
    """cron and at denied to the session user: a job left by one visitor would run in the next one's session."""
    from kiosk.wipe import schedulers_open_to

    try:
        open_to = schedulers_open_to(user, etc)
    except OSError as exc:
        return Check("cron and at", INFO, f"not checked: {exc.filename}: {exc.strerror} (run doctor as root)")
    if open_to:
        return Check(
            "cron and at",
            FAIL,
            f"{' and '.join(open_to)} open to {user}: a visitor could leave a job for the next one",
            "sudo scripts/install-pi.sh (adds the session user to /etc/cron.deny and /etc/at.deny)",
        )
    return Check("cron and at", OK, f"denied to {user}")


# --- running them all -----------------------------------------------------------------------------------------


async def run_checks(options: Options) -> list[Check]:
    cfg, checks = check_config(options.config_path)
    checks.append(check_socket("control", cfg.api.control_socket, None))
    checks.append(check_socket("kiosk", cfg.api.kiosk_socket, KIOSK_GROUP))
    snap, controller_checks = await check_controller(cfg, options.connect_timeout_s)
    checks += controller_checks
    checks += check_serial(cfg)
    checks += check_kiosk(cfg)
    checks += check_units(options.units)
    checks.append(check_disk(cfg.storage.path))
    checks.append(await check_writes(cfg.storage.path, options.sample_s))
    checks.append(check_clock(options.timesync_flag))
    checks.append(await check_broker(cfg, snap, options.connect_timeout_s))
    return checks


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"  {c.status:<4}  {c.name:<{width}}  {c.detail}")
        if c.fix and c.status in (WARN, FAIL):
            lines.append(f"  {'':<4}  {'':<{width}}  fix: {c.fix}")
    fails = sum(c.status == FAIL for c in checks)
    warns = sum(c.status == WARN for c in checks)
    if fails or warns:
        lines.append(f"{fails} problem(s) to fix, {warns} warning(s)")
    else:
        lines.append("all good")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="the checks as JSON")
    parser.add_argument(
        "--sample",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="measure SD-card writes over this long (0: only the average since boot)",
    )


def run(args: argparse.Namespace) -> int:
    options = Options(config_path=args.config, sample_s=max(0.0, args.sample))
    checks = asyncio.run(run_checks(options))
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2, ensure_ascii=False))
    else:
        shown = options.config_path or os.environ.get("ALLERVERS_CONFIG") or config_mod.DEFAULT_CONFIG_PATH
        print(f"allervers doctor: {shown}")
        print(render(checks))
    sys.stdout.flush()
    return 1 if any(c.status == FAIL for c in checks) else 0


# --- helpers ---------------------------------------------------------------------------------------------------


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


COMMANDS: list[Subcommand] = [
    ("doctor", "check a live installation: config, devices, sockets, units, disk, clock, broker", add_arguments, run),
]
