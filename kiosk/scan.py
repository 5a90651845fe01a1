"""Scanning for the visitor: pages one at a time through SANE's scanimage, kept in memory, saved as a PDF in Downloads.

It runs in the session bar's bridge (kiosk/bar/host.py), a process of the session user that Chromium starts inside
the session (its own unit with ``launch = "unit"``): the scanner is reached with the visitor's rights (group
``scanner``), the pages never touch a disk, and the PDF is the visitor's own file in the session's home, wiped with
it. The controller only passes the settings (``ALLERVERS_SCAN`` in the browser's environment) and counts the pages.

The PDF is written here, not by img2pdf or ImageMagick: scanimage already gives JPEG, and a PDF of JPEG pages is a
page object, an image object holding the JPEG bytes as they are (DCTDecode) and a one-line drawing command per
page; nothing is decoded or re-encoded. Standard library only (the bridge may run under the system Python).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SCAN_ENV = "ALLERVERS_SCAN"
SCANIMAGE = "scanimage"
SCAN_TIMEOUT_S = 180.0  # a slow flatbed at 300 dpi takes about a minute; a stuck one is given up after this
PROBE_TIMEOUT_S = 20.0  # opening a network scanner (eSCL) can take a few seconds
MAX_PAGES = 30
PDF_NAME = "document-numerise-{n}.pdf"

# scanimage's messages (sane_strstatus) -> what the visitor is told (keys of scan.js's texts).
ERRORS = (
    ("Document feeder out of documents", "no_paper"),
    ("Device busy", "busy"),
    ("Scanner cover is open", "cover_open"),
    ("Document feeder jammed", "jammed"),
    ("open of device", "unreachable"),
    ("Error during device I/O", "unreachable"),
    ("no SANE devices found", "unreachable"),
)


class ScanError(RuntimeError):
    """A scan that failed: ``reason`` is a key for the visitor's text, the message names the device and the reply."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ScanSettings:
    device: str
    resolution: int = 150
    mode: str = "Color"
    options: tuple[str, ...] = ()

    def to_env(self) -> str:
        return json.dumps(
            {"device": self.device, "resolution": self.resolution, "mode": self.mode, "options": list(self.options)}
        )

    @classmethod
    def from_env(cls, text: str | None) -> ScanSettings | None:
        """The settings the controller put in the environment; None when the bus has no scanner (or they are bad)."""
        if not text:
            return None
        try:
            raw = json.loads(text)
            options = tuple(map(str, raw["options"]))
            settings = cls(str(raw["device"]), int(raw["resolution"]), str(raw["mode"]), options)
        except (ValueError, KeyError, TypeError):
            return None
        return settings if settings.device else None

    def argv(self, *, probe: bool = False) -> list[str]:
        argv = [SCANIMAGE, "-d", self.device]
        if probe:
            return [*argv, "--dont-scan"]  # opens the device and sets nothing: does it answer?
        return [*argv, "--format=jpeg", f"--resolution={self.resolution}", f"--mode={self.mode}", *self.options]


@dataclass(frozen=True)
class Page:
    jpeg: bytes
    width: int
    height: int
    components: int  # 1 grey, 3 colour (4: CMYK, which some backends' JPEG gives)


