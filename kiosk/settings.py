"""The ``[kiosk]`` config section (public terminal) and its shipped ``[[kiosk.services]]`` tiles."""

from __future__ import annotations

import re
import string
from typing import Any
from urllib.parse import urlsplit

from firmware_host.schema import ArrayOf, Key, Table

# The launcher shows every enabled service at once, as tiles big enough for a finger, on the bus's 72x23 cells.
MAX_SERVICES = 12

# Placeholders a browser_command may use; {profile_dir} is required so the profile lands in the session's home.
BROWSER_PLACEHOLDERS = ("url", "profile_dir", "downloads_dir", "home", "lang")

DEFAULT_BROWSER_COMMAND = [
    "chromium",
    "--kiosk",
    "--ozone-platform=wayland",
    "--no-first-run",
    "--noerrdialogs",
    "--disable-session-crashed-bubble",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=Translate",
    "--lang={lang}",
    "--user-data-dir={profile_dir}",
    "{url}",
]

# FranceConnect is how most of these sites log people in (with their impots.gouv.fr or ameli.fr account).
_FC = "franceconnect.gouv.fr"

DEFAULT_SERVICES: list[dict[str, Any]] = [
    {
        "id": "impots",
        "thematiques": ["aide_aux_demarches_administratives", "argent_impots"],
        "label": "Impôts",
        "label_en": "Taxes",
        "hint": "Déclaration de revenus, avis d'impôt",
        "hint_en": "Income tax return, tax notices",
        "url": "https://www.impots.gouv.fr/",
        "allow": ["impots.gouv.fr", _FC],
    },
    {
        "id": "caf",
        "thematiques": ["aide_aux_demarches_administratives", "social_sante"],
        "label": "CAF",
        "label_en": "Family benefits (CAF)",
        "hint": "Allocations familiales, aide au logement, RSA, prime d'activité",
        "hint_en": "Family, housing and income support",
        "url": "https://www.caf.fr/",
        "allow": ["caf.fr", _FC],
    },
    {
        "id": "ameli",
        "thematiques": ["aide_aux_demarches_administratives", "social_sante"],
        "label": "Assurance Maladie",
        "label_en": "Health insurance",
        "hint": "Remboursements, carte Vitale, attestation de droits",
        "hint_en": "Refunds, Vitale card, certificate of entitlement",
        "url": "https://www.ameli.fr/",
        "allow": ["ameli.fr", _FC],
    },
    {
        "id": "retraite",
        "thematiques": ["aide_aux_demarches_administratives", "social_sante"],
        "label": "Retraite",
        "label_en": "Pension",
        "hint": "Relevé de carrière, demande de retraite",
        "hint_en": "Career statement, pension claim",
        "url": "https://www.info-retraite.fr/",
        "allow": ["info-retraite.fr", "lassuranceretraite.fr", _FC],
    },
    {
        "id": "france-travail",
        "thematiques": ["aide_aux_demarches_administratives", "travail_formation"],
        "label": "France Travail",
        "label_en": "Job centre (France Travail)",
        "hint": "Inscription, actualisation, offres d'emploi",
        "hint_en": "Registration, monthly update, job offers",
        "url": "https://www.francetravail.fr/",
        "allow": ["francetravail.fr", _FC],
    },
    {
        "id": "ants",
        "thematiques": ["aide_aux_demarches_administratives", "papiers_elections_citoyennete"],
        "label": "ANTS",
        "label_en": "Vehicle and ID papers (ANTS)",
        "hint": "Carte grise, permis de conduire, carte d'identité, passeport",
        "hint_en": "Vehicle registration, driving licence, ID card, passport",
        "url": "https://ants.gouv.fr/",
        "allow": ["ants.gouv.fr", _FC],
    },
    {
        "id": "laposte",
        "thematiques": ["navigation_sur_internet"],
        "label": "La Poste",
        "label_en": "Post office",
        "hint": "Suivi de colis, lettre recommandée en ligne",
        "hint_en": "Parcel tracking, registered letters",
        "url": "https://www.laposte.fr/",
        "allow": ["laposte.fr"],
    },
    {
        "id": "messagerie",
        "thematiques": ["email"],
        "label": "Messagerie",
        "label_en": "E-mail",
        "hint": "Lire et envoyer vos courriels",
        "hint_en": "Read and send your e-mail",
        "url": "https://www.laposte.net/",
        "allow": [
            "laposte.net",
            "orange.fr",
            "free.fr",
            "sfr.fr",
            "mail.google.com",
            "accounts.google.com",
            "outlook.live.com",
            "login.live.com",
            "mail.yahoo.com",
            "login.yahoo.com",
        ],
    },
    {
        "id": "navigation-libre",
        "thematiques": ["navigation_sur_internet"],
        "label": "Navigation libre",
        "label_en": "Free browsing",
        "hint": "Les autres sites internet",
        "hint_en": "Any other website",
        "url": "https://www.qwant.com/",
        "allow": ["*"],
        "enabled": False,
    },
]

_HOST = re.compile(r"\.?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*(:\d{1,5})?(/\S*)?")


def _check_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be an http:// or https:// address, got {value!r}"
    return None


def _check_allow(values: list[str]) -> str | None:
    for i, entry in enumerate(values):
        if entry == "*":
            continue
        if "://" in entry or not _HOST.fullmatch(entry):
            return (
                f"item {i} must be a host name such as 'caf.fr' (covers its subdomains; a leading dot does not)"
                f" or '*', got {entry!r}"
            )
    return None


