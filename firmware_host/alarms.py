"""Alarms as objects: declarative rules over the live state, raised and cleared with events and the buzzer."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# A rule's shape is declared with the device profiles (drivers/registry.py): a brand brings its own rules, and a
# driver must not import the layer above it.
from drivers.registry import AlarmRule, AlarmText

from .state import StateModel

__all__ = ["SEVERITIES", "Alarm", "AlarmManager", "AlarmRule", "AlarmText", "core_rules", "kiosk_rules"]

SEVERITIES = ("info", "warning", "alarm", "critical")


@dataclass
class Alarm:
    id: str
    severity: str
    message: str
    since: float
    buzzer: bool = False
    acknowledged: bool = False
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity,
            "since": self.since,
            "message": self.message,
            "params": dict(self.params),
            "acknowledged": self.acknowledged,
        }


@dataclass
class _Pending:
    first_seen: float


@dataclass
class AlarmManager:
    """Evaluates every rule after each state change and keeps the set of active alarms.

    ``emit(type, **data)`` records events (``alarm.raised`` / ``alarm.cleared``); ``on_change`` is told when
    the set or the buzzer demand changes. A rule with a ``delay_s`` fires at the first ``evaluate()`` after its
    delay: ``next_deadline()`` tells the controller when to evaluate again.
    """

    state: StateModel
    emit: Callable[..., Any]
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    rules: list[AlarmRule] = field(default_factory=list)
    on_change: list[Callable[[], None]] = field(default_factory=list)
    active: dict[str, Alarm] = field(default_factory=dict)
    _pending: dict[str, _Pending] = field(default_factory=dict)

    def add_rules(self, rules: list[AlarmRule]) -> None:
        known = {r.id for r in self.rules}
        for rule in rules:
            if rule.severity not in SEVERITIES:
                raise ValueError(f"alarm rule {rule.id}: unknown severity {rule.severity!r}")
            if rule.id in known:
                raise ValueError(f"alarm rule {rule.id}: defined twice")
            known.add(rule.id)
            self.rules.append(rule)

    def evaluate(self) -> None:
        changed = False
        now_mono = self.monotonic()
        for rule in self.rules:
            try:
                verdict = rule.condition(self.state)
            except (TypeError, KeyError, ValueError):  # a rule over a value that is still unknown
                verdict = None
            message, params = (verdict, {}) if verdict is None or isinstance(verdict, str) else verdict
            if message is None:
                self._pending.pop(rule.id, None)
                if rule.id in self.active:
                    alarm = self.active.pop(rule.id)
                    self.emit(
                        "alarm.cleared",
                        alarm_id=alarm.id,
                        severity=alarm.severity,
                        duration_s=round(self.clock() - alarm.since, 1),
                    )
                    changed = True
                continue
            if rule.id in self.active:
                active = self.active[rule.id]
                if (active.message, active.params) != (message, params):
                    active.message, active.params = message, params
                    changed = True
                continue
            if rule.delay_s > 0:
                pending = self._pending.setdefault(rule.id, _Pending(now_mono))
                if now_mono - pending.first_seen < rule.delay_s:
                    continue
                self._pending.pop(rule.id)
            alarm = Alarm(rule.id, rule.severity, message, self.clock(), buzzer=rule.buzzer, params=params)
            self.active[rule.id] = alarm
            self.emit("alarm.raised", alarm_id=alarm.id, severity=alarm.severity, message=message)
            changed = True
        if changed:
            for cb in list(self.on_change):
                cb()

    def next_deadline(self) -> float | None:
        """Seconds until a pending delayed rule could fire, for the controller's timer."""
        if not self._pending:
            return None
        delays = {r.id: r.delay_s for r in self.rules}
        now = self.monotonic()
        return max(0.0, min(p.first_seen + delays[rid] - now for rid, p in self._pending.items()))

    def acknowledge(self, alarm_id: str | None = None) -> list[str]:
        """Acknowledge one alarm or all: silences the buzzer, the alarm stays until its cause is gone."""
        acked = []
        for alarm in self.active.values():
            if (alarm_id is None or alarm.id == alarm_id) and not alarm.acknowledged:
                alarm.acknowledged = True
                acked.append(alarm.id)
        if alarm_id is not None and alarm_id not in self.active:
            raise KeyError(alarm_id)
        for aid in acked:
            self.emit("alarm.acknowledged", alarm_id=aid)
        if acked:
            for cb in list(self.on_change):
                cb()
        return acked

    @property
    def buzzer_wanted(self) -> bool:
        return any(a.buzzer and not a.acknowledged for a in self.active.values())

    def as_list(self) -> list[dict[str, Any]]:
        order = {s: i for i, s in enumerate(SEVERITIES)}
        return [a.as_dict() for a in sorted(self.active.values(), key=lambda a: (-order[a.severity], a.since))]


