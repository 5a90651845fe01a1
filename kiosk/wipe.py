"""The wipe: kill every process of the session user, purge its print jobs, remove its files, then verify.

Everything a visitor leaves belongs to the session user: the browser and whatever it started, the session's home
(profile, downloads, documents, scans) under ``sessions_dir``, what it owns in every shared folder it can write in
(``SHARED_DIRS``: the temporary folders, /run/lock, POSIX message queues, the cron and at spools), its System V IPC
objects, its kernel keyrings, and the print jobs submitted during the session (under any user name, on any queue).
The wipe removes all of that and then checks, from scratch and in the same places, that none is left: an ok wipe
is a true one. Killing the browser also ends the Wayland clipboard: a copied text lives in the client that offered
it. Every removal is by descriptor (no link followed) and iterative (no depth or name stops it).

When the session user is the controller's own user (development only), "every process of the user" would include
the controller, so only the browser's process session is killed and only ``sessions_dir`` is cleared.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import pwd
import shutil
import signal
import stat
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import keyrings
from .printing import PrintError, SessionPrinting

log = logging.getLogger("allervers.kiosk")

# Every shared folder a visitor's process can write in on Debian (see the README's privacy section): the temporary
# folders, /run/lock (/var/lock links to it), POSIX message queues, and the cron and at spools (writable through
# crontab and at, which the installer denies to the session user: swept anyway).
SHARED_DIRS = (
    "/tmp",
    "/var/tmp",
    "/dev/shm",
    "/run/lock",
    "/dev/mqueue",
    "/var/spool/cron/crontabs",
    "/var/spool/cron/atjobs",
    "/var/spool/cron/atspool",
)
SYSV_IPC = ("shm", "msg", "sem")  # /proc/sysvipc/<kind>: shared memory, message queues, semaphore sets
IPC_RMID = 0
HOME_SUBDIRS = ("profile", "Downloads", "Documents", "Scans", "tmp")
# A directory opened for *at() calls, refusing a symbolic link in its place.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class KioskError(RuntimeError):
    """A kiosk set-up problem (names the config key or the thing that failed)."""


@dataclass(frozen=True)
class SessionUser:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...] = ()  # supplementary groups from /etc/group (what a login would give it)

    @property
    def is_self(self) -> bool:
        return self.uid == os.geteuid()

    @classmethod
    def lookup(cls, name: str, *, we_start_it: bool = True) -> SessionUser:
        """The configured user; "" means the controller's own user (development and demos, never root).

        ``we_start_it``: the controller starts the browser itself (``launch = "direct"``), which for another user
        takes root; with ``launch = "unit"`` systemd starts it and the controller needs no privilege."""
        try:
            entry = pwd.getpwuid(os.geteuid()) if name == "" else pwd.getpwnam(name)
        except KeyError:
            raise KioskError(
                f"kiosk.session_user: no user {name!r} on this machine (create it: useradd --system"
                f" --no-create-home --shell /usr/sbin/nologin {name})"
            ) from None
        if entry.pw_uid == 0:
            raise KioskError("kiosk.session_user: the session user must not be root (the wipe kills all its processes)")
        if we_start_it and entry.pw_uid != os.geteuid() and os.geteuid() != 0:
            raise KioskError(
                f"kiosk.session_user: running the browser as {entry.pw_name!r} needs the controller to run as root"
                f' (it runs as uid {os.geteuid()}); use session_user = "" to run it as yourself while developing'
            )
        groups = tuple(g for g in os.getgrouplist(entry.pw_name, entry.pw_gid) if g != entry.pw_gid)
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def world_runnable(path: str | os.PathLike) -> bool:
    """Can any user run this program? (Every folder on the way searchable by others, the file readable and
    executable by others, and the same for a script's interpreter.) The session user is such an "other"."""
    target = Path(os.path.realpath(path))
    try:
        mode = target.stat().st_mode
        if not (mode & stat.S_IXOTH and mode & stat.S_IROTH and stat.S_ISREG(mode)):
            return False
        if any(not parent.stat().st_mode & stat.S_IXOTH for parent in target.parents):
            return False
        with open(target, "rb") as f:
            first = f.readline(256)
    except OSError:
        return False
    if first.startswith(b"#!"):
        interpreter = first[2:].split()[0].decode(errors="replace") if first[2:].split() else ""
        return bool(interpreter) and interpreter != str(path) and world_runnable(interpreter)
    return True


@dataclass
class WipeResult:
    ok: bool
    duration_s: float
    files_removed: int
    processes_killed: int = 0
    pages: int = 0
    print_jobs: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What the state model shows as ``last_wipe``."""
        return {"ok": self.ok, "duration_s": round(self.duration_s, 3), "files_removed": self.files_removed}


async def run_as_visitor(user: SessionUser) -> dict[str, Any]:
    """Run ``keyrings.WIPE_SCRIPT`` as the session user: it kills every process of the user but itself and empties
    the user's keyrings, which only the user's own process can reach. Returns ``{"keys": {keyring: keys left}}``
    or ``{"error": ...}``."""
    keyctl = shutil.which("keyctl", path="/usr/bin:/bin")
    if keyctl is None:
        return {"error": "keyctl not found (apt-get install keyutils)"}
    try:
        proc = await asyncio.create_subprocess_exec(
            keyctl,
            "session",
            "-",
            "/bin/sh",
            "-c",
            keyrings.WIPE_SCRIPT,
            user=user.uid,
            group=user.gid,
            extra_groups=[],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin"},
            cwd="/",
        )
        out, err = await proc.communicate()
    except OSError as exc:
        return {"error": f"cannot run {keyctl} as {user.name}: {exc}"}
    try:
        return {"keys": keyrings.parse_wipe_output(out.decode(errors="replace"))}
    except ValueError:
        tail = err.decode(errors="replace").strip()[-200:]
        return {"error": f"keyctl session as {user.name} exited {proc.returncode} without a count: {tail}"}


def keys_problem(user: SessionUser, report: dict[str, Any] | None) -> str | None:
    """What a keyring report (from ``run_as_visitor`` or the session host) says is left, or None."""
    if report is None:
        return None
    if "error" in report:
        return f"keyrings of {user.name} not emptied: {report['error']}"
    left = {name: n for name, n in (report.get("keys") or {}).items() if n}
    if left:
        return f"keys of {user.name} left in its keyrings: " + ", ".join(f"{n} in {name}" for name, n in left.items())
    return None


# --- System V and POSIX IPC --------------------------------------------------------------------------------


def sysv_objects(uid: int) -> list[tuple[str, int]]:
    """(kind, id) of every System V IPC object the user created or owns (its owner can give it to anyone)."""
    found = []
    for kind in SYSV_IPC:
        try:
            lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()
        except OSError:
            continue
        if not lines:
            continue
        header = lines[0].split()
        id_col, uid_col, cuid_col = 1, header.index("uid"), header.index("cuid")
        for line in lines[1:]:
            cols = line.split()
            if len(cols) > max(uid_col, cuid_col) and uid in (int(cols[uid_col]), int(cols[cuid_col])):
                found.append((kind, int(cols[id_col])))
    return found


def remove_sysv(uid: int) -> int:
    """IPC_RMID every System V object of the user (root may); how many went."""
    libc = ctypes.CDLL(None, use_errno=True)
    calls = {
        "shm": lambda i: libc.shmctl(i, IPC_RMID, None),
        "msg": lambda i: libc.msgctl(i, IPC_RMID, None),
        "sem": lambda i: libc.semctl(i, 0, IPC_RMID),
    }
    return sum(1 for kind, ident in sysv_objects(uid) if calls[kind](ident) == 0)


def _mqueue_mounted(where: str = "/dev/mqueue") -> bool:
    with contextlib.suppress(OSError):
        return any(line.split()[1:3] == [where, "mqueue"] for line in Path("/proc/mounts").read_text().splitlines())
    return False


def ensure_mqueue_mounted(where: str = "/dev/mqueue") -> None:
    """POSIX message queues are only visible (to sweep and to check) where their filesystem is mounted: systemd
    mounts it on Debian; a machine without it (a container) gets it here."""
    if _mqueue_mounted(where):
        return
    os.makedirs(where, exist_ok=True)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"mqueue", where.encode(), b"mqueue", 0, None) != 0:
        err = ctypes.get_errno()
        raise KioskError(f"cannot mount the POSIX message queues on {where}: {os.strerror(err)}")


# --- processes ----------------------------------------------------------------------------------------------


def _live_uids(pid: str) -> set[int]:
    """The uids (real, effective, saved, filesystem) of a live process; empty if it is gone or a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return set()
    uids: set[int] = set()
    for line in status.splitlines():
        if line.startswith("State:") and line.split()[1] in ("Z", "X"):
            return set()
        if line.startswith("Uid:"):
            uids = {int(x) for x in line.split()[1:]}
            break  # State: comes before Uid:
    return uids


def _live_session(pid: str) -> int | None:
    """The process session of a live process; None if it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else int(fields[3])
    except (OSError, IndexError, ValueError):
        return None


def user_processes(uid: int | None = None, sid: int | None = None) -> list[int]:
    """Live (non-zombie) pids with any uid equal to ``uid`` or in process session ``sid``.

    A zombie has released its memory and files; whether it is reaped depends on its parent, not on us. Only the
    /proc file the question needs is read: this runs several times per wipe, over every process of the machine.
    """
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        if (uid is not None and uid in _live_uids(entry)) or (sid is not None and _live_session(entry) == sid):
            found.append(int(entry))
    return found


async def kill_user_processes(
    user: SessionUser,
    *,
    session_ids: Iterable[int] = (),
    timeout_s: float = 5.0,
    kill: bool = True,
    first: Callable[[], Awaitable[Any]] | None = None,
) -> tuple[int, list[int]]:
    """SIGKILL every process of the session user (or, for one's own user, of the browser's sessions).

    Returns (how many were killed, pids still alive after ``timeout_s``). ``kill=False``: only wait for them to
    be gone (someone else ends them: the session's unit), and report (0, those still alive).
    """
    sids = [s for s in session_ids if s]
    if user.is_self:

        def targets() -> list[int]:
            return sorted({p for s in sids for p in user_processes(sid=s)})
    else:

        def targets() -> list[int]:
            return user_processes(uid=user.uid)

    found = set(await asyncio.to_thread(targets))
    if first is not None:
        await first()  # the wipe's helper: kill(-1) as the user; the /proc sweep below catches the rest
    deadline = time.monotonic() + timeout_s
    while True:
        alive = await asyncio.to_thread(targets)
        if not alive:
            return (len(found) if kill else 0), []
        if time.monotonic() > deadline:
            return (len(found - set(alive)) if kill else 0), alive
        if kill:
            for pid in alive:
                found.add(pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.005)  # killed processes take milliseconds to go: the turnaround waits on this


# --- files --------------------------------------------------------------------------------------------------


def remove_tree(parent_fd: int | None, name: str) -> int:
    """Remove a directory and everything in it; returns how many entries went.

    Iterative and by descriptor: no depth exhausts the recursion limit or the file-descriptor table (one directory
    is open at a time, the way back up is ".."), no name or path length matters, and no symbolic link is followed.
    """
    fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    names: list[str] = []  # the path below ``name``, to remove each directory from its parent once empty
    removed = 0
    try:
        while True:
            sub = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        sub = entry.name
                        break
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.name, dir_fd=fd)
                        removed += 1
            if sub is not None:
                child = os.open(sub, DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
                names.append(sub)
                continue
            if not names:
                break
            parent = os.open("..", DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir(names.pop(), dir_fd=fd)  # a mount point stays: EBUSY, and the verification names it
            removed += 1
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)
    return removed + 1


def _remove(path: str) -> int:
    """Remove one entry (a whole tree for a directory) by descriptor from its parent; how many entries went."""
    parent, name = os.path.split(path)
    pfd = os.open(parent, DIR_FLAGS)
    try:
        if stat.S_ISDIR(os.lstat(name, dir_fd=pfd).st_mode):
            return remove_tree(pfd, name)
        os.unlink(name, dir_fd=pfd)
        return 1
    finally:
        os.close(pfd)


def owned_entries(root: str, uid: int) -> list[str]:
    """Entries under ``root`` owned by ``uid``, not descending into them nor into other filesystems."""
    try:
        root_dev = os.lstat(root).st_dev
    except OSError:
        return []
    found: list[str] = []
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_uid == uid:
                found.append(entry.path)
            elif stat.S_ISDIR(st.st_mode) and st.st_dev == root_dev:
                stack.append(entry.path)
    return found


def remove_owned(root: str, uid: int) -> int:
    """Remove what ``uid`` owns under ``root``; what we may not remove is left for the verification to report."""
    removed = 0
    for path in owned_entries(root, uid):
        with contextlib.suppress(OSError):
            removed += _remove(path)
    return removed


def clear_directory(directory: str) -> int:
    """Remove everything inside ``directory`` (the sessions dir: nothing in it outlives a session)."""
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            with contextlib.suppress(OSError):  # what stays is named by the verification
                removed += _remove(entry.path)
    return removed


def make_home(sessions_dir: str, session_id: str, user: SessionUser, *, hand_over: bool = True) -> Path:
    """A fresh home for one session, private (0700), owned by the session user once handed over.

    ``hand_over=False``: it stays ours (root's) for now, so files can be put in it safely; ``hand_over_home``
    then gives it to the session user."""
    base = Path(sessions_dir)
    if not base.is_dir():
        base.mkdir(parents=True)
        os.chmod(base, 0o755)  # traversable by the session user; an existing one (a tmpfs, 0711) is kept as is
    home = base / session_id
    home.mkdir(mode=0o700)
    fd = os.open(home, DIR_FLAGS)
    try:
        for sub in HOME_SUBDIRS:
            os.mkdir(sub, 0o700, dir_fd=fd)
    finally:
        os.close(fd)
    # Chromium's file picker opens in its last folder, $HOME by default: start it in Downloads, where the session's
    # downloads and scanned documents are (a form's "Choisir un fichier" then shows them at once). Written by path:
    # the home is still ours (0700), nobody else can enter it yet.
    preferences = home / "profile" / "Default" / "Preferences"
    preferences.parent.mkdir(mode=0o700)
    preferences.write_text(json.dumps({"selectfile": {"last_directory": str(home / "Downloads")}}))
    if hand_over:
        hand_over_home(home, user)
    return home


def hand_over_home(home: Path, user: SessionUser) -> None:
    """Give the session user its home: everything inside first, by descriptor and never through a link, the home
    itself last, so nobody else can enter it while root is changing owners."""
    if user.is_self:
        return
    top = os.open(home, DIR_FLAGS)
    stack = [top]
    try:
        while stack:
            fd = stack.pop()
            try:
                for entry in os.scandir(fd):
                    os.chown(entry.name, user.uid, user.gid, dir_fd=fd, follow_symlinks=False)
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(os.open(entry.name, DIR_FLAGS, dir_fd=fd))
            finally:
                if fd != top:
                    os.close(fd)
        os.fchown(top, user.uid, user.gid)
    finally:
        for fd in stack:
            os.close(fd)
        os.close(top)


def schedulers_open_to(user: str, etc: str = "/etc") -> list[str]:
    """Which of cron and at ``user`` may use, read as crontab(1) and at(1) read their files: an allow file lists
    who may, else a deny file lists who may not, else cron is open to all (Debian) and at to root only.
    Raises OSError when a file cannot be read."""
    open_to = []
    for tool, open_by_default in (("cron", True), ("at", False)):
        allow, deny = Path(etc, f"{tool}.allow"), Path(etc, f"{tool}.deny")
        if allow.exists():
            allowed = user in allow.read_text().split()
        elif deny.exists():
            allowed = user not in deny.read_text().split()
        else:
            allowed = open_by_default
        if allowed:
            open_to.append(tool)
    return open_to


def filesystem_type(path: str) -> str:
    """The type of the filesystem holding ``path`` (to warn when session homes would land on the SD card)."""
    best, fstype = "", "unknown"
    target = os.path.realpath(path)
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3:
                mount = parts[1].replace("\\040", " ")
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, fstype = mount, parts[2]
    return fstype


# --- the wipe -----------------------------------------------------------------------------------------------


class Wiper:
    """Wipes and verifies; one instance per kiosk, used at every session end and at start-up.

    The verification looks, from scratch, at every place the sweep clears (and in unit mode, where the controller
    sweeps nothing, at the same places): a wipe that says ok has left nothing of the visitor in any of them."""

    def __init__(
        self,
        user: SessionUser,
        sessions_dir: str,
        *,
        printing: SessionPrinting | None = None,
        shared_dirs: tuple[str, ...] = SHARED_DIRS,
        kill_timeout_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        acts: bool = True,
    ):
        """``acts``: kill and remove, then verify (``launch = "direct"``: the controller started the browser).
        False: only wait for the session's unit to have ended and verify (``launch = "unit"``: the host kills
        every visitor process and empties its keyrings, systemd kills the rest of the unit's cgroup and its tmpfs
        mounts and IPC namespace die with it; the controller holds no privilege, and the verification must not be
        helped by one)."""
        self.acts = acts
        self.user = user
        self.sessions_dir = sessions_dir
        self.printing = printing
        self.shared_dirs = shared_dirs
        self.kill_timeout_s = kill_timeout_s
        self.monotonic = monotonic
        self._mqueue_checked = False

    @property
    def sweeps_user(self) -> bool:
        """Everything of the session user is ours to remove (not when it is the controller's own user)."""
        return self.acts and not self.user.is_self and os.geteuid() == 0

    async def wipe(
        self,
        *,
        session_ids: Iterable[int] = (),
        print_wait_s: float = 0.0,
        on_phase: Callable[[str], None] | None = None,
        host_report: dict[str, Any] | None = None,
    ) -> WipeResult:
        """``host_report``: in unit mode, what the session host said of the keyrings it emptied (None: no host
        ran, or it died first: the next host empties them before starting anything)."""
        started = self.monotonic()
        problems: list[str] = []
        phase = on_phase or (lambda _p: None)
        sids = list(session_ids)

        phase("stopping")
        reports = [host_report]

        async def as_visitor() -> None:
            reports.append(await run_as_visitor(self.user))  # kill(-1) as the user, then its keyrings

        killed, alive = await kill_user_processes(
            self.user,
            session_ids=sids,
            timeout_s=self.kill_timeout_s,
            kill=self.acts,
            first=as_visitor if self.sweeps_user else None,
        )
        keys_report = reports[-1]
        if alive:
            problems.append(f"processes of {self.user.name} still running: {', '.join(map(str, alive[:10]))}")

        pages = jobs = 0
        if self.printing is not None:
            phase("printing")
            try:
                if print_wait_s > 0:
                    await self.printing.wait_printed(print_wait_s)
                report = await self.printing.purge()
                pages, jobs = report.pages, report.jobs
            except PrintError as exc:
                problems.append(f"print jobs not purged: {exc}")

        phase("erasing")
        files = await asyncio.to_thread(self._remove_files)

        phase("verifying")
        problems += await asyncio.to_thread(self._verify, sids)
        if (problem := keys_problem(self.user, keys_report)) is not None:
            problems.append(problem)
        result = WipeResult(
            ok=not problems,
            duration_s=self.monotonic() - started,
            files_removed=files,
            processes_killed=killed,
            pages=pages,
            print_jobs=jobs,
            problems=problems,
        )
        if problems:
            log.error("kiosk wipe NOT verified: %s", "; ".join(problems))
        return result

    def _remove_files(self) -> int:
        if not self.acts:
            return 0  # nothing of the session is ours to remove: the verification below looks anyway
        removed = clear_directory(self.sessions_dir)
        if self.sweeps_user:
            if not self._mqueue_checked:
                with contextlib.suppress(KioskError):  # then the verification cannot see them either: named there
                    ensure_mqueue_mounted()
                self._mqueue_checked = True
            for root in self.shared_dirs:
                removed += remove_owned(root, self.user.uid)
            removed += remove_sysv(self.user.uid)
        return removed

    def _verify(self, session_ids: list[int]) -> list[str]:
        """Check from scratch: no process, file, IPC object or print job of the session user left."""
        problems = []
        if self.user.is_self:
            alive = sorted({p for s in session_ids for p in user_processes(sid=s)})
        else:
            alive = user_processes(uid=self.user.uid)
        if alive:
            problems.append(f"{len(alive)} process(es) of {self.user.name} left (pid {alive[0]})")
        with contextlib.suppress(FileNotFoundError):
            left = [e.name for e in os.scandir(self.sessions_dir)]
            if left:
                problems.append(f"{self.sessions_dir} not empty: {', '.join(sorted(left)[:5])}")
        if not self.user.is_self:
            for root in self.shared_dirs:
                owned = owned_entries(root, self.user.uid)
                if owned:
                    problems.append(f"{len(owned)} file(s) of {self.user.name} left in {root} ({owned[0]!r})")
            ipc = sysv_objects(self.user.uid)
            if ipc:
                kinds = ", ".join(f"{kind} {ident}" for kind, ident in ipc[:5])
                problems.append(f"{len(ipc)} System V IPC object(s) of {self.user.name} left ({kinds})")
            if self.sweeps_user and not _mqueue_mounted():
                problems.append(f"POSIX message queues of {self.user.name} not checked: /dev/mqueue is not mounted")
        if self.printing is not None:
            try:
                remaining = self.printing.session_jobs()
            except PrintError as exc:
                problems.append(f"print spool not checked: {exc}")
            else:
                if remaining:
                    where = ", ".join(f"{j.printer} job {j.id} of {j.user!r}" for j in remaining[:5])
                    problems.append(f"{len(remaining)} print job(s) of the session left ({where})")
        return problems
