"""The session bar's native-messaging bridge, run as the session user against a session's bar socket, spoken to
with Chromium's framing (4-byte length + JSON): status out, activity and "Terminer" in."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from firmware_host.api import ClientError, call_once
from kiosk import policies
from tests.conftest import wait_until

from .conftest import FakeClock


def frame(message: dict[str, Any]) -> bytes:
    data = json.dumps(message).encode()
    return struct.pack("=I", len(data)) + data


async def read_frame(stream: asyncio.StreamReader) -> dict[str, Any]:
    (length,) = struct.unpack("=I", await asyncio.wait_for(stream.readexactly(4), 10))
    return json.loads(await asyncio.wait_for(stream.readexactly(length), 10))


async def start_bridge(home: Path, visitor: Any, **env: str) -> asyncio.subprocess.Process:
    """The bridge as Chromium starts it: the session user, the extension's origin, the browser's environment."""
    return await asyncio.create_subprocess_exec(
        str(policies.bar_host_path()),
        f"chrome-extension://{policies.bar_extension_id()}/",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        user=visitor.pw_uid,
        group=visitor.pw_gid,
        extra_groups=[],
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "ALLERVERS_BAR_SOCKET": str(home / "bar.sock"), **env},
    )


async def test_bridge_relays_status_activity_and_the_end(run_controller: Any, kiosk_config: Any, visitor: Any) -> None:
    cfg = kiosk_config(session_bar=True)
    controller = await run_controller(cfg)
    kiosk = controller.kiosk
    await wait_until(lambda: kiosk.phase == "idle")
    await call_once(cfg.api.control_socket, "kiosk.open", {})
    clock = FakeClock()
    kiosk.monotonic = clock
    reply = await call_once(cfg.api.kiosk_socket, "session.start", {"service": "impots", "lang": "en"})
    home = Path(reply["home"])
    socket_path = home / "bar.sock"
    assert socket_path.stat().st_uid == visitor.pw_uid and oct(socket_path.stat().st_mode & 0o777) == "0o600"
    manifest = json.loads((home / "profile/NativeMessagingHosts/fr.allervers.kiosk.json").read_text())
    assert manifest["path"] == str(policies.bar_host_path())

    # The bar socket answers only the bar's three commands.
    with pytest.raises(ClientError, match="not allowed on the bar socket"):
        await call_once(str(socket_path), "kiosk.status", {})

    bridge = await start_bridge(home, visitor)
    assert bridge.stdin and bridge.stdout
    try:
        status = await read_frame(bridge.stdout)
        assert status["type"] == "status" and status["active"] is True
        assert (status["service"], status["label_en"], status["lang"], status["time_left_s"]) == (
            "impots",
            "Taxes",
            "en",
            600,
        )
        clock.advance(cfg.kiosk.idle_timeout_s + 1)
        kiosk.tick()
        status = await read_frame(bridge.stdout)
        assert status["idle_prompt"] is True
        bridge.stdin.write(frame({"cmd": "activity"}))  # "Oui, je continue" in the bar
        await wait_until(lambda: kiosk.session.idle_prompt_since is None, message="the activity")
        assert (await read_frame(bridge.stdout))["idle_prompt"] is False

        bridge.stdin.write(frame({"cmd": "end"}))  # "Terminer et tout effacer", confirmed in the bar
        await wait_until(lambda: kiosk.session is None, message="the end asked by the bar")
        ended = [e for e in await controller.store.events_after(0, 500) if e["type"] == "kiosk.session_ended"]
        assert ended[-1]["ended_by"] == "visitor"
        await asyncio.wait_for(bridge.wait(), 10)  # the wipe killed it with everything else of the visitor
        assert not home.exists()
    finally:
        if bridge.returncode is None:
            bridge.kill()
            await bridge.wait()


def test_bridge_refuses_to_run_outside_a_session() -> None:
    host = str(policies.BAR_DIR / "host.py")
    out = subprocess.run([host], capture_output=True, text=True, env={"PATH": os.environ["PATH"]}, timeout=10)
    assert out.returncode == 2 and "ALLERVERS_BAR_SOCKET is not set" in out.stderr
