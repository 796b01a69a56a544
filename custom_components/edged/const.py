"""Names shared by the edged integration's modules."""

from __future__ import annotations

DOMAIN = "edged"
CONF_DEVICE_ID = "device_id"
CONF_BASE_TOPIC = "base_topic"
CONF_SERVER_URL = "server_url"
"""Where Home Assistant reaches the device's room server when the device's own idea of
it (its ``room.server_url``, or 127.0.0.1 for its embedded server) is not reachable."""
DEFAULT_BASE_TOPIC = "edged"
MQTT_DEVICE_DOMAIN = "mqtt"
"""The device registry identifiers' domain of the device the daemon announces itself."""
TOKEN_TTL_S = 120
"""Lifetime of each viewer token: long enough to post the offer, and no longer."""
COMMAND_TIMEOUT_S = 10.0
