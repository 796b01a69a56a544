"""edged: live view, snapshots and two-way talk of edged devices in Home Assistant.

The daemon announces its entities over MQTT discovery by itself; this integration adds
what MQTT cannot: a camera entity with native WebRTC live view, proxied to the device's
WHEP endpoint with a short-lived viewer token the device mints on request over MQTT.
"""

from __future__ import annotations

from typing import TypeAlias

from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryNotReady

from .const import CONF_BASE_TOPIC, CONF_DEVICE_ID, DEFAULT_BASE_TOPIC
from .device import EdgedDevice

PLATFORMS = [Platform.CAMERA]

EdgedConfigEntry: TypeAlias = ConfigEntry[EdgedDevice]


async def async_setup_entry(hass: HomeAssistant, entry: EdgedConfigEntry) -> bool:
    if not await mqtt.async_wait_for_mqtt_client(hass):
        raise ConfigEntryNotReady("MQTT is not connected")
    device = EdgedDevice(
        hass, entry.data.get(CONF_BASE_TOPIC, DEFAULT_BASE_TOPIC), entry.data[CONF_DEVICE_ID]
    )
    await device.async_start()
    entry.runtime_data = device
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: EdgedConfigEntry) -> bool:
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        entry.runtime_data.async_stop()
    return unloaded
