"""The `allervers status` table: units from the field table, a partly failed reading named beside its freshness."""

from __future__ import annotations

from firmware_host.state import StateModel
from firmware_host.statusview import render_text


def test_table_shows_units_and_the_read_group_that_failed() -> None:
    state = StateModel(clock=lambda: 100.0)
    state.update(
        "power",
        {"soc": 64.5, "battery_v": 26.62, "battery_w": None, "battery_source": "vebus"},
        stale_groups={"battery_monitor": "inverter: unit 100, registers 840..844: exception 4 (server device failure)"},
    )
    text = render_text({"power": state.get("power")}, now=102.0)
    assert text.splitlines()[0] == (
        "POWER        [fresh, 2 s ago; battery_monitor unknown: "
        "inverter: unit 100, registers 840..844: exception 4 (server device failure)]"
    )
    assert "  soc                64.5 %" in text
    assert "  battery_v          26.62 V" in text
    assert "  battery_w          —" in text
    assert "stale_groups" not in text
