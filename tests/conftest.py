"""Shared fixtures: condition waits, free ports, an in-process controller; in CI a skipped test is a failure."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.css.query import NoMatches

from firmware_host import config as config_mod
from firmware_host.controller import Controller

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """In CI every test must run: turn a skip (and an xfail) into a failure naming the reason."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true makes skips failures): {reason}"


@pytest.fixture(autouse=True)
def no_undeclared_state_keys() -> Any:
    """A StateModel.update with a key the field table does not declare fails the test that caused it."""
    from firmware_host import state

    state.unknown_keys.clear()
    yield
    if state.unknown_keys:
        unknown = sorted(set(state.unknown_keys))
        state.unknown_keys.clear()
        pytest.fail(f"StateModel.update got undeclared field(s) {', '.join(unknown)}: declare them in state.FIELDS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_until(
    condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, message: str = "condition"
) -> Any:
    """Poll ``condition`` (sync or async) until truthy; fail with ``message`` after ``timeout`` seconds.

    A condition on a Textual widget that is not there yet (its screen or view still being composed, or swapped
    for a new one) raises NoMatches: that is "not yet", not a failure, until the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
            if asyncio.iscoroutine(result):
                result = await result
        except NoMatches as exc:
            result, missing = None, exc
        else:
            missing = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}") from missing
        await asyncio.sleep(interval)


async def on_screen(app: Any, kind: type, timeout: float = 10.0, message: str | None = None) -> Any:
    """Wait until a Textual app shows a ``kind`` screen *with its widgets made* (pushed is not enough: its
    compose runs later, so a query right after the push finds nothing), and return it."""
    await wait_until(
        lambda: isinstance(app.screen, kind) and app.screen.is_mounted, timeout, message=message or kind.__name__
    )
    return app.screen


def wait_until_sync(
    condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, message: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def base_config(tmp_path: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A minimal config dict with store and sockets under ``tmp_path``; ``sections`` override/extend it."""
    raw: dict[str, Any] = {
        "vehicle": {"id": "bus-test", "name": "Test bus"},
        "storage": {"path": str(tmp_path / "state" / "allervers.db")},
        "api": {
            "control_socket": str(tmp_path / "run" / "control.sock"),
            "kiosk_socket": str(tmp_path / "run" / "kiosk.sock"),
        },
        "gpio": {"pin_factory": "mock"},
    }
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(raw.get(name), dict):
            raw[name] = {**raw[name], **values}
        else:
            raw[name] = values
    return raw


def to_toml(raw: dict[str, Any], prefix: str = "") -> str:
    """Just enough TOML for a test config file: nested tables, arrays of tables, scalars and lists."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {v!r} as TOML")

    def is_array_of_tables(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)

    lines = [f"{k} = {value(v)}" for k, v in raw.items() if not isinstance(v, dict) and not is_array_of_tables(v)]
    out = "\n".join(lines) + "\n" if lines else ""
    for key, v in raw.items():
        name = f"{prefix}{key}"
        if isinstance(v, dict):
            out += f"\n[{name}]\n" + to_toml(v, f"{name}.")
        elif is_array_of_tables(v):
            for item in v:
                out += f"\n[[{name}]]\n" + to_toml(item, f"{name}.")
    return out


def write_config(tmp_path: Path, **sections: Any) -> Path:
    """``base_config`` (plus ``sections``) written as ``tmp_path/bus.toml``, for tests that run real processes."""
    path = tmp_path / "bus.toml"
    path.write_text(to_toml(base_config(tmp_path, **sections)), encoding="utf-8")
    return path


def make_config(tmp_path: Path, **sections: dict[str, Any]) -> config_mod.Config:
    return config_mod.validate(base_config(tmp_path, **sections), "test.toml", tmp_path)


@pytest.fixture
async def run_controller() -> AsyncIterator[Callable[..., Any]]:
    """``await run_controller(config)`` starts a Controller in this loop; all are stopped at teardown."""
    started: list[Controller] = []

    async def start(cfg: config_mod.Config, **kwargs: Any) -> Controller:
        controller = Controller(cfg, **kwargs)
        started.append(controller)
        await controller.start()
        return controller

    yield start
    for controller in reversed(started):
        try:
            await asyncio.wait_for(controller.stop(), 30)
        except TimeoutError:
            _dump_stacks()
            raise AssertionError("controller.stop() took more than 30 s (stacks above)") from None


def _dump_stacks() -> None:
    """Print every task's and thread's stack, so a hang at shutdown says where it is."""
    import faulthandler
    import sys

    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)
    faulthandler.dump_traceback(all_threads=True)


def sim_sections(
    tmp_path: Path, *, poll_s: float = 0.5, modem_profile: str = "3gpp", **extra: dict[str, Any]
) -> dict[str, Any]:
    """Config sections for a controller with every simulator embedded, on free loopback ports under tmp_path."""
    sections: dict[str, Any] = {
        "simulation": {"embedded": True, "speed": 1.0, "seed": 3},
        "inverter": {
            "host": "127.0.0.1",
            "port": free_port(),
            "poll_s": poll_s,
            "timeout_s": 0.3,
            "allow_writes": True,
        },
        "shore_power": {
            "presence_pin": 5,
            "debounce_s": 0.05,
            "meter": {
                "transport": "rtu-over-tcp",
                "host": "127.0.0.1",
                "port": free_port(),
                "poll_s": poll_s,
                "timeout_s": 0.3,
            },
        },
        "modem": {"port": str(tmp_path / "dev" / "modem"), "profile": modem_profile, "poll_s": poll_s},
        "gpio": {
            "pin_factory": "mock",
            "ignition_pin": 17,
            "antenna_stowed_pin": 27,
            "door_pin": 22,
            "buzzer_pin": 23,
            "status_led_pin": 24,
            "debounce_s": 0.02,
        },
        "alarms": {"disagree_after_s": 1.0},
    }
    for name, values in extra.items():
        if isinstance(values, dict) and isinstance(sections.get(name), dict):
            sections[name] = {**sections[name], **values}
        else:
            sections[name] = values
    return sections
