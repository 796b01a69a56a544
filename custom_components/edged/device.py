"""One edged device as seen over MQTT: its availability, its latest snapshot, and its
commands (``view_token`` for live view, ``snapshot``), answered on its response topic.

The broker is already trusted with full control of the device, so asking it for a
short-lived viewer token is no new trust; nothing long-lived is kept here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components import mqtt
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError

from .const import COMMAND_TIMEOUT_S

_LOGGER = logging.getLogger(__name__)


class CommandError(HomeAssistantError):
    """The device refused a command (``code`` is edged's error code) or did not answer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ViewerToken:
    """A play-only token for one viewer, and the WHEP endpoint it plays at."""

    url: str
    token: str
    user_id: str
    expires_at: float


class EdgedDevice:
    """The MQTT side of one device, subscribed while its config entry is loaded."""

    def __init__(self, hass: HomeAssistant, base_topic: str, device_id: str) -> None:
        self.hass = hass
        self.device_id = device_id
        self.root = f"{base_topic}/{device_id}"
        self.available = False
        self.snapshot: bytes | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._unsubscribe: list[Callable[[], None]] = []
        self._listeners: list[Callable[[], None]] = []

    async def async_start(self) -> None:
        """Subscribe to the device's availability, snapshots and command responses."""
        subscribe = mqtt.async_subscribe
        self._unsubscribe = [
            await subscribe(self.hass, f"{self.root}/availability", self._on_availability, 1),
            await subscribe(
                self.hass, f"{self.root}/snapshot", self._on_snapshot, 0, encoding=None
            ),
            await subscribe(self.hass, f"{self.root}/command/response", self._on_response, 1),
        ]

    @callback
    def async_stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()

    @callback
    def async_add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` whenever availability or the snapshot changes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    @callback
    def _on_availability(self, msg: mqtt.ReceiveMessage) -> None:
        self.available = msg.payload == "online"
        self._changed()

    @callback
    def _on_snapshot(self, msg: mqtt.ReceiveMessage) -> None:
        if isinstance(msg.payload, bytes) and msg.payload:
            self.snapshot = msg.payload
            self._changed()

    @callback
    def _on_response(self, msg: mqtt.ReceiveMessage) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        future = self._pending.pop(str(body.get("request_id")), None)
        if future is not None and not future.done():
            future.set_result(body)

    async def async_command(self, name: str, **args: Any) -> Any:
        """Run a command on the device; its result, or :class:`CommandError`."""
        request_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = self.hass.loop.create_future()
        self._pending[request_id] = future
        payload = json.dumps({"command": name, "request_id": request_id, **args})
        try:
            await mqtt.async_publish(self.hass, f"{self.root}/command", payload, qos=1)
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                body = await future
        except TimeoutError as err:
            raise CommandError(
                "device_unreachable", f"{self.device_id} did not answer {name!r}"
            ) from err
        finally:
            self._pending.pop(request_id, None)
        if not body.get("ok"):
            error = body.get("error") or {}
            raise CommandError(str(error.get("code", "refused")), str(error.get("message", "")))
        return body.get("result")

    async def async_viewer_token(self, ttl_s: float) -> ViewerToken:
        result = await self.async_command("view_token", ttl_s=ttl_s)
        try:
            return ViewerToken(
                str(result["url"]),
                str(result["token"]),
                str(result["user_id"]),
                float(result["expires_at"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CommandError("bad_reply", f"unexpected view_token result: {result!r}") from err