# --- the built-in rules -----------------------------------------------------------------------------------


def _v(state: StateModel, comp: str, key: str) -> Any:
    return state.value(comp, key)


def core_rules(
    *,
    inverter: bool,
    meter: bool,
    pin: bool,
    low_soc: float,
    disagree_after_s: float,
    devices: list[str],
) -> list[AlarmRule]:
    """The built-in rules for what this bus has configured; every one reads the state model and nothing else."""
    rules: list[AlarmRule] = []
    # Brand rules (a GX's VE.Bus alarms and error, an Iridium antenna fault) come from the device's profile.
    if inverter:

        def low_soc_rule(s: StateModel) -> AlarmText | None:
            soc = _v(s, "power", "soc")
            if soc is not None and soc < low_soc and s.is_fresh("power") and not _v(s, "shore", "connected"):
                return AlarmText(f"battery at {soc:.0f} % without shore power", {"soc": round(soc)})
            return None

        rules.append(AlarmRule("power.low_soc", "warning", low_soc_rule))

    for device in devices:

        def stale(s: StateModel, device: str = device) -> AlarmText | None:
            health = _v(s, "devices", device) or {}
            error = health.get("error")
            return AlarmText(f"{device} not answering: {error}", {"error": error}) if error else None

        def partial(s: StateModel, device: str = device) -> AlarmText | None:
            # Some reads of the device fail while others answer: its values from those reads are unknown.
            failing = (_v(s, "devices", device) or {}).get("failing") or {}
            if not failing:
                return None
            message = f"{device}: {', '.join(failing)} not read, " + "; ".join(failing.values())
            return AlarmText(message, {"groups": list(failing)})

        rules += [AlarmRule(f"{device}.stale", "warning", stale), AlarmRule(f"{device}.partial", "warning", partial)]

    if sum((inverter, meter, pin)) >= 2:

        def disagree(s: StateModel) -> AlarmText | None:
            sources = _v(s, "shore", "sources") or {}
            known = {k: v for k, v in sorted(sources.items()) if v is not None}
            if len(set(known.values())) > 1:
                detail = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in known.items())
                return AlarmText(f"shore power sources disagree ({detail})", {"sources": known})
            return None

        rules.append(AlarmRule("shore.sources_disagree", "warning", disagree, delay_s=disagree_after_s))

    if inverter or meter or pin:

        def shore_lost(s: StateModel) -> str | None:
            # Unplugging to drive away is normal (derive_shore forgets the plug when the ignition goes on).
            lost = _v(s, "shore", "lost_while_parked") and _v(s, "shore", "connected") is False
            return "shore power lost while parked" if lost else None

        rules.append(AlarmRule("shore.lost", "warning", shore_lost))

    def antenna_up(s: StateModel) -> str | None:
        if _v(s, "vehicle", "ignition") and _v(s, "vehicle", "antenna_stowed") is False:
            return "ignition on while the antenna is raised: stow it before driving"
        return None

    def shore_plugged(s: StateModel) -> str | None:
        if _v(s, "vehicle", "ignition") and _v(s, "shore", "connected"):
            return "ignition on while shore power is connected: unplug the cable before driving"
        return None

    rules += [
        AlarmRule("interlock.antenna_up", "critical", antenna_up, buzzer=True),
        AlarmRule("interlock.shore_connected", "critical", shore_plugged, buzzer=True),
    ]
    return rules


def kiosk_rules() -> list[AlarmRule]:
    """The public terminal's health, from its state component (kiosk/session.py publishes it)."""

    def wipe_failed(s: StateModel) -> str | None:
        if _v(s, "kiosk", "wipe_ok") is False:
            detail = _v(s, "kiosk", "wipe_error") or "see the event log"
            return f"public terminal: wipe not verified ({detail}); it stays closed"
        return None

    def unavailable(s: StateModel) -> str | None:
        error = _v(s, "kiosk", "setup_error")
        return f"public terminal unavailable: {error}" if error else None

    return [
        AlarmRule("kiosk.wipe_failed", "alarm", wipe_failed),
        AlarmRule("kiosk.unavailable", "warning", unavailable),
    ]
