"""The day's stops: parse the tour schedule (TOML or CSV), every bad row reported by its number and left out.

A schedule lists, per stop: date, commune, INSEE code, place, arrival and departure times, the town-hall
contact and, optionally, the postal code (for the national map of mediation places).
TOML (``[[stop]]`` tables) suits hand editing; CSV suits the association's spreadsheet (comma or
semicolon separated, UTF-8, French or English headers, dates as 2025-03-14 or 14/03/2025, times as 09:30 or 9h30).
Most tours are a weekly rota ("le mardi matin à Pionsat"): ``date`` may also be a weekday (``mardi``/``tuesday``),
meaning every such day; a day that has dated stops uses those instead of the weekly rota (holidays, exceptions).

A bad row does not cost the driver the whole day: it is left out and reported as
``tour.csv: row 4: insee: must be 5 characters ...`` while the good rows load; only a file that cannot be read at
all (missing, not UTF-8, TOML syntax, no header) raises ``TourError``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

MAX_BYTES = 1_000_000  # a year of stops is a few tens of kB; a bigger file is a mistake (a photo, a database)
MAX_STOPS = 5000
INSEE_RE = re.compile(r"(?:\d{5}|2[AB]\d{3})")  # 5 digits; Corsica's departments are 2A and 2B
POSTCODE_RE = re.compile(r"\d{5}")
FIELDS = ("date", "commune", "insee", "place", "arrive", "depart", "contact", "postcode")
REQUIRED = ("date", "commune", "insee", "arrive", "depart")

# Spreadsheet headers seen in the field, folded to lower case without accents or punctuation.
HEADER_ALIASES = {
    "date": "date",
    "jour": "date",
    "commune": "commune",
    "ville": "commune",
    "insee": "insee",
    "code insee": "insee",
    "code commune": "insee",
    "place": "place",
    "lieu": "place",
    "emplacement": "place",
    "arrive": "arrive",
    "arrival": "arrive",
    "arrivee": "arrive",
    "heure d arrivee": "arrive",
    "depart": "depart",
    "departure": "depart",
    "heure de depart": "depart",
    "contact": "contact",
    "contact mairie": "contact",
    "mairie": "contact",
    "postcode": "postcode",
    "code postal": "postcode",
    "cp": "postcode",
}


class TourError(ValueError):
    """The schedule file as a whole cannot be used (names the file and the problem)."""


WEEKDAYS = {
    "lundi": 0,
    "monday": 0,
    "mardi": 1,
    "tuesday": 1,
    "mercredi": 2,
    "wednesday": 2,
    "jeudi": 3,
    "thursday": 3,
    "vendredi": 4,
    "friday": 4,
    "samedi": 5,
    "saturday": 5,
    "dimanche": 6,
    "sunday": 6,
}
WEEKDAY_NAMES_FR = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")


@dataclass(frozen=True)
class Stop:
    """One stop of the tour. ``key`` is stable across reloads (date, INSEE code, arrival time).

    A weekly stop has ``weekday`` set and no ``date`` until ``Tour.on(day)`` places it on a given day.
    """

    date: dt.date | None
    commune: str
    insee: str | None
    place: str = ""
    arrive: dt.time | None = None
    depart: dt.time | None = None
    contact: str = ""
    row: int | None = None  # where it came from in the file, for messages
    scheduled: bool = True
    weekday: int | None = None  # 0 = Monday, for a weekly stop
    postcode: str | None = None  # only the national map of mediation places needs it (allervers report)

    @property
    def day_label(self) -> str:
        if self.date is not None:
            return self.date.isoformat()
        return WEEKDAY_NAMES_FR[self.weekday or 0]

    @property
    def key(self) -> str:
        if not self.scheduled:
            return f"{self.day_label}/{self.insee or slug(self.commune)}/hors-planning"
        arrive = self.arrive.strftime("%H%M") if self.arrive else "----"
        return f"{self.day_label}/{self.insee}/{arrive}"

    @staticmethod
    def insee_of_key(key: str) -> str | None:
        """The INSEE code a ``key`` carries (the statistics keep the key), or None for a stop typed without one."""
        parts = key.split("/")
        if len(parts) == 3 and INSEE_RE.fullmatch(parts[1]):
            return parts[1]
        return None

    def tag(self) -> dict[str, Any]:
        """What tags events, the state and the kiosk statistics. The contact (a person) stays off it."""
        return {
            "key": self.key,
            "date": self.day_label,
            "commune": self.commune,
            "insee": self.insee,
            "place": self.place,
            "scheduled": self.scheduled,
        }

    def as_dict(self) -> dict[str, Any]:
        """Everything, for the driver's console (contact included)."""
        return {
            **self.tag(),
            "arrive": self.arrive.strftime("%H:%M") if self.arrive else None,
            "depart": self.depart.strftime("%H:%M") if self.depart else None,
            "contact": self.contact,
            "row": self.row,
        }


