"""The `allervers` command line: run the controller, query it, check configs, run the simulators."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import config as config_mod
from .api import ClientError, call_once
from .subcommands import EXIT_CONFIG, EXIT_UNREACHABLE, Subcommand, load_config

# The modules whose COMMANDS add subcommands (firmware_host/subcommands.py), imported when the parser is built.
EXTRA_MODULES = ("firmware_host.console.commands", "firmware_host.doctor", "firmware_host.supervise.cli", "kiosk.cli")


DEMO_CONFIG = Path("config") / "simulated.toml"
# Commands that talk to a running controller (or read its files): from a checkout they find its running demo.
FINDS_THE_DEMO = ("status", "alarms", "events", "sim-set", "console", "tour", "kiosk", "report", "doctor")


def find_demo_config(start: Path) -> Path | None:
    """The demo config of the checkout holding ``start``, when that demo is running (its control socket is up)."""
    for folder in (start, *start.parents):
        candidate = folder / DEMO_CONFIG
        if not candidate.is_file():
            continue
        try:
            socket_path = Path(config_mod.load(str(candidate)).api.control_socket)
        except config_mod.ConfigError:
            return None
        return candidate if socket_path.is_socket() else None
    return None


def _default_config(args: argparse.Namespace) -> None:
    """No -c, no $ALLERVERS_CONFIG, no system config: inside a checkout whose demo runs, use the demo's config."""
    if args.command not in FINDS_THE_DEMO or getattr(args, "config", "") is not None:
        return
    if os.environ.get("ALLERVERS_CONFIG") or Path(config_mod.DEFAULT_CONFIG_PATH).exists():
        return
    demo = find_demo_config(Path.cwd())
    if demo is not None:
        args.config = os.path.relpath(demo)
        print(f"allervers: using the running demo's {args.config} (-c FILE for another)", file=sys.stderr)


def _no_config_hint(args: argparse.Namespace) -> None:
    """A command that failed on the built-in defaults (/run, /var/lib) says where the demo's config is."""
    if args.command not in FINDS_THE_DEMO or getattr(args, "config", None) is not None:
        return
    if os.environ.get("ALLERVERS_CONFIG") or Path(config_mod.DEFAULT_CONFIG_PATH).exists():
        return
    print(
        f"allervers: no config given (-c FILE, $ALLERVERS_CONFIG or {config_mod.DEFAULT_CONFIG_PATH}); for the "
        "demo, start ./scripts/demo and run allervers from the project folder, or give -c config/simulated.toml",
        file=sys.stderr,
    )


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        help=f"config file (default: $ALLERVERS_CONFIG, else {config_mod.DEFAULT_CONFIG_PATH}, else built-in defaults)",
    )


# --- run -------------------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from .controller import run

    cfg = load_config(args)
    _setup_logging(args.verbose)
    try:
        asyncio.run(run(cfg))
    except OSError as exc:
        print(f"allervers: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Controller and simulators in one process, with a live view of the state."""
    from .controller import Controller
    from .statusview import live_view

    cfg = load_config(args)
    if not cfg.simulation.embedded:
        print(f"{cfg.source}: simulation.embedded: the demo needs embedded = true", file=sys.stderr)
        return EXIT_CONFIG
    _setup_logging(args.verbose, quiet=True)

    async def main() -> None:
        import signal

        controller = Controller(cfg)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await controller.start()
            tour = asyncio.create_task(_fault_tour(controller, args.fault_every)) if args.faults else None
            await live_view(controller, stop, duration=args.duration)
            if tour:
                tour.cancel()
        finally:
            await controller.stop()

    asyncio.run(main())
    return 0


# Each step is applied, held for a period, then undone: every component goes stale (or alarms) and recovers.
FAULT_TOUR: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"inverter.fault": "silent"}, {"inverter.fault": None}),
    ({"inverter.system_fault": "exception"}, {"inverter.system_fault": None}),  # partial: VE.Bus values stay
    ({"meter.fault": "exception"}, {"meter.fault": None}),
    ({"modem.plugged": False}, {"modem.plugged": True}),
    ({"shore.connected": False}, {"shore.connected": True}),
    ({"gpio.ignition": True}, {"gpio.ignition": False}),
    ({"modem.rssi": 99}, {"scenario.release": "modem.rssi"}),
]


async def _fault_tour(controller: Any, every_s: float) -> None:
    sim = controller.simulation
    while True:
        for inject, undo in FAULT_TOUR:
            await asyncio.sleep(every_s)
            sim.set_many(inject)
            await asyncio.sleep(every_s)
            sim.set_many(undo)


# --- status and other queries ------------------------------------------------------------------------------


def _query(args: argparse.Namespace, cmd: str, cmd_args: dict[str, Any] | None = None) -> Any:
    cfg = load_config(args)
    return asyncio.run(call_once(cfg.api.control_socket, cmd, cmd_args))


def cmd_status(args: argparse.Namespace) -> int:
    from .statusview import render_text

    snap = _query(args, "status")
    if args.json:
        print(json.dumps(snap, indent=2, ensure_ascii=False))
    else:
        print(render_text(snap))
    return 0


