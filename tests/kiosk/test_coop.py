"""The national formats: Coop activity records and mediation places, checked against the published enumerations."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_host import config as config_mod
from firmware_host.api import call_once
from firmware_host.tour import INSEE_RE, Stop, load_tour, parse_toml, unscheduled_stop
from kiosk import coop
from kiosk.settings import DEFAULT_SERVICES
from tests.conftest import wait_until
from tests.firmware_host.test_checklist import ROOT, day_clock

from .test_stats_report import report

THEMES = coop.thematiques_by_service([], DEFAULT_SERVICES)
ENUM_VALUES = {v for key, values in coop.COOP.items() if not key.startswith("_") for v in values}


def leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in leaves(v)]
    return [value]


def is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


# --- the enumerations ---------------------------------------------------------------------------------------------


def test_the_shipped_services_and_the_example_config_name_only_coop_thematiques() -> None:
    for service in DEFAULT_SERVICES:
        assert service["thematiques"], f"shipped service {service['id']} has no thematique"
        assert set(service["thematiques"]) <= set(coop.THEMATIQUES), service["id"]
    example = config_mod.load(ROOT / "config" / "example-bus.toml")
    for service in example.kiosk.services:
        assert set(service.thematiques) <= set(coop.THEMATIQUES), service.id
    # The guess "emploi" is not the Coop's spelling: France Travail is travail_formation.
    assert "emploi" not in coop.THEMATIQUES and "travail_formation" in THEMES["france-travail"]


def test_a_thematique_outside_the_coop_list_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "bus.toml"
    path.write_text(
        '[kiosk]\n[[kiosk.services]]\nid = "pe"\nlabel = "Pôle"\nurl = "https://www.francetravail.fr/"\n'
        'thematiques = ["emploi"]\n'
    )
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.load(path)
    assert "thematiques" in str(err.value) and "'emploi'" in str(err.value) and "bus.toml" in str(err.value)


def test_a_configured_service_without_thematiques_takes_the_shipped_ones_of_its_id() -> None:
    themes = coop.thematiques_by_service(
        [{"id": "caf", "thematiques": None}, {"id": "mairie", "thematiques": None}, {"id": "ants", "thematiques": []}],
        DEFAULT_SERVICES,
    )
    assert themes["caf"] == THEMES["caf"] and themes["mairie"] == [] and themes["ants"] == []


# --- activity records ---------------------------------------------------------------------------------------------

ROW = {"date": "2026-06-02", "duration_s": 61, "stop_key": "2026-06-02/63223/0900", "services": ["impots", "caf"]}


def test_a_session_becomes_one_anonymous_coop_record() -> None:
    record = coop.activity(ROW, THEMES)
    assert record == {
        "type": "individuel",
        "date": "2026-06-02",
        "duree": 2,  # 61 s is two started minutes
        "typeLieu": "lieu_activite",
        "lieuCodeInsee": "63223",
        "materiel": ["ordinateur"],
        "thematiques": ["aide_aux_demarches_administratives", "social_sante", "argent_impots"],
    }
    assert coop.check_activity(record) == []
    cut = coop.activity({**ROW, "duration_s": None, "stop_key": "2026-06-02/menat/hors-planning"}, THEMES)
    assert "duree" not in cut and "lieuCodeInsee" not in cut and coop.check_activity(cut) == []


def test_the_checker_fails_on_what_the_coop_would_refuse() -> None:
    bad = {
        **coop.activity(ROW, THEMES),
        "type": "accompagnement",
        "thematiques": ["emploi"],
        "lieuCodeInsee": "75 001",
        "duree": 0,
        "url": "https://www.caf.fr/",
    }
    problems = "; ".join(coop.check_activity(bad))
    for expected in ("type:", "'emploi'", "lieuCodeInsee:", "duree:", "url: not a Coop field"):
        assert expected in problems


text = st.text(max_size=40)
rows = st.lists(
    st.fixed_dictionaries(
        {
            "date": st.dates(dt.date(2020, 1, 1), dt.date(2035, 12, 31)).map(dt.date.isoformat),
            "duration_s": st.none() | st.integers(0, 6 * 3600),
            # What a hostile or careless hand could put where a stop or a service is named: any text, URLs.
            "stop_key": text | st.sampled_from(["2026-06-02/63223/0900", "x/https://evil.example/y/z"]),
            "stop_label": text,
            "services": st.lists(text | st.sampled_from([*THEMES, "https://www.caf.fr/mon-compte"]), max_size=4),
        }
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(rows=rows, per=st.sampled_from(["session", "stop-day"]))
def test_no_exported_value_can_carry_text_or_an_address_only_enums_dates_numbers_and_insee_codes(
    rows: list[dict[str, Any]], per: str
) -> None:
    records = coop.activities(rows, THEMES, per)
    for record in records:
        assert coop.check_activity(record) == []
        for leaf in leaves(record):
            if isinstance(leaf, str):
                assert leaf in ENUM_VALUES or is_date(leaf) or INSEE_RE.fullmatch(leaf), leaf
            else:
                assert isinstance(leaf, int) and not isinstance(leaf, bool)
    if per == "stop-day":
        assert sum(r[coop.COUNT_FIELD] for r in records) == len(rows)
    else:
        assert len(records) == len(rows)


def test_stop_keys_give_back_their_insee_code() -> None:
    tour = load_tour(ROOT / "config" / "tour.toml")
    for stop in tour.on(dt.date(2026, 6, 2)) + tour.stops:
        assert Stop.insee_of_key(stop.key) == stop.insee
    typed = unscheduled_stop({"commune": "Saint-Gervais", "insee": "63354"}, dt.date(2026, 6, 2))
    assert Stop.insee_of_key(typed.key) == "63354"
    assert Stop.insee_of_key(unscheduled_stop({"commune": "Saint-Gervais"}, dt.date(2026, 6, 2)).key) is None


# --- places -------------------------------------------------------------------------------------------------------


def test_the_tour_becomes_itinerant_places_of_the_national_map() -> None:
    tour = load_tour(ROOT / "config" / "tour.csv")
    places = coop.places(tour, vehicle_id="bus-01", vehicle_name="Bus", siret="", today=dt.date(2026, 11, 30))
    assert len(places) == len({(s.insee, s.place) for s in tour.stops}) == 11
    for place in places:
        assert coop.check_place(place) == [], place
        assert place["itinerance"] == "Itinérant" and place["pivot"] == coop.UNKNOWN_SIRET
    menat = next(p for p in places if p["commune"] == "Menat")
    assert (menat["code_insee"], menat["code_postal"], menat["horaires"]) == ("63223", "63560", "Tu 09:00-12:00")
    fair = next(p for p in places if p["adresse"] == "Champ de foire")
    assert fair["horaires"] == "2026 Jun 01 08:30-17:30"


def test_a_place_missing_what_the_map_requires_is_reported() -> None:
    tour = parse_toml('[[stop]]\ndate = "mardi"\ncommune = "Menat"\ninsee = "63223"\narrive = "9h"\ndepart = "12h"\n')
    (place,) = coop.places(tour, vehicle_id="bus-01", vehicle_name="Bus", siret="123", today=dt.date(2026, 1, 1))
    problems = "; ".join(coop.check_place(place))
    assert "code_postal: missing" in problems and "pivot: '123'" in problems


def test_csv_cells_join_lists_and_defuse_formulas() -> None:
    assert coop.csv_cell(["a", "b"]) == "a|b" and coop.csv_cell(None) == ""
    assert coop.csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"


# --- `allervers report --format coop` on a real day ---------------------------------------------------------------


async def test_report_coop_on_a_day_with_sessions_at_two_stops(
    run_controller: Any, kiosk_config: Any, visitor: Any, tmp_path: Path
) -> None:
    cfg = kiosk_config(sections={"checklist": {"schedule": str(ROOT / "config" / "tour.toml")}})
    controller = await run_controller(cfg, clock=day_clock())
    await wait_until(lambda: controller.kiosk.phase == "idle", message="the kiosk's start-up wipe")
    control, kiosk = cfg.api.control_socket, cfg.api.kiosk_socket

    async def stop_with(stop: str, services: list[str]) -> None:
        await call_once(control, "checklist.arrive", {"stop": stop, "by": "Marie"})
        await call_once(control, "checklist.finish", {"by": "Marie", "reason": "test"})
        await wait_until(lambda: controller.state.value("kiosk", "open") is True, message="kiosk open")
        for service in services:
            await call_once(kiosk, "session.start", {"service": service})
            await call_once(kiosk, "session.end", {})
            await wait_until(lambda: controller.kiosk.phase == "idle", message="the wipe after a session")
        await call_once(control, "checklist.depart", {"by": "Marie"})
        await call_once(control, "checklist.finish", {"by": "Marie", "reason": "test"})

    await stop_with("2026-06-02/63223/0900", ["caf", "impots"])  # Menat, the morning
    await stop_with("2026-06-02/63206/1400", ["caf"])  # Manzat, the afternoon
    config_path = tmp_path / "report.toml"
    config_path.write_text(f'[storage]\npath = "{cfg.storage.path}"\n[kiosk]\nenabled = false\n')

    per_session = report(config_path, "--format", "coop")
    assert per_session.returncode == 0, per_session.stderr
    records = json.loads(per_session.stdout)
    assert [(r["lieuCodeInsee"], r["thematiques"][-1]) for r in records] == [
        ("63223", "social_sante"),
        ("63223", "argent_impots"),
        ("63206", "social_sante"),
    ]
    assert all(coop.check_activity(r) == [] for r in records)

    per_stop = report(config_path, "--format", "coop", "--per", "stop-day", "--csv")
    assert per_stop.returncode == 0, per_stop.stderr
    lines = list(csv.DictReader(io.StringIO(per_stop.stdout)))
    assert [(line["lieuCodeInsee"], line[coop.COUNT_FIELD]) for line in lines] == [("63206", "1"), ("63223", "2")]
    assert lines[1]["thematiques"] == "aide_aux_demarches_administratives|social_sante|argent_impots"
