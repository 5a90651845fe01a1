#!/usr/bin/python3
"""A hostile "browser" for the kiosk tests: run as the session user, it plants a secret in every channel that user
can write to, and in the next session it looks for every one of them.

It answers on the DevTools pipe like fake_browser.py, plus two methods the test calls through the controller's pipe:

- ``Test.plant {token, cups}``: plant ``token`` everywhere; answers ``{"planted": [channel...], "refused":
  {channel: why}, "jobs": [CUPS job ids]}``. A refused channel is one the session's sandbox already closes.
- ``Test.look {token, cups, jobs}``: from the next session, try to read each planted thing; answers ``{"found":
  {channel: what was read}}`` (empty: nothing of the previous visitor survived).

Channels: files (with a FIFO, a socket, a hard link, a name with a newline, a file linked in through
/proc/self/fd, a folder 1,200 levels deep, a file filling a tmpfs) in every shared folder and in the home; System V
shared memory, message queue and semaphores; a POSIX message queue; the user's keyrings; cron and at jobs; held
print jobs under another user's name, on two queues; a process escaped by setsid and a double fork, serving the
secret on an abstract socket.
"""

import contextlib
import ctypes
import errno
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_browser import serve

SHARED = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock", "/run", "/dev/mqueue")
NAME = "akt-planted"
IPC_KEY = 0x414B5400 + (os.getuid() & 0xFF)  # one key per test user: two checkouts never meet
IPC_CREAT, IPC_NOWAIT = 0o1000, 0o4000
KEY_SPEC_SESSION, KEY_SPEC_USER = -3, -4
DEPTH = 1200
BIG_MB = 64
ENV = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/")}

libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
keyutils = ctypes.CDLL("libkeyutils.so.1", use_errno=True)
keyutils.add_key.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int32]
keyutils.keyctl_search.argtypes = [ctypes.c_int32, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int32]
keyutils.keyctl_get_persistent.argtypes = [ctypes.c_int, ctypes.c_int32]
keyutils.keyctl_get_persistent.restype = ctypes.c_long
keyutils.keyctl_join_session_keyring.argtypes = [ctypes.c_char_p]


class MsgBuf(ctypes.Structure):
    _fields_ = [("mtype", ctypes.c_long), ("mtext", ctypes.c_char * 128)]


def _check(value: int, what: str) -> int:
    if value < 0 or value == ctypes.c_void_p(-1).value:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")
    return value


def _run(argv: list[str], stdin: str = "") -> str:
    out = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=ENV, timeout=20)
    if out.returncode != 0:
        raise OSError(f"{' '.join(argv)}: exit {out.returncode}: {(out.stderr or out.stdout).strip()[:200]}")
    return out.stdout


def _cups(server: str) -> object:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from kiosk.printing import Cups

    return Cups(server, user=os.environ.get("USER", "visitor"))


# --- planting ---------------------------------------------------------------------------------------------------


def plant_files(token: str, folder: str) -> None:
    base = os.path.join(folder, NAME + folder.replace("/", "_"))  # /var/lock is /run/lock: names differ
    with open(base, "w") as f:
        f.write(token)
    with open(f"{base}-new\nline", "w") as f:
        f.write(token)
    os.link(base, f"{base}-hardlink")
    os.mkfifo(f"{base}-fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(f"{base}-socket")
    sock.close()
    os.symlink("/etc/hostname", f"{base}-symlink")
    # An unnamed file given a name through /proc/self/fd.
    fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o600)
    os.write(fd, token.encode())
    at_fdcwd, at_symlink_follow = -100, 0x400
    path = f"/proc/self/fd/{fd}".encode()
    _check(libc.linkat(at_fdcwd, path, at_fdcwd, f"{base}-tmpfile".encode(), at_symlink_follow), "linkat")
    os.close(fd)


