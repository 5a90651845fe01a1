"""The driver's subcommands: `allervers console` (the Textual app) and `allervers tour` (check a schedule file)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from ..subcommands import EXIT_CONFIG, Subcommand, load_config
from ..tour import WEEKDAY_NAMES_FR, Stop, TourError, load_tour


def _console_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--language", choices=("fr", "en"), help="start in this language (default: [console] language)")


def run_console(args: argparse.Namespace) -> int:
    from .app import main

    return main(load_config(args), language=args.language)


def _tour_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", help="a .toml or .csv schedule (default: [checklist] schedule of the config)")
    p.add_argument("--date", help="list the stops of this day (YYYY-MM-DD) as the console will show them")


def _line(stop: Stop) -> str:
    hours = f"{stop.arrive:%H:%M}-{stop.depart:%H:%M}" if stop.arrive and stop.depart else "--:--"
    where = f", {stop.place}" if stop.place else ""
    return f"{hours}  {stop.commune} ({stop.insee}){where}"


def run_tour(args: argparse.Namespace) -> int:
    path = args.file
    if path is None:
        cfg = load_config(args)
        path = cfg.checklist.schedule if cfg.checklist is not None else None
        if path is None:
            print(f"{cfg.source}: checklist.schedule: no schedule configured (give a file)", file=sys.stderr)
            return EXIT_CONFIG
    try:
        tour = load_tour(path)
    except TourError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    weekly = sum(1 for s in tour.stops if s.weekday is not None)
    print(f"{tour.source}: {len(tour.stops)} stops ({weekly} weekly, {len(tour.stops) - weekly} dated)")
    if args.date:
        try:
            day = dt.date.fromisoformat(args.date)
        except ValueError:
            print(f"--date: must be YYYY-MM-DD, got {args.date!r}", file=sys.stderr)
            return EXIT_CONFIG
        print(f"{day.isoformat()} ({WEEKDAY_NAMES_FR[day.weekday()]}):")
        for stop in tour.on(day):
            print(f"  {_line(stop)}")
    else:
        for stop in tour.stops:
            print(f"  {stop.day_label:<10} {_line(stop)}")
    for problem in tour.errors:
        print(problem, file=sys.stderr)
    return EXIT_CONFIG if tour.errors else 0


COMMANDS: list[Subcommand] = [
    ("console", "the driver's console: stops, checklists, interlocks", _console_arguments, run_console),
    ("tour", "check a tour schedule file and list its stops (exit 2 if a row is bad)", _tour_arguments, run_tour),
]
