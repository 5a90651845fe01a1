"""End to end with Debian's Chromium (headless) as the session user, under the generated managed policy.

A session on a page served on loopback sets a cookie, localStorage and IndexedDB, downloads a file and sees the
session bar; after the end a new session sees none of it and no file remains. Under the generated policy
file:///etc/passwd, chrome://settings, view-source: and a host outside the allowlist are refused, and DevTools is.

Chromium reads managed policies only from /etc/chromium/policies/managed/: the test writes the kiosk's policy file
there (it runs as root, as CI does) and removes it afterwards; the controller removes it at every wipe anyway.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from firmware_host.api import call_once
from kiosk import policies
from kiosk.browser import Browser, CdpError, browser_env, build_command
from kiosk.wipe import SessionUser, Wiper, make_home, user_processes
from tests.conftest import free_port, wait_until

from .conftest import TEST_USER, open_on_chromium, visitor_traces

CHROMIUM = "/usr/bin/chromium"
HEADLESS = [
    CHROMIUM,
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--user-data-dir={profile_dir}",
    "{url}",
]

PAGE = """<!doctype html><html><head><title>Démarche</title></head><body><p>Formulaire</p><script>
const report = (data) => fetch("/report?" + new URLSearchParams({data: JSON.stringify(data)}));
function idbOpen() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open("dossier", 1);
    req.onupgradeneeded = () => req.result.createObjectStore("pieces");
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}
function idbGet(db) {
  return new Promise((resolve) => {
    const r = db.transaction("pieces").objectStore("pieces").get("avis");
    r.onsuccess = () => resolve(r.result === undefined ? null : r.result);
    r.onerror = () => resolve("error");
  });
}
function idbPut(db) {
  return new Promise((resolve) => {
    const tx = db.transaction("pieces", "readwrite");
    tx.objectStore("pieces").put("avis d'imposition 2025", "avis");
    tx.oncomplete = () => resolve();
  });
}
async function barState() {
  for (let i = 0; i < 100; i++) {
    const bar = document.getElementById("allervers-bar");
    if (bar && bar.dataset.state && bar.dataset.state !== "inactive") return {...bar.dataset};
    await new Promise((r) => setTimeout(r, 50));
  }
  return null;
}
(async () => {
  const db = await idbOpen();
  const before = {cookie: document.cookie, local: localStorage.getItem("visitor"), idb: await idbGet(db)};
  document.cookie = "visitor=secret; max-age=86400; path=/";
  localStorage.setItem("visitor", "secret");
  await idbPut(db);
  const a = document.createElement("a");
  a.href = "/attestation.pdf";
  a.download = "attestation.pdf";
  document.body.appendChild(a);
  a.click();
  report({before, bar: await barState(), lang: navigator.language});
})();
</script></body></html>
"""


class Site:
    """The public-service site, on 127.0.0.1; a second server on 127.0.0.2 plays a host outside the allowlist."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.outside_hits = 0
        self.page = PAGE  # what every other address serves
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path)
                if self.server.server_address[0] == "127.0.0.2":
                    site.outside_hits += 1
                if path.path == "/report":
                    site.reports.append(json.loads(parse_qs(path.query)["data"][0]))
                    body, kind, extra = b"", "text/plain", {}
                elif path.path == "/attestation.pdf":
                    body, kind = b"%PDF-1.4 attestation CAF", "application/pdf"
                    extra = {"Content-Disposition": 'attachment; filename="attestation.pdf"'}
                else:
                    body, kind, extra = site.page.encode(), "text/html; charset=utf-8", {}
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        hosts = ("127.0.0.1", "127.0.0.2")
        self.servers = [http.server.ThreadingHTTPServer((host, self.port), Handler) for host in hosts]
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.outside = f"http://127.0.0.2:{self.port}/"

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.close()