def plant_deep(token: str, folder: str) -> None:
    """1,200 folders, each name 60 characters long: 72,000 characters of path, far past PATH_MAX."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    os.mkdir(f"{NAME}-deep", dir_fd=fd)
    child = os.open(f"{NAME}-deep", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = child
    for _ in range(DEPTH):
        os.mkdir("d" * 60, dir_fd=fd)
        child = os.open("d" * 60, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    bottom = os.open("secret", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
    os.write(bottom, token.encode())
    os.close(bottom)
    os.close(fd)


def plant_big(folder: str) -> None:
    """Fill the folder's filesystem, up to BIG_MB (the unit's /var/tmp is that size: full)."""
    chunk = b"\0" * (1 << 20)
    with open(os.path.join(folder, f"{NAME}-big"), "wb") as f:
        for _ in range(BIG_MB):
            try:
                f.write(chunk)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    return
                raise


def plant_sysv(token: str) -> None:
    shm = _check(libc.shmget(IPC_KEY, 4096, IPC_CREAT | 0o600), "shmget")
    addr = _check(libc.shmat(shm, None, 0), "shmat")
    ctypes.memmove(addr, token.encode(), len(token))
    msq = _check(libc.msgget(IPC_KEY, IPC_CREAT | 0o600), "msgget")
    buf = MsgBuf(1, token.encode())
    _check(libc.msgsnd(msq, ctypes.byref(buf), len(token), IPC_NOWAIT), "msgsnd")
    _check(libc.semget(IPC_KEY, 1, IPC_CREAT | 0o600), "semget")


def plant_mqueue(token: str) -> None:
    mqd = _check(libc.mq_open(f"/{NAME}".encode(), os.O_CREAT | os.O_RDWR, 0o600, None), "mq_open")
    _check(libc.mq_send(mqd, token.encode(), len(token), 0), "mq_send")


def own_session_keyring() -> None:
    """A session keyring of our own (the one inherited may be the controller's), so the persistent keyring, which
    is linked into it, is ours to use."""
    _check(keyutils.keyctl_join_session_keyring(None), "keyctl_join_session_keyring")


def plant_keys(token: str) -> None:
    data = token.encode()
    _check(keyutils.add_key(b"user", NAME.encode(), data, len(data), KEY_SPEC_USER), "add_key @u")
    own_session_keyring()
    persistent = _check(keyutils.keyctl_get_persistent(-1, KEY_SPEC_SESSION), "keyctl_get_persistent")
    _check(keyutils.add_key(b"user", NAME.encode(), data, len(data), persistent), "add_key persistent")


def plant_daemon(token: str) -> None:
    """setsid and a double fork, then an abstract socket serving the secret: a process that left the browser."""
    code = (
        "import os, socket, sys, time\n"
        "if os.fork(): sys.exit(0)\n"
        "os.setsid()\n"
        "if os.fork(): sys.exit(0)\n"
        f"s = socket.socket(socket.AF_UNIX); s.bind(b'\\0{NAME}-{os.getuid()}'); s.listen()\n"
        f"while True:\n  c, _ = s.accept(); c.sendall({token!r}.encode()); c.close()\n"
    )
    subprocess.run(["/usr/bin/python3", "-c", code], env=ENV, check=True, timeout=10)
    deadline = time.monotonic() + 10
    while read_daemon() is None:
        if time.monotonic() > deadline:
            raise OSError("the escaped process did not start listening")
        time.sleep(0.02)


def plant(params: dict) -> dict:
    token, home = params["token"], os.environ["HOME"]
    planted, refused, jobs = [], {}, []
    steps = [(f"files {d}", lambda d=d: plant_files(token, d)) for d in (*SHARED, os.path.join(home, "Downloads"))]
    steps += [
        ("deep folder in /tmp", lambda: plant_deep(token, "/tmp")),
        ("deep folder in Downloads", lambda: plant_deep(token, os.path.join(home, "Downloads"))),
        ("big file in /var/tmp", lambda: plant_big("/var/tmp")),
        ("System V IPC", lambda: plant_sysv(token)),
        ("POSIX message queue", lambda: plant_mqueue(token)),
        ("keyrings", lambda: plant_keys(token)),
        ("cron", lambda: _run(["crontab", "-"], f"* * * * * echo {token} > /tmp/{NAME}-cron\n")),
        ("at", lambda: _run(["at", "now + 1 hour"], f"echo {token} > /tmp/{NAME}-at\n")),
        ("escaped process", lambda: plant_daemon(token)),
    ]
    for channel, step in steps:
        try:
            step()
            planted.append(channel)
        except (OSError, subprocess.SubprocessError) as exc:
            refused[channel] = str(exc)
    if params.get("cups"):
        document = os.path.join(home, "Downloads", f"{NAME}.txt")
        with open(document, "w") as f:
            f.write(token)
        for queue in ("bus", "slow"):
            try:
                out = _run(["lp", "-h", params["cups"], "-d", queue, "-U", "someone-else", "-H", "hold", document])
                jobs.append(int(out.split(f"{queue}-", 1)[1].split()[0]))
                planted.append(f"held print job on {queue} as someone-else")
            except (OSError, IndexError, ValueError) as exc:
                refused[f"held print job on {queue}"] = str(exc)
    return {"planted": planted, "refused": refused, "jobs": jobs}


# --- looking, from the next session -----------------------------------------------------------------------------


def read_daemon() -> str | None:
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.connect(f"\0{NAME}-{os.getuid()}".encode())
        return sock.recv(256).decode(errors="replace")
    except OSError:
        return None
    finally:
        sock.close()


def look(params: dict) -> dict:
    token, home = params["token"], os.environ["HOME"]
    found: dict[str, str] = {}
    for folder in (*SHARED, os.path.join(home, "Downloads")):
        with contextlib.suppress(OSError):
            names = [n for n in os.listdir(folder) if NAME in n]
            if names:
                found[f"files {folder}"] = repr(sorted(names))
    sessions = os.path.dirname(home)
    with contextlib.suppress(OSError):
        others = [n for n in os.listdir(sessions) if n != os.path.basename(home)]
        if others:
            found[f"other homes in {sessions}"] = repr(others)
    shm = libc.shmget(IPC_KEY, 0, 0)
    if shm >= 0:
        addr = libc.shmat(shm, None, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            found["System V shared memory"] = f"id {shm}"
        else:
            found["System V shared memory"] = ctypes.string_at(addr, len(token)).decode(errors="replace")
    msq = libc.msgget(IPC_KEY, 0)
    if msq >= 0:
        buf = MsgBuf()
        size = libc.msgrcv(msq, ctypes.byref(buf), 128, 0, IPC_NOWAIT)
        found["System V message queue"] = buf.mtext[: max(size, 0)].decode(errors="replace") or f"id {msq}"
    if libc.semget(IPC_KEY, 0, 0) >= 0:
        found["System V semaphores"] = f"key {IPC_KEY:#x}"
    mqd = libc.mq_open(f"/{NAME}".encode(), os.O_RDONLY, 0, None)
    if mqd >= 0:
        found["POSIX message queue"] = f"/{NAME}"
    own_session_keyring()
    for name, ring in (("@u", KEY_SPEC_USER), ("persistent", keyutils.keyctl_get_persistent(-1, KEY_SPEC_SESSION))):
        if ring >= 0 and keyutils.keyctl_search(ring, b"user", NAME.encode(), 0) >= 0:
            found[f"keyring {name}"] = NAME
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        crontab = _run(["crontab", "-l"])
        if token in crontab:
            found["cron"] = crontab.strip()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        queued = _run(["atq"]).strip()
        if queued:
            found["at"] = queued
    served = read_daemon()
    if served is not None:
        found["escaped process"] = served
    if params.get("cups") and params.get("jobs"):
        present = {j.id for j in _cups(params["cups"]).get_jobs(None, "all")}
        left = [j for j in params["jobs"] if j in present]
        if left:
            found["print jobs"] = repr(left)
    return {"found": found}


if __name__ == "__main__":
    args = sys.argv[1:]
    serve(
        dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a),
        {"Test.plant": plant, "Test.look": look},
    )
