"""Remote supervision over MQTT: the bus's link (state, durable events, commands, HA discovery), the protocol.

This package's modules are imported one by one (``firmware_host.mqtt.link``, ``.client``, ``.protocol``...), so
that the office app, which needs the client and the protocol, does not load the bus's link with them.
"""
