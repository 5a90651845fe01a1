"""Tour schedules: TOML and CSV, weekly rota and dated stops, every bad row named and the good ones kept."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_host.tour import TourError, load_tour, parse_csv, parse_toml, unscheduled_stop

ROOT = Path(__file__).resolve().parents[2]
HEADER = "date,commune,insee,place,arrive,depart,contact\n"


def test_the_shipped_examples_load_and_agree() -> None:
    toml = load_tour(ROOT / "config" / "tour.toml")
    csv = load_tour(ROOT / "config" / "tour.csv")
    assert toml.errors == [] and csv.errors == []
    assert len(toml.stops) == len(csv.stops) == 11
    strip = [{k: v for k, v in s.as_dict().items() if k != "row"} for s in toml.stops]
    assert strip == [{k: v for k, v in s.as_dict().items() if k != "row"} for s in csv.stops]


def test_weekly_rota_and_dated_days() -> None:
    tour = load_tour(ROOT / "config" / "tour.toml")
    tuesday = tour.on(dt.date(2026, 6, 2))
    assert [(s.commune, s.arrive, s.depart) for s in tuesday] == [
        ("Menat", dt.time(9), dt.time(12)),
        ("Manzat", dt.time(14), dt.time(17)),
    ]
    assert tuesday[0].key == "2026-06-02/63223/0900"
    assert tour.find("2026-06-02/63223/0900") == tuesday[0]
    assert tour.find("2026-06-09/63223/0900").date == dt.date(2026, 6, 9)  # every Tuesday
    assert tour.find("2026-06-03/63223/0900") is None  # not on a Wednesday
    assert tour.find("mardi/63223/0900") is None
    fair = tour.on(dt.date(2026, 6, 1))  # a Monday with a dated stop: the rota does not apply
    assert [(s.place, s.arrive) for s in fair] == [("Champ de foire", dt.time(8, 30))]
    assert [s.commune for s in tour.on(dt.date(2026, 6, 8))] == ["Pionsat", "Montaigut"]
    assert tour.on(dt.date(2026, 6, 6)) == []  # Saturday


def test_bad_csv_rows_are_named_and_the_rest_loads() -> None:
    text = (
        "# comment lines and blank lines are skipped but counted\n"
        + HEADER
        + "2026-06-02,Menat,63223,Église,09:00,12:00,Mairie\n"
        + "\n"
        + "2026-06-02,Manzat,6320,Marché,14:00,17:00,Mairie\n"
        + "2026-13-02,Giat,63165,Mairie,09:00,12:00,\n"
        + "2026-06-03,Giat,63165,Mairie,12:00,09:00,\n"
        + "2026-06-03,,63165,Mairie,13:00,15:00,\n"
        + "2026-06-03,Giat,63165,Mairie,25h00,26h00,\n"
        + "2026-06-04,Giat,63165,Mairie,9h,12h,\n"
        + "2026-06-05,Giat,63165,Mairie,09:00,12:00,x,extra\n"
        + "2026-06-04,Menat,63223,Église,11:00,13:00,\n"
    )
    tour = parse_csv(text, "tour.csv")
    assert [(s.commune, s.date.isoformat()) for s in tour.stops] == [("Menat", "2026-06-02"), ("Giat", "2026-06-04")]
    assert tour.errors == [
        "tour.csv: row 5: insee: must be an INSEE commune code of 5 characters (e.g. 17369, 2A004), got '6320'",
        "tour.csv: row 6: date: must be a date like 2025-03-14 or 14/03/2025, or a weekday like mardi, "
        "got '2026-13-02'",
        "tour.csv: row 7: depart: must be after arrive (09:00 is not after 12:00)",
        "tour.csv: row 8: commune: is required",
        "tour.csv: row 9: arrive: is not a time of day: '25h00'",
        "tour.csv: row 11: 8 cells for 7 columns (a ',' inside a cell needs quotes)",
        "tour.csv: row 12: arrive: 11:00 overlaps row 10 (Giat, 09:00-12:00) the same day",
    ]


def test_french_spreadsheet_export() -> None:
    text = (
        "\ufeffDate;Commune;Code INSEE;Lieu;Arrivée;Départ;Contact mairie\n"
        '14/03/2026;Ajaccio;2a004;"Place Foch; côté mer";9h30;12h;Mme Rossi\n'
        "mardi;Bourg-en-Bresse;1053;Champ de foire;14h00;17h00;\n"
    )
    tour = parse_csv(text, "tournee.csv")
    assert tour.errors == [
        "tournee.csv: row 3: insee: must be an INSEE commune code of 5 characters (e.g. 17369, 2A004), got '1053'"
    ]
    (stop,) = tour.stops
    assert (stop.insee, stop.place, stop.arrive, stop.depart) == (
        "2A004",
        "Place Foch; côté mer",
        dt.time(9, 30),
        dt.time(12),
    )
    assert stop.date == dt.date(2026, 3, 14)


def test_toml_entries_are_named_by_number_and_commune() -> None:
    text = """
[[stop]]
date = 2026-06-02
commune = "Menat"
insee = 63223
place = "Église"
arrive = "09:00"
depart = "12:00"

