"""Remote supervision over MQTT: the bus's link (state, durable events, commands, HA discovery) and its topics.

This package's modules are imported one by one (``firmware_host.mqtt.link``, ``.client``, ``.topics``...), so
that the office app, which needs the client and the topics, does not load the bus's link with them.
"""
