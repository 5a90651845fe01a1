"""Benchmark of the controller core: Modbus requests per poll, poll latency, RSS, CPU, disk writes, start-up time."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from firmware_host.api import call_once  # noqa: E402

Row = tuple[str, str, str]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp: Path, flush_s: float) -> Path:
    """Default poll rates (inverter 2 s, meter 5 s, modem 10 s), simulators in a separate process."""
    text = f"""
[vehicle]
id = "bus-bench"
[simulation]
embedded = false
speed = 1.0
seed = 11
[inverter]
host = "127.0.0.1"
port = {_free_port()}
[shore_power.meter]
transport = "rtu-over-tcp"
host = "127.0.0.1"
port = {_free_port()}
[modem]
port = "{tmp}/dev/modem"
[gpio]
pin_factory = "mock"
ignition_pin = 17
antenna_stowed_pin = 27
door_pin = 22
buzzer_pin = 23
status_led_pin = 24
[storage]
path = "{tmp}/state/allervers.db"
aggregate_flush_s = {flush_s}
[api]
control_socket = "{tmp}/run/control.sock"
kiosk_socket = "{tmp}/run/kiosk.sock"
"""
    path = tmp / "bench.toml"
    path.write_text(text)
    return path


def _proc_stats(pid: int) -> tuple[float, int, int]:
    """(CPU seconds, RSS bytes, bytes written to storage) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    written = 0
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            written = int(line.split()[1])
    return cpu, rss, written


async def _wait_complete(sock: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            snap = await call_once(sock, "status", timeout=2)
            if all(not snap[c]["stale"] for c in ("power", "shore", "modem", "vehicle")):
                return snap
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("controller never reached a complete state")
        await asyncio.sleep(0.02)


def run(window_s: float = 120.0, flush_s: float = 30.0, quick: bool = False) -> list[Row]:
    from drivers.modbus import plan_reads
    from drivers.victron_gx import GX_MAX_GAP, SYSTEM_TABLE, VEBUS_TABLE

    if quick:
        window_s = min(window_s, 30.0)
    rows: list[Row] = []
    per_register = len(VEBUS_TABLE.registers) + len(SYSTEM_TABLE.registers)
    planned = len(plan_reads(VEBUS_TABLE, 227, max_gap=GX_MAX_GAP)) + len(
        plan_reads(SYSTEM_TABLE, 100, max_gap=GX_MAX_GAP)
    )

    with tempfile.TemporaryDirectory(prefix="allervers-bench-") as tmpdir:
        tmp = Path(tmpdir)
        cfg = _config(tmp, flush_s)
        cli = [sys.executable, "-m", "firmware_host.cli"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        sim = subprocess.Popen([*cli, "sim", "-c", str(cfg)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        ctl = None
        try:
            assert sim.stdout is not None
            for _ in range(4):
                sim.stdout.readline()
            started = time.monotonic()
            ctl = subprocess.Popen(
                [*cli, "run", "-c", str(cfg)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            sock = str(tmp / "run" / "control.sock")
            asyncio.run(_wait_complete(sock, 30))
            first_complete = time.monotonic() - started
            # Steady state: let start-up settle, then measure a window.
            time.sleep(5)
            cpu0, _, w0 = _proc_stats(ctl.pid)
            t0 = time.monotonic()
            time.sleep(window_s)
            cpu1, rss, w1 = _proc_stats(ctl.pid)
            elapsed = time.monotonic() - t0
            stats = asyncio.run(call_once(sock, "stats"))
        finally:
            for proc in (ctl, sim):
                if proc is not None:
                    proc.terminate()
                    proc.wait(timeout=20)

    inv = stats["devices"]["inverter"]
    latencies = {name: d["last_latency_s"] for name, d in stats["devices"].items()}
    rows.append(
        (
            "Modbus requests per full inverter poll",
            f"{inv['requests_last_poll']} (planned {planned}; {per_register} one per register)",
            "<= 3",
        )
    )
    rows.append(
        (
            "Poll latency (last poll)",
            ", ".join(f"{n} {v * 1000:.1f} ms" for n, v in latencies.items() if v is not None),
            "—",
        )
    )
    rows.append(("Controller RSS", f"{rss / 1e6:.1f} MB", "<= 60 MB"))
    rows.append(("Controller CPU", f"{(cpu1 - cpu0) / (elapsed / 60):.3f} CPU-s/min", "<= 0.6 CPU-s/min"))
    rows.append(
        (
            "Disk written, steady state",
            f"{(w1 - w0) / elapsed * 3600 / 1e6:.2f} MB/hour "
            f"(aggregates flushed every {flush_s:.0f} s; default 300 s writes less)",
            "<= 2 MB/hour",
        )
    )
    rows.append(
        ("Start to first complete state", f"{first_complete:.2f} s (process start, imports included)", "<= 3 s")
    )
    return rows


if __name__ == "__main__":
    window = float(sys.argv[1]) if len(sys.argv) > 1 else 120.0
    print(json.dumps(run(window), indent=1, ensure_ascii=False))