@dataclass
class Tour:
    """The parsed schedule: good stops in date and time order, and one message per bad row."""

    source: str
    stops: list[Stop] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def on(self, day: dt.date) -> list[Stop]:
        """The stops of ``day``: its dated stops if it has any, else the weekly rota for its weekday."""
        dated = [s for s in self.stops if s.date == day]
        if dated:
            return dated
        return [replace(s, date=day) for s in self.stops if s.weekday == day.weekday()]

    def find(self, key: str) -> Stop | None:
        """The stop with this key (keys carry their date, so weekly stops are found on their day)."""
        try:
            day = dt.date.fromisoformat(key.split("/", 1)[0])
        except ValueError:
            return None
        return next((s for s in self.on(day) if s.key == key), None)

    @property
    def weekly(self) -> bool:
        return any(s.weekday is not None for s in self.stops)


# --- values -------------------------------------------------------------------------------------------------


class _RowError(ValueError):
    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")


def _text(value: Any, key: str, *, required: bool, max_len: int = 120) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise _RowError(key, f"must be text, got {value!r}")
    text = " ".join(value.split())
    if required and not text:
        raise _RowError(key, "is required")
    if len(text) > max_len:
        raise _RowError(key, f"too long ({len(text)} characters, at most {max_len})")
    return text


def parse_day(value: Any, key: str = "date") -> tuple[dt.date | None, int | None]:
    """A date, or a weekday name for a weekly stop: returns (date, None) or (None, weekday)."""
    if isinstance(value, str) and _fold(value) in WEEKDAYS:
        return None, WEEKDAYS[_fold(value)]
    try:
        return parse_date(value, key), None
    except _RowError:
        raise _RowError(
            key, f"must be a date like 2025-03-14 or 14/03/2025, or a weekday like mardi, got {value!r}"
        ) from None


def parse_date(value: Any, key: str = "date") -> dt.date:
    if isinstance(value, dt.datetime):
        raise _RowError(key, f"must be a date without a time, got {value.isoformat()}")
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str) or not value.strip():
        raise _RowError(key, "is required (2025-03-14 or 14/03/2025)")
    text = value.strip()
    for fmt in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise _RowError(key, f"must be a date like 2025-03-14 or 14/03/2025, got {text!r}")


def parse_time(value: Any, key: str) -> dt.time:
    if isinstance(value, dt.time):
        return value.replace(second=0, microsecond=0)
    if not isinstance(value, str) or not value.strip():
        raise _RowError(key, "is required (09:30 or 9h30)")
    text = value.strip().lower()
    m = re.fullmatch(r"(\d{1,2})\s*[:h]\s*(\d{2})?", text)
    if m is None:
        raise _RowError(key, f"must be a time like 09:30 or 9h30, got {value.strip()!r}")
    hours, minutes = int(m.group(1)), int(m.group(2) or 0)
    if hours > 23 or minutes > 59:
        raise _RowError(key, f"is not a time of day: {value.strip()!r}")
    return dt.time(hours, minutes)


