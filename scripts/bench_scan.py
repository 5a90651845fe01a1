"""Benchmark of scanning at the public terminal: one page with SANE's test backend, from the tap on "Numériser la
page" to the preview on screen, and from "Enregistrer" to the PDF in the session's Downloads, through the real
controller, Chromium, session bar, bridge and scanimage; scanimage alone is reported apart.

Needs root (the session user, Chromium's policy in /etc/chromium/policies/managed/, removed afterwards), Debian's
Chromium and sane-utils. The policy is the generated one with DevTools allowed, so the bench can press the scan
page's buttons through the DevTools pipe. Run: scripts/bench --only scan.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import shutil
import statistics
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
from kiosk.scan import ScanSettings, scan_page  # noqa: E402
from scripts.bench_kiosk import CHROMIUM, POLICY_DIR, USER, _ensure_user, _Page  # noqa: E402

Row = tuple[str, str, str]
SCANNER = ScanSettings("test", 150, "Color", ("--test-picture=Color pattern",))


async def _until(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"scan benchmark: {what} did not happen")
        await asyncio.sleep(0.005)


async def _measure(tmp: Path, url: str, rounds: int) -> dict[str, list[float]]:
    sessions = Path(tempfile.mkdtemp(prefix="aks-", dir="/dev/shm"))
    sessions.chmod(0o755)
    raw = {
        "vehicle": {"id": "bus-bench"},
        "storage": {"path": str(tmp / "allervers.db")},
        "api": {"control_socket": str(tmp / "control.sock"), "kiosk_socket": str(tmp / "kiosk.sock")},
        "gpio": {"pin_factory": "mock"},
        "kiosk": {
            "sessions_dir": str(sessions / "s"),
            "session_user": USER,
            "browser_command": CHROMIUM,
            "policy_dir": str(tmp / "policy"),  # the bench writes the one Chromium reads, with DevTools allowed
            "scanner": SCANNER.device,
            "scan_resolution": SCANNER.resolution,
            "scan_options": list(SCANNER.options),
            "services": [{"id": "caf", "label": "CAF", "url": url, "allow": ["127.0.0.1"]}],
        },
    }
    cfg = config_mod.validate(raw, "bench.toml", tmp)
    policy = policies.build_policy(url=url, allow=["127.0.0.1"], downloads_dir=str(sessions / "s"))
    policies.write_policy(POLICY_DIR, {**policy, "DeveloperToolsAvailability": 1})
    controller = Controller(cfg)
    await controller.start()
    out: dict[str, list[float]] = {"open": [], "preview": [], "save": [], "bytes": []}
    try:
        while controller.kiosk.phase != "idle":
            await asyncio.sleep(0.01)
        await call_once(cfg.api.control_socket, "kiosk.open", {})
        started = await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"}, timeout=60)
        downloads = Path(started["home"]) / "Downloads"
        cdp = controller.kiosk.session.browser.cdp
        await _until(lambda: _ready(controller), "the bridge's scanner check")
        opened = time.monotonic()
        await call_once(cfg.api.kiosk_socket, "session.open_scan", {})  # the launcher's "Numériser un document"
        target: list[str] = []

        async def scan_tab() -> bool:
            infos = (await cdp.send("Target.getTargets"))["targetInfos"]
            target[:] = [t["targetId"] for t in infos if t["type"] == "page" and t["url"].endswith("/scan.html")]
            return bool(target)

        await _until(scan_tab, "the scanning page")
        session = (await cdp.send("Target.attachToTarget", {"targetId": target[0], "flatten": True}))["sessionId"]

        async def page(expression: str) -> Any:
            params = {"expression": expression, "returnByValue": True}
            reply = await cdp.send("Runtime.evaluate", params, session_id=session)
            return reply["result"].get("value")

        body = "document.body.dataset"
        await _until(lambda: page(f"{body}.state === 'idle'"), "the scanning page ready")
        out["open"].append(time.monotonic() - opened)
        for n in range(rounds):
            button = "scan" if n == 0 else "add"  # then "Numériser un autre document"
            began = time.monotonic()
            await page(f"document.getElementById('{button}').click()")
            await _until(lambda: page(f"{body}.state === 'ready' && {body}.images === '1'"), "the preview")
            out["preview"].append(time.monotonic() - began)
            began = time.monotonic()
            await page("document.getElementById('save').click()")
            await _until(lambda: page(f"{body}.state === 'saved'"), "the saved PDF")
            out["save"].append(time.monotonic() - began)
            name = await page(f"{body}.file")
            out["bytes"].append(float((downloads / name).stat().st_size))
        await call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=60)
    finally:
        await controller.stop()
        policies.remove_policy(POLICY_DIR)
        shutil.rmtree(sessions, ignore_errors=True)
    return out


async def _ready(controller: Controller) -> bool:
    session = controller.kiosk.session
    return session is not None and session.scanner == "ready"


def run(quick: bool = False) -> list[Row]:
    if os.geteuid() != 0:
        return [("scan benchmark", "skipped: needs root (session user, Chromium policy)", "")]
    missing = [p for p in ("/usr/bin/chromium", "/usr/bin/scanimage") if not Path(p).exists()]
    if missing:
        return [("scan benchmark", f"skipped: {', '.join(missing)} missing (chromium, sane-utils)", "")]
    _ensure_user()
    rounds = 3 if quick else 10
    alone = []
    for _ in range(rounds):
        began = time.monotonic()
        scan_page(SCANNER)
        alone.append(time.monotonic() - began)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory(prefix="allervers-bench-scan-") as tmp:
            m = asyncio.run(_measure(Path(tmp), f"http://127.0.0.1:{server.server_address[1]}/", rounds))
    finally:
        server.shutdown()
    total = [p + s for p, s in zip(m["preview"], m["save"], strict=True)]
    n = len(total)
    return [
        (
            "scan: Numériser la page -> PDF saved in Downloads, 1 page 150 dpi colour, test backend (median)",
            f"{statistics.median(total):.2f} s (n={n})",
            "",
        ),
        ("scan: ... tap -> preview on screen (median)", f"{statistics.median(m['preview']):.2f} s", ""),
        ("scan: ... Enregistrer -> PDF saved (median)", f"{statistics.median(m['save']):.3f} s", ""),
        ("scan: ... worst of the rounds", f"{max(total):.2f} s", ""),
        ('scan: "Numériser un document" -> scanning page ready (once)', f"{m['open'][0]:.2f} s", ""),
        ("scan: scanimage alone, one page (median)", f"{statistics.median(alone):.3f} s", "reported apart"),
        ("scan: PDF size, one test-pattern page", f"{statistics.median(m['bytes']) / 1024:.0f} kB", ""),
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(" | ".join(row))
