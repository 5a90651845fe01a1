"""Scanning end to end in Debian's Chromium with SANE's `test` backend: "Numériser un document" touched on the session
bar, the scanning page scans, previews and saves one document of one page and one of two, the bar says what the
printer did with it, a service's form uploads the PDF through its <input type=file> (whose picker starts in the
session's Downloads), and after the wipe nothing is left but the count of scanned pages; the same in a session unit.

As in test_e2e_chromium's policy test, the managed policy is the generated one with DevTools allowed, so the test can
touch the bar and set the file input through the DevTools pipe (what a visitor does with a finger and the picker).
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from firmware_host.api import call_once
from kiosk import policies
from kiosk.browser import Browser, CdpPipe, browser_env, build_command
from kiosk.wipe import SessionUser, Wiper, make_home, user_processes
from tests.conftest import free_port, wait_until

from .conftest import TEST_USER, visitor_traces
from .devtools import Tab, classes, find_node
from .test_e2e_chromium import HEADLESS
from .test_session_unit import open_controller, session_units, systemd, why_not, write_config  # noqa: F401 (fixture)

FORM = """<!doctype html><html><head><title>Justificatif</title></head><body>
<h1>Envoyer un justificatif</h1><input type="file" id="piece" accept="application/pdf,image/*">
<script>
fetch("/report?" + new URLSearchParams({data: JSON.stringify({ready: true})}));
document.getElementById("piece").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  const text = new TextDecoder("latin1").decode(await file.arrayBuffer());
  const pages = (text.match(/\\/Type\\s*\\/Page(?![s\\w])/g) || []).length;
  const data = {name: file.name, type: file.type, size: file.size, pdf: text.startsWith("%PDF-"), pages};
  fetch("/report?" + new URLSearchParams({data: JSON.stringify(data)}));
});
</script></body></html>
"""


class FormSite:
    """A service's form on loopback that reports what the visitor attached."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path)
                if path.path == "/report":
                    site.reports.append(json.loads(parse_qs(path.query)["data"][0]))
                body = b"" if path.path == "/report" else FORM.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def form_site() -> Iterator[FormSite]:
    site = FormSite()
    yield site
    site.close()


