"""The checklist's model: the phases of a stop, a step's spec and live status, a run of steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..conditions import Condition, compile_condition

PHASES = ("on_the_road", "arrival", "open", "departure")
CHECKLIST_FIELDS = ("stop", "phase", "done", "pending_required")
KINDS = ("arrival", "departure")


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
