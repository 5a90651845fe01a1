"""Kiosk test fixtures: a real unprivileged session user, session homes on a tmpfs, a controllable clock, Chromium's
policy folder."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_host.api import call_once
from kiosk.policies import remove_policy
from tests.conftest import make_config, to_toml, wait_until  # noqa: F401 (to_toml re-exported for the kiosk tests)

# Its own user per checkout (ALLERVERS_TEST_VISITOR), so two suites running side by side never wipe each other.
TEST_USER = os.environ.get("ALLERVERS_TEST_VISITOR", "allervers-visitor-test")
FAKE_BROWSER = str(Path(__file__).with_name("fake_browser.py"))
SYSTEM_POLICY_DIR = "/etc/chromium/policies/managed"  # the only place Debian's Chromium reads managed policies


def ensure_test_user(name: str = TEST_USER) -> pwd.struct_passwd:
    """The wipe kills every process of the session user: never root, never a real person, so a user of our own."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    if os.geteuid() != 0:
        pytest.skip(f"the kiosk tests need root to create the test session user {name!r}")
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(name)


@pytest.fixture(scope="session")
def visitor() -> pwd.struct_passwd:
    return ensure_test_user()


@pytest.fixture
def sessions_root() -> Iterator[Path]:
    """A folder on a tmpfs (as on the Pi) the session user can reach (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="akt-", dir="/dev/shm"))  # short: Chromium's sockets live under it
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def kiosk_config(tmp_path: Path, sessions_root: Path, visitor: pwd.struct_passwd) -> Callable[..., Any]:
    """``kiosk_config(**kiosk_overrides, sections=...)``: a controller config with the kiosk on the fake browser."""

    def build(*, sections: dict[str, Any] | None = None, browser_args: list[str] | None = None, **kiosk: Any) -> Any:
        section: dict[str, Any] = {
            "enabled": True,
            "sessions_dir": str(sessions_root / "sessions"),
            "session_user": TEST_USER,
            "browser_command": [FAKE_BROWSER, "--user-data-dir={profile_dir}", "--url={url}", *(browser_args or [])],
            "policy_dir": str(tmp_path / "policies"),
            "session_bar": False,
            "print_wait_s": 0.0,
            "services": [
                {"id": "caf", "label": "CAF", "url": "https://www.caf.fr/", "allow": ["caf.fr"]},
                {
                    "id": "impots",
                    "label": "Impôts",
                    "label_en": "Taxes",
                    "url": "https://www.impots.gouv.fr/",
                    "time_limit_min": 10,
                },
                {"id": "guide", "label": "Guide", "url": "http://127.0.0.1:9/guide", "needs_link": False},
                {"id": "libre", "label": "Navigation libre", "url": "https://www.qwant.com/", "enabled": False},
            ],
        }
        section.update(kiosk)
        return make_config(tmp_path, kiosk=section, **(sections or {}))

    return build


@pytest.fixture
def system_policy_dir() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip(f"Chromium reads policies only from {SYSTEM_POLICY_DIR}: writing there needs root")
    existed = os.path.isdir(SYSTEM_POLICY_DIR)
    yield SYSTEM_POLICY_DIR
    remove_policy(SYSTEM_POLICY_DIR)
    if not existed:
        shutil.rmtree("/etc/chromium/policies", ignore_errors=True)


async def open_on_chromium(
    run_controller: Callable[..., Any],
    kiosk_config: Callable[..., Any],
    url: str,
    browser: list[str],
    policy_dir: str,
    allow: tuple[str, ...] = ("127.0.0.1",),
) -> tuple[Any, Any]:
    """A controller on Debian's Chromium with the session bar, opened, offering one service (CAF) at ``url``."""
    cfg = kiosk_config(
        browser_command=browser,
        policy_dir=policy_dir,
        session_bar=True,
        services=[{"id": "caf", "label": "CAF", "url": url, "allow": list(allow)}],
    )
    controller = await run_controller(cfg)
    await wait_until(lambda: controller.kiosk.phase == "idle")
    await call_once(cfg.api.control_socket, "kiosk.open", {})
    return cfg, controller


@pytest.fixture(scope="session")
def cupsd() -> Iterator[Any]:
    from .cups import CupsServer

    server = CupsServer().start()
    yield server
    server.stop()


def visitor_traces(uid: int) -> list[str]:
    """Files of the session user left in the shared folders it can write in."""
    from kiosk.wipe import SHARED_DIRS, owned_entries

    return [p for root in SHARED_DIRS for p in owned_entries(root, uid)]
