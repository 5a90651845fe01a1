"""The national formats: anonymous activity records for La Coop de la médiation numérique, place records for the map.

Mediators record their work in La Coop de la médiation numérique ("compte rendu d'activité", CRA); funders and the
State read the national map of mediation places. Both have fixed field names and enumerations, copied as data with
their sources into ``coop_schema.json``. Everything here is built from the anonymous session rows (kiosk/stats.py)
and the tour, and every value is an enumeration, a date, a number or an INSEE code: nothing a visitor typed or
visited can reach these records (the tests check it for any row).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from firmware_host.tour import INSEE_RE, Stop, Tour, slug

SCHEMA: dict[str, Any] = json.loads(Path(__file__).with_name("coop_schema.json").read_text(encoding="utf-8"))
COOP: dict[str, list[str]] = SCHEMA["coop"]
LIEUX: dict[str, list[str]] = SCHEMA["lieux"]
THEMATIQUES: tuple[str, ...] = tuple(COOP["thematiques"])

# A visitor alone at the self-service terminal, in the bus (the bus is the mediation place), on its computer.
ACTIVITY_TYPE = "individuel"
PLACE_TYPE = "lieu_activite"
EQUIPMENT = ["ordinateur"]
# Our one field beyond the Coop's: how many sessions a per-stop-and-day record stands for.
COUNT_FIELD = "nombreSessions"
ACTIVITY_FIELDS = ("type", "date", "duree", "typeLieu", "lieuCodeInsee", "materiel", "thematiques")

# The bus as a place on the national map: what it offers at every stop.
PLACE_SERVICES = ["Aide aux démarches administratives", "Accès internet et matériel informatique"]
PLACE_MODALITIES = ["En autonomie", "Accompagnement individuel"]
PLACE_FEES = ["Gratuit"]
PLACE_FIELDS = (
    "id",
    "pivot",
    "nom",
    "adresse",
    "commune",
    "code_postal",
    "code_insee",
    "horaires",
    "itinerance",
    "services",
    "modalites_accompagnement",
    "frais_a_charge",
    "source",
    "date_maj",
)
UNKNOWN_SIRET = "00000000000000"  # what the national schema's own data uses when a place's SIRET is not known
_OSM_DAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
_OSM_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --- activities (CRA) ------------------------------------------------------------------------------------------


def thematiques_by_service(services: Iterable[Any], defaults: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Service id -> its Coop thematiques: the configured ones, else the shipped service's of the same id."""
    shipped = {s["id"]: list(s.get("thematiques") or []) for s in defaults}
    out = dict(shipped)
    for service in services:
        configured = service.get("thematiques")
        out[service.get("id")] = list(configured) if configured is not None else shipped.get(service.get("id"), [])
    return out


def duration_minutes(duration_s: int | float | None) -> int | None:
    """Whole minutes, rounded up (a two-minute visit is not "1"); None when a power cut ended the session."""
    if duration_s is None:
        return None
    return max(1, math.ceil(duration_s / 60))


def _themes(service_ids: Iterable[str], themes: Mapping[str, list[str]]) -> list[str]:
    wanted = {t for sid in service_ids for t in themes.get(sid, [])}
    return [t for t in THEMATIQUES if t in wanted]  # the schema's order, each once


def _record(date: str, minutes: int | None, stop_key: str, service_ids: Iterable[str], themes: Mapping) -> dict:
    record: dict[str, Any] = {"type": ACTIVITY_TYPE, "date": date}
    if minutes is not None:
        record["duree"] = minutes
    record["typeLieu"] = PLACE_TYPE
    insee = Stop.insee_of_key(stop_key)
    if insee is not None:
        record["lieuCodeInsee"] = insee
    record["materiel"] = list(EQUIPMENT)
    record["thematiques"] = _themes(service_ids, themes)
    # autonomie is left out: the bus cannot tell whether the mediator helped a visitor at the terminal.
    return record


def activity(row: Mapping[str, Any], themes: Mapping[str, list[str]]) -> dict[str, Any]:
    """One session as a Coop activity record (absent fields are the ones that cannot be known honestly)."""
    return _record(row["date"], duration_minutes(row["duration_s"]), row.get("stop_key") or "", row["services"], themes)


def activities(
    rows: Iterable[Mapping[str, Any]], themes: Mapping[str, list[str]], per: str = "session"
) -> list[dict[str, Any]]:
    """Records in session order (``per="session"``) or one per stop and day (``per="stop-day"``) with a count."""
    if per == "session":
        return [activity(r, themes) for r in rows]
    if per != "stop-day":
        raise ValueError(f"per: must be 'session' or 'stop-day', got {per!r}")
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["date"], r.get("stop_key") or "")].append(r)
    out = []
    for (date, stop_key), items in sorted(groups.items()):
        known = [m for m in (duration_minutes(r["duration_s"]) for r in items) if m is not None]
        services = [s for r in items for s in r["services"]]
        record = _record(date, sum(known) if known else None, stop_key, services, themes)
        record[COUNT_FIELD] = len(items)
        out.append(record)
    return out


