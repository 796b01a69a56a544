"""Adding a device: offered by itself when the device's retained availability appears on
MQTT (the manifest's ``mqtt`` topic), or by hand with its id and, when Home Assistant
reaches its room server at another address than the device does, that URL."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import voluptuous as vol
from homeassistant.config_entries import ConfigFlow, ConfigFlowResult
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo

from .const import CONF_BASE_TOPIC, CONF_DEVICE_ID, CONF_SERVER_URL, DEFAULT_BASE_TOPIC, DOMAIN

DEVICE_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
TOPIC_LEVELS = re.compile(r"^[^#+\s]+$")


def _valid_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class EdgedConfigFlow(ConfigFlow, domain=DOMAIN):
    """One config entry per device, its unique id the device id."""

    VERSION = 1

    def __init__(self) -> None:
        self._device_id = ""
        self._base_topic = DEFAULT_BASE_TOPIC

    async def async_step_mqtt(self, discovery_info: MqttServiceInfo) -> ConfigFlowResult:
        """``<base>/<device id>/availability`` arrived (retained, from the daemon)."""
        levels = discovery_info.topic.split("/")
        if len(levels) < 3 or levels[-1] != "availability" or not discovery_info.payload:
            return self.async_abort(reason="invalid_discovery_info")
        device_id = levels[-2]
        if not DEVICE_ID.match(device_id):
            return self.async_abort(reason="invalid_discovery_info")
        self._device_id, self._base_topic = device_id, "/".join(levels[:-2])
        await self.async_set_unique_id(device_id)
        self._abort_if_unique_id_configured()
        self.context["title_placeholders"] = {"device_id": device_id}
        return await self.async_step_confirm()

    async def async_step_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask before adding a discovered device."""
        if user_input is None:
            return self.async_show_form(
                step_id="confirm", description_placeholders={"device_id": self._device_id}
            )
        return self.async_create_entry(
            title=self._device_id,
            data={CONF_DEVICE_ID: self._device_id, CONF_BASE_TOPIC: self._base_topic},
        )

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """By hand: the device id, its MQTT base topic and, optionally, its server's URL."""
        errors: dict[str, str] = {}
        if user_input is not None:
            device_id = user_input[CONF_DEVICE_ID].strip()
            base = user_input.get(CONF_BASE_TOPIC, DEFAULT_BASE_TOPIC).strip().strip("/")
            url = (user_input.get(CONF_SERVER_URL) or "").strip()
            if not DEVICE_ID.match(device_id):
                errors[CONF_DEVICE_ID] = "invalid_device_id"
            if not base or not TOPIC_LEVELS.match(base):
                errors[CONF_BASE_TOPIC] = "invalid_base_topic"
            if url and not _valid_url(url):
                errors[CONF_SERVER_URL] = "invalid_url"
            if not errors:
                await self.async_set_unique_id(device_id)
                self._abort_if_unique_id_configured()
                data = {CONF_DEVICE_ID: device_id, CONF_BASE_TOPIC: base}
                if url:
                    data[CONF_SERVER_URL] = url.rstrip("/")
                return self.async_create_entry(title=device_id, data=data)
        schema = vol.Schema(
            {
                vol.Required(CONF_DEVICE_ID): str,
                vol.Optional(CONF_BASE_TOPIC, default=DEFAULT_BASE_TOPIC): str,
                vol.Optional(CONF_SERVER_URL): str,
            }
        )
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
        )
