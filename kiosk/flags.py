"""The terminal's crash-safe flags: open, locked and why, the stop, and the wipe intent a power cut must not lose.

Kept as JSON values in the store's ``kiosk`` meta namespace (firmware_host/store.py), read at start-up by the
session manager (kiosk/session.py), which wipes again a session whose intent is still there.
"""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from firmware_host import store

NAMESPACE = "kiosk"


def read(db: sqlite_utils.Database) -> dict[str, Any]:
    """Every flag, decoded (on the store's writer thread: ``Store.run``)."""
    return {k: json.loads(v) for k, v in store.read_meta(db, NAMESPACE).items()}


def write(db: sqlite_utils.Database, values: dict[str, Any], delete: tuple[str, ...] = ()) -> None:
    """Set and delete flags in one transaction (each call is one fsync: callers write only on change)."""
    conn = db.conn
    conn.execute("BEGIN")
    try:
        write_in(db, values, delete)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def write_in(db: sqlite_utils.Database, values: dict[str, Any], delete: tuple[str, ...] = ()) -> None:
    """Set and delete flags inside the caller's transaction (a session's statistics row and its intent's end)."""
    encoded = {key: json.dumps(value, ensure_ascii=False) for key, value in values.items()}
    store.write_meta(db, NAMESPACE, encoded, delete)
