"""Remote supervision over MQTT: the bus's link (state, durable events, commands, HA discovery) and its topics."""

from .link import MqttLink
from .topics import FleetTopics, Topics

__all__ = ["FleetTopics", "MqttLink", "Topics"]
