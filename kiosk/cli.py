"""`allervers kiosk` (the launcher) and `allervers report` (anonymous statistics): the COMMANDS cli.py loads late."""

from __future__ import annotations

import argparse

from firmware_host.subcommands import Subcommand, load_config


def _kiosk_arguments(parser: argparse.ArgumentParser) -> None:
    # Defined here, not in the launcher: building the parser must not import Textual for every subcommand.
    parser.add_argument("--lang", choices=("fr", "en"), default="fr", help="the language each visitor starts in")


def _kiosk_run(args: argparse.Namespace) -> int:
    from .launcher.app import run

    return run(args)


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    from .stats import add_arguments

    add_arguments(parser)


def _report_run(args: argparse.Namespace) -> int:
    from .stats import run

    return run(args, load_config(args))


COMMANDS: list[Subcommand] = [
    ("kiosk", "the public terminal's launcher (touch screen), on the kiosk socket", _kiosk_arguments, _kiosk_run),
    ("report", "anonymous public-terminal statistics: sessions, pages, satisfaction", _report_arguments, _report_run),
]