def parse_insee(value: Any, key: str = "insee", *, required: bool = True) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        # A spreadsheet or a TOML integer drops the leading zero of Ain (01...) to Ardèche (07...).
        value = f"{value:05d}"
    text = _text(value, key, required=required, max_len=10).upper()
    if not text:
        return None
    if not INSEE_RE.fullmatch(text):
        raise _RowError(key, f"must be an INSEE commune code of 5 characters (e.g. 17369, 2A004), got {text!r}")
    return text


def parse_postcode(value: Any, key: str = "postcode") -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"{value:05d}"  # as for INSEE codes: a spreadsheet drops the leading zero
    text = _text(value, key, required=False, max_len=10)
    if not text:
        return None
    if not POSTCODE_RE.fullmatch(text):
        raise _RowError(key, f"must be a postal code of 5 digits (e.g. 63330), got {text!r}")
    return text


def make_stop(values: dict[str, Any], row: int | None, *, scheduled: bool = True) -> Stop:
    """Validate one row's values into a Stop; raises ValueError ``<key>: <problem>``."""
    day, weekday = parse_day(values.get("date")) if scheduled else (parse_date(values.get("date")), None)
    commune = _text(values.get("commune"), "commune", required=True)
    insee = parse_insee(values.get("insee"), required=scheduled)
    place = _text(values.get("place"), "place", required=False)
    contact = _text(values.get("contact"), "contact", required=False, max_len=200)
    postcode = parse_postcode(values.get("postcode"))
    arrive = depart = None
    if scheduled or values.get("arrive") not in (None, ""):
        arrive = parse_time(values.get("arrive"), "arrive")
    if scheduled or values.get("depart") not in (None, ""):
        depart = parse_time(values.get("depart"), "depart")
    if arrive is not None and depart is not None and depart <= arrive:
        raise _RowError("depart", f"must be after arrive ({depart:%H:%M} is not after {arrive:%H:%M})")
    return Stop(day, commune, insee, place, arrive, depart, contact, row, scheduled, weekday, postcode)


def unscheduled_stop(values: dict[str, Any], today: dt.date) -> Stop:
    """A stop the driver typed in (not in the schedule): commune required, INSEE code and place optional."""
    if not isinstance(values, dict):
        raise ValueError("stop: must be a schedule key or an object {commune, insee, place}")
    unknown = sorted(set(values) - {"commune", "insee", "place"})
    if unknown:
        raise ValueError(f"stop: unknown field(s) {', '.join(unknown)} (known: commune, insee, place)")
    return make_stop({**values, "date": today}, None, scheduled=False)


def slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", folded).strip("-")[:40] or "arret"


def _fold(header: str) -> str:
    folded = unicodedata.normalize("NFKD", header).encode("ascii", "ignore").decode().lower()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", folded).split())


# --- files ------------------------------------------------------------------------------------------------------


