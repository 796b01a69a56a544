"""The device's camera: native WebRTC live view proxied to the device's WHEP endpoint,
and still images from the snapshots it publishes on MQTT.

Home Assistant's frontend makes the offer; the entity asks the device for a viewer token
(``view_token``, minutes long, play-only), posts the offer to WHEP, answers with the
device's answer, trickles the frontend's candidates by ``PATCH`` and ends with ``DELETE``.
"""

from __future__ import annotations

import logging

from homeassistant.components.camera import Camera, CameraEntityFeature
from homeassistant.components.camera.webrtc import WebRTCAnswer, WebRTCError, WebRTCSendMessage
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from webrtc_models import RTCIceCandidateInit

from .const import CONF_SERVER_URL, MQTT_DEVICE_DOMAIN, TOKEN_TTL_S
from .device import CommandError, EdgedDevice
from .whep import WhepError, WhepSession, rebase

_LOGGER = logging.getLogger(__name__)


async def async_setup_entry(
    hass: HomeAssistant, entry: ConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    async_add_entities([EdgedCamera(entry, entry.runtime_data)])


class EdgedCamera(Camera):
    """Live view and snapshots of one edged device."""

    _attr_has_entity_name = True
    _attr_name = "Live view"
    _attr_supported_features = CameraEntityFeature.STREAM

    def __init__(self, entry: ConfigEntry, device: EdgedDevice) -> None:
        super().__init__()
        self._device = device
        self._server_url: str | None = entry.data.get(CONF_SERVER_URL) or None
        self._sessions: dict[str, WhepSession] = {}
        self._attr_unique_id = f"{device.device_id}_live_view"
        # The device the daemon announces over MQTT discovery: the same entry, not a second.
        self._attr_device_info = DeviceInfo(identifiers={(MQTT_DEVICE_DOMAIN, device.device_id)})

    async def async_added_to_hass(self) -> None:
        await super().async_added_to_hass()
        self.async_on_remove(self._device.async_add_listener(self._device_changed))

    async def async_will_remove_from_hass(self) -> None:
        for session_id in list(self._sessions):
            self.close_webrtc_session(session_id)
        await super().async_will_remove_from_hass()

    @callback
    def _device_changed(self) -> None:
        self.async_write_ha_state()

    @property
    def available(self) -> bool:
        return self._device.available

    async def async_camera_image(
        self, width: int | None = None, height: int | None = None
    ) -> bytes | None:
        if self._device.snapshot is None and self._device.available:
            try:  # the device publishes one on its snapshot topic
                await self._device.async_command("snapshot")
            except CommandError as err:
                _LOGGER.debug("%s: no snapshot: %s", self._device.device_id, err)
        return self._device.snapshot

    async def async_handle_async_webrtc_offer(
        self, offer_sdp: str, session_id: str, send_message: WebRTCSendMessage
    ) -> None:
        # Registered at once: the frontend trickles candidates while the token is asked for.
        session = self._sessions[session_id] = WhepSession(async_get_clientsession(self.hass))
        try:
            viewer = await self._device.async_viewer_token(TOKEN_TTL_S)
            session.url, session.token = rebase(viewer.url, self._server_url), viewer.token
            answer = await session.post(offer_sdp)
        except CommandError as err:
            self._sessions.pop(session_id, None)
            send_message(WebRTCError(err.code, f"edged refused a viewer token: {err}"))
            return
        except WhepError as err:
            self._sessions.pop(session_id, None)
            send_message(WebRTCError(err.code, f"edged refused to play: {err}"))
            return
        except OSError as err:  # aiohttp's connection errors are OSErrors
            self._sessions.pop(session_id, None)
            send_message(WebRTCError("device_unreachable", f"{session.url}: {err}"))
            return
        if session_id not in self._sessions:  # closed while the offer was on its way
            self.hass.async_create_background_task(session.delete(), "edged WHEP delete")
            return
        send_message(WebRTCAnswer(answer))

    async def async_on_webrtc_candidate(
        self, session_id: str, candidate: RTCIceCandidateInit
    ) -> None:
        session = self._sessions.get(session_id)
        if session is None:
            raise HomeAssistantError(f"no live view session {session_id}")
        try:
            await session.trickle(
                candidate.sdp_mid, candidate.candidate, candidate.sdp_m_line_index
            )
        except (WhepError, OSError) as err:
            raise HomeAssistantError(f"edged refused a candidate: {err}") from err

    @callback
    def close_webrtc_session(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            self.hass.async_create_background_task(session.delete(), "edged WHEP delete")
