"""The checklist feature in the controller: the phase machine, the API commands, the events of each run."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..api import ApiError, Connection
from ..conditions import Condition, state_lookup
from ..tour import Stop, Tour, TourError, load_tour, unscheduled_stop
from .model import CHECKLIST_FIELDS, KINDS, PHASES, Run, StepSpec, StepState
from .store import RunStore

if TYPE_CHECKING:
    from kiosk.session import KioskManager

    from ..controller import Controller

log = logging.getLogger("allervers.checklist")

MAX_NAME = 64
MIN_REASON = 3
MAX_REASON = 300


def _text_arg(args: dict[str, Any], key: str, what: str, max_len: int = MAX_NAME, min_len: int = 1) -> str:
    value = args.get(key)
    if not isinstance(value, str) or len(value.strip()) < min_len:
        least = f"at least {min_len} characters" if min_len > 1 else "a string"
        raise ApiError(f"{key}: {what} is required ({least})")
    text = " ".join(value.split())
    if len(text) > max_len:
        raise ApiError(f"{key}: too long ({len(text)} characters, at most {max_len})")
    if any(ord(c) < 32 for c in text):
        raise ApiError(f"{key}: control characters are not allowed")
    return text


class Checklist:
    """The checklist feature inside the controller: state component, API commands, runs, events.

    >>> checklist = await Checklist.attach(controller)   # from Controller.start(), when [checklist] is set
    """

    def __init__(self, controller: Controller, section: Any):
        self.controller = controller
        self.state = controller.state
        assert controller.store is not None
        self.store = controller.store
        self.runs_store = RunStore(controller.store, controller.clock)
        self.specs: dict[str, list[StepSpec]] = {
            "arrival": [StepSpec.from_config(s) for s in section.arrival],
            "departure": [StepSpec.from_config(s) for s in section.departure],
        }
        self.schedule_path: str | None = section.schedule
        self.tour: Tour | None = None
        self.tour_mtime: float | None = None
        self.tour_error: str | None = None
        self.phase = "on_the_road"
        self.stop: dict[str, Any] | None = None
        self.driver: str | None = None
        self.run: Run | None = None
        self.visited: list[str] = []  # stop keys whose arrival completed, oldest first (by run id)
        self.lock = asyncio.Lock()
        self._watched: set[str] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self._warned: set[tuple[str, str]] = set()
        self._lookup = state_lookup(self.state, self._unknown_field)
        self._saved_meta: dict[str, str] = {}

    @classmethod
    async def attach(cls, controller: Controller) -> Checklist:
        """Create the feature, restore the phase and any run in progress, and register the commands."""
        self = cls(controller, controller.config.checklist)
        self.state.add_component("checklist", CHECKLIST_FIELDS)
        await self._restore()
        self._load_tour()
        self._unsubscribe = self.state.subscribe(self._state_changed)
        controller.on_stop.append(self.detach)
        r = controller.registry
        r.add("checklist.status", self.cmd_status, ("control",), "the phase, stop and current checklist run")
        r.add("checklist.tour", self.cmd_tour, ("control",), "the stops of a day from the schedule")
        r.add("checklist.arrive", self.cmd_arrive, ("control",), "confirm the stop and start the arrival checklist")
        r.add("checklist.tick", self.cmd_tick, ("control",), "tick or untick a step (by the driver)")
        r.add("checklist.finish", self.cmd_finish, ("control",), "open to the public / ready to leave")
        r.add("checklist.depart", self.cmd_depart, ("control",), "close to the public, start the departure checklist")
        r.add("checklist.cancel", self.cmd_cancel, ("control",), "abandon the current checklist run")
        self._evaluate(emit=False)
        self._publish()
        return self

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # --- persistence ---

    async def _restore(self) -> None:
        meta, recent, current = await self.runs_store.load()
        self._saved_meta = dict(meta)
        self.phase = meta.get("phase", "on_the_road")
        if self.phase not in PHASES:
            self.phase = "on_the_road"
        self.stop = json.loads(meta["stop"]) if meta.get("stop") else None
        self.driver = meta.get("driver")
        self.visited = [
            json.loads(stop).get("key")
            for _id, kind, stop, outcome in reversed(recent)
            if kind == "arrival" and outcome in ("completed", "overridden")
        ]
        if current is not None and self.phase == current[1]:
            run_id, kind, stop, driver, started_seq, confirmations, overrides = current
            run = self._new_run(run_id, kind, json.loads(stop), driver)
            run.started_seq = started_seq
            run.overrides = json.loads(overrides)
            for sid, mark in json.loads(confirmations).items():
                if sid in run.steps:
                    st = run.steps[sid]
                    st.confirmed, st.confirmed_by, st.confirmed_seq = True, mark.get("by"), mark.get("seq")
            self.run = run
            self._evaluate(emit=False)
            await self._emit("checklist.resumed", run=run.id, kind=kind, pending_required=run.pending_required())
        elif self.phase in KINDS:
            # The phase says a run is going on but none is stored (a crash between two writes): start afresh.
            self.phase = "on_the_road" if self.phase == "arrival" else "open"

    async def _save_meta(self) -> None:
        current = {
            "phase": self.phase,
            "stop": json.dumps(self.stop, ensure_ascii=False) if self.stop else "",
            "driver": self.driver or "",
        }
        values = {k: v for k, v in current.items() if self._saved_meta.get(k) != v}  # only what changed: SD wear
        if not values:
            return
        self._saved_meta.update(values)
        await self.runs_store.save_meta(values)

    async def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest stored runs, newest first (for tools and tests)."""
        return await self.runs_store.runs(limit)

    # --- the live part ---

    def _new_run(self, run_id: int, kind: str, stop: dict[str, Any], driver: str) -> Run:
        steps = {spec.id: StepState(spec) for spec in self.specs[kind]}
        self._watched = {c for spec in self.specs[kind] if spec.condition for c in spec.condition.components}
        return Run(run_id, kind, stop, driver, steps)

    def _unknown_field(self, component: str, field_name: str) -> None:
        if (component, field_name) not in self._warned:
            self._warned.add((component, field_name))
            log.warning("checklist condition names %s.%s: that component has no such field", component, field_name)

    def _applies(self, condition: Condition) -> bool:
        """A condition over a device this bus does not have (no such component, or "not configured") is moot."""
        for name in condition.components:
            comp = self.state.components.get(name)
            if comp is None or (comp.stale and comp.stale_reason == "not configured"):
                return False
        return True

    def _evaluate(self, *, emit: bool = True) -> bool:
        """Re-evaluate the auto steps of the current run; emit an event per step whose done-ness changed."""
        run = self.run
        if run is None:
            return False
        changed = False
        for st in run.steps.values():
            cond = st.spec.condition
            if cond is None:
                continue
            was_done = st.done
            st.applies = self._applies(cond)
            st.sensor = cond.evaluate(self._lookup) if st.applies else None
            if st.done != was_done:
                changed = True
                if emit:
                    self._emit_auto_step(run, st)
        return changed

    def _emit_auto_step(self, run: Run, st: StepState) -> None:
        by = st.by if st.done else "auto"
        fut = self._emit(
            "checklist.step",
            run=run.id,
            kind=run.kind,
            step=st.spec.id,
            done=st.done,
            status=st.status,
            by=by,
            stop=run.stop,
        )

        def record(f: asyncio.Future, st: StepState = st) -> None:
            if not f.cancelled() and f.exception() is None:
                st.sensor_seq = f.result()["seq"]

        fut.add_done_callback(record)

    def _state_changed(self, component: str, changed: dict[str, Any], full: dict[str, Any]) -> None:
        if component == "checklist" or self.run is None or component not in self._watched:
            return
        if self._evaluate():
            self._publish()

    def _publish(self) -> None:
        run = self.run
        self.state.update(
            "checklist",
            {
                "stop": self.stop,
                "phase": self.phase,
                "done": run.done() if run else [],
                "pending_required": run.pending_required() if run else [],
            },
        )

    def _emit(self, etype: str, **data: Any) -> asyncio.Future:
        return self.store.append_event(etype, **data)

    async def _set_phase(self, phase: str, stop: dict[str, Any] | None, by: str) -> None:
        stop_changed = stop != self.stop
        self.phase, self.stop, self.driver = phase, stop, by
        if stop_changed:
            await self._emit("checklist.stop", stop=stop, by=by)
        await self._save_meta()

    # --- the public terminal ---

    async def _kiosk(self, action: str) -> dict[str, Any]:
        """Open or close the public terminal when this bus has one; say so when it does not."""
        kiosk: KioskManager | None = self.controller.lookup("kiosk")
        if kiosk is None:
            return {"kiosk": "not_configured"}
        try:
            result = await (kiosk.open_public(kiosk.open_stop) if action == "open" else kiosk.close_public())
        except Exception as exc:  # the kiosk failing must not strand the driver mid-checklist
            error = str(exc) or type(exc).__name__
            log.warning("kiosk.%s failed: %s", action, error)
            await self._emit("checklist.kiosk_error", action=action, error=error, stop=self.stop)
            return {"kiosk": "error", "kiosk_error": error}
        return {"kiosk": "opened" if action == "open" else "closed", "kiosk_result": result}

    # --- the schedule ---

    def _load_tour(self) -> None:
        path = self.schedule_path
        if path is None:
            return
        try:
            mtime = os.stat(path).st_mtime
        except OSError as exc:
            self.tour, self.tour_mtime = None, None
            self.tour_error = f"{os.path.basename(path)}: cannot read {path}: {exc.strerror or exc}"
            return
        if mtime == self.tour_mtime and (self.tour is not None or self.tour_error):
            return
        self.tour_mtime = mtime
        try:
            self.tour, self.tour_error = load_tour(path), None
        except TourError as exc:
            self.tour, self.tour_error = None, str(exc)
        if self.tour_error:
            log.warning("schedule: %s", self.tour_error)
        for problem in self.tour.errors if self.tour else []:
            log.warning("schedule: %s", problem)

    def _schedule_errors(self) -> list[str]:
        if self.tour_error:
            return [self.tour_error]
        return list(self.tour.errors) if self.tour else []

    def today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.controller.clock()).date()

    # --- API commands ---

    def cmd_status(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        return self.status()

    def status(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "stop": self.stop,
            "driver": self.driver,
            "run": self.run.as_dict() if self.run else None,
            "schedule": {"path": self.schedule_path, "errors": self._schedule_errors()},
        }

    def cmd_tour(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        raw = args.get("date")
        if raw is None:
            day = self.today()
        else:
            try:
                day = dt.date.fromisoformat(raw) if isinstance(raw, str) else None
            except ValueError:
                day = None
            if day is None:
                raise ApiError(f"date: must be YYYY-MM-DD, got {raw!r}")
        self._load_tour()
        stops = self.tour.on(day) if self.tour else []
        visited = set(self.visited)
        # The suggestion follows the order of the day, after the last stop visited: sequence, not the clock.
        last_done = max((i for i, s in enumerate(stops) if s.key in visited), default=-1)
        suggested = next((s.key for s in stops[last_done + 1 :] if s.key not in visited), None)
        return {
            "date": day.isoformat(),
            "clock_synced": self.controller.clock_synced(),
            "stops": [{**s.as_dict(), "visited": s.key in visited} for s in stops],
            "suggested": suggested,
            "schedule": {"path": self.schedule_path, "errors": self._schedule_errors()},
        }

    def _resolve_stop(self, raw: Any) -> Stop:
        if isinstance(raw, str):
            self._load_tour()
            stop = self.tour.find(raw) if self.tour else None
            if stop is None:
                raise ApiError(f"stop: no stop {raw!r} in the schedule (pick one from checklist.tour or type one)")
            return stop
        try:
            return unscheduled_stop(raw, self.today())
        except ValueError as exc:
            raise ApiError(str(exc) if str(exc).startswith("stop") else f"stop: {exc}") from None

    async def cmd_arrive(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        by = _text_arg(args, "by", "the driver's name")
        stop = self._resolve_stop(args.get("stop")).tag()
        async with self.lock:
            if self.phase == "arrival" and self.run is not None:
                # Picked the wrong stop: same run, same ticks (the bus is parked the same way), new stop.
                self.run.stop = stop
                await self._set_phase("arrival", stop, by)
                await self.runs_store.save_marks(self.run)
                self._publish()
                return self.status()
            if self.phase != "on_the_road":
                where = (self.stop or {}).get("commune", "?")
                raise ApiError(f"the bus is {self.phase.replace('_', ' ')} at {where}: finish or cancel that first")
            await self._start_run("arrival", stop, by)
            return self.status()

    async def _start_run(self, kind: str, stop: dict[str, Any], by: str) -> None:
        run_id = await self.runs_store.insert(kind, stop, by)
        self.run = self._new_run(run_id, kind, stop, by)
        self._evaluate(emit=False)
        await self._set_phase(kind, stop, by)
        auto_done = [s.spec.id for s in self.run.steps.values() if s.spec.kind == "auto" and s.status == "done"]
        moot = [s.spec.id for s in self.run.steps.values() if s.status == "n/a"]
        event = await self._emit(
            "checklist.started", run=run_id, kind=kind, stop=stop, by=by, auto_done=auto_done, not_applicable=moot
        )
        self.run.started_seq = event["seq"]
        for st in self.run.steps.values():
            if st.by == "auto":
                st.sensor_seq = event["seq"]

        await self.runs_store.mark_started(run_id, event["seq"])
        self._publish()

    async def cmd_tick(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        by = _text_arg(args, "by", "the driver's name")
        done = args.get("done", True)
        if not isinstance(done, bool):
            raise ApiError("done: must be true or false")
        async with self.lock:
            run = self.run
            if run is None:
                raise ApiError(f"no checklist is running (the bus is {self.phase.replace('_', ' ')})")
            sid = args.get("step")
            st = run.steps.get(sid) if isinstance(sid, str) else None
            if st is None:
                raise ApiError(f"step: no step {sid!r} in the {run.kind} checklist (known: {', '.join(run.steps)})")
            if st.spec.kind == "auto" and done:
                if st.status == "n/a":
                    raise ApiError(f"{sid}: does not apply on this bus ({st.spec.condition})")
                if st.sensor is False:
                    raise ApiError(
                        f"{sid}: the sensors say not yet ({st.spec.condition} is false); "
                        "fix it, or finish with a reason to override"
                    )
            if st.confirmed == done:
                return self.status()
            st.confirmed, st.confirmed_by = done, by if done else None
            event = await self._emit(
                "checklist.step",
                run=run.id,
                kind=run.kind,
                step=sid,
                done=done,
                status=st.status,
                by=by,
                stop=run.stop,
            )
            st.confirmed_seq = event["seq"] if done else None
            self.driver = by
            await self.runs_store.save_marks(run)
            self._publish()
            return self.status()

    async def cmd_finish(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        by = _text_arg(args, "by", "the driver's name")
        reason = args.get("reason")
        async with self.lock:
            run = self.run
            if run is None:
                raise ApiError(f"no checklist is running (the bus is {self.phase.replace('_', ' ')})")
            self._evaluate()
            pending = run.pending_required()
            if pending and reason is None:
                raise ApiError(f"required steps not done: {', '.join(pending)}; do them, or give a reason to override")
            if pending:
                reason = _text_arg(args, "reason", "a reason for the override", MAX_REASON, MIN_REASON)
                for sid in pending:
                    event = await self._emit(
                        "checklist.override",
                        run=run.id,
                        kind=run.kind,
                        step=sid,
                        status=run.steps[sid].status,
                        reason=reason,
                        by=by,
                        stop=run.stop,
                    )
                    run.overrides.append({"step": sid, "reason": reason, "by": by, "seq": event["seq"]})
            outcome = "overridden" if pending else "completed"
            skipped = [s.spec.id for s in run.steps.values() if not s.done and not s.spec.required]
            ended = await self._emit(
                "checklist.ended",
                run=run.id,
                kind=run.kind,
                outcome=outcome,
                stop=run.stop,
                by=by,
                done={s.spec.id: s.by for s in run.steps.values() if s.done},
                overridden=pending,
                skipped=skipped,
            )
            await self.runs_store.end(run, outcome, ended["seq"])
            self.run = None
            self._watched = set()
            if run.kind == "arrival":
                self.visited.append(run.stop.get("key"))
                await self._set_phase("open", run.stop, by)
                self._publish()
                result = await self._kiosk("open")
            else:
                await self._set_phase("on_the_road", None, by)
                self._publish()
                result = {}
            return {**self.status(), "outcome": outcome, **result}

    async def cmd_depart(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        by = _text_arg(args, "by", "the driver's name")
        async with self.lock:
            if self.phase != "open" or self.stop is None:
                raise ApiError(f"the bus is not open at a stop (it is {self.phase.replace('_', ' ')})")
            # Close the public terminal first: the departure checklist then sees it closed and wiped.
            result = await self._kiosk("close")
            await self._start_run("departure", self.stop, by)
            return {**self.status(), **result}

    async def cmd_cancel(self, args: dict[str, Any], conn: Connection) -> dict[str, Any]:
        by = _text_arg(args, "by", "the driver's name")
        async with self.lock:
            run = self.run
            if run is None:
                raise ApiError(f"no checklist is running (the bus is {self.phase.replace('_', ' ')})")
            ended = await self._emit(
                "checklist.ended", run=run.id, kind=run.kind, outcome="cancelled", stop=run.stop, by=by
            )
            await self.runs_store.end(run, "cancelled", ended["seq"])
            self.run = None
            self._watched = set()
            result: dict[str, Any] = {}
            if run.kind == "arrival":
                await self._set_phase("on_the_road", None, by)
            else:
                # Not leaving after all: back to open, and the public terminal with it.
                await self._set_phase("open", run.stop, by)
                self._publish()
                result = await self._kiosk("open")
            self._publish()
            return {**self.status(), **result}
