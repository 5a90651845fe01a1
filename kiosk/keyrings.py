"""The session user's kernel keyrings, emptied by one of its own processes (root cannot reach another user's @u).

A visitor's process can put keys in its user keyring (@u), its user session keyring (@us) and its persistent
keyring: they outlive every process, so the next visitor (same user) could read them. The session host (unit mode)
empties them in-process at the end of a session and before starting a browser; the direct-mode wipe runs
``WIPE_SCRIPT`` as the session user (a shell and keyutils' keyctl start in milliseconds, a Python in tens).
"""

from __future__ import annotations

import ctypes
import errno
import os

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


# Run as the session user, in a session keyring of its own (``keyctl session - /bin/sh -c``: the one it would inherit
# is its parent's, root's, where it may not link the persistent keyring): kill(-1) every other process of the user,
# in one kernel walk that a fork loop cannot outrun, empty the keyrings, then print "<keyring> <keys left>" lines.
WIPE_SCRIPT = """
kill -9 -1 2>/dev/null
persistent=$(keyctl get_persistent @s 2>/dev/null) || persistent=
for ring in $persistent @u @us; do keyctl clear "$ring" || exit 3; done
for ring in @u @us $persistent; do
  ids=$(keyctl rlist "$ring") || exit 3
  set -- $ids
  [ "$ring" = "$persistent" ] && ring=persistent
  echo "$ring $#"
done
"""


def parse_wipe_output(out: str) -> dict[str, int]:
    """``WIPE_SCRIPT``'s lines as {keyring: keys left}; ValueError if they are not that."""
    counts = {}
    for line in out.splitlines():
        name, count = line.split()
        counts[name] = int(count)
    if not {"@u", "@us"} <= set(counts):
        raise ValueError(f"no count for @u and @us in {out!r}")
    return counts
