"""What a feature's subcommands need of `allervers` without importing firmware_host/cli.py, which imports them.

A module that adds subcommands (the console's, doctor, the office app, the kiosk's) exports ``COMMANDS``, a list
of (name, help, add_arguments, run) entries: cli.py reads it when it builds its parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from . import config as config_mod

EXIT_CONFIG = 2  # a config or schedule problem, named on stderr
EXIT_UNREACHABLE = 3  # the controller's socket did not answer

Subcommand = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def load_config(args: argparse.Namespace) -> config_mod.Config:
    """The config ``-c`` names, else $ALLERVERS_CONFIG, else the system's, else the built-in defaults."""
    return config_mod.load(args.config)
