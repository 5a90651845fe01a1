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

Modules: ``steps`` (the default steps), ``schema`` (the ``[checklist]`` section), ``model`` (phases, steps, runs),
``store`` (the tables), ``feature`` (the phase machine and the API commands).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .feature import Checklist
from .model import CHECKLIST_FIELDS, KINDS, PHASES, Run, StepSpec, StepState
from .schema import checklist_schema as schema
from .steps import DEFAULT_ARRIVAL, DEFAULT_DEPARTURE

if TYPE_CHECKING:
    from ..controller import Controller

SECTION = "checklist"


async def attach(controller: Controller) -> Checklist:
    """The driver's stops and checklists: restores the phase and any run in progress, registers the commands."""
    return await Checklist.attach(controller)


__all__ = [
    "CHECKLIST_FIELDS",
    "DEFAULT_ARRIVAL",
    "DEFAULT_DEPARTURE",
    "KINDS",
    "PHASES",
    "SECTION",
    "Checklist",
    "Run",
    "StepSpec",
    "StepState",
    "attach",
    "schema",
]
