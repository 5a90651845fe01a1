"""Collect the rows of every benchmark module (scripts/bench_*.py) into one table, optionally into the README."""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter measurement windows")
    parser.add_argument("--readme", action="store_true", help="write the table into README.md")
    parser.add_argument("--only", help="run only scripts/bench_<ONLY>.py")
    args = parser.parse_args()

    rows: list[tuple[str, str, str, str]] = []
    failed = False
    modules = sorted((ROOT / "scripts").glob("bench_*.py"))
    if args.only:
        modules = [m for m in modules if m.stem == f"bench_{args.only}"]
    for path in modules:
        topic = path.stem.removeprefix("bench_")
        print(f"running {path.name} ...", file=sys.stderr, flush=True)
        try:
            module = load(path)
            kwargs = {"quick": True} if args.quick and "quick" in module.run.__code__.co_varnames else {}
            for metric, value, target in module.run(**kwargs):
                rows.append((topic, metric, value, target))
        except Exception:
            failed = True
            traceback.print_exc()
            rows.append((topic, "(benchmark failed)", "see stderr", "—"))

    lines = [f"Measured on: {machine()}", "", "| area | metric | measured | target |", "|---|---|---|---|"]
    lines += [f"| {t} | {m} | {v} | {g} |" for t, m, v, g in rows]
    table = "\n".join(lines)
    print(table)
    if args.readme:
        readme = ROOT / "README.md"
        text = readme.read_text()
        block = f"{BEGIN}\n{table}\n{END}"
        if BEGIN in text:
            text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _m: block, text, flags=re.S)
        else:
            text += f"\n{block}\n"
        readme.write_text(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