def _check_command(values: list[str]) -> str | None:
    if not values:
        return "must name the browser program and its arguments"
    seen: set[str] = set()
    for item in values:
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(item) if name is not None}
        except ValueError as exc:
            return f"{item!r}: {exc} (write {{{{ and }}}} for literal braces)"
        unknown = fields - set(BROWSER_PLACEHOLDERS)
        if unknown:
            known = ", ".join("{" + p + "}" for p in BROWSER_PLACEHOLDERS)
            return f"{item!r}: unknown placeholder {{{sorted(unknown)[0]}}} (known: {known})"
        seen |= fields
    if "profile_dir" not in seen:
        return "must use {profile_dir} (e.g. --user-data-dir={profile_dir}) so the profile is wiped with the session"
    return None


def _check_env(values: list[str]) -> str | None:
    for item in values:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", item):
            return f"items must be NAME=value, got {item!r}"
    return None


def _check_user(value: str) -> str | None:
    if value == "root":
        return "must not be root: the wipe kills every process of the session user"
    return None


def _check_thematiques(values: list[str]) -> str | None:
    from kiosk.coop import THEMATIQUES

    unknown = [v for v in values if v not in THEMATIQUES]
    if unknown:
        return f"unknown Coop thematique(s) {', '.join(map(repr, unknown))} (see kiosk/coop_schema.json)"
    if len(set(values)) != len(values):
        return "a thematique is listed twice"
    return None


def _check_scanner(value: str) -> str | None:
    if value.startswith("-") or any(c.isspace() and c != " " for c in value):
        return f"must be a SANE device name as `scanimage -L` lists it (e.g. 'airscan:e0:Canon', 'test'), got {value!r}"
    return None


def _check_scan_options(values: list[str]) -> str | None:
    for item in values:
        if not item.startswith("--") or "=" not in item:
            return f"items must be scanimage options written --name=value (e.g. '--source=Flatbed'), got {item!r}"
        if item.split("=", 1)[0] in ("--device-name", "--format", "--output-file", "--batch", "--mode", "--resolution"):
            return f"{item!r}: set by allervers itself (scanner, scan_mode, scan_resolution)"
    return None


def _check_section(values: dict[str, Any]) -> tuple[str, str] | None:
    if values["launch"] == "unit" and values["session_user"] == "":
        return "session_user", 'must name the user of allervers-session@.service (User=) with launch = "unit"'
    enabled = sum(1 for s in values["services"] if s["enabled"])
    if values["enabled"] and not enabled:
        return "services", "no enabled service: the terminal would have nothing to offer"
    if enabled > MAX_SERVICES:
        return "services", (
            f"{enabled} enabled services: at most {MAX_SERVICES} fit the public screen at once "
            "(set enabled = false on the others)"
        )
    return None


def kiosk_schema() -> Any:
    """The ``[kiosk]`` section for config.SCHEMA (optional: no public terminal without it)."""
    service = Table(
        {
            "id": Key(str, required=True, pattern=r"[a-z0-9-]{1,32}"),
            "label": Key(str, required=True),
            "label_en": Key(str, None),
            "hint": Key(str, ""),
            "hint_en": Key(str, None),
            "url": Key(str, required=True, check=_check_url),
            "allow": Key("list[str]", [], check=_check_allow),
            "time_limit_min": Key(int, None, min=1, max=480),
            "enabled": Key(bool, True),
            "needs_link": Key(bool, True),
            "thematiques": Key("list[str]", None, check=_check_thematiques),
        }
    )
    return Table(
        {
            "enabled": Key(bool, True),
            "launch": Key(str, "direct", choices=("direct", "unit")),
            "launch_socket": Key("path", "/run/allervers-session.sock"),
            "sessions_dir": Key("path", "/run/allervers/kiosk"),
            "session_user": Key(str, "allervers-visitor", pattern=r"([a-z_][a-z0-9_-]{0,31})?", check=_check_user),
            "browser_command": Key("list[str]", lambda: list(DEFAULT_BROWSER_COMMAND), check=_check_command),
            "browser_env": Key("list[str]", [], check=_check_env),
            "policy_dir": Key("path", "/etc/chromium/policies/managed"),
            "session_bar": Key(bool, True),
            "idle_timeout_s": Key(float, 300.0, min=30, max=3600),
            "idle_grace_s": Key(float, 60.0, min=10, max=600),
            "default_time_limit_min": Key(int, 30, min=1, max=480),
            "printer": Key(str, "", pattern=r"[A-Za-z0-9_.-]{0,127}"),
            "cups_server": Key(str, "/run/cups/cups.sock"),
            "print_wait_s": Key(float, 60.0, min=0, max=600),
            "scanner": Key(str, "", check=_check_scanner),
            "scan_resolution": Key(int, 150, min=75, max=600),
            "scan_mode": Key(str, "Color", choices=("Color", "Gray")),
            "scan_options": Key("list[str]", [], check=_check_scan_options),
            "low_battery_soc": Key(float, 25.0, min=0, max=100),
            "satisfaction": Key(bool, True),
            "structure_siret": Key(str, "", pattern=r"(\d{14})?"),
            "services": ArrayOf(service, default=DEFAULT_SERVICES, unique="id"),
        },
        optional=True,
        check=_check_section,
    )
