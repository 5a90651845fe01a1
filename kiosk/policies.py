"""Chromium managed policies for one session, generated from the chosen service (see chromium-kiosk facts)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .wipe import world_runnable

POLICY_FILE = "allervers-kiosk.json"
BAR_DIR = Path(__file__).with_name("bar")
NATIVE_HOST_NAME = "fr.allervers.kiosk"
FAILED_PAGE = "failed.html"  # ours, in place of Chromium's error page (kiosk/bar/navigation.js shows it)
# Chromium's built-in PDF viewer is a component extension with this fixed id: "chrome-extension://*" below would
# block it and leave a PDF (an attestation from CAF or ameli) as a blocked frame (checked on Chromium 156).
PDF_VIEWER_ORIGIN = "chrome-extension://mhjfbmdgcfjbbpaeojofohoefgiehjai"

# Every scheme that leads out of the web: since Chromium 147 a bare "*" no longer covers chrome:// pages.
BLOCKED = ["*", "file://*", "chrome://*", "view-source:*", "javascript://*", "chrome-extension://*", "devtools://*"]

# What clears a session inside the browser if the controller is gone (belt and braces: the wipe is the real one).
IDLE_ACTIONS = [
    "close_browsers",
    "clear_browsing_history",
    "clear_cookies_and_other_site_data",
    "clear_cached_images_and_files",
    "clear_download_history",
    "clear_autofill",
    "clear_site_settings",
]


def bar_host_path(bar_dir: Path = BAR_DIR) -> Path | None:
    """The bridge Chromium starts for the bar: the venv's ``allervers-kiosk-bar`` (pip gives it its exec bit,
    which a wheel strips from host.py), else host.py in a source tree; None if the session user can run neither."""
    for candidate in (Path(sys.executable).with_name("allervers-kiosk-bar"), bar_dir / "host.py"):
        if world_runnable(candidate):
            return candidate
    return None


def bar_extension_id(bar_dir: Path = BAR_DIR) -> str:
    """The session bar's extension id, derived as Chromium does from the public key in its manifest."""
    key = json.loads((bar_dir / "manifest.json").read_text())["key"]
    digest = hashlib.sha256(base64.b64decode(key)).hexdigest()[:32]
    return "".join(chr(ord("a") + int(c, 16)) for c in digest)


def bar_page_url(page: str, bar_dir: Path = BAR_DIR) -> str:
    """A page shipped with the session bar (scanning, a page that could not open): it talks only to the bar's bridge."""
    return f"chrome-extension://{bar_extension_id(bar_dir)}/{page}"


def scan_page_url(bar_dir: Path = BAR_DIR) -> str:
    """The scanning page, shipped with the session bar."""
    return bar_page_url("scan.html", bar_dir)


def allowlist(url: str, allow: list[str]) -> list[str]:
    """URLAllowlist entries: the service's own host plus its ``allow`` hosts; "*" means any web page."""
    entries: list[str] = []
    host = urlsplit(url).hostname or ""
    for item in [host, *allow]:
        # "*" becomes scheme-qualified, so file://, chrome:// and the rest stay blocked (allow wins on equal rank).
        new = ["http://*", "https://*"] if item == "*" else [item.removeprefix("www.") if item == host else item]
        entries += [e for e in new if e and e not in entries]
    return entries


def build_policy(
    *,
    url: str,
    allow: list[str],
    downloads_dir: str,
    session_bar: bool = True,
    idle_timeout_min: int | None = None,
) -> dict[str, Any]:
    """The managed policy dict for a session on one service."""
    policy: dict[str, Any] = {
        "URLBlocklist": list(BLOCKED),
        "URLAllowlist": allowlist(url, allow),
        "IncognitoModeAvailability": 1,
        "DeveloperToolsAvailability": 2,
        "BrowserGuestModeEnabled": False,
        "BrowserAddPersonEnabled": False,
        "BrowserSignin": 0,
        "SyncDisabled": True,
        "PasswordManagerEnabled": False,
        "AutofillAddressEnabled": False,
        "AutofillCreditCardEnabled": False,
        "DownloadDirectory": downloads_dir,
        "PromptForDownloadLocation": False,
        "DownloadRestrictions": 1,  # dangerous files blocked; attestations (PDF) still download
        "ForceEphemeralProfiles": True,
        "PrintingEnabled": True,
        "PrinterTypeDenyList": ["pdf", "extension", "cloud", "privet"],
        "TaskManagerEndProcessEnabled": False,
        "EditBookmarksEnabled": False,
        "BookmarkBarEnabled": False,
        "DefaultNotificationsSetting": 2,
        "DefaultGeolocationSetting": 2,
        "MetricsReportingEnabled": False,
        "TranslateEnabled": False,
        "SpellCheckServiceEnabled": False,
        "SearchSuggestEnabled": False,
        # Uploads (CAF asks for scans) need the picker: it starts in the session's home, which the wipe removes.
        "AllowFileSelectionDialogs": True,
        "NativeMessagingBlocklist": ["*"],
    }
    # The PDF viewer's own pages only: a site cannot open them, they only show the PDF the tab received.
    policy["URLAllowlist"].append(PDF_VIEWER_ORIGIN)
    if session_bar:
        # The bar is an unpacked extension passed on the command line: ExtensionInstallBlocklist ["*"] and
        # BlockExternalExtensions would also switch it off (checked on Chromium 156), so installs are closed by
        # the other locks instead: no install source, no developer mode, and the store is outside the allowlist.
        policy |= {
            "ExtensionInstallSources": [],
            "ExtensionAllowedTypes": ["extension"],
            "ExtensionDeveloperModeSettings": 1,
            "NativeMessagingAllowlist": [NATIVE_HOST_NAME],
        }
        # The bar's own pages (scanning; "the page could not open", shown in place of Chromium's error page), and
        # nothing else of chrome-extension:// (still blocked above). They are not web-accessible: no site loads them.
        policy["URLAllowlist"] = [*policy["URLAllowlist"], scan_page_url(), bar_page_url(FAILED_PAGE)]
    else:
        policy |= {"ExtensionInstallBlocklist": ["*"], "BlockExternalExtensions": True}
    if idle_timeout_min is not None:
        policy |= {"IdleTimeout": idle_timeout_min, "IdleTimeoutActions": list(IDLE_ACTIONS)}
    return policy


def write_policy(policy_dir: str | os.PathLike, policy: dict[str, Any]) -> Path:
    """Write the policy file atomically (Chromium may read it at any moment), world-readable, not writable."""
    directory = Path(policy_dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / POLICY_FILE
    fd, tmp = tempfile.mkstemp(prefix=".allervers-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(policy, f, indent=2, ensure_ascii=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def remove_policy(policy_dir: str | os.PathLike) -> None:
    with contextlib.suppress(FileNotFoundError):
        (Path(policy_dir) / POLICY_FILE).unlink()