def load_tour(path: str | os.PathLike) -> Tour:
    """Read a schedule (``.toml`` or ``.csv``); bad rows go to ``Tour.errors``, unreadable files raise TourError."""
    p = Path(path)
    name = p.name
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise TourError(f"{name}: cannot read {p}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise TourError(f"{name}: too large for a schedule ({len(data)} bytes, at most {MAX_BYTES})")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TourError(f"{name}: not UTF-8 text (byte {exc.start}); save the spreadsheet as 'CSV UTF-8'") from None
    if p.suffix.lower() == ".toml":
        return parse_toml(text, name)
    if p.suffix.lower() == ".csv":
        return parse_csv(text, name)
    raise TourError(f"{name}: unknown schedule format (use a .toml or .csv file)")


def parse_toml(text: str, name: str = "tour.toml") -> Tour:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TourError(f"{name}: TOML syntax error: {exc}") from None
    unknown = sorted(set(raw) - {"stop"})
    if unknown:
        raise TourError(f"{name}: unknown key(s) {', '.join(unknown)} (a schedule is a list of [[stop]] tables)")
    entries = raw.get("stop", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise TourError(f"{name}: stop: must be an array of tables ([[stop]])")
    tour = Tour(name)
    for number, entry in enumerate(entries, start=1):
        where = f"{name}: stop {number}" + (f" ({entry['commune']})" if isinstance(entry.get("commune"), str) else "")
        extra = sorted(set(entry) - set(FIELDS))
        if extra:
            tour.errors.append(f"{where}: unknown key(s) {', '.join(extra)} (known: {', '.join(FIELDS)})")
            continue
        try:
            tour.stops.append(make_stop(entry, number))
        except ValueError as exc:
            tour.errors.append(f"{where}: {exc}")
    return _finish(tour, "stop")


def parse_csv(text: str, name: str = "tour.csv") -> Tour:
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # Windows and old Mac line ends alike
    lines = text.splitlines()
    first = next((line for line in lines if line.strip() and not line.lstrip().startswith("#")), None)
    if first is None:
        raise TourError(f"{name}: empty schedule (expected a header line: {','.join(FIELDS)})")
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, strict=True)
    tour = Tour(name)
    columns: list[str | None] | None = None
    for row in _rows(reader, name):
        line = reader.line_num
        if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        if columns is None:
            columns = [HEADER_ALIASES.get(_fold(h)) for h in row]
            missing = [f for f in REQUIRED if f not in columns]
            if missing:
                raise TourError(
                    f"{name}: row {line}: header lacks {', '.join(missing)} "
                    f"(expected columns: {', '.join(FIELDS)}; got {', '.join(h.strip() for h in row)})"
                )
            seen = [c for c in columns if c is not None]
            doubled = sorted({c for c in seen if seen.count(c) > 1})
            if doubled:
                raise TourError(f"{name}: row {line}: column(s) {', '.join(doubled)} appear twice in the header")
            continue
        if len(row) > len(columns) and any(cell.strip() for cell in row[len(columns) :]):
            tour.errors.append(
                f"{name}: row {line}: {len(row)} cells for {len(columns)} columns "
                f"(a {delimiter!r} inside a cell needs quotes)"
            )
            continue
        values = {col: cell for col, cell in zip(columns, row, strict=False) if col is not None}
        try:
            tour.stops.append(make_stop(values, line))
        except ValueError as exc:
            tour.errors.append(f"{name}: row {line}: {exc}")
        if len(tour.stops) > MAX_STOPS:
            raise TourError(f"{name}: more than {MAX_STOPS} stops")
    if columns is None:
        raise TourError(f"{name}: empty schedule (expected a header line: {','.join(FIELDS)})")
    return _finish(tour, "row")


def _rows(reader: Any, name: str) -> Any:
    try:
        yield from reader
    except csv.Error as exc:  # e.g. a quote opened and never closed: the rest of the file cannot be split
        raise TourError(f"{name}: row {reader.line_num}: {exc}") from None


def _finish(tour: Tour, unit: str) -> Tour:
    """Order by date and time, and refuse a stop that overlaps an earlier one the same day (one bus, one place)."""

    def day_order(s: Stop) -> tuple[int, dt.date, int]:
        return (0, s.date, 0) if s.date is not None else (1, dt.date.min, s.weekday or 0)

    ordered = sorted(tour.stops, key=lambda s: (day_order(s), s.arrive or dt.time.min, s.row or 0))
    kept: list[Stop] = []
    for stop in ordered:
        clash = next(
            (
                k
                for k in kept
                if (k.date, k.weekday) == (stop.date, stop.weekday)
                and k.arrive is not None
                and k.depart is not None
                and stop.arrive is not None
                and stop.arrive < k.depart
            ),
            None,
        )
        if clash is not None:
            tour.errors.append(
                f"{tour.source}: {unit} {stop.row}: arrive: {stop.arrive:%H:%M} overlaps {unit} {clash.row} "
                f"({clash.commune}, {clash.arrive:%H:%M}-{clash.depart:%H:%M}) the same day"
            )
            continue
        kept.append(stop)
    tour.stops = kept
    return tour
