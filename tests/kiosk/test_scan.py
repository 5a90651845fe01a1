"""Scanning with SANE's real `test` backend (scanimage -d test): through the bar's bridge run as the session user,
pages previewed, a PDF saved in the session's Downloads, counted in the statistics, gone after the wipe; and the
plain answers when the bus has no scanner or the scanner does not answer."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path
from typing import Any

import pytest

from firmware_host.api import ClientError, call_once
from firmware_host.config import ConfigError
from kiosk.scan import SCAN_ENV, ScanError, ScanSettings, jpeg_size, pdf_from_jpegs, save_pdf, scan_page
from tests.conftest import wait_until

from .test_bar_bridge import frame, read_frame, start_bridge

TEST_SCANNER = {"scanner": "test", "scan_options": ["--test-picture=Color pattern"]}


def pdf_pages(data: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", data))


def test_a_scanned_page_becomes_a_pdf_page_of_its_size() -> None:
    settings = ScanSettings("test", 150, "Color", ("--test-picture=Color pattern",))
    page = scan_page(settings)
    assert page.jpeg[:2] == b"\xff\xd8" and page.components == 3
    assert (page.width, page.height, 3) == jpeg_size(page.jpeg) and page.width > 100
    grey = scan_page(ScanSettings("test", 75, "Gray"))
    assert grey.components == 1
    pdf = pdf_from_jpegs([page, grey, page], 150)
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF") and pdf_pages(pdf) == 3
    assert pdf.count(page.jpeg) == 2 and b"/DeviceGray" in pdf  # the JPEG as scanned, not re-encoded
    width_pt = page.width * 72 / 150
    assert f"/MediaBox [0 0 {width_pt:.2f} ".encode() in pdf
    # the cross-reference table points at every object
    xref = int(pdf.rsplit(b"startxref\n", 1)[1].split()[0])
    offsets = [int(line.split()[0]) for line in pdf[xref:].split(b"\n")[3:] if line.endswith(b" n ")]
    assert [pdf[o:].split(b" ", 1)[0] for o in offsets] == [str(i).encode() for i in range(1, len(offsets) + 1)]


def test_scanner_failures_name_the_device_and_the_reason() -> None:
    with pytest.raises(ScanError, match=r"scanner 'test:7': scanimage exited 1: .*open of device test:7") as err:
        scan_page(ScanSettings("test:7"))
    assert err.value.reason == "unreachable"
    with pytest.raises(ScanError, match="Document feeder out of documents") as err:
        scan_page(ScanSettings("test", options=("--source=Automatic Document Feeder", *_status("NO_DOCS"))))
    assert err.value.reason == "no_paper"
    with pytest.raises(ScanError) as err:
        scan_page(ScanSettings("test", options=_status("DEVICE_BUSY")))
    assert err.value.reason == "busy"


def _status(name: str) -> tuple[str, ...]:
    return ("--enable-test-options=yes", f"--read-return-value=SANE_STATUS_{name}")


def test_save_never_replaces_a_file(tmp_path: Path) -> None:
    (tmp_path / "document-numerise-1.pdf").write_bytes(b"earlier")
    (tmp_path / "document-numerise-2.pdf").symlink_to("/etc/passwd")
    assert save_pdf(str(tmp_path), b"%PDF") == "document-numerise-3.pdf"
    assert (tmp_path / "document-numerise-1.pdf").read_bytes() == b"earlier"
    assert (tmp_path / "document-numerise-3.pdf").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError):
        pdf_from_jpegs([], 150)


def test_settings_reach_the_bridge_through_the_environment() -> None:
    settings = ScanSettings("airscan:e0:Bus", 300, "Gray", ("--source=ADF",))
    assert ScanSettings.from_env(settings.to_env()) == settings
    assert settings.argv() == [
        "scanimage",
        "-d",
        "airscan:e0:Bus",
        "--format=jpeg",
        "--resolution=300",
        "--mode=Gray",
        "--source=ADF",
    ]
    # No scanner, or settings the bridge cannot read: "Pas de scanner dans ce bus", never a crash.
    for text in ("", "{nope", '{"device": ""}', '{"device": "test", "resolution": "x"}'):
        assert ScanSettings.from_env(text) is None, text


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("scanner", "--help", "must be a SANE device name"),
        ("scan_mode", "Lineart", "must be one of 'Color', 'Gray'"),
        ("scan_resolution", 2400, "600"),
        ("scan_options", ["-o /etc/passwd"], "written --name=value"),
        ("scan_options", ["--format=png"], "set by allervers itself"),
    ],
)
def test_bad_scanner_settings_name_the_key(kiosk_config: Any, key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"kiosk\.{key}.*{re.escape(message)}"):
        kiosk_config(**{key: value})


class Bridge:
    """The bar's bridge as Chromium runs it: the session user, the browser's environment, 4-byte framed JSON."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.images: dict[int, list[str]] = {}

    @classmethod
    async def start(cls, controller: Any, home: Path, visitor: Any) -> Bridge:
        settings = controller.kiosk.scan_settings
        env = {SCAN_ENV: settings.to_env()} if settings is not None else {}
        return cls(await start_bridge(home, visitor, **env))

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(frame(message))

    async def scan_message(self, **wanted: Any) -> dict[str, Any]:
        """The next scan message matching ``wanted`` (status messages and images in between are kept or skipped)."""
        return await asyncio.wait_for(self._scan_message(wanted), 60)

    async def _scan_message(self, wanted: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdout is not None
        while True:
            message = await read_frame(self.process.stdout)
            if message["type"] == "scan-image":
                self.images.setdefault(message["page"], [""] * message["parts"])[message["part"]] = message["data"]
            elif message["type"] == "scan" and all(message.get(k) == v for k, v in wanted.items()):
                return message

    async def image(self, page: int) -> bytes:
        self.send({"cmd": "scan", "action": "image", "page": page})
        assert self.process.stdout is not None
        while not (page in self.images and all(self.images[page])):
            message = await read_frame(self.process.stdout)
            if message["type"] == "scan-image":
                self.images.setdefault(message["page"], [""] * message["parts"])[message["part"]] = message["data"]
        return base64.b64decode("".join(self.images.pop(page)))

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def _session(run_controller: Any, kiosk_config: Any, **kiosk: Any) -> tuple[Any, Any, Path]:
    cfg = kiosk_config(session_bar=True, **kiosk)
    controller = await run_controller(cfg)
    await wait_until(lambda: controller.kiosk.phase == "idle")
    await call_once(cfg.api.control_socket, "kiosk.open", {})
    reply = await call_once(cfg.api.kiosk_socket, "session.start", {"service": "caf"})
    return cfg, controller, Path(reply["home"])


async def test_scans_land_in_the_downloads_are_counted_and_wiped(
    run_controller: Any, kiosk_config: Any, visitor: Any
) -> None:
    cfg, controller, home = await _session(run_controller, kiosk_config, **TEST_SCANNER)
    status = await call_once(cfg.api.kiosk_socket, "kiosk.status", {})
    assert status["session"]["scanner"] == "unknown"  # until the bridge has tried it
    bridge = await Bridge.start(controller, home, visitor)
    try:
        await wait_until(lambda: controller.kiosk.session.scanner == "ready", message="the bridge's probe")
        bridge.send({"cmd": "scan", "action": "page"})  # "Numériser la page"
        await bridge.scan_message(state="scanning")
        ready = await bridge.scan_message(state="ready")
        assert ready["pages"] == 1 and ready["reason"] is None
        preview = await bridge.image(0)
        assert jpeg_size(preview)[2] == 3  # the page the visitor sees: a colour JPEG
        bridge.send({"cmd": "scan", "action": "save"})  # "Enregistrer"
        saved = await bridge.scan_message(state="saved")
        assert saved["file"] == "document-numerise-1.pdf" and saved["pages"] == 1
        one = home / "Downloads" / "document-numerise-1.pdf"
        assert pdf_pages(one.read_bytes()) == 1 and preview in one.read_bytes()
        assert one.stat().st_uid == visitor.pw_uid and one.stat().st_mode & 0o777 == 0o600

        # A second document of two pages, with a false start ("Recommencer").
        for action in ("page", "restart", "page", "page"):
            bridge.send({"cmd": "scan", "action": action})
            if action == "restart":
                assert (await bridge.scan_message(state="idle"))["pages"] == 0
            else:
                await bridge.scan_message(state="ready")
        bridge.send({"cmd": "scan", "action": "save"})
        saved = await bridge.scan_message(state="saved")
        two = home / "Downloads" / saved["file"]
        assert saved["file"] == "document-numerise-2.pdf" and pdf_pages(two.read_bytes()) == 2
        await wait_until(lambda: controller.kiosk.session.scanned_pages == 3, message="the pages counted")
        assert list((home / "Scans").iterdir()) == []  # pages stay in the bridge's memory until saved
    finally:
        await bridge.stop()

    ended = await call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=60)
    assert ended["wipe"]["ok"] is True and not one.exists() and not two.exists() and not home.exists()
    query = "SELECT pages, scanned_pages FROM kiosk_sessions"
    assert await controller.store.run(lambda db: db.execute(query).fetchall()) == [(0, 3)]
    event = [e for e in await controller.store.events_after(0, 500) if e["type"] == "kiosk.session_ended"][-1]
    assert event["scanned_pages"] == 3