async def test_scan_preview_save_and_upload_in_chromium(
    run_controller: Any,
    kiosk_config: Any,
    cupsd: Any,
    form_site: FormSite,
    system_policy_dir: str,
    sessions_root: Path,
    tmp_path: Path,
    visitor: Any,
) -> None:
    cfg = kiosk_config(
        browser_command=HEADLESS,
        policy_dir=str(tmp_path / "controller-policy"),  # the test writes the one Chromium reads (DevTools on)
        session_bar=True,
        scanner="test",
        scan_options=["--test-picture=Color pattern"],
        printer="bus",
        cups_server=cupsd.server,
        services=[{"id": "caf", "label": "CAF", "url": form_site.url, "allow": ["127.0.0.1"]}],
    )
    policy = policies.build_policy(
        url=form_site.url, allow=["127.0.0.1"], downloads_dir=str(sessions_root / "sessions"), session_bar=True
    )
    policies.write_policy(system_policy_dir, {**policy, "DeveloperToolsAvailability": 1})
    controller = await run_controller(cfg)
    await wait_until(lambda: controller.kiosk.phase == "idle")
    await call_once(cfg.api.control_socket, "kiosk.open", {})
    started = await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"}, timeout=60)
    home = Path(started["home"])
    cdp = controller.kiosk.session.browser.cdp
    await wait_until(lambda: form_site.reports, timeout=30, message="the form page")

    form = await Tab.find(cdp, form_site.url)
    bar = "document.getElementById('allervers-bar')"
    await form.wait(f"{bar} && {bar}.dataset.scanner === 'ready'", "the bar's scan button, scanner ready")
    button = await form.node(lambda n: n.get("localName") == "button" and "scan" in classes(n))  # closed shadow root
    await form.touch(button)  # "Numériser un document"

    scan = await Tab.find(cdp, "/scan.html")
    body = "document.body.dataset"
    await scan.wait(f"{body}.state === 'idle'", "the scanning page, ready to scan")
    assert await scan.eval("document.getElementById('say').textContent + document.getElementById('how').textContent")
    one_page = [("scan", "ready", 1), ("save", "saved", 1)]
    two_pages = [("add", "ready", 1), ("add", "ready", 2), ("save", "saved", 2)]  # "Numériser un autre document"
    saved = []
    for button_id, state, pages in [*one_page, *two_pages]:
        await scan.eval(f"document.getElementById('{button_id}').click()")
        await scan.wait(f"{body}.state === '{state}' && {body}.pages === '{pages}'", f"{button_id} -> {state} {pages}")
        if state == "ready":  # the preview: every page's image shown
            await scan.wait(f"{body}.images === '{pages}'", f"{pages} page image(s) shown")
            shown = await scan.eval("[...document.images].map((i) => i.naturalWidth > 100 && i.complete)")
            assert shown == [True] * pages
        else:
            saved.append(await scan.eval(f"{body}.file"))
    assert saved == ["document-numerise-1.pdf", "document-numerise-2.pdf"]
    two = home / "Downloads" / saved[1]
    assert two.stat().st_uid == visitor.pw_uid
    await wait_until(lambda: controller.kiosk.session.scanned_pages == 3, message="the pages counted")

    await scan.eval("document.getElementById('back').click()")  # "Revenir à ma démarche"
    await wait_until(lambda: _no_scan_page(cdp), 30, message="the scanning page closed")
    (await call_once(cfg.api.kiosk_socket, "session.open_scan", {}))  # the launcher's button opens it again
    await Tab.find(cdp, "/scan.html")

    # Printed (as the visitor, as the print dialog would): the bar says so in French, from CUPS's job states.
    cupsd.submit("bus", str(two), visitor.pw_uid, visitor.pw_gid)
    await form.wait(f"{bar}.dataset.print === 'printed:2:'", "the bar's printing feedback")
    tree = (await form.send("DOM.getDocument", {"depth": -1, "pierce": True}))["root"]
    said = find_node(tree, lambda n: n.get("localName") == "span" and "print" in classes(n))
    assert said is not None and said["children"][0]["nodeValue"] == "Imprimé : 2 pages"

    # The form attaches the PDF as the file picker would.
    form_site.reports.clear()
    tree = (await form.send("DOM.getDocument", {"depth": -1}))["root"]
    node = await form.send("DOM.querySelector", {"nodeId": tree["nodeId"], "selector": "#piece"})
    await form.send("DOM.setFileInputFiles", {"files": [str(two)], "nodeId": node["nodeId"]})
    await wait_until(lambda: form_site.reports, timeout=20, message="the form's report of the attached file")
    upload = form_site.reports[-1]
    assert upload["name"] == "document-numerise-2.pdf" and upload["type"] == "application/pdf"
    assert upload["pdf"] is True and upload["pages"] == 2 and upload["size"] == two.stat().st_size

    # Of the extension, only its own pages (the scanning page, failed.html) are let through the URL policy.
    blank = (await cdp.send("Target.createTarget", {"url": "about:blank"}))["targetId"]
    tab = await Tab.attach(cdp, blank)
    # (The blocked one last: the bar's extension then replaces Chromium's error page by its own failed.html, which
    # would cut short a navigation that followed.)
    for name, error in (("scan.html", None), ("manifest.json", "net::ERR_BLOCKED_BY_ADMINISTRATOR")):
        url = policies.scan_page_url().replace("scan.html", name)
        assert (await tab.send("Page.navigate", {"url": url})).get("errorText") == error, name

    ended = await call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=60)
    assert ended["wipe"]["ok"] is True and not two.exists() and not home.exists()
    assert user_processes(uid=visitor.pw_uid) == [] and visitor_traces(visitor.pw_uid) == []
    rows = await controller.store.run(lambda db: db.execute("SELECT scanned_pages FROM kiosk_sessions").fetchall())
    assert rows == [(3,)]


async def _no_scan_page(cdp: CdpPipe) -> bool:
    return not any("/scan.html" in url for url in await cdp.page_urls())


async def test_under_the_shipped_policy_the_launcher_opens_the_scanning_page(
    run_controller: Any,
    kiosk_config: Any,
    form_site: FormSite,
    system_policy_dir: str,
    visitor: Any,
) -> None:
    """With the policy the controller writes (DevTools off), the launcher's button still opens the scanning page
    through the controller's DevTools pipe, and the page loads (its title is ours, not an error page's)."""
    cfg = kiosk_config(
        browser_command=HEADLESS,
        policy_dir=system_policy_dir,
        session_bar=True,
        scanner="test",
        services=[{"id": "caf", "label": "CAF", "url": form_site.url, "allow": ["127.0.0.1"]}],
    )
    controller = await run_controller(cfg)
    await wait_until(lambda: controller.kiosk.phase == "idle")
    await call_once(cfg.api.control_socket, "kiosk.open", {})
    await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"}, timeout=60)
    cdp = controller.kiosk.session.browser.cdp
    await wait_until(lambda: controller.kiosk.session.scanner == "ready", timeout=30, message="the bridge's probe")
    await call_once(cfg.api.kiosk_socket, "session.open_scan", {})

    async def titles() -> dict[str, str]:
        infos = (await cdp.send("Target.getTargets"))["targetInfos"]
        return {t["url"]: t["title"] for t in infos if t["type"] == "page"}

    await wait_until(lambda: _titled(titles, policies.scan_page_url()), 30, message="the scanning page loaded")
    await call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=60)


