"""The installed libraries satisfy pyproject's bounds; those whose API moves between majors have a ceiling."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
# Majors break what we use: pymodbus's simulator API, paho's callbacks, Textual's screens and CSS.
CAPPED = {"pymodbus", "paho-mqtt", "textual"}


def requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {req.name: req for req in map(Requirement, project["dependencies"])}


def test_the_installed_versions_are_inside_the_bounds_the_suite_runs_on() -> None:
    for name, req in requirements().items():
        assert req.specifier.contains(version(name), prereleases=True), f"{name} {version(name)} is outside {req}"


def test_the_libraries_whose_majors_break_us_have_an_upper_bound() -> None:
    reqs = requirements()
    for name in CAPPED:
        assert any(spec.operator == "<" for spec in reqs[name].specifier), f"pyproject.toml: {name} has no ceiling"
