"""Remote supervision as a controller feature: the ``[mqtt]`` section, and the MQTT link it attaches."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from ..schema import Key, Table

if TYPE_CHECKING:
    from ..controller import Controller
    from .link import MqttLink

SECTION = "mqtt"


def _loopback_or_insecure(m: dict[str, Any]) -> tuple[str, str] | None:
    if not m["tls"] and not m["insecure"]:
        try:
            loopback = m["host"] == "localhost" or ipaddress.ip_address(m["host"]).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            return "tls", f"plaintext MQTT to {m['host']!r} is refused: use tls = true or set insecure = true"
    if (m["cert_file"] is None) != (m["key_file"] is None):
        return "cert_file", "cert_file and key_file go together"
    if m["password_file"] is not None and m["username"] is None:
        return "password_file", "needs username (the broker user this password belongs to)"
    return None


def schema() -> Any:
    """The ``[mqtt]`` section (optional: no supervision link without it)."""
    return Table(
        {
            "host": Key(str, required=True),
            "port": Key(int, None, min=1, max=65535),
            "client_id": Key(str, None, pattern=r"[A-Za-z0-9_.:-]{1,64}"),
            "topic_prefix": Key(str, None, pattern=r"[^#+\s]+(/[^#+\s]+)*"),
            "username": Key(str, None),
            "password_file": Key("path", None),
            "tls": Key(bool, True),
            "insecure": Key(bool, False),
            "ca_file": Key("path", None),
            "cert_file": Key("path", None),
            "key_file": Key("path", None),
            "keepalive_s": Key(int, 900, min=10, max=65535),
            "link_gate": Key(str, "modem", choices=("modem", "always")),
            "refresh_s": Key(float, 3600.0, min=10, max=7 * 86400),
            "max_backlog_events": Key(int, 100_000, min=100, max=10_000_000),
            "ha_discovery": Key(bool, False),
            "deadbands": Table(
                {
                    "ac_v": Key(float, 2.0, min=0),
                    "dc_v": Key(float, 0.1, min=0),
                    "a": Key(float, 0.5, min=0),
                    "w": Key(float, 50.0, min=0),
                    "soc": Key(float, 1.0, min=0),
                    "hz": Key(float, 0.2, min=0),
                    "c": Key(float, 1.0, min=0),
                }
            ),
        },
        optional=True,
        check=_loopback_or_insecure,
    )


async def attach(controller: Controller) -> MqttLink:
    """Start the link to the office's broker (it waits for the modem's link when ``link_gate = "modem"``)."""
    from .link import MqttLink  # paho and the link only on a bus that has the section

    link = MqttLink(controller)
    await link.start()
    controller.on_stop.append(link.stop)
    return link
