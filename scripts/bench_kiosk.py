"""Benchmark of the public terminal: session turnaround ("Terminer" to a ready welcome screen with a verified
wipe, through the real launcher, controller, Chromium and wipe) and the browser's cold start, reported apart; a tile
touch to the service page's first paint, and a failed navigation to our page (the bar's failed.html) shown.

Needs root (the session runs as an unprivileged user of its own, created if missing, and Chromium's policy goes
to /etc/chromium/policies/managed/, removed afterwards) and Debian's Chromium. Run: scripts/bench --only kiosk.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from firmware_host import config as config_mod  # noqa: E402
from firmware_host.api import call_once  # noqa: E402
from firmware_host.controller import Controller  # noqa: E402
from kiosk import policies  # noqa: E402

Row = tuple[str, str, str]
# Not the tests' user (a test run at the same time keeps its sessions); ALLERVERS_BENCH_VISITOR sets one per checkout.
USER = os.environ.get("ALLERVERS_BENCH_VISITOR", "allervers-visitor-bench")
SESSIONS = 5
POLICY_DIR = "/etc/chromium/policies/managed"
CHROMIUM = [
    "/usr/bin/chromium",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--user-data-dir={profile_dir}",
    "{url}",
]
# The page tells the bench its first paint, then goes where the answer says: an address nobody serves (the link down).
PAGE = b"""<!doctype html><title>CAF</title><p>Vos demarches</p><script>localStorage.setItem('k','v');
new PerformanceObserver((list, observer) => {
  observer.disconnect();
  fetch("/painted").then((r) => r.text()).then((next) => { if (next) location.href = next; });
}).observe({type: "paint", buffered: true});
</script>"""


class _Page(http.server.BaseHTTPRequestHandler):
    painted: list[float] = []  # monotonic times the page reported its first paint
    failed_url = ""  # where the page goes after painting
    armed = threading.Event()  # the bench watches the browser's pages: the page may now fail

    def do_GET(self) -> None:
        if self.path == "/painted":
            _Page.painted.append(time.monotonic())
            _Page.armed.wait(30)
            self._send(_Page.failed_url.encode(), "text/plain")
        else:
            self._send(PAGE, "text/html")

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _ensure_user() -> None:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                USER,
            ],
            check=True,
        )


async def _measure(tmp: Path, url: str, unit_socket: str | None = None) -> dict[str, list[float]]:
    """Through the real launcher; ``unit_socket``: sessions as allervers-session@ units (launch = "unit")."""
    from kiosk.launcher.app import KioskApp, KioskLink
    from kiosk.launcher.screens import EndScreen, SessionScreen, WelcomeScreen

    sessions = Path(tempfile.mkdtemp(prefix="akb-", dir="/dev/shm"))
    sessions.chmod(0o755)
    kiosk: dict[str, Any] = {
        "sessions_dir": str(sessions / "s"),
        "session_user": USER,
        "browser_command": CHROMIUM,
        "policy_dir": POLICY_DIR,
        "services": [{"id": "caf", "label": "CAF", "url": url, "allow": ["127.0.0.1"]}],
    }
    if unit_socket is not None:
        kiosk |= {"launch": "unit", "launch_socket": unit_socket, "sessions_dir": "/srv/allervers/sessions"}
    raw = {
        "vehicle": {"id": "bus-bench"},
        "storage": {"path": str(tmp / "allervers.db")},
        "api": {"control_socket": str(tmp / "control.sock"), "kiosk_socket": str(tmp / "kiosk.sock")},
        "gpio": {"pin_factory": "mock"},
        "kiosk": kiosk,
    }
    cfg = config_mod.validate(raw, "bench.toml", tmp)
    controller = Controller(cfg)
    await controller.start()
    keys = ("cold", "start", "paint", "failed", "wiped", "welcome", "wipe", "files")
    out: dict[str, list[float]] = {k: [] for k in keys}
    failed_page = f"chrome-extension://{policies.bar_extension_id()}/failed.html"
    try:
        while controller.kiosk.phase != "idle":
            await asyncio.sleep(0.01)
        await call_once(cfg.api.control_socket, "kiosk.open", {})
        app = KioskApp(KioskLink(cfg.api.kiosk_socket), poll_s=0.25)
        async with app.run_test(size=(100, 40)) as pilot:

            async def until(condition: Any, timeout: float = 30.0) -> None:
                deadline = time.monotonic() + timeout
                while not condition():
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"benchmark step did not happen on {app.screen!r}: {controller.kiosk.closed_reason()}"
                            f" {controller.kiosk.wipe_problems}"
                        )
                    await asyncio.sleep(0.005)

            for _ in range(SESSIONS):
                await until(lambda: isinstance(app.screen, WelcomeScreen) and app.screen.is_mounted)
                await pilot.click("#touch")
                await until(lambda: app.screen.query("#service-caf"))
                await pilot.pause()
                _Page.painted.clear()
                _Page.armed.clear()
                began = time.monotonic()
                await pilot.click("#service-caf")
                await until(lambda: isinstance(app.screen, SessionScreen) and app.screen.is_mounted)
                out["start"].append(time.monotonic() - began)
                out["cold"].append(controller.kiosk.session.browser.started_s or 0.0)
                # The browser's pages as seen on the controller's DevTools pipe (browser level: the policy
                # refuses the pipe any page), to see our page replace the failed one.
                shown: list[float] = []
                cdp = controller.kiosk.session.browser.cdp

                def watch(message: dict[str, Any], shown: list[float] = shown) -> None:
                    info = message.get("params", {}).get("targetInfo", {})
                    if not shown and str(info.get("url", "")).startswith(failed_page):
                        shown.append(time.monotonic())

                cdp.listeners.append(watch)
                await cdp.send("Target.setDiscoverTargets", {"discover": True})
                _Page.armed.set()
                await until(lambda: _Page.painted)  # the page painted (and wrote its storage)
                out["paint"].append(_Page.painted[0] - began)
                await until(lambda shown=shown: shown)
                out["failed"].append(shown[0] - _Page.painted[0])
                await pilot.click("#end")
                await until(lambda: app.screen.query("#yes"))
                await pilot.pause()
                tapped = time.monotonic()
                await pilot.click("#yes")
                await until(lambda: isinstance(app.screen, EndScreen) and app.screen.result is not None)
                out["wiped"].append(time.monotonic() - tapped)
                await pilot.pause()  # let the screen lay out what it just showed before tapping it
                if app.screen.query_one("#faces").display:  # the visitor skips the three faces at once
                    await pilot.click("#skip")
                await until(lambda: isinstance(app.screen, EndScreen) and app.screen.query_one("#again").display)
                await pilot.pause()
                await pilot.click("#again")
                await until(lambda: isinstance(app.screen, WelcomeScreen) and app.screen.is_mounted)
                out["welcome"].append(time.monotonic() - tapped)
                wipe = controller.kiosk.last_wipe or {}
                out["wipe"].append(float(wipe.get("duration_s", 0)))
                out["files"].append(float(wipe.get("files_removed", 0)))
    finally:
        await controller.stop()
        policies.remove_policy(POLICY_DIR)
        shutil.rmtree(sessions, ignore_errors=True)
    return out


def run() -> list[Row]:
    if os.geteuid() != 0:
        return [("kiosk benchmark", "skipped: needs root (session user, Chromium policy)", "")]
    if not Path("/usr/bin/chromium").exists():
        return [("kiosk benchmark", "skipped: /usr/bin/chromium missing (apt-get install chromium)", "")]
    _ensure_user()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    unused = socket.socket()  # bound, never listening: connections to it are refused, as with the link down
    unused.bind(("127.0.0.1", 0))
    _Page.failed_url = f"http://127.0.0.1:{unused.getsockname()[1]}/suite"
    try:
        with tempfile.TemporaryDirectory(prefix="allervers-bench-kiosk-") as tmp:
            m = asyncio.run(_measure(Path(tmp), url))
        u = _measure_units(url)
    finally:
        server.shutdown()
        unused.close()

    def med(key: str) -> float:
        return statistics.median(m[key])

    n = len(m["welcome"])
    return [
        (
            "kiosk: session turnaround, Terminer -> welcome ready, wipe verified (median)",
            f"{med('welcome'):.2f} s",
            "<= 1.0 s",
        ),
        ("kiosk: ... worst of the sessions", f"{max(m['welcome']):.2f} s (n={n})", "<= 1.5 s"),
        ('kiosk: Terminer -> "Vos données ont été effacées" (median)', f"{med('wiped'):.2f} s", ""),
        ("kiosk: wipe alone, controller side (median)", f"{med('wipe'):.3f} s, {med('files'):.0f} files", ""),
        ("kiosk: browser cold start, spawn -> DevTools answer (median)", f"{med('cold'):.2f} s", "reported apart"),
        ("kiosk: service tile -> session screen (median)", f"{med('start'):.2f} s", ""),
        ("kiosk: service tile -> first paint of the service page (local page, median)", f"{med('paint'):.2f} s", ""),
        ("kiosk: failed navigation -> our page shown (median)", f"{med('failed'):.2f} s", ""),
    ] + (
        [(f"kiosk, sessions as units (launch = unit): {u}", "", "")]
        if isinstance(u, str)
        else [
            (
                "kiosk, sessions as units (as on the bus): turnaround, Terminer -> welcome (median)",
                f"{statistics.median(u['welcome']):.2f} s",
                "<= 1.0 s",
            ),
            ("kiosk, sessions as units: ... worst", f"{max(u['welcome']):.2f} s (n={len(u['welcome'])})", "<= 1.5 s"),
            (
                "kiosk, sessions as units: connect -> unit -> DevTools answer (median)",
                f"{statistics.median(u['cold']):.2f} s",
                "reported apart",
            ),
        ]
    )


def _measure_units(url: str) -> dict[str, list[float]] | str:
    """The same sessions, each an allervers-session@ unit of a private systemd (tests/pid1.py)."""
    from tests import pid1

    why_not = pid1.available()
    if why_not is not None:
        return f"skipped: {why_not}"
    work = Path(tempfile.mkdtemp(prefix="allervers-bench-", dir="/var/lib"))  # not /tmp: the unit hides it
    work.chmod(0o755)
    units = pid1.session_units(ROOT, work / "session.sock", USER)
    manager = pid1.PrivateSystemd(work / "systemd", units)
    try:
        manager.start()
        manager.systemctl("start", "allervers-session.socket")
        return asyncio.run(_measure(work, url, unit_socket=str(work / "session.sock")))
    finally:
        manager.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    for metric, value, target in run():
        print(f"{metric:<80} {value:>24}  {target}")
