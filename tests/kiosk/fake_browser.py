#!/usr/bin/python3
"""A stand-in for Chromium in the fast kiosk tests: answers on the DevTools pipe and leaves traces like a browser.

Run as the session user by the real launch code. It writes into the profile and Downloads, drops files in /tmp and
/dev/shm, starts a child (a "renderer"), then waits. Options: --exit-after=SECONDS (a crash), --no-answer-exit (dies
before answering: a browser that cannot start), --escape (also starts a process in a session of its own). The
end-to-end tests use Debian's Chromium instead.
"""

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def serve(options: dict[str, str], handlers: dict[str, Handler] | None = None) -> None:
    """Answer DevTools messages on fds 3 and 4 until the pipe closes (then linger, as a hung browser would);
    ``handlers``: extra methods, method -> params -> result."""
    exit_after = float(options.get("exit-after", "0") or 0)
    started = time.monotonic()
    os.set_blocking(3, False)
    buffer = b""
    while True:
        if exit_after and time.monotonic() - started > exit_after:
            os._exit(9)
        try:
            chunk = os.read(3, 65536)
        except BlockingIOError:
            time.sleep(0.02)
            continue
        if not chunk:
            time.sleep(600)
            break
        buffer += chunk
        while b"\0" in buffer:
            raw, buffer = buffer.split(b"\0", 1)
            message = json.loads(raw)
            method = message["method"]
            result = {"product": "FakeBrowser/1.0"} if method == "Browser.getVersion" else {}
            if method == "Target.getTargets":
                result = {"targetInfos": [{"type": "page", "url": options.get("url", "")}]}
            if handlers and method in handlers:
                result = handlers[method](message.get("params") or {})
            os.write(4, json.dumps({"id": message["id"], "result": result}).encode() + b"\0")


def main() -> None:
    args = sys.argv[1:]
    options = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
    if "--no-answer-exit" in args:
        sys.exit(3)
    profile = options["user-data-dir"]
    home = os.environ["HOME"]
    os.makedirs(profile, exist_ok=True)
    with open(os.path.join(profile, "Cookies"), "w") as f:
        f.write("SID=visitor-secret")
    with open(os.path.join(home, "Downloads", "attestation.pdf"), "w") as f:
        f.write("%PDF-1.4 attestation")
    for folder in ("/tmp", "/var/tmp", "/dev/shm"):
        with open(os.path.join(folder, f".org.chromium.Chromium.{os.getpid()}"), "w") as f:
            f.write("shared memory of the visitor")
    subprocess.Popen(["sleep", "600"])  # a "renderer"
    if "--escape" in args:
        # A process that leaves the browser's process group and session, as a daemonising helper would.
        subprocess.Popen(["sleep", "601"], start_new_session=True)
    serve(options)


if __name__ == "__main__":
    main()
