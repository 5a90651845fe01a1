"""Local API: bad requests get error replies and the connection and process survive; sockets have their own rights."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_host.api import Client, ClientError, call_once

from ..conftest import make_config, wait_until


async def exchange(path: str, raw: bytes, replies: int) -> list[dict[str, Any]]:
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(raw)
    await writer.drain()
    out = []
    for _ in range(replies):
        out.append(json.loads(await asyncio.wait_for(reader.readline(), 5)))
    writer.close()
    return out


@pytest.fixture
async def controller(tmp_path: Path, run_controller: Any) -> Any:
    cfg = make_config(
        tmp_path, gpio={"ignition_pin": 17, "antenna_stowed_pin": 27, "buzzer_pin": 23}, api={"max_line_bytes": 4096}
    )
    return await run_controller(cfg)


async def test_malformed_requests_get_errors_and_the_connection_survives(controller: Any) -> None:
    path = controller.config.api.control_socket
    raw = b"".join(
        [
            b"not json\n",
            b"[1, 2]\n",
            b'{"args": {}}\n',
            b'{"cmd": "nope", "id": "a"}\n',
            b'{"cmd": "status", "args": [1], "id": 2}\n',
            b'{"cmd": "status", "id": {"x": 1}}\n',
            b"\xff\xfe\n",
            b'{"cmd": "ping", "id": 9}\n',
        ]
    )
    replies = await exchange(path, raw, 8)
    assert [r["ok"] for r in replies] == [False] * 7 + [True]
    assert replies[0]["error"].startswith("malformed JSON")
    assert replies[3] == {"id": "a", "ok": False, "error": "unknown command 'nope'"}
    assert replies[4]["error"] == "status: args must be an object"
    assert replies[7]["result"]["pong"] is True


async def test_oversized_line_is_refused_and_the_next_request_works(controller: Any) -> None:
    path = controller.config.api.control_socket
    big = b'{"cmd": "ping", "args": {"x": "' + b"a" * 20000 + b'"}}\n'
    replies = await exchange(path, big + b'{"cmd": "ping", "id": 1}\n', 2)
    assert replies[0]["ok"] is False and "too long" in replies[0]["error"]
    assert replies[1]["ok"] is True and replies[1]["id"] == 1


async def test_kiosk_socket_only_allows_public_commands(controller: Any) -> None:
    kiosk = controller.config.api.kiosk_socket
    assert (await call_once(kiosk, "ping"))["pong"] is True
    for cmd in ("status", "sim.set", "alarms.ack", "inverter.mode", "events"):
        with pytest.raises(ClientError, match=f"{cmd}: not allowed on the kiosk socket"):
            await call_once(kiosk, cmd)


async def test_sockets_are_not_world_accessible(controller: Any) -> None:
    for path in (controller.config.api.control_socket, controller.config.api.kiosk_socket):
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode & 0o007 == 0, oct(mode)


async def test_subscribe_streams_state_changes_and_events(controller: Any) -> None:
    client = Client(controller.config.api.control_socket)
    snapshot = await client.call("subscribe", {"components": ["vehicle"]})
    assert set(snapshot) == {"vehicle"}
    controller.io.drive("ignition", True)
    seen: dict[str, Any] = {"state": None, "event": None}

    async def read() -> None:
        async for message in client.stream():
            if message.get("type") == "state" and message["changed"].get("ignition") is True:
                seen["state"] = message
            if message.get("type") == "event" and message["event"]["type"] == "vehicle.ignition":
                seen["event"] = message["event"]
            if seen["state"] and seen["event"]:
                return

    await asyncio.wait_for(read(), 10)
    assert seen["state"]["component"] == "vehicle"
    assert seen["event"]["value"] is True and seen["event"]["seq"] > 0
    await client.close()


async def test_a_client_that_disconnects_mid_stream_is_forgotten(controller: Any) -> None:
    client = Client(controller.config.api.control_socket)
    await client.call("subscribe", {})
    listeners_before = len(controller.state._listeners)
    await client.close()
    await wait_until(lambda: len(controller.state._listeners) < listeners_before, message="listener removed")
    assert (await call_once(controller.config.api.control_socket, "ping"))["pong"]


async def test_stale_socket_file_from_a_crash_is_replaced(tmp_path: Path, run_controller: Any) -> None:
    cfg = make_config(tmp_path)
    Path(cfg.api.control_socket).parent.mkdir(parents=True)
    Path(cfg.api.control_socket).write_text("left over")
    controller = await run_controller(cfg)
    assert (await call_once(controller.config.api.control_socket, "ping"))["pong"]


async def test_second_controller_refuses_a_live_socket(tmp_path: Path, run_controller: Any) -> None:
    await run_controller(make_config(tmp_path))
    with pytest.raises(OSError, match="already serving"):
        await run_controller(make_config(tmp_path, storage={"path": str(tmp_path / "other.db")}))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
async def test_random_bytes_never_break_the_socket(controller: Any, junk: bytes) -> None:
    reader, writer = await asyncio.open_unix_connection(controller.config.api.control_socket)
    writer.write(junk.replace(b"\n", b" ") + b"\n" + b'{"cmd": "ping", "id": "after"}\n')
    await writer.drain()
    while True:
        reply = json.loads(await asyncio.wait_for(reader.readline(), 5))
        if reply.get("id") == "after":
            break
    assert reply["ok"] is True
    writer.close()