def cmd_alarms(args: argparse.Namespace) -> int:
    if args.ack is not None:
        acked = _query(args, "alarms.ack", {"id": args.ack} if args.ack != "all" else {})
        print(f"acknowledged: {', '.join(acked) or 'nothing'}")
        return 0
    alarms = _query(args, "alarms")
    if args.json:
        print(json.dumps(alarms, indent=2, ensure_ascii=False))
        return 0
    if not alarms:
        print("no active alarm")
        return 0
    print(f"{'SEVERITY':<9} {'ID':<28} {'ACK':<5} {'SINCE':<19}  MESSAGE")
    for a in alarms:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a["since"]))
        acked = "yes" if a.get("acknowledged") else "no"
        print(f"{a['severity']:<9} {a['id']:<28} {acked:<5} {since:<19}  {a['message']}")
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    events = _query(args, "events", {"after": args.after, "limit": args.limit})
    for e in events:
        if args.json:
            print(json.dumps(e, ensure_ascii=False))
        else:
            extra = {k: v for k, v in e.items() if k not in ("seq", "ts", "clock_synced", "type")}
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts"]))
            mark = "" if e["clock_synced"] else "~"
            print(f"{e['seq']:>7} {mark}{when} {e['type']:<24} {json.dumps(extra, ensure_ascii=False)}")
    return 0


def cmd_sim_set(args: argparse.Namespace) -> int:
    values: dict[str, Any] = {}
    for item in args.assignments:
        key, sep, raw = item.partition("=")
        if not sep:
            print(f"allervers sim-set: {item!r}: expected key=value", file=sys.stderr)
            return EXIT_CONFIG
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    print(json.dumps(_query(args, "sim.set", values), ensure_ascii=False))
    return 0


# --- config ------------------------------------------------------------------------------------------------


def cmd_config_check(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.file)
    devices = [name for name in ("inverter", "modem") if getattr(cfg, name) is not None]
    if cfg.shore_power.meter is not None:
        devices.append("shore meter")
    print(f"{cfg.source}: OK (vehicle {cfg.vehicle.id}; devices: {', '.join(devices) or 'none'})")
    return 0


# --- simulators ---------------------------------------------------------------------------------------------


def cmd_sim(args: argparse.Namespace) -> int:
    from drivers.scenario import Simulation
    from firmware_host.api import Registry, SocketServer

    cfg = load_config(args)
    _setup_logging(args.verbose)

    async def main() -> None:
        import signal

        sim = Simulation.from_config(cfg)
        # sim.set / sim.get on a socket of their own beside the control socket (the scenario knows no socket API).
        control = str(Path(cfg.api.control_socket).with_name("sim.sock"))
        registry = Registry()
        registry.add("sim.set", lambda args, conn: sim.set_many(args), ("control",))
        registry.add("sim.get", lambda args, conn: sim.get_all(), ("control",))
        server = SocketServer("control", control, registry)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await sim.start()
        await server.start()
        for line in [*sim.describe(), f"sim.set / sim.get on {control}"]:
            print(line, flush=True)
        try:
            await stop.wait()
        finally:
            await server.stop()
            await sim.stop()

    asyncio.run(main())
    return 0


# --- plumbing ----------------------------------------------------------------------------------------------


def _setup_logging(verbose: bool, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else (logging.ERROR if quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="allervers", description="On-board controller of a digital-inclusion bus")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the controller (the long-running process)")
    _add_config(p)
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="controller and simulators together, with a live view of the state")
    _add_config(p)
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--faults", action="store_true", help="inject a fault now and then, and undo it (see README)")
    p.add_argument("--fault-every", type=float, default=15.0, metavar="S", help="seconds between tour steps")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("status", help="print the state of the running controller")
    _add_config(p)
    p.add_argument("--json", action="store_true", help="the JSON snapshot (the public contract)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("alarms", help="list (or acknowledge) the active alarms")
    _add_config(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--ack", nargs="?", const="all", metavar="ID", help="acknowledge one alarm, or all")
    p.set_defaults(func=cmd_alarms)

    p = sub.add_parser("events", help="print the event log")
    _add_config(p)
    p.add_argument("--after", type=int, default=0, help="only events with a larger seq")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("config", help="config tools")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    pc = csub.add_parser("check", help="validate a config file and exit (2 if invalid)")
    pc.add_argument("file")
    pc.set_defaults(func=cmd_config_check)

    p = sub.add_parser("sim", help="run every configured device simulator as a real peer (standalone)")
    _add_config(p)
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("sim-set", help="drive simulated inputs of a running demo: key=value ...")
    _add_config(p)
    p.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_sim_set)

    for name, help_text, add_arguments, run_fn in extra_commands():
        p = sub.add_parser(name, help=help_text)
        _add_config(p)
        add_arguments(p)
        p.set_defaults(func=run_fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _default_config(args)
        code = args.func(args)
    except config_mod.ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except ClientError as exc:
        print(f"allervers: {exc}", file=sys.stderr)
        if "cannot reach" in str(exc):
            _no_config_hint(args)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130
    if code not in (0, None):
        _no_config_hint(args)
    return code


def extra_commands() -> list[Subcommand]:
    """The subcommands the feature modules export (imported only now: not every command needs Textual or MQTT)."""
    import importlib

    return [command for module in EXTRA_MODULES for command in importlib.import_module(module).COMMANDS]


if __name__ == "__main__":
    sys.exit(main())
