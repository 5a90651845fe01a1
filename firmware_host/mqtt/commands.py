"""Remote commands from the office (``<p>/cmd/<name>``): validated, replay-proof, logged, answered.

The request and reply are those of firmware_host/mqtt/protocol.py. A request is rejected, with a reply naming
the reason and without being acted on, when it is larger than 4 KiB, not JSON, not an object, without a valid id,
a replay (an id already seen: ids are remembered on disk for at least 24 hours), without ``expires`` or past it,
an unknown command, or has bad args. Every command, accepted or rejected, becomes an ``mqtt.command`` event.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlite_utils

from ..api import ApiError
from ..store import merge_aggregate
from .protocol import COMMANDS, MAX_EXPIRES_AHEAD_S, MAX_ID_CHARS, MAX_REPLY_BYTES, MAX_REQUEST_BYTES, encode

if TYPE_CHECKING:
    from kiosk.session import KioskManager

REPLAY_MEMORY_S = 86400.0
HISTORY_MAX_METRICS = 8
HISTORY_MAX_RANGE_S = 31 * 86400
_METRIC = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*")
TABLE = "mqtt_command_ids"


class Rejected(Exception):
    """A request refused before anything was done; the message is the reason sent back."""


@dataclass
class Request:
    name: str
    id: str
    expires: float
    args: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # found while parsing, reported after the replay check


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Commands:
    """Validates and runs remote commands against the controller; ``republish(components)`` is the link's
    "publish this state now" (for ``refresh``), ``status()`` extra facts for ``ping``."""

    def __init__(
        self,
        controller: Any,
        *,
        republish: Callable[[list[str] | None], Awaitable[list[str]] | list[str]],
        status: Callable[[], dict[str, Any]] = dict,
        clock: Callable[[], float] | None = None,
    ):
        self.controller = controller
        self.store = controller.store
        self.republish = republish
        self.status = status
        self.clock = clock or controller.clock
        self.handled = 0
        self.rejected = 0

    async def open(self) -> None:
        def create(db: sqlite_utils.Database) -> None:
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} ( id TEXT PRIMARY KEY, received_ts REAL NOT NULL, expires REAL)"
            )

        await self.store.run(create)
        await self.prune()

    async def prune(self) -> int:
        """Forget ids older than a day *and* expired for a day: a clock that jumps forward at NTP sync cannot
        make the bus forget an id whose request could still be accepted."""
        cutoff = self.clock() - REPLAY_MEMORY_S

        def delete(db: sqlite_utils.Database) -> int:
            cur = db.execute(
                f"DELETE FROM {TABLE} WHERE received_ts < ? AND (expires IS NULL OR expires < ?)", (cutoff, cutoff)
            )
            return cur.rowcount

        return await self.store.run(delete)

    # --- one request -----------------------------------------------------------------------------------------

    async def handle(self, name: str, payload: bytes) -> dict[str, Any]:
        """Run one request; returns the reply (also logged as an event)."""
        rid: str | None = None
        request: Request | None = None
        try:
            request = self._parse(name, payload)
            rid = request.id
            result = await self._run(request)
        except Rejected as exc:
            reply = {"id": rid, "ok": False, "error": str(exc), "result": None}
        except ApiError as exc:
            reply = {"id": rid, "ok": False, "error": f"{name}: {exc}", "result": None}
        except Exception as exc:  # a bug in one handler must not take the link down
            reply = {
                "id": rid,
                "ok": False,
                "error": f"{name}: internal error: {type(exc).__name__}: {exc}",
                "result": None,
            }
        else:
            reply = {"id": rid, "ok": True, "error": None, "result": result}
        if reply["ok"]:
            self.handled += 1
        else:
            self.rejected += 1
        if len(encode(reply)) > MAX_REPLY_BYTES:
            reply = {"id": rid, "ok": False, "error": f"{name}: reply too large for the link", "result": None}
        event: dict[str, Any] = {"command": name[:64], "id": rid, "ok": reply["ok"], "error": reply["error"]}
        if request is not None and request.args and len(encode(request.args)) <= 512:
            event["args"] = request.args
        await self.store.append_event("mqtt.command", **event)
        return reply

    def _parse(self, name: str, payload: bytes) -> Request:
        if len(payload) > MAX_REQUEST_BYTES:
            raise Rejected(f"request too large: {len(payload)} bytes (limit {MAX_REQUEST_BYTES})")
        try:
            body = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise Rejected(f"malformed JSON: {exc}") from None
        if not isinstance(body, dict):
            raise Rejected('a request must be a JSON object {"id": ..., "expires": ..., "args": {...}}')
        rid = body.get("id")
        if not isinstance(rid, str) or not 1 <= len(rid) <= MAX_ID_CHARS:
            raise Rejected(f"id must be a string of 1..{MAX_ID_CHARS} characters")
        expires = body.get("expires")
        args = body.get("args", {})
        unknown = sorted(set(body) - {"id", "expires", "args"})
        # From here the id is known and echoed in the reply. The remaining problems are raised in _run, after the
        # replay check, so that even a rejected id can never be used again.
        problem = None
        if expires is None:
            problem = "missing expires (epoch seconds after which the request must be ignored)"
        elif not _number(expires):
            problem = "expires must be a number of epoch seconds"
        elif not isinstance(args, dict):
            problem = "args must be an object"
        elif unknown:
            problem = f"unknown request field(s): {', '.join(unknown)}"
        return Request(
            name, rid, expires if _number(expires) else math.nan, args if isinstance(args, dict) else {}, problem
        )

    async def _run(self, request: Request) -> Any:
        now = self.clock()
        if not await self._remember(request, now):
            raise Rejected(f"replay: id {request.id!r} was already seen")
        if request.problem is not None:
            raise Rejected(request.problem)
        if request.expires < now:
            raise Rejected(f"expired: expires {request.expires:.0f} is {now - request.expires:.0f} s in the past")
        if self.controller.clock_synced() and request.expires > now + MAX_EXPIRES_AHEAD_S:
            raise Rejected(f"expires too far ahead (more than {MAX_EXPIRES_AHEAD_S:.0f} s from now)")
        handler = getattr(self, "_cmd_" + request.name.replace(".", "_"), None) if request.name in COMMANDS else None
        if handler is None:
            raise Rejected(f"unknown command {request.name!r} (known: {', '.join(COMMANDS)})")
        result = handler(request.args)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    async def _remember(self, request: Request, now: float) -> bool:
        expires = request.expires if _number(request.expires) else None

        def insert(db: sqlite_utils.Database) -> bool:
            cur = db.execute(
                f"INSERT OR IGNORE INTO {TABLE} (id, received_ts, expires) VALUES (?, ?, ?)", (request.id, now, expires)
            )
            return cur.rowcount == 1

        return await self.store.run(insert)

    # --- the commands ---------------------------------------------------------------------------------------

    @staticmethod
    def _no_args(name: str, args: dict[str, Any]) -> None:
        if args:
            raise Rejected(f"bad args: {name} takes no args, got {', '.join(sorted(args))}")

    def _cmd_ping(self, args: dict[str, Any]) -> dict[str, Any]:
        self._no_args("ping", args)
        return {"pong": True, "vehicle": self.controller.config.vehicle.id, "ts": self.clock(), **self.status()}

    async def _cmd_refresh(self, args: dict[str, Any]) -> dict[str, Any]:
        extra = set(args) - {"components"}
        if extra:
            raise Rejected(f"bad args: refresh takes only components, got {', '.join(sorted(extra))}")
        components = args.get("components")
        known = list(self.controller.state.components)
        if components is not None:
            if not isinstance(components, list) or not all(isinstance(c, str) for c in components):
                raise Rejected("bad args: components must be a list of component names")
            unknown = [c for c in components if c not in known]
            if unknown:
                raise Rejected(f"bad args: unknown component(s) {', '.join(unknown)} (known: {', '.join(known)})")
        published = self.republish(components)
        if asyncio.iscoroutine(published):
            published = await published
        return {"published": published}

    def _cmd_alarms(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        self._no_args("alarms", args)
        alarms = self.controller.alarms
        return alarms.as_list() if alarms is not None else []

    async def _cmd_history(self, args: dict[str, Any]) -> dict[str, Any]:
        metrics, start, end, step, after = self._history_args(args)
        store = self.store
        first_minute = math.floor(start / 60)
        # Bucket starts are aligned on multiples of the step so that pages always split between buckets.
        cursor = after
        rows: list[list[Any]] = []
        size = len(encode({"id": "x" * MAX_ID_CHARS, "ok": True, "error": None, "result": {}})) + 160
        size += len(encode(metrics))
        budget = MAX_REPLY_BYTES
        bucket: list[Any] | None = None
        next_after: int | None = None
        done = False
        while not done:
            page = await store.history(metrics, start, end, after_minute=cursor, limit=500)
            if not page:
                break
            for row in page:
                minute = row["minute"]
                start_of = max(first_minute, minute - minute % step)
                if bucket is not None and bucket[0] != start_of:
                    cost = len(encode(bucket)) + 1
                    if size + cost > budget:
                        next_after = bucket[0] - 1
                        bucket = None
                        done = True
                        break
                    rows.append(bucket)
                    size += cost
                    bucket = None
                if bucket is None:
                    bucket = [start_of, *([None] * len(metrics))]
                for i, metric in enumerate(metrics):
                    agg = row.get(metric)
                    if agg is not None:
                        bucket[i + 1] = merge_aggregate(bucket[i + 1], agg)
            else:
                cursor = page[-1]["minute"]
                if len(page) < 500:
                    break
        if bucket is not None:
            cost = len(encode(bucket)) + 1
            if size + cost > budget:
                next_after = bucket[0] - 1
            else:
                rows.append(bucket)
        return {
            "metrics": metrics,
            "step_min": step,
            "columns": ["minute", *metrics],
            "aggregate": ["min", "max", "mean", "count"],
            "rows": rows,
            "next_after_minute": next_after,
        }

    def _history_args(self, args: dict[str, Any]) -> tuple[list[str], float, float, int, int | None]:
        extra = set(args) - {"metrics", "start", "end", "step_min", "after_minute"}
        if extra:
            raise Rejected(f"bad args: history does not take {', '.join(sorted(extra))}")
        metrics = args.get("metrics")
        if (
            not isinstance(metrics, list)
            or not 1 <= len(metrics) <= HISTORY_MAX_METRICS
            or not all(isinstance(m, str) for m in metrics)
        ):
            raise Rejected(f"bad args: metrics must be a list of 1..{HISTORY_MAX_METRICS} names like 'power.soc'")
        components = self.controller.state.components
        for m in metrics:
            if not _METRIC.fullmatch(m) or m.split(".", 1)[0] not in components:
                raise Rejected(f"bad args: unknown metric {m!r} (names are <component>.<field>, e.g. power.soc)")
        start, end = args.get("start"), args.get("end")
        if not _number(start) or not _number(end):
            raise Rejected("bad args: start and end must be epoch seconds")
        if end <= start:
            raise Rejected("bad args: end must be after start")
        if end - start > HISTORY_MAX_RANGE_S:
            raise Rejected(f"bad args: range longer than {HISTORY_MAX_RANGE_S // 86400} days")
        step = args.get("step_min", 1)
        if not isinstance(step, int) or isinstance(step, bool) or not 1 <= step <= 1440:
            raise Rejected("bad args: step_min must be an integer 1..1440")
        after = args.get("after_minute")
        if after is not None and (not isinstance(after, int) or isinstance(after, bool) or after < 0):
            raise Rejected("bad args: after_minute must be the next_after_minute of the previous page")
        return list(metrics), float(start), float(end), step, after

    def _kiosk(self) -> KioskManager:
        kiosk: KioskManager | None = self.controller.lookup("kiosk")
        if kiosk is None:
            raise Rejected("no kiosk is configured on this bus")
        return kiosk

    async def _cmd_kiosk_lock(self, args: dict[str, Any]) -> Any:
        return await self._kiosk().lock(args.get("reason"))

    async def _cmd_kiosk_unlock(self, args: dict[str, Any]) -> Any:
        return await self._kiosk().unlock()

    async def _cmd_kiosk_end_session(self, args: dict[str, Any]) -> Any:
        return await self._kiosk().end_session_remotely()

    async def _cmd_inverter_mode(self, args: dict[str, Any]) -> Any:
        inverter = self.controller.config.inverter
        if inverter is None:
            raise Rejected("no inverter configured on this bus")
        if not inverter.allow_writes:
            raise Rejected("writes to the inverter are disabled on this bus (inverter.allow_writes = false)")
        extra = set(args) - {"mode"}
        if extra or not isinstance(args.get("mode"), str):
            raise Rejected('bad args: inverter.mode takes {"mode": "<mode name>"}')
        return await self.controller.set_inverter_mode(args["mode"])
