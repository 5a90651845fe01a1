"""Local API: JSON-lines requests over Unix sockets (control and kiosk), each with its own allowed commands."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Handler = Callable[[dict[str, Any], "Connection"], Awaitable[Any] | Any]


class ApiError(Exception):
    """An error reply to one request; the connection stays open."""


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    sockets: frozenset[str]
    help: str = ""


class Registry:
    """Commands by name; each says which sockets may call it (the kiosk socket gets only what a public
    terminal may ask for)."""

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}

    def add(self, name: str, handler: Handler, sockets: tuple[str, ...] = ("control",), help: str = "") -> None:
        if name in self.commands:
            raise ValueError(f"API command {name!r} registered twice")
        self.commands[name] = Command(name, handler, frozenset(sockets), help)


@dataclass(eq=False)
class Connection:
    """One client; handlers may attach cleanups (ending a subscription) and push stream lines."""

    socket_name: str
    writer: asyncio.StreamWriter
    peer_uid: int | None
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    closed: bool = False
    max_queue: int = 1000
    _queue: asyncio.Queue | None = None
    _pump_task: asyncio.Task | None = None

    def send(self, message: dict[str, Any]) -> None:
        """Queue a line to the client; a client too slow to read is dropped rather than grow memory."""
        if self.closed:
            return
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._pump_task = asyncio.get_running_loop().create_task(self._pump())
        if self._queue.qsize() >= self.max_queue:
            self.close()
            return
        self._queue.put_nowait(message)

    async def _pump(self) -> None:
        assert self._queue is not None
        try:
            while not self.closed:
                message = await self._queue.get()
                self.writer.write(encode(message))
                await self.writer.drain()
        except (ConnectionError, OSError):
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for cleanup in self.cleanups:
                cleanup()
            if self._pump_task is not None and self._pump_task is not asyncio.current_task():
                self._pump_task.cancel()
            self.writer.close()


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=str) + "\n").encode()


class SocketServer:
    """Serves one Unix socket; the registry decides what it may do."""

    def __init__(self, name: str, path: str, registry: Registry, *, max_line: int = 65536, mode: int = 0o660):
        self.name = name
        self.path = path
        self.registry = registry
        self.max_line = max_line
        self.mode = mode
        self.connections: set[Connection] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        p = Path(self.path)
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.is_socket() or p.exists():
            # A socket left by a crash; refuse to steal one another live controller is serving.
            if await _is_live(self.path):
                raise OSError(f"{self.path}: another controller is already serving this socket")
            p.unlink()
        self._server = await asyncio.start_unix_server(self._client, path=self.path, limit=self.max_line)
        os.chmod(self.path, self.mode)

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            for conn in list(self.connections):
                conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(self.name, writer, _peer_uid(writer))
        self.connections.add(conn)
        try:
            while not conn.closed:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:
                    if exc.partial.strip():
                        await self._answer(conn, exc.partial)
                    break
                except asyncio.LimitOverrunError:
                    await _discard_line(reader, self.max_line)
                    await self._reply(conn, None, error=f"request too long (limit {self.max_line} bytes)")
                    continue
                if line.strip():
                    await self._answer(conn, line)
        except (ConnectionError, OSError):
            pass
        finally:
            self.connections.discard(conn)
            conn.close()

    async def _answer(self, conn: Connection, line: bytes) -> None:
        try:
            request = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            await self._reply(conn, None, error=f"malformed JSON: {exc}")
            return
        if not isinstance(request, dict):
            await self._reply(conn, None, error='a request must be a JSON object {"cmd": ..., "args": {...}}')
            return
        rid = request.get("id")
        if rid is not None and not isinstance(rid, (str, int)):
            await self._reply(conn, None, error="id must be a string or an integer")
            return
        name = request.get("cmd")
        args = request.get("args", {})
        if not isinstance(name, str):
            await self._reply(conn, rid, error="missing cmd (a string)")
            return
        if not isinstance(args, dict):
            await self._reply(conn, rid, error=f"{name}: args must be an object")
            return
        command = self.registry.commands.get(name)
        if command is None:
            await self._reply(conn, rid, error=f"unknown command {name!r}")
            return
        if self.name not in command.sockets:
            await self._reply(conn, rid, error=f"{name}: not allowed on the {self.name} socket")
            return
        try:
            result = command.handler(args, conn)
            if asyncio.iscoroutine(result):
                result = await result
        except ApiError as exc:
            await self._reply(conn, rid, error=f"{name}: {exc}")
        except Exception as exc:  # a bug in one handler must not take the socket down
            await self._reply(conn, rid, error=f"{name}: internal error: {type(exc).__name__}: {exc}")
        else:
            await self._reply(conn, rid, result=result)

    async def _reply(self, conn: Connection, rid: Any, *, result: Any = None, error: str | None = None) -> None:
        message: dict[str, Any] = {"id": rid, "ok": error is None}
        if error is None:
            message["result"] = result
        else:
            message["error"] = error
        if conn._queue is not None:  # a subscriber: keep replies in order with the stream
            conn.send(message)
            return
        conn.writer.write(encode(message))
        await conn.writer.drain()


async def _discard_line(reader: asyncio.StreamReader, limit: int) -> None:
    """Skip the rest of an overlong line without buffering it."""
    while True:
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as exc:
            await reader.readexactly(exc.consumed)
        except asyncio.IncompleteReadError:
            return


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        return int.from_bytes(creds[4:8], "little")
    except (OSError, AttributeError):
        return None


async def _is_live(path: str) -> bool:
    try:
        _r, w = await asyncio.wait_for(asyncio.open_unix_connection(path), 1)
    except (OSError, TimeoutError):
        return False
    w.close()
    return True


# --- client side (CLI, console, kiosk launcher) -----------------------------------------------------------


class ClientError(RuntimeError):
    """The controller could not be reached or answered an error."""


class Client:
    """A small asyncio client for the JSON-lines sockets."""

    def __init__(self, path: str, *, limit: int = 4 * 1024 * 1024):
        self.path = path
        self.limit = limit
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._next_id = 0

    async def connect(self, timeout: float = 3.0) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self.path, limit=self.limit), timeout
            )
        except (OSError, TimeoutError) as exc:
            raise ClientError(
                f"cannot reach the controller at {self.path}: {exc} (is `allervers run` started?)"
            ) from None

    async def call(self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        if self._writer is None:
            await self.connect()
        assert self._reader and self._writer
        self._next_id += 1
        rid = self._next_id
        self._writer.write(encode({"cmd": cmd, "args": args or {}, "id": rid}))
        await self._writer.drain()
        while True:
            line = await asyncio.wait_for(self._reader.readline(), timeout)
            if not line:
                raise ClientError(f"{cmd}: the controller closed the connection")
            message = json.loads(line)
            if message.get("id") != rid or "ok" not in message:
                continue  # a stream line of a subscription on this connection
            if not message["ok"]:
                raise ClientError(message.get("error", "error"))
            return message.get("result")

    async def stream(self) -> Any:
        """Yield stream messages (after ``call("subscribe")``)."""
        assert self._reader
        while True:
            line = await self._reader.readline()
            if not line:
                return
            yield json.loads(line)

    async def close(self) -> None:
        if self._writer:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._writer = None


async def call_once(path: str, cmd: str, args: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    client = Client(path)
    try:
        return await client.call(cmd, args, timeout)
    finally:
        await client.close()
