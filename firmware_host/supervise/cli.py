"""The `allervers supervise` subcommand: broker options from the command line (or the [mqtt] section of -c)."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from ..mqtt.client import BrokerOptions, MqttSetupError, read_password
from ..mqtt.protocol import FleetTopics, valid_topic_name
from ..subcommands import EXIT_CONFIG, Subcommand, load_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", help="broker host name (default: [mqtt] host of -c, else localhost)")
    p.add_argument("--port", type=int, help="broker port (default: 8883 with TLS, 1883 without)")
    p.add_argument("--username", help="the office account (see config/mosquitto/create-user.sh)")
    p.add_argument("--password-file", help="file holding the password (never on the command line)")
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--tls", dest="tls", action="store_true", default=None, help="TLS (the default)")
    tls.add_argument("--no-tls", dest="tls", action="store_false", help="plaintext: loopback only unless --insecure")
    p.add_argument("--ca-file", help="CA certificate that signed the broker's (default: the system's trust store)")
    p.add_argument("--cert-file", help="client certificate, if the broker asks for one")
    p.add_argument("--key-file", help="client key, with --cert-file")
    p.add_argument("--insecure", action="store_true", help="allow plaintext to a broker that is not on this machine")
    p.add_argument("--root", default="allervers", help="topic root of the fleet (default: allervers)")
    p.add_argument("--language", choices=("fr", "en"), default="fr", help="fr (default) or en")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def options_from(args: argparse.Namespace) -> BrokerOptions:
    """Command-line options over the [mqtt] section of -c (when given); errors name the option."""
    section = load_config(args).mqtt if args.config else None

    def pick(name: str, default: object = None) -> object:
        value = getattr(args, name)
        if value is not None:
            return value
        return getattr(section, name, default) if section is not None else default

    host = args.broker or (section.host if section is not None else "localhost")
    tls = pick("tls", True)
    if not tls and not args.insecure and not _loopback(str(host)):
        raise MqttSetupError(f"--no-tls: plaintext to {host!r} is refused (use TLS, or --insecure on a test network)")
    if (args.cert_file is None) != (args.key_file is None):
        raise MqttSetupError("--cert-file and --key-file go together")
    if args.password_file is not None and args.username is None:
        raise MqttSetupError("--password-file needs --username")
    if args.port is not None and not 1 <= args.port <= 65535:
        raise MqttSetupError(f"--port: must be 1..65535, got {args.port}")
    options = BrokerOptions(
        host=str(host),
        port=pick("port"),  # type: ignore[arg-type]
        tls=bool(tls),
        ca_file=pick("ca_file"),  # type: ignore[arg-type]
        cert_file=pick("cert_file"),  # type: ignore[arg-type]
        key_file=pick("key_file"),  # type: ignore[arg-type]
        username=args.username,
        password_file=args.password_file,
        keepalive_s=60,
    )
    if options.password_file:
        read_password(options.password_file)  # fail now, with the file named, rather than on every retry
    return options


def run(args: argparse.Namespace) -> int:
    from .app import SuperviseApp
    from .fleet import Fleet, FleetLink

    try:
        options = options_from(args)
    except MqttSetupError as exc:
        print(f"allervers supervise: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    root = args.root.strip("/")
    if not valid_topic_name(root):
        print(f"allervers supervise: --root: {args.root!r} is not a topic (no wildcards, not empty)", file=sys.stderr)
        return EXIT_CONFIG
    fleet = Fleet(FleetTopics(root))
    SuperviseApp(FleetLink(options, fleet), language=args.language).run()
    return 0


COMMANDS: list[Subcommand] = [
    ("supervise", "the office's fleet view over MQTT: every bus, problems first, and commands", add_arguments, run),
]
