"""Report by exception: which change of a component is worth a state message on a metered link (deadbands)."""

from __future__ import annotations

import math
from typing import Any

from ..state import FIELDS, FREE

# Deadband class of each numeric field of the state model (the `[mqtt.deadbands]` keys), from its declaration.
FIELD_CLASS: dict[str, str] = {f.name: f.deadband for f in FIELDS if f.deadband not in (None, FREE)}
# Values that move on their own all the time: carried in every state message, never a reason to send one
# (the periodic refresh keeps them reasonably fresh). `ts` is when the component was last read.
FREE_RUNNING = frozenset({"ts", "stale_reason", *(f.name for f in FIELDS if f.deadband == FREE)})
# The kiosk's per-session values: each change is already an event sent at the same moment (kiosk.session_started,
# kiosk.session_ended, kiosk.wipe), so a state message for it says nothing new (measured: 44 of the scripted day's
# 87 state messages, about 17 kB). Carried in every kiosk state message; the retained copy catches up at the next
# refresh or significant change. A failed wipe (wipe_ok, wipe_error) and open/locked still count at once.
CARRIED_BY_EVENTS = frozenset({"session_active", "session_service", "session_started", "sessions_today", "last_wipe"})

DEFAULT_DEADBANDS = {"ac_v": 2.0, "dc_v": 0.1, "a": 0.5, "w": 50.0, "soc": 1.0, "hz": 0.2, "c": 1.0}


def field_class(key: str) -> str | None:
    """The deadband class of a field: from the table, else from its unit suffix (fields of future components)."""
    known = FIELD_CLASS.get(key)
    if known is not None:
        return known
    for suffix, cls in (("_hz", "hz"), ("_w", "w"), ("_a", "a"), ("_c", "c")):
        if key.endswith(suffix):
            return cls
    if key.endswith("_v"):
        return "ac_v" if key.startswith("ac_") else "dc_v"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Reporter:
    """Decides, per component, whether its current values differ enough from what the broker last acknowledged.

    Enums, booleans, strings, lists and tables count on any change; numbers with a deadband class count once they
    have moved past the deadband *from the last published value* (so a slow drift is reported, not a jitter);
    other numbers count on any change, except the free-running ones.
    """

    def __init__(self, deadbands: dict[str, float] | None = None):
        self.deadbands = {**DEFAULT_DEADBANDS, **(deadbands or {})}

    def significant(self, old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
        """The keys whose change is worth publishing (empty: stay quiet). ``old`` None: never published."""
        if old is None:
            return sorted(new)
        reasons = []
        for key in new.keys() | old.keys():
            if key in FREE_RUNNING or key in CARRIED_BY_EVENTS:
                continue
            a, b = old.get(key), new.get(key)
            if a == b:
                continue
            if _is_number(a) and _is_number(b):
                cls = field_class(key)
                if cls is not None:
                    # A move of exactly one deadband counts: 12.8 -> 12.9 V must not be lost to float rounding.
                    band = self.deadbands[cls]
                    if not (math.isfinite(a) and math.isfinite(b)) or abs(b - a) >= band - 1e-9 * max(1.0, band):
                        reasons.append(key)
                    continue
            reasons.append(key)
        return sorted(reasons)
