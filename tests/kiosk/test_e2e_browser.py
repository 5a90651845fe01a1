"""End to end with Debian's Chromium as the visitor meets it: French UI, a way out of every page (a failed one, a
blocked one, a PDF), larger text.

Sessions run through the controller with the session bar, under the generated policy except DevTools, which is
allowed here so the test can read the pages and touch them through the pipe (a real ``Input.dispatchMouseEvent``
counts as a touch; test_e2e_chromium shows the shipped value refuses DevTools). The service is a site on loopback;
stopping it is the satellite link dropping mid-session. The window is the bus's screen (1280×800).

Chromium reads /etc/chromium/policies/managed/ for every browser on the machine: two suites running at once there
overwrite each other's policy (seen as "Target.attachToTarget: Not allowed"); CI runs one.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from firmware_host.api import call_once
from kiosk import policies
from kiosk.browser import Browser, CdpPipe, browser_env, build_command
from kiosk.wipe import SessionUser, Wiper, make_home
from tests.conftest import free_port, wait_until

from .conftest import TEST_USER, open_on_chromium
from .devtools import Tab
from .test_e2e_chromium import HEADLESS

BUS_SCREEN = [*HEADLESS[:-1], "--window-size=1280,800", HEADLESS[-1]]  # the bus's 10-inch touch screen

# A one-page PDF that Chromium's viewer renders (an attestation as CAF or ameli serve it: inline, not a download).
PDF = b"""%PDF-1.4
1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj
2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj
3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 300 200]/Contents 4 0 R/Resources<</Font<</F1 5 0 R>>>>>>endobj
4 0 obj<</Length 44>>stream
BT /F1 24 Tf 20 100 Td (Attestation) Tj ET
endstream endobj
5 0 obj<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>endobj
trailer<</Root 1 0 R>>
%%EOF
"""
PAGE = """<!doctype html><html><head><title>{title}</title></head><body style="font-size:20px">
<h1>{title}</h1><p><a id="next" href="/suite" style="font-size:40px">Suite</a></p>
<p><a id="pdf" href="/attestation.pdf" style="font-size:40px">Attestation</a></p></body></html>"""


class Site:
    """The service on 127.0.0.1, which can go down (the link drops) and come back on the same address."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.server: http.server.ThreadingHTTPServer | None = None
        self.connections: set[socket.socket] = set()
        self.up()

    def up(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/attestation.pdf":
                    body, kind = PDF, "application/pdf"
                else:
                    title = "Suite" if self.path == "/suite" else "Accueil"
                    body, kind = PAGE.format(title=title).encode(), "text/html; charset=utf-8"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        site = self

        class Server(http.server.ThreadingHTTPServer):
            def process_request(self, request: Any, client_address: Any) -> None:
                site.connections.add(request)
                super().process_request(request, client_address)

        self.server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        # Chromium keeps spare connections open (preconnect): a dropped link takes them too.
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.connections.clear()


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.down()


@pytest.fixture
def devtools_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The generated policy with DevTools allowed, so the test can reach the pages (nothing else changes)."""
    build = policies.build_policy
    monkeypatch.setattr(policies, "build_policy", lambda **kw: {**build(**kw), "DeveloperToolsAvailability": 1})


@pytest.fixture
async def kiosk(run_controller: Any, kiosk_config: Any, site: Site, system_policy_dir: str, devtools_allowed: None):
    """A controller with the real browser and the session bar, open, on the site's service."""
    # localhost: the same site under a second name, another site for Chromium's zoom (kept per site)
    allow = ("127.0.0.1", "localhost")
    return await open_on_chromium(run_controller, kiosk_config, site.url, BUS_SCREEN, system_policy_dir, allow)


async def _start(kiosk: Any, **args: Any) -> tuple[Any, CdpPipe]:
    cfg, controller = kiosk
    await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf", **args}, timeout=60)
    return controller, controller.kiosk.session.browser.cdp


async def _bar(tab: Tab) -> dict[str, str]:
    """The bar's state once the controller's status has reached it."""
    expr = "(b => b && b.dataset.state && b.dataset.state !== 'inactive' ? {...b.dataset} : null)"
    return await wait_until(lambda: tab.eval(f"{expr}(document.getElementById('allervers-bar'))"), timeout=30)


async def _ended_by_the_visitor(controller: Any) -> None:
    await wait_until(lambda: controller.kiosk.session is None and controller.kiosk.last_end, timeout=60)
    assert controller.kiosk.last_end["reason"] == "visitor" and controller.kiosk.last_end["ok"] is True


FAILED_PAGE = f"chrome-extension://{policies.bar_extension_id()}/failed.html"


@pytest.mark.parametrize(
    ("lang", "heading"), [("fr", "Ce site est inaccessible"), ("en", "This site can\N{RIGHT SINGLE QUOTATION MARK}t")]
)
async def test_the_browser_speaks_the_visitors_language(
    lang: str, heading: str, system_policy_dir: str, sessions_root: Any, visitor: Any
) -> None:
    """Chromium's own pages (here a network error, without the bar that would replace it) in the session's language:
    LANGUAGE picks it, chromium-l10n provides the strings."""
    user = SessionUser.lookup(TEST_USER)
    home = make_home(str(sessions_root / "sessions"), "langcheck", user)
    policy = policies.build_policy(url="http://127.0.0.1/", allow=[], downloads_dir=str(home / "Downloads"))
    policies.write_policy(system_policy_dir, {**policy, "DeveloperToolsAvailability": 1})
    unreachable = f"http://127.0.0.1:{free_port()}/"
    argv = build_command(BUS_SCREEN, url=unreachable, home=home, lang=lang, session_bar=False)
    browser = Browser(argv, user=user, home=home, env=browser_env(user, home, lang, [], None))
    await browser.start()
    try:
        assert browser.cdp is not None
        tab = await Tab.find(browser.cdp, unreachable)
        text = await wait_until(lambda: tab.eval("document.body && document.body.innerText"), timeout=20)
        assert heading in text
        assert (await tab.eval("navigator.language")).split("-")[0] == lang
    finally:
        await browser.kill()
        policies.remove_policy(system_policy_dir)
        result = await Wiper(user, str(sessions_root / "sessions")).wipe()
        assert result.ok, result.problems


async def test_link_down_mid_session_our_page_retries_and_ends_with_one_touch(kiosk: Any, site: Site) -> None:
    controller, cdp = await _start(kiosk)
    tab = await Tab.find(cdp, site.url)
    assert (await _bar(tab))["state"] == "session"

    site.down()  # the satellite link drops
    await tab.touch("next")
    failed = await Tab.find(cdp, FAILED_PAGE)
    title = await wait_until(lambda: failed.eval("document.getElementById('title').textContent"), timeout=10)
    assert title == "La connexion est coupée pour le moment…"
    assert await failed.eval("document.getElementById('retry').textContent") == "Réessayer"
    assert (await _bar(failed))["state"] == "session"  # the bar (time left, idle prompt) is on our page too

    site.up()  # the link is back: "Réessayer" opens the page that failed
    await failed.touch("retry")
    again = await Tab.find(cdp, site.url + "suite")
    assert await wait_until(lambda: again.eval("document.title"), timeout=20) == "Suite"

    site.down()
    await again.touch("next")
    failed = await Tab.find(cdp, FAILED_PAGE)
    await wait_until(lambda: failed.eval("document.getElementById('end').textContent"), timeout=10)
    await failed.touch("end")  # one touch
    await _ended_by_the_visitor(controller)


async def test_link_down_before_the_first_page_our_page_in_english(kiosk: Any, site: Site) -> None:
    """The link was already down when the visitor chose the service: the first page fails before the bar's
    extension runs; it still gets our page, in the visitor's language."""
    site.down()
    controller, cdp = await _start(kiosk, lang="en")
    failed = await Tab.find(cdp, FAILED_PAGE)
    english = "document.documentElement.lang == 'en' && document.getElementById('title').textContent"
    title = await wait_until(lambda: failed.eval(english))
    assert title == "The connection is down for the moment…"
    await failed.touch("end")
    await _ended_by_the_visitor(controller)


async def test_a_blocked_address_gets_our_page_back_to_the_service_and_no_site_can_forge_it(
    kiosk: Any, site: Site
) -> None:
    _, cdp = await _start(kiosk)
    tab = await Tab.find(cdp, site.url)
    await _bar(tab)
    await tab.eval(f"location.href = 'http://127.0.0.2:{site.port}/'")  # a host outside the service's allowlist
    failed = await Tab.find(cdp, FAILED_PAGE)
    title = await wait_until(lambda: failed.eval("document.getElementById('title').textContent"), timeout=10)
    assert title == "Cette page n'est pas disponible sur cette borne."
    # Once the session's status has reached the page (before it, "Revenir au début")
    await wait_until(lambda: failed.eval("document.getElementById('retry').textContent == 'Revenir à CAF'"))
    await failed.touch("retry")
    back = await Tab.find(cdp, site.url)
    await _bar(back)

    # A site opening our page with an address of its choice: Chromium refuses (not web-accessible), and the page
    # the visitor then gets is built from that refusal, never from the site's query string.
    await back.eval(f"location.href = '{FAILED_PAGE}?url=http%3A%2F%2F127.0.0.2%2F&error=net%3A%3AERR_FAILED'")
    failed = await wait_until(lambda: _our_page_without(cdp, "127.0.0.2"), timeout=30, message="our page")
    await wait_until(lambda: failed.eval("document.getElementById('retry').textContent == 'Revenir à CAF'"))
    assert await failed.eval("document.body.dataset.kind") == "blocked"


async def _our_page_without(cdp: CdpPipe, text: str) -> Tab | None:
    infos = (await cdp.send("Target.getTargets"))["targetInfos"]
    ours = [t for t in infos if t["type"] == "page" and t["url"].startswith(FAILED_PAGE)]
    assert all(text not in t["url"] for t in ours), ours
    if not ours:
        return None
    return await Tab.find(cdp, ours[0]["url"])


async def test_a_pdf_opens_in_the_viewer_with_the_bar_to_end(kiosk: Any, site: Site) -> None:
    controller, cdp = await _start(kiosk)
    tab = await Tab.find(cdp, site.url)
    await _bar(tab)
    await tab.touch("pdf")
    pdf = await Tab.find(cdp, site.url + "attestation.pdf")

    async def viewer() -> str | None:
        infos = (await cdp.send("Target.getTargets"))["targetInfos"]
        return next((t["targetId"] for t in infos if t.get("parentId") == pdf.target_id), None)

    # The built-in viewer really runs: without its origin in the allowlist its frame is Chromium's "blocked" page.
    frame = await Tab.attach(cdp, await wait_until(viewer, timeout=20))
    assert (await wait_until(lambda: frame.eval("location.href"))).startswith(policies.PDF_VIEWER_ORIGIN + "/")
    assert await wait_until(lambda: pdf.eval("document.contentType")) == "application/pdf"
    assert (await _bar(pdf))["state"] == "session"
    await pdf.touch("end")  # "Terminer et tout effacer" on the bar, drawn over the viewer
    await pdf.touch("yes")  # the bar's confirmation: a site's form or a document must not go on a mis-tap
    await _ended_by_the_visitor(controller)


async def test_larger_text_holds_across_pages_and_dies_with_the_session(kiosk: Any, site: Site) -> None:
    controller, cdp = await _start(kiosk, zoom=150)
    tab = await Tab.find(cdp, site.url)
    await wait_until(lambda: tab.eval("devicePixelRatio == 1.5"), timeout=20, message="the page at 150 %")
    assert (await _bar(tab))["zoom"] == "150"
    await tab.touch("next")
    suite = await Tab.find(cdp, site.url + "suite")
    await wait_until(lambda: suite.eval("document.title == 'Suite' && devicePixelRatio == 1.5"), timeout=20)
    other_site = f"http://localhost:{site.port}/"
    await suite.eval(f"location.href = '{other_site}'")
    tab = await Tab.find(cdp, other_site)
    await wait_until(lambda: tab.eval("document.title == 'Accueil' && devicePixelRatio == 1.5"), timeout=20)
    await tab.touch("next")
    suite = await Tab.find(cdp, other_site + "suite")

    await suite.touch("zoom")  # "Agrandir le texte" on the bar: the next step
    await wait_until(lambda: suite.eval("devicePixelRatio == 2"), timeout=20, message="the page at 200 %")
    assert controller.kiosk.session.zoom == 200
    await call_once(kiosk[0].api.kiosk_socket, "session.end", {}, timeout=60)

    controller, cdp = await _start(kiosk)  # the next visitor: normal size
    tab = await Tab.find(cdp, site.url)
    assert (await _bar(tab))["zoom"] == "100"
    assert await tab.eval("devicePixelRatio") == 1