def check_activity(record: Mapping[str, Any]) -> list[str]:
    """Every problem of one record against the Coop's field names and enumerations (empty when valid)."""
    problems = []
    allowed = {*ACTIVITY_FIELDS, COUNT_FIELD}
    problems += [f"{k}: not a Coop field" for k in record if k not in allowed]
    for key in ("type", "date", "typeLieu", "materiel", "thematiques"):
        if key not in record:
            problems.append(f"{key}: missing")
    if "type" in record and record["type"] not in COOP["type"]:
        problems.append(f"type: {record['type']!r} not in the Coop's TypeActivite")
    if "typeLieu" in record and record["typeLieu"] not in COOP["typeLieu"]:
        problems.append(f"typeLieu: {record['typeLieu']!r} not in the Coop's TypeLieu")
    if "date" in record:
        try:
            dt.date.fromisoformat(record["date"])
        except (TypeError, ValueError):
            problems.append(f"date: {record['date']!r} is not YYYY-MM-DD")
    for key in ("duree", COUNT_FIELD):
        value = record.get(key)
        if key in record and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            problems.append(f"{key}: must be a whole number >= 1, got {value!r}")
    if "lieuCodeInsee" in record and not (
        isinstance(record["lieuCodeInsee"], str) and INSEE_RE.fullmatch(record["lieuCodeInsee"])
    ):
        problems.append(f"lieuCodeInsee: {record['lieuCodeInsee']!r} is not an INSEE code")
    if "autonomie" in record and record["autonomie"] not in COOP["autonomie"]:
        problems.append(f"autonomie: {record['autonomie']!r} not in the Coop's Autonomie")
    for key, enum in (("materiel", "materiel"), ("thematiques", "thematiques")):
        values = record.get(key, [])
        if not isinstance(values, list):
            problems.append(f"{key}: must be a list")
            continue
        problems += [f"{key}: {v!r} not in the Coop's {enum}" for v in values if v not in COOP[enum]]
    return problems


# --- the bus on the national map of mediation places ----------------------------------------------------------


def opening_hours(stop: Stop) -> str | None:
    """The stop's hours in OpenStreetMap's opening_hours syntax, which the national schema uses."""
    if stop.arrive is None or stop.depart is None:
        return None
    hours = f"{stop.arrive:%H:%M}-{stop.depart:%H:%M}"
    if stop.date is not None:
        return f"{stop.date.year} {_OSM_MONTHS[stop.date.month - 1]} {stop.date.day:02d} {hours}"
    return f"{_OSM_DAYS[stop.weekday or 0]} {hours}"


def places(tour: Tour, *, vehicle_id: str, vehicle_name: str, siret: str, today: dt.date) -> list[dict[str, Any]]:
    """One itinerant place per stop (commune and place) of the tour, its hours gathered from every visit."""
    grouped: dict[tuple[str, str], list[Stop]] = defaultdict(list)
    for stop in tour.stops:
        grouped[(stop.insee or stop.commune, stop.place)].append(stop)
    out = []
    for (where, place), stops in grouped.items():
        first = stops[0]
        record: dict[str, Any] = {
            "id": f"{slug(vehicle_id)}-{slug(where)}-{slug(place)}",
            "pivot": siret or UNKNOWN_SIRET,
            "nom": f"{vehicle_name} à {first.commune}",
            "adresse": place or first.commune,
            "commune": first.commune,
        }
        postcode = next((s.postcode for s in stops if s.postcode), None)
        if postcode:
            record["code_postal"] = postcode
        if first.insee:
            record["code_insee"] = first.insee
        hours = [h for h in (opening_hours(s) for s in stops) if h]
        if hours:
            record["horaires"] = "; ".join(dict.fromkeys(hours))
        record.update(
            {
                "itinerance": "Itinérant",
                "services": "|".join(PLACE_SERVICES),
                "modalites_accompagnement": "|".join(PLACE_MODALITIES),
                "frais_a_charge": "|".join(PLACE_FEES),
                "source": "allervers",
                "date_maj": today.isoformat(),
            }
        )
        out.append(record)
    return out


def check_place(record: Mapping[str, Any]) -> list[str]:
    """Every problem of one place record against the national schema's required fields and enumerations."""
    problems = [f"{k}: not a field of the national schema" for k in record if k not in PLACE_FIELDS]
    problems += [f"{k}: missing (required by the national schema)" for k in LIEUX["required"] if not record.get(k)]
    for key in ("services", "itinerance", "frais_a_charge", "modalites_accompagnement"):
        if key in record:
            values = record[key].split("|")
            problems += [f"{key}: {v!r} not in the schema's list" for v in values if v not in LIEUX[key]]
    if "code_insee" in record and not INSEE_RE.fullmatch(record["code_insee"]):
        problems.append(f"code_insee: {record['code_insee']!r} is not an INSEE code")
    if "pivot" in record and not re.fullmatch(r"\d{14}", record["pivot"]):
        problems.append(f"pivot: {record['pivot']!r} is not a SIRET (14 digits)")
    return problems


def csv_cell(value: Any) -> str:
    """A list as the national formats join it (``a|b``); text a spreadsheet would run as a formula is quoted."""
    text = "|".join(map(str, value)) if isinstance(value, list) else ("" if value is None else str(value))
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
