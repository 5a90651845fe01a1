"""The checklist condition language: parsing, load-time checks, three-valued evaluation, and fuzzed bad input."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_host import conditions
from firmware_host import config as config_mod
from firmware_host.conditions import FIELD_TYPES, ConditionError, compile_condition, state_lookup
from firmware_host.config import ConfigError
from firmware_host.state import StateModel, component_fields, declared_components

VALUES = {
    ("shore", "connected"): True,
    ("power", "soc"): 55.0,
    ("power", "mode"): "on",
    ("modem", "link"): "up",
    ("modem", "signal_bars"): 3,
    ("vehicle", "antenna_stowed"): False,
    ("vehicle", "ignition"): None,  # unknown
}


def lookup(component: str, field: str) -> Any:
    return VALUES.get((component, field))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("shore.connected", True),
        ("power.soc >= 40", True),
        ("power.soc < 40", False),
        ("power.soc >= 55.0 and power.soc <= 55", True),
        ('modem.link == "up"', True),
        ("modem.link != 'up'", False),
        ("vehicle.antenna_stowed == false", True),
        ("not vehicle.antenna_stowed", True),
        ('power.mode in ["off", "charger_only"]', False),
        ('power.mode not in ["off", "charger_only"]', True),
        ("modem.signal_bars in [3, 4, 5]", True),
        ("40 <= power.soc", True),
        # Kleene logic: unknown only where the unknown value decides
        ("vehicle.ignition", None),
        ("not vehicle.ignition", None),
        ("vehicle.ignition == false", None),
        ("vehicle.ignition and power.soc < 10", False),
        ("vehicle.ignition and shore.connected", None),
        ("vehicle.ignition or shore.connected", True),
        ("vehicle.ignition or power.soc < 10", None),
        ("power.battery_v > 20", None),  # never read
        ("kiosk.open == false", None),  # an optional component: unknown when absent
        ("not (shore.connected and (power.soc > 50 or modem.link == 'down'))", False),
    ],
)
def test_evaluation(text: str, expected: bool | None) -> None:
    assert compile_condition(text).evaluate(lookup) is expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "column 1: empty condition"),
        ("shore.connected = true", "column 17: unexpected character '=' (use == to compare)"),
        ("shore.connected && power.soc > 1", "column 17: unexpected character '&' (use and, or, not)"),
        ("power.soc", "column 1: power.soc is a number, not true/false"),
        ('power.soc >= "40"', "column 11: >= needs numbers, not text"),
        ("shore.connected > 0", "column 17: > needs numbers, not true/false"),
        ('modem.link == "Up"', "column 12: modem.link is one of 'up', 'down', so 'Up' can never match"),
        ('power.mode in ["on", "driving"]', "power.mode is one of 'charger_only', 'inverter_only', 'on', 'off'"),
        ("power.voltage > 1", "column 1: power has no field 'voltage' (known: ac_in_a"),
        ("bus.speed > 1", "column 1: unknown component 'bus' (known: controller, devices, kiosk, modem, power"),
        ("kiosk.opne == false", "column 1: kiosk has no field 'opne' (known: last_wipe, locked, open"),
        ("true", "column 1: the constant true stands where a condition is expected"),
        ("1 == 1", "column 3: compares two constants"),
        ("shore.connected and 1", "column 21: the constant 1 stands where a condition is expected"),
        ("power.soc >=", "column 13: the condition ends where a value was expected"),
        ("(shore.connected", "column 17: expected ')' to close the '(' at column 1"),
        ("shore.connected)", "column 16: unexpected ')'"),
        ("shore.sources == 1", "shore.sources is a table and cannot be compared"),
        ("shore.connected == 1", "compares shore.connected (bool) with number 1"),
        ("power.soc in []", "a list holds literals"),
        ('power.soc in [1, "2"]', "the list mixes text into a number comparison"),
        ("(shore.connected and power.soc > 1) == true", "== compares values, not conditions"),
        ("Shore.connected", "unknown word 'Shore'"),
        ("shore.connected == True", "unknown word 'True' (write true)"),
        ("modem.ip != null", "there is no null"),
        ('modem.link == "up\\"', "unterminated string"),
        ("x" * 501, "too long (501 characters, at most 500)"),
        ("not " * 17 + "shore.connected", "nested too deeply (at most 16 levels)"),
        ("(" * 17 + "shore.connected" + ")" * 17, "nested too deeply"),
        ("power.soc in [" + ", ".join(["1"] * 33) + "]", "too many items in the list"),
    ],
)
def test_rejected_with_column_and_problem(text: str, problem: str) -> None:
    with pytest.raises(ConditionError) as err:
        compile_condition(text)
    assert problem in str(err.value)


def test_field_types_cover_the_state_contract_exactly() -> None:
    for component in declared_components():
        assert set(FIELD_TYPES[component]) == set(component_fields(component)), component
    assert set(FIELD_TYPES) == set(declared_components())


def test_enumerations_agree_with_the_drivers() -> None:
    from drivers import modem, victron_gx

    power = FIELD_TYPES["power"]
    assert set(power["mode"].choices or ()) == set(victron_gx.MODE.values())
    assert set(power["state"].choices or ()) == set(victron_gx.STATE.values())
    assert set(power["active_input"].choices or ()) == set(victron_gx.ACTIVE_INPUT.values())
    assert set(FIELD_TYPES["modem"]["registration"].choices or ()) == set(modem.REGISTRATION_RANK)


def test_stale_components_are_unknown_over_the_state_model() -> None:
    state = StateModel()
    cond = compile_condition("shore.connected and power.soc >= 40")
    unknown: list[tuple[str, str]] = []
    lookup = state_lookup(state, lambda *path: unknown.append(path))  # as the checklist reads the state
    assert cond.evaluate(lookup) is None  # nothing read yet
    state.update("shore", {"connected": True})
    state.update("power", {"soc": 80})
    assert cond.evaluate(lookup) is True
    state.mark_stale("power", "inverter: no answer")
    assert cond.evaluate(lookup) is None  # the last reading is kept for display, not trusted
    state.update("shore", {"connected": False})
    assert cond.evaluate(lookup) is False  # false and unknown is false
    assert cond.components == {"shore", "power"}
    assert unknown == []
    assert lookup("shore", "voltage") is None and unknown == [("shore", "voltage")]  # not a field of shore


def test_the_module_never_evaluates_python() -> None:
    tree = ast.parse(Path(conditions.__file__).read_text())
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not called & {"eval", "exec", "compile", "__import__", "getattr"}


PAYLOADS = [
    "__import__('os').system('touch {marker}')",
    "open('{marker}', 'w')",
    "shore.connected or __import__('pathlib').Path('{marker}').touch()",
    "shore.connected and (lambda: open('{marker}', 'w'))()",
    "power.soc >= 40; open('{marker}', 'w')",
    'f\'{{open("{marker}", "w")}}\'',
    "().__class__.__bases__[0].__subclasses__()",
    "shore.connected.__class__",
    "power.soc >= 40 if open('{marker}', 'w') else 1",
    "`touch {marker}`",
    "$(touch {marker})",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_code_in_a_condition_is_rejected_at_load_and_never_run(tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "pwned"
    text = payload.format(marker=marker)
    with pytest.raises(ConditionError):
        compile_condition(text)
    raw = {"checklist": {"arrival": [{"id": "x", "label": {"fr": "X"}, "kind": "auto", "condition": text}]}}
    with pytest.raises(ConfigError) as err:
        config_mod.validate(raw, "bus.toml", tmp_path)
    assert str(err.value).startswith("bus.toml: checklist.arrival[0].condition: bad condition")
    assert not marker.exists()


WORDS = [
    "shore.connected",
    "power.soc",
    "power.mode",
    "modem.link",
    "vehicle.ignition",
    "kiosk.open",
    "nope.field",
    "power.nope",
    "and",
    "or",
    "not",
    "in",
    "true",
    "false",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "(",
    ")",
    "[",
    "]",
    ",",
    "40",
    "-3.5",
    '"up"',
    "'on'",
    '"x',
    "=",
    "&&",
    "null",
    "__import__",
]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=80), st.lists(st.sampled_from(WORDS), max_size=14).map(" ".join)))
def test_fuzzed_conditions_are_accepted_or_refused_clearly(text: str) -> None:
    try:
        cond = compile_condition(text)
    except ConditionError as exc:
        assert str(exc)
        assert exc.column is None or 1 <= exc.column <= len(text) + 1
        return
    assert cond.paths
    # Whatever the state holds (wrong types, NaN, tables), an accepted condition answers True, False or None.
    for value in (None, True, False, 0, 55.5, float("nan"), "up", "on", {"a": 1}, [1]):
        assert cond.evaluate(lambda c, f, v=value: v) in (True, False, None)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_fuzzed_conditions_in_the_config_name_the_key(text: str) -> None:
    raw = {"checklist": {"departure": [{"id": "s", "label": {"fr": "S"}, "kind": "auto", "condition": text}]}}
    try:
        cfg = config_mod.validate(raw, "bus.toml", Path("/tmp"))
    except ConfigError as exc:
        assert exc.key == "checklist.departure[0].condition"
    else:
        assert cfg.checklist.departure[0].condition == text
