"""The [kiosk] config section (errors name the key) and what is generated from it: policies and the browser argv."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from firmware_host import config as config_mod
from firmware_host.config import ConfigError
from kiosk import policies
from kiosk.browser import browser_env, build_command, install_native_host
from kiosk.wipe import KioskError, SessionUser, world_runnable


def validate(kiosk: dict[str, Any]) -> Any:
    return config_mod.validate({"kiosk": kiosk}, "bus.toml", Path("/etc/allervers"))


def test_defaults_and_the_shipped_tiles() -> None:
    k = validate({}).kiosk
    assert k.enabled and k.session_user == "allervers-visitor" and k.sessions_dir == "/run/allervers/kiosk"
    assert k.policy_dir == "/etc/chromium/policies/managed"
    assert (k.idle_timeout_s, k.idle_grace_s, k.default_time_limit_min) == (300.0, 60.0, 30)
    assert k.browser_command[0] == "chromium" and "--kiosk" in k.browser_command
    labels = {s.id: (s.label, s.enabled) for s in k.services}
    assert labels == {
        "impots": ("Impôts", True),
        "caf": ("CAF", True),
        "ameli": ("Assurance Maladie", True),
        "retraite": ("Retraite", True),
        "france-travail": ("France Travail", True),
        "ants": ("ANTS", True),
        "laposte": ("La Poste", True),
        "messagerie": ("Messagerie", True),
        "navigation-libre": ("Navigation libre", False),
    }
    assert validate({}).kiosk.services[0].allow == ["impots.gouv.fr", "franceconnect.gouv.fr"]
    assert config_mod.validate({}, "bus.toml").kiosk is None  # no section, no terminal


def test_relative_paths_resolve_against_the_config_folder() -> None:
    assert validate({"sessions_dir": "run/kiosk"}).kiosk.sessions_dir == "/etc/allervers/run/kiosk"


@pytest.mark.parametrize(
    ("kiosk", "message"),
    [
        ({"session_user": "root"}, "kiosk.session_user: must not be root"),
        ({"session_user": "Visiteur"}, "kiosk.session_user: must match"),
        ({"browser_command": []}, "kiosk.browser_command: must name the browser program"),
        ({"browser_command": ["chromium", "{url}"]}, "kiosk.browser_command: must use {profile_dir}"),
        ({"browser_command": ["chromium", "{profile}"]}, "kiosk.browser_command: '{profile}': unknown placeholder"),
        ({"browser_command": ["chromium", "{profile_dir"]}, "kiosk.browser_command: '{profile_dir': "),
        ({"browser_env": ["WAYLAND_DISPLAY"]}, "kiosk.browser_env: items must be NAME=value"),
        ({"idle_timeout_s": 5}, "kiosk.idle_timeout_s: must be 30..3600, got 5"),
        ({"default_time_limit_min": 0}, "kiosk.default_time_limit_min: must be 1..480, got 0"),
        ({"low_battery_soc": 120}, "kiosk.low_battery_soc: must be 0..100, got 120"),
        ({"printer": "bus printer"}, "kiosk.printer: must match"),
        ({"servcies": []}, "kiosk.servcies: unknown key"),
        ({"services": [{"id": "caf", "label": "CAF"}]}, "kiosk.services[0].url: is required"),
        (
            {"services": [{"id": "caf", "label": "CAF", "url": "file:///etc/passwd"}]},
            "kiosk.services[0].url: must be an http:// or https:// address, got 'file:///etc/passwd'",
        ),
        (
            {"services": [{"id": "caf", "label": "CAF", "url": "https://caf.fr", "allow": ["https://caf.fr"]}]},
            "kiosk.services[0].allow: item 0 must be a host name",
        ),
        (
            {"services": [{"id": "caf", "label": "CAF", "url": "https://caf.fr", "time_limit_min": 0}]},
            "kiosk.services[0].time_limit_min: must be 1..480, got 0",
        ),
        (
            {
                "services": [
                    {"id": "a", "label": "A", "url": "https://a.fr"},
                    {"id": "a", "label": "B", "url": "https://b.fr"},
                ]
            },
            "kiosk.services[1].id: duplicate value 'a'",
        ),
        (
            {"services": [{"id": "a", "label": "A", "url": "https://a.fr", "enabled": False}]},
            "kiosk.services: no enabled service",
        ),
        (
            {"services": [{"id": f"s{n}", "label": f"S{n}", "url": "https://a.fr"} for n in range(13)]},
            "kiosk.services: 13 enabled services: at most 12 fit the public screen at once",
        ),
    ],
)
def test_config_errors_name_the_key(kiosk: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(kiosk)
    assert str(err.value).startswith(f"bus.toml: {message}"), str(err.value)


def test_policy_for_a_service_blocks_everything_else() -> None:
    p = policies.build_policy(
        url="https://www.caf.fr/accueil", allow=["caf.fr", "franceconnect.gouv.fr"], downloads_dir="/run/k/s/Downloads"
    )
    assert p["URLBlocklist"] == [
        "*",
        "file://*",
        "chrome://*",
        "view-source:*",
        "javascript://*",
        "chrome-extension://*",
        "devtools://*",
    ]
    # www. dropped (the domain covers it); of chrome-extension:// only the PDF viewer and the session bar's own pages
    bar_pages = [policies.scan_page_url(), policies.bar_page_url(policies.FAILED_PAGE)]
    assert p["URLAllowlist"] == ["caf.fr", "franceconnect.gouv.fr", policies.PDF_VIEWER_ORIGIN, *bar_pages]
    assert policies.scan_page_url() == f"chrome-extension://{policies.bar_extension_id()}/scan.html"
    assert p["DeveloperToolsAvailability"] == 2 and p["IncognitoModeAvailability"] == 1
    assert p["BrowserGuestModeEnabled"] is False and p["BrowserAddPersonEnabled"] is False
    assert p["BrowserSignin"] == 0 and p["SyncDisabled"] is True
    assert p["PasswordManagerEnabled"] is False and p["AutofillAddressEnabled"] is False
    assert p["AutofillCreditCardEnabled"] is False
    assert p["DownloadDirectory"] == "/run/k/s/Downloads" and p["PromptForDownloadLocation"] is False
    assert p["PrintingEnabled"] is True and "pdf" in p["PrinterTypeDenyList"]  # no "Save as PDF"
    assert p["NativeMessagingAllowlist"] == [policies.NATIVE_HOST_NAME]
    assert p["ExtensionInstallSources"] == [] and p["ExtensionDeveloperModeSettings"] == 1
    assert "ExtensionInstallBlocklist" not in p  # it would switch the session bar off too


def test_policy_without_the_session_bar_blocks_every_extension() -> None:
    p = policies.build_policy(url="https://caf.fr", allow=[], downloads_dir="/d", session_bar=False, idle_timeout_min=8)
    assert p["ExtensionInstallBlocklist"] == ["*"] and p["BlockExternalExtensions"] is True
    assert "NativeMessagingAllowlist" not in p and p["NativeMessagingBlocklist"] == ["*"]
    assert p["URLAllowlist"] == ["caf.fr", policies.PDF_VIEWER_ORIGIN]  # no bar, no page of ours
    assert p["IdleTimeout"] == 8 and "clear_cookies_and_other_site_data" in p["IdleTimeoutActions"]


def test_free_browsing_allows_the_web_but_not_the_other_schemes() -> None:
    p = policies.build_policy(url="https://www.qwant.com/", allow=["*"], downloads_dir="/d")
    assert p["URLAllowlist"][:3] == ["qwant.com", "http://*", "https://*"]
    assert "file://*" in p["URLBlocklist"] and "chrome://*" in p["URLBlocklist"]


def test_policy_file_is_replaced_atomically_and_world_readable(tmp_path: Path) -> None:
    target = policies.write_policy(tmp_path / "managed", {"URLBlocklist": ["*"]})
    assert target.name == "allervers-kiosk.json" and json.loads(target.read_text()) == {"URLBlocklist": ["*"]}
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    policies.write_policy(tmp_path / "managed", {"URLBlocklist": ["*", "file://*"]})
    assert [p.name for p in (tmp_path / "managed").iterdir()] == ["allervers-kiosk.json"]
    policies.remove_policy(tmp_path / "managed")
    policies.remove_policy(tmp_path / "managed")  # twice is fine
    assert not target.exists()


def test_bar_extension_id_is_derived_from_its_key() -> None:
    ext_id = policies.bar_extension_id()
    assert len(ext_id) == 32 and set(ext_id) <= set("abcdefghijklmnop")
    manifest = json.loads((policies.BAR_DIR / "manifest.json").read_text())
    assert manifest["manifest_version"] == 3 and "nativeMessaging" in manifest["permissions"]


def test_browser_argv_fills_placeholders_and_adds_the_pipe_and_the_bar(tmp_path: Path) -> None:
    home = tmp_path / "0123456789abcdef"
    argv = build_command(
        [
            "chromium",
            "--kiosk",
            "--disable-features=Translate",
            "--lang={lang}",
            "--user-data-dir={profile_dir}",
            "{url}",
        ],
        url="https://www.caf.fr/",
        home=home,
        lang="fr",
        session_bar=True,
    )
    assert argv[:5] == ["chromium", "--kiosk", "--lang=fr", f"--user-data-dir={home}/profile", "https://www.caf.fr/"]
    assert "--remote-debugging-pipe" in argv and f"--load-extension={policies.BAR_DIR}" in argv
    assert argv[-1] == "--disable-features=Translate,DisableLoadExtensionCommandLineSwitch"
    plain = build_command(
        ["chromium", "--user-data-dir={profile_dir}", "{url}"], url="u", home=home, lang="en", session_bar=False
    )
    assert plain == ["chromium", f"--user-data-dir={home}/profile", "u", "--remote-debugging-pipe"]


def test_the_browser_environment_is_clean(tmp_path: Path) -> None:
    user = SessionUser("allervers-visitor", 990, 990)
    os.environ["ALLERVERS_SECRET_FOR_TEST"] = "controller only"
    try:
        env = browser_env(
            user, tmp_path / "h", "en", ["WAYLAND_DISPLAY=/run/allervers/wayland-0"], tmp_path / "bar.sock"
        )
    finally:
        del os.environ["ALLERVERS_SECRET_FOR_TEST"]
    assert env["HOME"] == str(tmp_path / "h") and env["USER"] == "allervers-visitor" and env["LANG"] == "en_GB.UTF-8"
    assert env["WAYLAND_DISPLAY"] == "/run/allervers/wayland-0" and env["ALLERVERS_BAR_SOCKET"] == str(
        tmp_path / "bar.sock"
    )
    assert "ALLERVERS_SECRET_FOR_TEST" not in env
    long_home = Path("/run/allervers/a-rather-long-sessions-folder/0123456789abcdef")
    assert "TMPDIR" not in browser_env(user, long_home, "fr", [], None)  # Chromium's socket would not fit


def test_native_host_manifest_names_the_bridge_and_the_extension(tmp_path: Path) -> None:
    (tmp_path / "profile").mkdir()
    host = policies.bar_host_path()
    assert host is not None and world_runnable(host)  # the entry point pip installs, else host.py (source tree)
    manifest = json.loads(install_native_host(tmp_path / "profile", host).read_text())
    assert manifest["name"] == "fr.allervers.kiosk" and manifest["type"] == "stdio"
    assert manifest["path"] == str(host) and os.access(manifest["path"], os.X_OK)
    assert manifest["allowed_origins"] == [f"chrome-extension://{policies.bar_extension_id()}/"]


def test_session_user_lookup_errors() -> None:
    with pytest.raises(KioskError, match=r"kiosk.session_user: no user 'nobody-here-at-all' .*useradd --system"):
        SessionUser.lookup("nobody-here-at-all")
    if os.geteuid() == 0:
        with pytest.raises(KioskError, match="must not be root"):
            SessionUser.lookup("")


def test_world_runnable_looks_at_every_folder_and_the_interpreter(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    script = tmp_path / "tool"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    assert world_runnable(script) is all(p.stat().st_mode & 0o001 for p in tmp_path.parents)
    script.chmod(0o750)
    assert not world_runnable(script)
    script.chmod(0o755)
    script.write_text("#!/nonexistent/python\n")
    assert not world_runnable(script)
    assert world_runnable("/bin/sh")
