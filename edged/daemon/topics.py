"""The MQTT topic names of one device (product contract §3).

Every topic of a device lives under ``<base>/<device_id>``; ``base`` defaults to
``edged``. This module only names topics: it publishes and subscribes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BASE = "edged"
DEFAULT_DISCOVERY_PREFIX = "homeassistant"
_WILDCARDS = ("+", "#", "\0")


def _check_level(what: str, value: str, *, allow_slash: bool) -> None:
    if not value:
        raise ValueError(f"{what} must not be empty")
    if any(c in value for c in _WILDCARDS):
        raise ValueError(f"{what} must not contain MQTT wildcards: {value!r}")
    if not allow_slash and "/" in value:
        raise ValueError(f"{what} must be a single topic level: {value!r}")
    if value.startswith("/") or value.endswith("/"):
        raise ValueError(f"{what} must not start or end with '/': {value!r}")


@dataclass(frozen=True, slots=True)
class Topics:
    """Owns the topic names of one device: ``Topics("edged", "cam1").state``.

    ``base`` may have several levels (``site/edged``); ``device_id`` is one level.
    """

    base: str
    device_id: str

    def __post_init__(self) -> None:
        _check_level("base topic", self.base, allow_slash=True)
        _check_level("device id", self.device_id, allow_slash=False)

    @property
    def root(self) -> str:
        """``<base>/<device_id>``: the prefix of every topic of the device."""
        return f"{self.base}/{self.device_id}"

    @property
    def availability(self) -> str:
        """``online`` / ``offline``, retained; ``offline`` is the last will."""
        return f"{self.root}/availability"

    @property
    def state(self) -> str:
        """The retained JSON snapshot of room, users, streams, publisher and players."""
        return f"{self.root}/state"

    @property
    def quality(self) -> str:
        """Publisher and player quality JSON, with a flat ``summary``; not retained."""
        return f"{self.root}/quality"

    @property
    def event(self) -> str:
        """Each engine event as it happens; not retained."""
        return f"{self.root}/event"

    @property
    def command(self) -> str:
        """Commands in: ``{"command": "<name>", ...}``."""
        return f"{self.root}/command"

    @property
    def response(self) -> str:
        """The response to each command; not retained."""
        return f"{self.root}/command/response"

    @property
    def snapshot(self) -> str:
        """The latest JPEG of the published video, raw bytes, retained."""
        return f"{self.root}/snapshot"

    @property
    def user_event(self) -> str:
        """``{"event_type": "joined"|"left", "user_id", "user_name"}``; not retained.

        Feeds the Home Assistant event entity, which ignores retained messages.
        """
        return f"{self.root}/user_event"

    @property
    def health(self) -> str:
        """Board health JSON (see :mod:`edged.daemon.health`), retained."""
        return f"{self.root}/health"

    @property
    def join_url(self) -> str:
        """The URL a person opens to join the device's room, plain text, retained."""
        return f"{self.root}/join_url"

    def all(self) -> dict[str, str]:
        """Every topic by its attribute name."""
        return {
            name: getattr(self, name)
            for name in (
                "availability",
                "state",
                "quality",
                "event",
                "command",
                "response",
                "snapshot",
                "user_event",
                "health",
                "join_url",
            )
        }


def ha_status_topic(discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX) -> str:
    """Where Home Assistant announces ``online`` after it starts (its birth message)."""
    _check_level("discovery prefix", discovery_prefix, allow_slash=True)
    return f"{discovery_prefix}/status"
