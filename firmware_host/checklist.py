"""The driver's checklists on the controller: the current stop, arrival and departure runs, overrides, events.

The bus goes round four phases: ``on_the_road`` -> (stop confirmed) ``arrival`` -> (``Ouvrir au public``)
``open`` -> (closing) ``departure`` -> (``Prêt à partir``) ``on_the_road``. Arrival and departure are checklist
runs: manual steps are ticked by the driver, auto steps follow a condition over the live state
(firmware_host/conditions.py) and tick and untick themselves. A required step not done blocks the end of a run
unless the driver overrides it with a typed reason. Every run is stored (table ``checklist_runs``) and every
start, step, override and end is an event tagged with the stop; the phase survives a restart of the controller.

Step status: ``done``; ``todo`` (a manual step not ticked, or an auto step whose sensor is silent and that the
driver has not confirmed by hand); ``no`` (the sensor says not yet: only an override gets past it); ``n/a`` (the
condition names a device this bus does not have, e.g. no public terminal).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .api import ApiError, Connection
from .conditions import Condition, compile_condition, condition_problem
from .tour import Stop, Tour, TourError, load_tour, unscheduled_stop

if TYPE_CHECKING:
    import sqlite_utils

    from .controller import Controller

log = logging.getLogger("allervers.checklist")

PHASES = ("on_the_road", "arrival", "open", "departure")
CHECKLIST_FIELDS = ("stop", "phase", "done", "pending_required")
KINDS = ("arrival", "departure")
MAX_NAME = 64
MIN_REASON = 3
MAX_REASON = 300
RECENT_RUNS = 200  # runs read back at start-up to know which stops were already visited

# --- config ---------------------------------------------------------------------------------------------------


def _step(
    id: str,
    fr: str,
    en: str,
    condition: str | None = None,
    required: bool = True,
    help_fr: str = "",
    help_en: str = "",
) -> dict[str, Any]:
    step: dict[str, Any] = {
        "id": id,
        "label": {"fr": fr, "en": en},
        "kind": "auto" if condition else "manual",
        "required": required,
    }
    if condition:
        step["condition"] = condition
    if help_fr:
        step["help"] = {"fr": help_fr, "en": help_en or None}
    return step


DEFAULT_ARRIVAL: list[dict[str, Any]] = [
    _step(
        "parked",
        "Bus garé, frein serré, cales posées",
        "Bus parked, handbrake on, wheels chocked",
        help_fr="Sur sol plat, hors du passage des véhicules de secours.",
        help_en="On level ground, clear of the emergency access.",
    ),
    _step(
        "shore_plugged",
        "Câble branché à la prise de la mairie",
        "Shore cable plugged into the town hall socket",
        help_fr="Dérouler tout le câble ; le protéger là où l'on marche.",
        help_en="Unroll the whole cable; cover it where people walk.",
    ),
    _step("shore_power", "Courant secteur présent", "Shore power present", "shore.connected"),
    _step("inverter_on", "Onduleur en marche", "Inverter on", 'power.mode == "on"'),
    _step(
        "battery",
        "Batterie au-dessus de 40 %",
        "Battery above 40 %",
        "power.soc >= 40",
        help_fr="En dessous, brancher le secteur avant d'ouvrir.",
        help_en="Below that, get shore power before opening.",
    ),
    _step("antenna_up", "Antenne satellite levée", "Satellite dish raised", "vehicle.antenna_stowed == false"),
    _step("link_up", "Connexion internet établie", "Internet link up", 'modem.link == "up"'),
    _step("printer", "Imprimante allumée, papier en place", "Printer on, paper loaded", required=False),
    _step("signage", "Panneaux et drapeau installés dehors", "Signs and flag set out", required=False),
]
DEFAULT_DEPARTURE: list[dict[str, Any]] = [
    _step(
        "kiosk_closed",
        "Borne publique fermée et effacée",
        "Public terminal closed and wiped",
        "kiosk.open == false and kiosk.session_active == false",
    ),
    _step("equipment_stowed", "Imprimante et matériel rangés et calés", "Printer and equipment stowed"),
    _step("antenna_stowed", "Antenne satellite rangée", "Satellite dish stowed", "vehicle.antenna_stowed"),
    _step(
        "shore_unplugged",
        "Câble secteur débranché et rangé, courant coupé",
        "Shore cable unplugged and stowed, power gone",
        "shore.connected == false",
    ),
    _step(
        "inverter_driving",
        "Onduleur en mode route",
        "Inverter in driving mode",
        'power.mode in ["off", "charger_only"]',
        help_fr="Arrêté ou chargeur seul : l'onduleur ne vide pas la batterie en roulant.",
        help_en="Off or charger only: the inverter does not drain the battery on the road.",
    ),
    _step(
        "door_closed",
        "Marchepied rentré, porte fermée",
        "Steps retracted, door closed",
        "vehicle.door_open == false",
    ),
]


def _step_check(step: dict[str, Any]) -> tuple[str, str] | None:
    if step["kind"] == "auto" and step["condition"] is None:
        return "condition", 'is required for kind = "auto" (e.g. condition = "shore.connected")'
    if step["kind"] == "manual" and step["condition"] is not None:
        return "condition", 'only auto steps have a condition (set kind = "auto")'
    return None


def _not_blank(value: str) -> str | None:
    return "must not be blank" if not value.strip() else None


def checklist_schema() -> Any:
    """The ``[checklist]`` section for config.SCHEMA (optional: no console checklist without it).

    Built by a function, imported lazily: config.py imports this module while it is itself being loaded.
    """
    from .config import ArrayOf, Key, Table

    text = {"fr": Key(str, required=True, check=_not_blank), "en": Key(str, None)}
    step = Table(
        {
            "id": Key(str, required=True, pattern=r"[a-z][a-z0-9_]{0,39}"),
            "label": Table(text),
            "kind": Key(str, "manual", choices=("manual", "auto")),
            "condition": Key(str, None, check=condition_problem),
            "required": Key(bool, True),
            "help": Table({"fr": Key(str, ""), "en": Key(str, None)}, optional=True),
        },
        check=_step_check,
    )
    return Table(
        {
            "schedule": Key("path", None),
            "arrival": ArrayOf(step, default=DEFAULT_ARRIVAL, unique="id"),
            "departure": ArrayOf(step, default=DEFAULT_DEPARTURE, unique="id"),
        },
        optional=True,
    )


@dataclass(frozen=True)
class StepSpec:
    id: str
    label: dict[str, str | None]
    kind: str
    condition: Condition | None
    required: bool
    help: dict[str, str | None] | None

    @classmethod
    def from_config(cls, section: Any) -> StepSpec:
        label = section.label.as_dict() if hasattr(section.label, "as_dict") else dict(section.label)
        help_ = section.help
        help_dict = None if help_ is None else (help_.as_dict() if hasattr(help_, "as_dict") else dict(help_))
        condition = compile_condition(section.condition) if section.condition else None
        return cls(section.id, label, section.kind, condition, section.required, help_dict)


# --- runs -----------------------------------------------------------------------------------------------------


@dataclass
class StepState:
    spec: StepSpec
    confirmed: bool = False  # ticked by the driver (a manual step, or an auto step whose sensor is silent)
    confirmed_by: str | None = None
    confirmed_seq: int | None = None
    sensor: bool | None = None  # the condition's last verdict (None = unknown)
    applies: bool = True
    sensor_seq: int | None = None  # seq of the event that recorded the sensor's verdict

    @property
    def status(self) -> str:
        if self.spec.kind == "manual":
            return "done" if self.confirmed else "todo"
        if not self.applies:
            return "n/a"
        if self.sensor is True:
            return "done"
        if self.sensor is False:
            return "no"
        return "done" if self.confirmed else "todo"

    @property
    def done(self) -> bool:
        return self.status in ("done", "n/a")

    @property
    def by(self) -> str | None:
        status = self.status
        if status == "n/a":
            return "n/a"
        if status != "done":
            return None
        if self.spec.kind == "auto" and self.sensor is True:
            return "auto"
        return self.confirmed_by

    def as_dict(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "id": spec.id,
            "label": spec.label,
            "help": spec.help,
            "kind": spec.kind,
            "required": spec.required,
            "condition": spec.condition.text if spec.condition else None,
            "status": self.status,
            "done": self.done,
            "by": self.by,
            "seq": self.sensor_seq if self.by == "auto" else self.confirmed_seq,
        }


@dataclass
class Run:
    id: int
    kind: str
    stop: dict[str, Any]
    driver: str
    steps: dict[str, StepState]
    started_seq: int | None = None
    overrides: list[dict[str, Any]] = field(default_factory=list)

    def pending_required(self) -> list[str]:
        return [s.spec.id for s in self.steps.values() if s.spec.required and not s.done]

    def done(self) -> list[str]:
        return [s.spec.id for s in self.steps.values() if s.done]

    def confirmations(self) -> dict[str, Any]:
        return {sid: {"by": s.confirmed_by, "seq": s.confirmed_seq} for sid, s in self.steps.items() if s.confirmed}

    def as_dict(self) -> dict[str, Any]:
        pending = self.pending_required()
        return {
            "id": self.id,
            "kind": self.kind,
            "driver": self.driver,
            "started_seq": self.started_seq,
            "steps": [s.as_dict() for s in self.steps.values()],
            "pending_required": pending,
            "can_finish": not pending,
        }


_TABLES = """
CREATE TABLE IF NOT EXISTS checklist_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,   -- runs are ordered by id (sequence), never by the clock
    kind TEXT NOT NULL,                     -- arrival | departure
    stop TEXT NOT NULL,                     -- JSON tag of the stop
    driver TEXT NOT NULL,
    started_seq INTEGER,                    -- seq of the checklist.started event
    ended_seq INTEGER,
    started_ts REAL NOT NULL,
    ended_ts REAL,
    outcome TEXT,                           -- NULL while running; completed | overridden | cancelled
    confirmations TEXT NOT NULL DEFAULT '{}',  -- JSON {step: {by, seq}}: the driver's ticks, kept across restarts
    overrides TEXT NOT NULL DEFAULT '[]',   -- JSON [{step, reason, by, seq}]
    summary TEXT                            -- JSON {step: {status, by, seq}} at the end
);
CREATE TABLE IF NOT EXISTS checklist_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


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
        self.store = controller.store
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
        controller.checklist = self  # type: ignore[attr-defined]  # for other features and tests
        return self

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # --- persistence ---

    async def _restore(self) -> None:
        assert self.store is not None

        def read(db: sqlite_utils.Database) -> tuple[dict[str, str], list[tuple], tuple | None]:
            db.conn.executescript(_TABLES)
            meta = dict(db.execute("SELECT key, value FROM checklist_meta").fetchall())
            recent = db.execute(
                "SELECT id, kind, stop, outcome FROM checklist_runs ORDER BY id DESC LIMIT ?", (RECENT_RUNS,)
            ).fetchall()
            current = db.execute(
                "SELECT id, kind, stop, driver, started_seq, confirmations, overrides FROM checklist_runs"
                " WHERE outcome IS NULL ORDER BY id DESC LIMIT 1"
            ).fetchone()
            return meta, recent, current

        meta, recent, current = await self.store.run(read)
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
        assert self.store is not None
        current = {
            "phase": self.phase,
            "stop": json.dumps(self.stop, ensure_ascii=False) if self.stop else "",
            "driver": self.driver or "",
        }
        values = {k: v for k, v in current.items() if self._saved_meta.get(k) != v}  # only what changed: SD wear
        if not values:
            return
        self._saved_meta.update(values)

        def write(db: sqlite_utils.Database) -> None:
            with db.conn:
                db.conn.executemany(
                    "INSERT OR REPLACE INTO checklist_meta (key, value) VALUES (?, ?)", list(values.items())
                )

        await self.store.run(write)

    async def _save_run_marks(self, run: Run) -> None:
        assert self.store is not None
        confirmations = json.dumps(run.confirmations(), ensure_ascii=False)
        overrides = json.dumps(run.overrides, ensure_ascii=False)
        stop = json.dumps(run.stop, ensure_ascii=False)

        def write(db: sqlite_utils.Database) -> None:
            with db.conn:
                db.conn.execute(
                    "UPDATE checklist_runs SET confirmations = ?, overrides = ?, stop = ? WHERE id = ?",
                    (confirmations, overrides, stop, run.id),
                )

        await self.store.run(write)

    async def _insert_run(self, kind: str, stop: dict[str, Any], driver: str) -> int:
        assert self.store is not None
        row = (kind, json.dumps(stop, ensure_ascii=False), driver, self.controller.clock())

        def write(db: sqlite_utils.Database) -> int:
            with db.conn:
                cur = db.conn.execute(
                    "INSERT INTO checklist_runs (kind, stop, driver, started_ts) VALUES (?, ?, ?, ?)", row
                )
            return int(cur.lastrowid or 0)

        return await self.store.run(write)

    async def _end_run(self, run: Run, outcome: str, ended_seq: int | None) -> None:
        assert self.store is not None
        summary = json.dumps(
            {sid: {"status": s.status, "by": s.by, "seq": s.as_dict()["seq"]} for sid, s in run.steps.items()},
            ensure_ascii=False,
        )
        values = (
            ended_seq,
            self.controller.clock(),
            outcome,
            json.dumps(run.confirmations(), ensure_ascii=False),
            json.dumps(run.overrides, ensure_ascii=False),
            summary,
            run.id,
        )

        def write(db: sqlite_utils.Database) -> None:
            with db.conn:
                db.conn.execute(
                    "UPDATE checklist_runs SET ended_seq = ?, ended_ts = ?, outcome = ?, confirmations = ?,"
                    " overrides = ?, summary = ? WHERE id = ?",
                    values,
                )

        await self.store.run(write)

    async def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest stored runs, newest first (for tools and tests)."""
        assert self.store is not None

        def read(db: sqlite_utils.Database) -> list[dict[str, Any]]:
            rows = db.execute("SELECT * FROM checklist_runs ORDER BY id DESC LIMIT ?", (limit,))
            names = [d[0] for d in rows.description]
            out = []
            for values in rows.fetchall():
                row = dict(zip(names, values, strict=True))
                for key in ("stop", "confirmations", "overrides", "summary"):
                    if row[key] is not None:
                        row[key] = json.loads(row[key])
                out.append(row)
            return out

        return await self.store.run(read)

    # --- the live part ---

    def _new_run(self, run_id: int, kind: str, stop: dict[str, Any], driver: str) -> Run:
        steps = {spec.id: StepState(spec) for spec in self.specs[kind]}
        self._watched = {c for spec in self.specs[kind] if spec.condition for c in spec.condition.components}
        return Run(run_id, kind, stop, driver, steps)

    def _lookup(self, component: str, field_name: str) -> Any:
        comp = self.state.components.get(component)
        if comp is None or comp.stale:
            return None
        if field_name not in comp.fields:
            if (component, field_name) not in self._warned:
                self._warned.add((component, field_name))
                log.warning("checklist condition names %s.%s: that component has no such field", component, field_name)
            return None
        return comp.values.get(field_name)

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
        assert self.store is not None
        return self.store.append_event(etype, **data)

    async def _set_phase(self, phase: str, stop: dict[str, Any] | None, by: str) -> None:
        stop_changed = stop != self.stop
        self.phase, self.stop, self.driver = phase, stop, by
        if stop_changed:
            await self._emit("checklist.stop", stop=stop, by=by)
        await self._save_meta()

    # --- the public terminal ---

    async def _kiosk(self, action: str) -> dict[str, Any]:
        """Call ``kiosk.open``/``kiosk.close`` when the kiosk feature is there; say so when it is not."""
        command = self.controller.registry.commands.get(f"kiosk.{action}")
        if command is None:
            return {"kiosk": "not_configured"}
        conn = Connection("control", None, os.getuid())  # type: ignore[arg-type]  # an in-process caller
        try:
            result = command.handler({}, conn)
            if asyncio.iscoroutine(result):
                result = await result
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
                await self._save_run_marks(self.run)
                self._publish()
                return self.status()
            if self.phase != "on_the_road":
                where = (self.stop or {}).get("commune", "?")
                raise ApiError(f"the bus is {self.phase.replace('_', ' ')} at {where}: finish or cancel that first")
            await self._start_run("arrival", stop, by)
            return self.status()

    async def _start_run(self, kind: str, stop: dict[str, Any], by: str) -> None:
        run_id = await self._insert_run(kind, stop, by)
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

        def mark(db: sqlite_utils.Database, seq: int = event["seq"]) -> None:
            with db.conn:
                db.conn.execute("UPDATE checklist_runs SET started_seq = ? WHERE id = ?", (seq, run_id))

        assert self.store is not None
        await self.store.run(mark)
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
            await self._save_run_marks(run)
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
            await self._end_run(run, outcome, ended["seq"])
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
            await self._end_run(run, "cancelled", ended["seq"])
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