async def _titled(titles: Any, url: str) -> bool:
    """The scanning page at ``url`` has loaded: its own title (an error page's would be the address)."""
    return (await titles()).get(url) == "Numériser un document"


@pytest.mark.skipif(why_not is not None, reason=f"private systemd: {why_not}")
async def test_in_a_session_unit_the_scan_stays_inside_it(
    run_controller: Any,
    form_site: FormSite,
    system_policy_dir: str,
    tmp_path: Path,
    visitor: Any,
    systemd: Any,  # noqa: F811
) -> None:
    """launch = "unit": the bridge scans from inside the visitor's unit (its sandbox, its tmpfs): the document is
    saved there, invisible from the controller's side, counted, and gone with the unit."""
    manager, work = systemd
    path = write_config(
        tmp_path,
        work,
        browser_command=HEADLESS,
        policy_dir=str(tmp_path / "controller-policy"),
        session_bar=True,
        scanner="test",
        services=[{"id": "caf", "label": "CAF", "url": form_site.url, "allow": ["127.0.0.1"]}],
    )
    policy = policies.build_policy(url=form_site.url, allow=["127.0.0.1"], downloads_dir="/srv", session_bar=True)
    policies.write_policy(system_policy_dir, {**policy, "DeveloperToolsAvailability": 1})
    cfg, controller = await open_controller(run_controller, path)
    started = await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"}, timeout=60)
    await wait_until(lambda: controller.kiosk.session.scanner == "ready", timeout=30, message="the probe in the unit")
    await call_once(cfg.api.kiosk_socket, "session.open_scan", {})
    scan = await Tab.find(controller.kiosk.session.browser.cdp, "/scan.html")
    body = "document.body.dataset"
    await scan.wait(f"{body}.state === 'idle'", "the scanning page")
    await scan.eval("document.getElementById('scan').click()")
    await scan.wait(f"{body}.state === 'ready' && {body}.images === '1'", "the page scanned and shown")
    await scan.eval("document.getElementById('save').click()")
    await scan.wait(f"{body}.state === 'saved'", "the document saved")
    assert await scan.eval(f"{body}.file") == "document-numerise-1.pdf"
    await wait_until(lambda: controller.kiosk.session.scanned_pages == 1, message="the page counted")
    assert not Path(started["home"]).exists()  # the home is the unit's own tmpfs: nothing of it out here
    assert visitor_traces(visitor.pw_uid) == []

    ended = await call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=60)
    assert ended["wipe"]["ok"] is True, controller.kiosk.wipe_problems
    await wait_until(lambda: session_units(manager) == [], message="the session unit gone")
    rows = await controller.store.run(lambda db: db.execute("SELECT scanned_pages FROM kiosk_sessions").fetchall())
    assert rows == [(1,)]


async def test_the_file_picker_starts_in_the_downloads(
    system_policy_dir: str,
    sessions_root: Path,
    visitor: Any,
) -> None:
    """A session's profile starts Chromium's "last selected folder" (where a form's file picker opens) in Downloads,
    where the scanned documents are. Read back from Chromium's own preferences page (chrome://, which the session
    policy blocks: no policy here)."""
    policies.remove_policy(system_policy_dir)
    user = SessionUser.lookup(TEST_USER)
    home = make_home(str(sessions_root / "sessions"), "pickercheck", user)
    argv = build_command(HEADLESS, url="about:blank", home=home, lang="fr", session_bar=False)
    browser = Browser(argv, user=user, home=home, env=browser_env(user, home, "fr", [], None))
    await browser.start()
    try:
        assert browser.cdp is not None
        target = (await browser.cdp.send("Target.createTarget", {"url": "chrome://prefs-internals"}))["targetId"]
        page = await Tab.attach(browser.cdp, target)
        await page.wait("document.body && document.body.innerText.includes('last_directory')", "Chromium's preferences")
        text = await page.eval("document.body.innerText")
        found = re.search(r'"last_directory":\s*\{[^}]*?"value":\s*"([^"]*)"', text)
        assert found is not None and found.group(1) == str(home / "Downloads"), text[:200]
    finally:
        await browser.kill()
        result = await Wiper(user, str(sessions_root / "sessions")).wipe()
        assert result.ok, result.problems