async def test_a_scanner_that_does_not_answer_is_said_so(run_controller: Any, kiosk_config: Any, visitor: Any) -> None:
    cfg, controller, home = await _session(run_controller, kiosk_config, scanner="test:7")
    bridge = await Bridge.start(controller, home, visitor)
    try:
        await wait_until(lambda: controller.kiosk.session.scanner == "unreachable", message="the bridge's probe")
        bridge.send({"cmd": "scan", "action": "page"})
        failed = await bridge.scan_message(state="error")
        assert failed["reason"] == "unreachable" and failed["pages"] == 0
        events = [e for e in await controller.store.events_after(0, 500) if e["type"] == "kiosk.scanner"]
        assert events[-1]["state"] == "unreachable"
        assert list((home / "Downloads").glob("document-numerise-*")) == []
    finally:
        await bridge.stop()
    await call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=60)


async def test_no_scanner_on_the_bus(run_controller: Any, kiosk_config: Any, visitor: Any) -> None:
    cfg, controller, home = await _session(run_controller, kiosk_config)
    status = await call_once(cfg.api.kiosk_socket, "kiosk.status", {})
    assert status["session"]["scanner"] == "none"
    with pytest.raises(ClientError, match="no session with a scanner"):
        await call_once(cfg.api.kiosk_socket, "session.open_scan", {})
    with pytest.raises(ClientError, match="no session with a scanner"):
        await call_once(str(home / "bar.sock"), "session.scan", {"scanner": "ready", "pages": 1})
    bridge = await Bridge.start(controller, home, visitor)
    try:
        bridge.send({"cmd": "scan", "action": "page"})
        answer = await bridge.scan_message()
        assert (answer["state"], answer["reason"]) == ("error", "none")  # "Pas de scanner dans ce bus"
    finally:
        await bridge.stop()
    await call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=60)


async def test_the_bar_socket_takes_only_sane_scan_reports(run_controller: Any, kiosk_config: Any) -> None:
    cfg, controller, home = await _session(run_controller, kiosk_config, **TEST_SCANNER)
    bar = str(home / "bar.sock")
    for args, message in (
        ({"scanner": "on fire"}, "scanner must be ready or unreachable"),
        ({"scanner": "ready", "pages": 31}, "pages must be"),
        ({"scanner": "ready", "pages": True}, "pages must be"),
    ):
        with pytest.raises(ClientError, match=message):
            await call_once(bar, "session.scan", args)
    with pytest.raises(ClientError, match="not allowed on the bar socket"):
        await call_once(bar, "session.open_scan", {})
    assert controller.kiosk.session.scanned_pages == 0
    await call_once(cfg.api.kiosk_socket, "session.end", {}, timeout=60)
