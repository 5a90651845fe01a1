"""The console's data source: the controller's control socket, one connection streaming state, one for commands."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from ..api import Client, ClientError

RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # a controller restart takes a second or two: reconnect quickly, then calmly


DOWN_REASONS = ("unreachable", "closed", "timeout", "garbled")


def down_reason(exc: BaseException) -> str:
    """Why the link is down, as one of DOWN_REASONS (the console words each in French)."""
    text = str(exc)
    if isinstance(exc, TimeoutError):
        return "timeout"
    if "cannot reach" in text or isinstance(exc, OSError):
        return "unreachable"
    if "closed the connection" in text:
        return "closed"
    return "garbled"


def link_failed(exc: BaseException) -> bool:
    """Whether a command failed because the controller is away (rather than answering an error)."""
    return down_reason(exc) != "garbled"


class ControllerLink:
    """Talks to ``allervers run`` over its control socket; survives the controller restarting.

    ``run(on_connected, on_state, on_down)`` streams until cancelled: ``on_connected(snapshot)`` after each
    (re)connection, ``on_state(component, values)`` per change, ``on_down(reason, detail)`` when the link drops
    (``reason`` one of DOWN_REASONS, for the screen's words; ``detail`` the technical text).
    ``call(cmd, args)`` sends one command on its own connection (reopened when needed).
    """

    def __init__(self, socket_path: str, *, timeout_s: float = 10.0):
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self._calls: Client | None = None
        self._lock = asyncio.Lock()
        self.connected = False

    async def call(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        async with self._lock:  # one request at a time on the command connection
            for attempt in (1, 2):
                if self._calls is None:
                    self._calls = Client(self.socket_path)
                try:
                    return await self._calls.call(cmd, args or {}, timeout=self.timeout_s)
                except ClientError as exc:
                    if "closed the connection" not in str(exc) and "cannot reach" not in str(exc):
                        raise  # the controller answered an error: that is the answer
                    await self._drop_calls()
                    if attempt == 2:
                        raise
                except (OSError, TimeoutError, json.JSONDecodeError) as exc:
                    await self._drop_calls()
                    if attempt == 2:
                        raise ClientError(f"{cmd}: {exc or type(exc).__name__}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _drop_calls(self) -> None:
        if self._calls is not None:
            with contextlib.suppress(Exception):
                await self._calls.close()
            self._calls = None

    async def run(
        self,
        on_connected: Callable[[dict[str, Any]], None],
        on_state: Callable[[str, dict[str, Any]], None],
        on_down: Callable[[str, str], None],
    ) -> None:
        failures = 0
        while True:
            client = Client(self.socket_path)
            try:
                snapshot = await client.call("subscribe", {"events": False}, timeout=self.timeout_s)
                self.connected = True
                failures = 0
                on_connected(snapshot)
                async for message in client.stream():
                    if message.get("type") == "state":
                        on_state(message["component"], message["values"])
                reason, detail = "closed", "the controller closed the connection"
            except (ClientError, OSError, TimeoutError, json.JSONDecodeError, KeyError) as exc:
                reason, detail = down_reason(exc), str(exc) or type(exc).__name__
            finally:
                await client.close()
            if self.connected or failures == 0:
                on_down(reason, detail)
            self.connected = False
            await self._drop_calls()
            await asyncio.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
            failures += 1

    async def close(self) -> None:
        await self._drop_calls()
