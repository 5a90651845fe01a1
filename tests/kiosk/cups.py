"""A real cupsd for the tests: its own config, spool and loopback port, a "bus" printer writing to /dev/null
through the generic PostScript driver (its filters count the pages), a "slow" one whose backend never ends, and a
"nopaper" one whose backend reports an empty paper tray, as a real backend does (``STATE: +media-empty-error``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import free_port

SLOW_BACKEND = """#!/bin/sh
# A printer that takes forever: the job stays "processing" (a jam, a printer out of paper).
if [ $# -eq 0 ]; then echo 'direct slow "Unknown" "Slow test printer"'; exit 0; fi
echo $$ >> {pids}
exec sleep 600
"""

FAULT_BACKEND = """#!/bin/sh
# A printer with a problem, named by the device URI (fault://media-empty-error): reported the way CUPS backends do.
if [ $# -eq 0 ]; then echo 'direct fault "Unknown" "Faulty test printer"'; exit 0; fi
echo $$ >> {pids}
echo "STATE: +${{DEVICE_URI#fault://}}" >&2
exec sleep 600
"""


class CupsServer:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="allervers-cups-"))
        self.port = free_port()
        self.server = f"127.0.0.1:{self.port}"
        self.socket = str(self.root / "cups.sock")
        self.spool = self.root / "spool"
        self.process: subprocess.Popen | None = None

    def start(self) -> CupsServer:
        root = self.root
        os.chmod(root, 0o755)
        for sub in ("spool/tmp", "cache", "state", "log", "ppd", "serverbin/backend"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        # Filters and backends come from the system; the backend folder adds the slow printer.
        for entry in Path("/usr/lib/cups").iterdir():
            if entry.name != "backend":
                (root / "serverbin" / entry.name).symlink_to(entry)
        for backend in Path("/usr/lib/cups/backend").iterdir():
            (root / "serverbin/backend" / backend.name).symlink_to(backend)
        for name, script in (("slow", SLOW_BACKEND), ("fault", FAULT_BACKEND)):
            backend = root / "serverbin/backend" / name
            backend.write_text(script.format(pids=root / "spool/tmp/slow.pids"))
            os.chmod(backend, 0o755)
        (root / "cupsd.conf").write_text(
            f"""Listen 127.0.0.1:{self.port}
Listen {self.socket}
LogLevel warn
ErrorLog {root}/log/error_log
AccessLog {root}/log/access_log
PageLog {root}/log/page_log
WebInterface No
DefaultAuthType None
<Location />
  Order allow,deny
  Allow all
</Location>
<Policy default>
  <Limit All>
    Order deny,allow
  </Limit>
</Policy>
"""
        )
        (root / "cups-files.conf").write_text(
            f"""FileDevice Yes
ServerRoot {root}
RequestRoot {root}/spool
CacheDir {root}/cache
StateDir {root}/state
TempDir {root}/spool/tmp
ServerBin {root}/serverbin
DataDir /usr/share/cups
Printcap
SystemGroup root
User lp
Group lp
"""
        )
        subprocess.run(["chown", "-R", "root:lp", str(root)], check=True)
        os.chmod(root / "spool", 0o710)
        os.chmod(root / "spool/tmp", 0o1777)
        self.process = subprocess.Popen(
            ["cupsd", "-f", "-c", str(root / "cupsd.conf"), "-s", str(root / "cups-files.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while self.lpstat("-r").returncode != 0:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"cupsd did not start: {(root / 'log/error_log').read_text(errors='replace')}")
            time.sleep(0.05)
        self.add_printer("bus", "file:///dev/null")
        self.add_printer("slow", "slow://jam")
        self.add_printer("nopaper", "fault://media-empty-error")
        return self

    def lpstat(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["lpstat", "-h", self.server, *args], capture_output=True, text=True)

    def add_printer(self, name: str, uri: str) -> None:
        argv = ["lpadmin", "-h", self.server, "-p", name, "-E", "-v", uri, "-m", "drv:///sample.drv/generic.ppd"]
        deadline = time.monotonic() + 10
        while True:
            out = subprocess.run(argv, capture_output=True, text=True)
            if out.returncode == 0:
                return
            # A busy machine: cupsd answers lpstat before it accepts a new queue (seen once under load).
            if time.monotonic() > deadline:
                raise RuntimeError(f"lpadmin {name}: {out.stderr.strip() or out.stdout.strip()}")
            time.sleep(0.2)

    def submit(self, printer: str, path: str, uid: int, gid: int, *options: str) -> int:
        """Print ``path`` as the session user, as Chromium's print dialog would; returns the job id."""
        out = subprocess.run(
            ["lp", "-h", self.server, "-d", printer, *options, path],
            user=uid,
            group=gid,
            extra_groups=[],
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
        ).stdout
        return int(out.split(f"{printer}-", 1)[1].split()[0])

    def spool_files(self) -> list[str]:
        return sorted(p.name for p in self.spool.iterdir() if p.name != "tmp")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            if self.process.poll() is None:
                self.process.kill()
        # A slow backend cupsd did not stop (it runs as lp, never as the session user): by its recorded pid.
        with contextlib.suppress(OSError):
            for pid in (self.spool / "tmp/slow.pids").read_text().split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def pdf(pages: int) -> bytes:
    """A minimal valid PDF with ``pages`` pages of text."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>")
    font = 3 + 2 * pages
    for i in range(pages):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents {3 + pages + i} 0 R"
            f" /Resources << /Font << /F1 {font} 0 R >> >> >>"
        )
    for i in range(pages):
        text = f"BT /F1 24 Tf 72 720 Td (Attestation page {i + 1}) Tj ET"
        objects.append(f"<< /Length {len(text)} >>\nstream\n{text}\nendstream")
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = "%PDF-1.4\n"
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n{body}\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n" + "".join(f"{o:010d} 00000 n \n" for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    return out.encode()