def jpeg_size(data: bytes) -> tuple[int, int, int]:
    """(width, height, components) from a JPEG's frame header (SOF0..SOF15 but DHT, JPG and DAC)."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG (no SOI marker)")
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"JPEG: no marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            return width, height, data[pos + 9]
        pos += 2 + length
    raise ValueError("JPEG: no frame header")


def pdf_from_jpegs(pages: list[Page], dpi: int) -> bytes:
    """A PDF with one JPEG page each, at its scanned size (``dpi``: the scan's resolution)."""
    if not pages:
        raise ValueError("a PDF needs at least one page")
    colours = {1: "/DeviceGray", 3: "/DeviceRGB", 4: "/DeviceCMYK"}
    objects: list[bytes] = []
    kids = " ".join(f"{3 + 3 * i} 0 R" for i in range(len(pages)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    for i, page in enumerate(pages):
        image_no, content_no = 4 + 3 * i, 5 + 3 * i  # the page itself is 3 + 3 * i (the Kids above)
        w_pt, h_pt = page.width * 72 / dpi, page.height * 72 / dpi
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w_pt:.2f} {h_pt:.2f}] /Contents {content_no} 0 R"
            f" /Resources << /XObject << /Im{i} {image_no} 0 R >> >> >>".encode()
        )
        decode = " /Decode [1 0 1 0 1 0 1 0]" if page.components == 4 else ""  # Adobe's inverted CMYK JPEG
        objects.append(
            f"<< /Type /XObject /Subtype /Image /Width {page.width} /Height {page.height}"
            f" /ColorSpace {colours.get(page.components, '/DeviceRGB')} /BitsPerComponent 8{decode}"
            f" /Filter /DCTDecode /Length {len(page.jpeg)} >>\nstream\n".encode()
            + page.jpeg
            + b"\nendstream"
        )
        draw = f"q {w_pt:.2f} 0 0 {h_pt:.2f} 0 0 cm /Im{i} Do Q".encode()
        objects.append(f"<< /Length {len(draw)} >>\nstream\n".encode() + draw + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def _failure(settings: ScanSettings, stderr: bytes, returncode: int) -> ScanError:
    text = stderr.decode(errors="replace")
    # scanimage may add "trying to stop scanner" after the line that says what went wrong.
    lines = [line for line in text.splitlines() if line.startswith("scanimage:") and "trying to stop" not in line]
    reason, line = "failed", (lines or text.splitlines() or [""])[-1]
    for needle, key in ERRORS:
        found = next((candidate for candidate in lines if needle in candidate), None)
        if found is not None:
            reason, line = key, found
            break
    return ScanError(reason, f"scanner {settings.device!r}: scanimage exited {returncode}: {line.strip()}")


def run_scanimage(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    """scanimage with a clean stdin; a missing program or a timeout becomes a ScanError."""
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise ScanError("unreachable", f"{argv[0]}: not installed (Debian package sane-utils)") from None
    except subprocess.TimeoutExpired:
        raise ScanError("unreachable", f"scanner {argv[2]!r}: no image after {timeout:.0f} s") from None


def scan_page(settings: ScanSettings, timeout: float = SCAN_TIMEOUT_S) -> Page:
    """One page from the scanner, as JPEG."""
    out = run_scanimage(settings.argv(), timeout)
    if out.returncode != 0 or not out.stdout:
        raise _failure(settings, out.stderr, out.returncode)
    try:
        width, height, components = jpeg_size(out.stdout)
    except ValueError as exc:
        raise ScanError("failed", f"scanner {settings.device!r}: {exc}") from None
    return Page(out.stdout, width, height, components)


def probe(settings: ScanSettings, timeout: float = PROBE_TIMEOUT_S) -> str:
    """ "ready" when the scanner opens, else the reason it does not (a key of ERRORS, or "failed")."""
    try:
        out = run_scanimage(settings.argv(probe=True), timeout)
    except ScanError as exc:
        return exc.reason
    return "ready" if out.returncode == 0 else _failure(settings, out.stderr, out.returncode).reason


def save_pdf(downloads: str, data: bytes) -> str:
    """Write ``data`` as the next free document-numerise-N.pdf in ``downloads``; returns the file name.

    Created exclusively and relative to the folder's descriptor: nothing there is replaced or followed."""
    dir_fd = os.open(downloads, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        taken = set(os.listdir(dir_fd))
        for n in range(1, 1000):
            name = PDF_NAME.format(n=n)
            if name in taken:
                continue
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
            except FileExistsError:
                continue
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return name
    finally:
        os.close(dir_fd)
    raise ScanError("failed", f"{downloads}: no free document-numerise-N.pdf name")


@dataclass
class ScanJob:
    """The visitor's document being scanned: its pages, what the scanner is doing, the last saved file.

    ``notify`` receives every change as a message for the scan page ({"type": "scan", ...}); ``pages_saved`` is
    called with the page count of each saved PDF (the controller counts them)."""

    settings: ScanSettings | None
    downloads: str
    notify: Callable[[dict[str, Any]], None]
    pages_saved: Callable[[int], None] = lambda _n: None
    pages: list[Page] = field(default_factory=list)
    state: str = "idle"  # idle scanning ready saving saved error
    reason: str | None = None
    saved: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def message(self) -> dict[str, Any]:
        return {
            "type": "scan",
            "state": self.state if self.settings else "error",
            "reason": self.reason if self.settings else "none",
            "pages": len(self.pages),
            "file": self.saved,
        }

    def _set(self, state: str, reason: str | None = None, *, tell: bool = False) -> None:
        self.state, self.reason = state, reason
        if tell:
            self.notify(self.message())

    def handle(self, action: str) -> None:
        """One request of the scan page: "state", "page" (scan one more), "restart", "save"."""
        if action == "state" or self.settings is None:
            self.notify(self.message())
            return
        if not self._lock.acquire(blocking=False):
            return  # a scan or a save is running: the page shows it, a second tap changes nothing
        try:
            if action == "page":
                self._scan()
            elif action == "restart":
                self.pages.clear()
                self.saved = None
                self._set("idle")
            elif action == "save":
                self._save()
        finally:
            self._lock.release()
        # Told once the lock is free: a page that answers at once with its next tap is not turned away.
        self.notify(self.message())

    def _scan(self) -> None:
        assert self.settings is not None
        if len(self.pages) >= MAX_PAGES:
            self._set("ready", "too_many")
            return
        if self.state == "saved":
            self.pages.clear()  # a new document after a saved one
            self.saved = None
        self._set("scanning", tell=True)
        try:
            page = scan_page(self.settings)
        except ScanError as exc:
            self._set("ready" if self.pages else "error", exc.reason)
            return
        self.pages.append(page)
        self._set("ready")

    def _save(self) -> None:
        assert self.settings is not None
        if not self.pages:
            return
        self._set("saving", tell=True)
        try:
            name = save_pdf(self.downloads, pdf_from_jpegs(self.pages, self.settings.resolution))
        except (OSError, ScanError):
            self._set("ready", "save_failed")
            return
        self.saved = name
        self.pages_saved(len(self.pages))
        self._set("saved")

    def page_image(self, index: int) -> bytes | None:
        return self.pages[index].jpeg if 0 <= index < len(self.pages) else None
