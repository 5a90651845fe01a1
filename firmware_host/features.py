"""The bus's optional features in one list: each brings its config section and joins the controller itself.

A feature is a module exporting ``SECTION`` (its config section, also its name for ``controller.lookup``),
``schema()`` (that section, in firmware_host/schema.py's language) and, when it runs inside the controller,
``async attach(controller)``: called at start-up when its section is set, it returns the feature's object (or
None when the section leaves it off). Features reach each other with ``controller.lookup(name)`` and the typed
methods of what it returns. The console is a process of its own: its module brings only its section.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from kiosk import feature as kiosk

from . import checklist
from .console import settings as console
from .mqtt import feature as mqtt

# In the order the controller attaches them and the config schema lists their sections.
FEATURES: tuple[ModuleType, ...] = (checklist, console, kiosk, mqtt)


def schema_sections() -> dict[str, Any]:
    """Each feature's config section, by name, for config.SCHEMA."""
    return {feature.SECTION: feature.schema() for feature in FEATURES}