async def test_a_session_leaves_nothing_for_the_next_one(
    run_controller: Any, kiosk_config: Any, site: Site, system_policy_dir: str, visitor: Any
) -> None:
    cfg, controller = await open_on_chromium(run_controller, kiosk_config, site.url, HEADLESS, system_policy_dir)

    first = await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"}, timeout=60)
    home = Path(first["home"])
    await wait_until(lambda: site.reports, timeout=30, message="the page's report")
    report = site.reports[-1]
    assert report["before"] == {"cookie": "", "local": None, "idb": None}
    assert report["bar"]["state"] == "session" and 1790 <= int(report["bar"]["left"]) <= 1800
    download = home / "Downloads" / "attestation.pdf"
    await wait_until(download.exists, timeout=20, message="the download in the session's Downloads")
    assert download.read_bytes() == b"%PDF-1.4 attestation CAF"
    assert download.stat().st_uid == visitor.pw_uid
    profile_files = [p for p in (home / "profile").rglob("*") if p.is_file()]
    assert len(profile_files) > 10  # cookies, Local Storage, IndexedDB...

    browser = controller.kiosk.session.browser
    pages = await browser.page_urls()
    with pytest.raises(CdpError, match="Not allowed"):  # DevTools is off for pages, even on our own pipe
        await browser.cdp.send("Target.attachToTarget", {"targetId": await _page_target(browser), "flatten": True})
    assert site.url in pages

    ended = await call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=60)
    assert ended["wipe"]["ok"] is True and ended["wipe"]["files_removed"] > len(profile_files)
    assert not home.exists() and not download.exists()
    assert user_processes(uid=visitor.pw_uid) == []
    assert visitor_traces(visitor.pw_uid) == []
    assert not (Path(system_policy_dir) / policies.POLICY_FILE).exists()

    site.reports.clear()
    second = await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"}, timeout=60)
    assert second["session"] != first["session"]
    await wait_until(lambda: site.reports, timeout=30, message="the second session's report")
    assert site.reports[-1]["before"] == {"cookie": "", "local": None, "idb": None}
    await call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=60)
    assert user_processes(uid=visitor.pw_uid) == [] and visitor_traces(visitor.pw_uid) == []


async def _page_target(browser: Browser) -> str:
    targets = await browser.cdp.send("Target.getTargets")
    return next(t["targetId"] for t in targets["targetInfos"] if t["type"] == "page")


async def test_the_generated_policy_refuses_the_ways_out(
    site: Site, system_policy_dir: str, sessions_root: Path, visitor: Any
) -> None:
    """The policy a session gets, except DevTools allowed so the test can read the pages through the pipe
    (the test above shows the real value refuses that)."""
    user = SessionUser.lookup(TEST_USER)
    home = make_home(str(sessions_root / "sessions"), "policycheck", user)
    policy = policies.build_policy(url=site.url, allow=["127.0.0.1"], downloads_dir=str(home / "Downloads"))
    assert policy["DeveloperToolsAvailability"] == 2
    policies.write_policy(system_policy_dir, {**policy, "DeveloperToolsAvailability": 1})
    argv = build_command(HEADLESS, url="about:blank", home=home, lang="fr", session_bar=False)
    browser = Browser(argv, user=user, home=home, env=browser_env(user, home, "fr", [], None))
    await browser.start()
    try:

        async def navigate(url: str) -> tuple[str | None, str]:
            # A fresh tab per address: Chromium 156 headless crashes (SIGSEGV) when one tab goes from a blocked
            # page to a blocked chrome:// page; on the bus a crash ends the session, which is then wiped.
            tab = (await browser.cdp.send("Target.createTarget", {"url": "about:blank"}))["targetId"]
            attached = await browser.cdp.send("Target.attachToTarget", {"targetId": tab, "flatten": True})
            session = attached["sessionId"]
            result = await browser.cdp.send("Page.navigate", {"url": url}, session_id=session, timeout=20)
            text = await browser.cdp.send(
                "Runtime.evaluate",
                {"expression": "location.href + ' ' + (document.body ? document.body.innerText : '')"},
                session_id=session,
            )
            return result.get("errorText"), text["result"].get("value", "")

        error, _ = await navigate(site.url)
        assert error is None  # the service itself opens
        for url in ("file:///etc/passwd", "chrome://settings", f"view-source:{site.url}", site.outside):
            error, text = await navigate(url)
            assert error == "net::ERR_BLOCKED_BY_ADMINISTRATOR", url
            assert text.startswith("chrome-error://") and "root:x:0:0" not in text, text
        assert site.outside_hits == 0
    finally:
        await browser.kill()
        policies.remove_policy(system_policy_dir)
        result = await Wiper(user, str(sessions_root / "sessions")).wipe()
        assert result.ok, result.problems