[[stop]]
date = "jeudi"
commune = "Bourg"
insee = 1053            # an integer loses the leading zero of 01053: restored
arrive = "09:00"
depart = "12:00"

[[stop]]
date = "2026-06-02T09:00:00"
commune = "Giat"
insee = "63165"
arrive = "14:00"
depart = "17:00"

[[stop]]
commune = "Manzat"
insee = "63206"
arrive = "14:00"
depart = "17:00"
mayor = "M. Dupont"
"""
    tour = parse_toml(text, "tour.toml")
    assert [s.commune for s in tour.stops] == ["Menat", "Bourg"]
    assert tour.stops[1].insee == "01053" and tour.stops[1].weekday == 3
    assert tour.errors == [
        "tour.toml: stop 3 (Giat): date: must be a date like 2025-03-14 or 14/03/2025, or a weekday like mardi, "
        "got '2026-06-02T09:00:00'",
        "tour.toml: stop 4 (Manzat): unknown key(s) mayor "
        "(known: date, commune, insee, place, arrive, depart, contact, postcode)",
    ]


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        ("tour.toml", b"[[stop]\n", "tour.toml: TOML syntax error"),
        ("tour.toml", b"[stops]\n", "tour.toml: unknown key(s) stops"),
        ("tour.toml", b"stop = 3\n", "tour.toml: stop: must be an array of tables"),
        ("tour.csv", b"date,commune\n", "tour.csv: row 1: header lacks insee, arrive, depart"),
        ("tour.csv", b"date,date,commune,insee,arrive,depart\n", "column(s) date appear twice"),
        ("tour.csv", b"# nothing\n\n", "tour.csv: empty schedule"),
        ("tour.csv", b'date,commune,insee,arrive,depart\n"2026-06-02,Menat', "tour.csv: row 2: unexpected end of data"),
        ("tour.csv", "commune\nSaint-Éloy\n".encode("latin-1"), "tour.csv: not UTF-8 text (byte 14)"),
        ("tour.xlsx", b"PK\x03\x04", "tour.xlsx: unknown schedule format (use a .toml or .csv file)"),
        ("tour.csv", b"x" * 1_000_001, "tour.csv: too large for a schedule"),
    ],
)
def test_unusable_files_raise_naming_the_file(tmp_path: Path, name: str, data: bytes, problem: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(TourError) as err:
        load_tour(path)
    assert problem in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TourError, match=r"tour.toml: cannot read .*: No such file or directory"):
        load_tour(tmp_path / "tour.toml")


def test_unscheduled_stop_typed_by_the_driver() -> None:
    day = dt.date(2026, 6, 2)
    stop = unscheduled_stop({"commune": " Saint-Gervais-d'Auvergne ", "place": "Marché"}, day)
    assert stop.tag() == {
        "key": "2026-06-02/saint-gervais-d-auvergne/hors-planning",
        "date": "2026-06-02",
        "commune": "Saint-Gervais-d'Auvergne",
        "insee": None,
        "place": "Marché",
        "scheduled": False,
    }
    assert unscheduled_stop({"commune": "Menat", "insee": "63223"}, day).key == "2026-06-02/63223/hors-planning"
    with pytest.raises(ValueError, match="commune: is required"):
        unscheduled_stop({"place": "x"}, day)
    with pytest.raises(ValueError, match="stop: unknown field"):
        unscheduled_stop({"commune": "x", "date": "2020-01-01"}, day)


cells = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from(["2026-06-02", "mardi", "14/03/2026", "63223", "2A004", "09:00", "9h30", "12:00", "", '"a;b"']),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(cells, min_size=0, max_size=9), max_size=8), st.sampled_from([",", ";"]))
def test_fuzzed_csv_never_breaks_the_loader(rows: list[list[str]], sep: str) -> None:
    text = HEADER.replace(",", sep) + "\n".join(sep.join(r) for r in rows)
    try:
        tour = parse_csv(text, "fuzz.csv")
    except TourError as exc:
        assert str(exc).startswith("fuzz.csv: ")
        return
    for problem in tour.errors:
        assert problem.startswith("fuzz.csv: row ")
    for stop in tour.stops:
        assert stop.commune and stop.insee and stop.arrive < stop.depart


def test_tour_check_command(tmp_path: Path) -> None:
    bad = tmp_path / "tour.csv"
    bad.write_text(HEADER + "2026-06-02,Menat,63223,Église,09:00,12:00,\n2026-06-02,Manzat,632,x,14:00,17:00,\n")
    cli = [str(Path(sys.executable).parent / "allervers"), "tour"]
    out = subprocess.run([*cli, str(ROOT / "config" / "tour.toml")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "tour.toml: 11 stops" in out.stdout and "mardi" in out.stdout
    out = subprocess.run([*cli, str(bad), "--date", "2026-06-02"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert "tour.csv: row 3: insee: must be an INSEE commune code" in out.stderr
    assert "09:00-12:00  Menat (63223)" in out.stdout
    out = subprocess.run([*cli, str(tmp_path / "none.toml")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "none.toml: cannot read" in out.stderr
