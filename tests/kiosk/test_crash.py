"""kill -9 of the controller during a session and during a wipe: after a restart nothing of the visitor remains,
and the terminal opens only once the wipe has finished (a real `allervers run` process, killed for real)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_host.api import ClientError, call_once
from kiosk.wipe import user_processes
from tests.conftest import base_config, wait_until

from .conftest import FAKE_BROWSER, TEST_USER, to_toml, visitor_traces
from .cups import pdf

ALLERVERS = str(Path(sys.executable).with_name("allervers"))


class ControllerProcess:
    def __init__(self, config_path: Path, log_path: Path):
        self.config_path = config_path
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [ALLERVERS, "run", "-c", str(self.config_path)], stdout=log, stderr=log, start_new_session=True
            )

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def controller_process(tmp_path: Path, sessions_root: Path, visitor: Any) -> Iterator[Any]:
    made: list[ControllerProcess] = []

    def make(**kiosk: Any) -> tuple[ControllerProcess, Any]:
        raw = base_config(
            tmp_path,
            kiosk={
                "sessions_dir": str(sessions_root / "sessions"),
                "session_user": TEST_USER,
                "browser_command": [FAKE_BROWSER, "--user-data-dir={profile_dir}", "--url={url}"],
                "policy_dir": str(tmp_path / "policies"),
                "session_bar": False,
                "services": [{"id": "caf", "label": "CAF", "url": "https://www.caf.fr/"}],
                **kiosk,
            },
        )
        path = tmp_path / "bus.toml"
        path.write_text(to_toml(raw))
        from firmware_host import config as config_mod

        proc = ControllerProcess(path, tmp_path / "controller.log")
        made.append(proc)
        return proc, config_mod.load(path)

    yield make
    for proc in made:
        proc.stop()


async def kiosk_status(cfg: Any) -> dict[str, Any] | None:
    try:
        return await call_once(cfg.api.kiosk_socket, "kiosk.status", {}, timeout=2)
    except (ClientError, OSError, TimeoutError):
        return None


async def restart_and_watch(proc: ControllerProcess, cfg: Any) -> list[dict[str, Any]]:
    """Restart, and sample the status from the first answer on: the terminal must never look open before the
    start-up wipe has finished."""
    proc.start()
    samples: list[dict[str, Any]] = []

    async def open_again() -> bool:
        status = await kiosk_status(cfg)
        if status is not None:
            samples.append(status)
        return bool(status and status["available"])

    await wait_until(open_again, timeout=20, interval=0.01, message="the terminal open again after the restart")
    return samples


async def test_kill_9_during_a_session(controller_process: Any, visitor: Any) -> None:
    proc, cfg = controller_process()
    proc.start()
    await wait_until(lambda: _phase_is(cfg, "idle"), timeout=20, message="the controller, wiped and ready")
    await call_once(cfg.api.control_socket, "kiosk.open", {"stop": "Cadillac"})
    reply = await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    home = Path(reply["home"])
    await wait_until(lambda: (home / "Downloads" / "attestation.pdf").exists())
    await wait_until(lambda: len(visitor_traces(visitor.pw_uid)) >= 3)

    proc.kill9()
    # The power cut: the browser and its files outlive the controller.
    assert user_processes(uid=visitor.pw_uid) and home.exists() and visitor_traces(visitor.pw_uid)

    samples = await restart_and_watch(proc, cfg)
    assert all(not s["available"] or s["last_wipe"]["ok"] for s in samples)
    assert any(s["closed_reason"] == "starting" for s in samples) or samples[0]["last_wipe"] is not None
    assert user_processes(uid=visitor.pw_uid) == []
    assert visitor_traces(visitor.pw_uid) == []
    assert not home.exists() and not list(home.parent.iterdir())

    events = await call_once(cfg.api.control_socket, "events", {"after": 0, "limit": 1000})
    restart = max(e["seq"] for e in events if e["type"] == "controller.started")
    after = [e for e in events if e["seq"] > restart and e["type"].startswith("kiosk.")]
    wipe = next(e for e in after if e["type"] == "kiosk.wipe")
    opened = next(e for e in after if e["type"] == "kiosk.opened")
    assert wipe["trigger"] == "startup" and wipe["ok"] is True and wipe["processes_killed"] >= 2
    assert wipe["seq"] < opened["seq"]  # open only after the wipe
    interrupted = next(e for e in after if e["type"] == "kiosk.session_ended")
    assert interrupted["ended_by"] == "interrupted" and interrupted["services"] == ["caf"]
    assert interrupted["stop_label"] == "Cadillac" and interrupted["duration_s"] is None


async def test_kill_9_during_a_wipe(controller_process: Any, cupsd: Any, visitor: Any, sessions_root: Path) -> None:
    proc, cfg = controller_process(printer="slow", cups_server=cupsd.server, print_wait_s=300.0)
    proc.start()
    await wait_until(lambda: _phase_is(cfg, "idle"), timeout=20, message="the controller, wiped and ready")
    await call_once(cfg.api.control_socket, "kiosk.open", {})
    reply = await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    home = Path(reply["home"])
    document = sessions_root / "form.pdf"
    document.write_bytes(pdf(2))
    document.chmod(0o644)
    job = cupsd.submit("slow", str(document), visitor.pw_uid, visitor.pw_gid)
    await wait_until(lambda: "slow-" in cupsd.lpstat("-o", "slow").stdout, message="the job in the queue")

    ending = asyncio.ensure_future(call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=60))
    await wait_until(lambda: _wipe_phase_is(cfg, "printing"), timeout=20, message="the wipe waiting for the printer")
    proc.kill9()
    with contextlib.suppress(ClientError, OSError):
        await ending
    # Interrupted half-way: the browser is gone but the files and the print job are still there.
    assert user_processes(uid=visitor.pw_uid) == []
    assert home.exists() and visitor_traces(visitor.pw_uid)
    assert f"slow-{job}" in cupsd.lpstat("-W", "all", "-o", "slow").stdout

    samples = await restart_and_watch(proc, cfg)
    assert all(not s["available"] or s["last_wipe"]["ok"] for s in samples)
    assert not home.exists() and visitor_traces(visitor.pw_uid) == []
    assert f"slow-{job}" not in cupsd.lpstat("-W", "all", "-o", "slow").stdout
    assert not any(f"{job:05d}" in name for name in cupsd.spool_files())
    events = await call_once(cfg.api.control_socket, "events", {"after": 0, "limit": 1000})
    ended = [e for e in events if e["type"] == "kiosk.session_ended"]
    assert len(ended) == 1 and ended[0]["ended_by"] == "visitor" and ended[0]["duration_s"] is not None


async def _phase_is(cfg: Any, phase: str) -> bool:
    status = await kiosk_status(cfg)
    return bool(status and status["phase"] == phase)


async def _wipe_phase_is(cfg: Any, phase: str) -> bool:
    status = await kiosk_status(cfg)
    return bool(status and status["wipe_phase"] == phase)
