"""The session user's kernel keyrings, emptied by one of its own processes (root cannot reach another user's @u).

A visitor's process can put keys in its user keyring (@u), its user session keyring (@us) and its persistent
keyring: they outlive every process, so the next visitor (same user) could read them. The session host (unit mode)
and the wipe's helper run as the visitor (direct mode) run this at the end of a session, and the host again before
starting a browser. Standard library only: the wipe runs this file's text with the system Python (``-I -S``), which
may not see the controller's virtual environment.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import signal
import sys

KEY_SPEC_SESSION_KEYRING = -3
KEY_SPEC_USER_KEYRING = -4
KEY_SPEC_USER_SESSION_KEYRING = -5
LIBRARY = "libkeyutils.so.1"  # Debian package libkeyutils1 (pulled by keyutils)


class KeyringError(OSError):
    """The keyrings could not be read or emptied (names the call)."""


def _library() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(LIBRARY, use_errno=True)
    except OSError as exc:
        raise KeyringError(f"{LIBRARY}: {exc} (apt-get install keyutils)") from None
    lib.keyctl_clear.argtypes = [ctypes.c_int32]
    lib.keyctl_read.argtypes = [ctypes.c_int32, ctypes.c_char_p, ctypes.c_size_t]
    lib.keyctl_read.restype = ctypes.c_long
    lib.keyctl_get_persistent.argtypes = [ctypes.c_int, ctypes.c_int32]
    lib.keyctl_get_persistent.restype = ctypes.c_long
    return lib


def _keyrings(lib: ctypes.CDLL) -> dict[str, int]:
    rings = {"@u": KEY_SPEC_USER_KEYRING, "@us": KEY_SPEC_USER_SESSION_KEYRING}
    persistent = lib.keyctl_get_persistent(-1, KEY_SPEC_SESSION_KEYRING)
    if persistent >= 0:
        rings["persistent"] = persistent
    elif ctypes.get_errno() not in (errno.EOPNOTSUPP, errno.ENOSYS):  # a kernel without persistent keyrings
        raise KeyringError(f"keyctl_get_persistent: {os.strerror(ctypes.get_errno())}")
    return rings


def empty_keyrings() -> dict[str, int]:
    """Unlink every key from the caller's user keyrings; returns how many keys each still holds (all 0 if done)."""
    lib = _library()
    rings = _keyrings(lib)
    # Possessed through the session keyring it is linked to (in a unit with KeyringMode=private, a keyring of
    # its own), which write access to it needs. @us last: outside a unit it is that session keyring.
    for name in sorted(rings, key=lambda n: n == "@us"):
        if lib.keyctl_clear(rings[name]) < 0:
            raise KeyringError(f"keyctl_clear {name}: {os.strerror(ctypes.get_errno())}")
    return count_keys(lib, rings)


def count_keys(lib: ctypes.CDLL | None = None, rings: dict[str, int] | None = None) -> dict[str, int]:
    """How many keys each of the caller's user keyrings holds (a keyring reads as a list of 4-byte key ids)."""
    lib = lib or _library()
    counts = {}
    for name, ring in (rings or {"@u": KEY_SPEC_USER_KEYRING, "@us": KEY_SPEC_USER_SESSION_KEYRING}).items():
        size = lib.keyctl_read(ring, None, 0)
        if size < 0:
            raise KeyringError(f"keyctl_read {name}: {os.strerror(ctypes.get_errno())}")
        counts[name] = size // 4
    return counts


def main() -> None:
    """Run as the session user by the wipe: kill every other process of the user, empty its keyrings, and print
    what is left as one JSON line (``{"keys": {...}}`` or ``{"error": ...}``)."""
    # kill(-1) reaches all of the user's processes in one kernel walk, which a fork loop cannot outrun.
    with contextlib.suppress(ProcessLookupError):
        os.kill(-1, signal.SIGKILL)
    try:
        report: dict[str, object] = {"keys": empty_keyrings()}
    except OSError as exc:
        report = {"error": str(exc)}
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
