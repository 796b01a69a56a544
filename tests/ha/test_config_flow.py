"""Adding an edged device: offered by MQTT discovery, or by hand."""

from __future__ import annotations

from homeassistant import config_entries
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo
from pytest_homeassistant_custom_component.common import MockConfigEntry

from edged.testing.waiting import until

from conftest import DEVICE, Daemon
from custom_components.edged.const import DOMAIN


async def test_a_running_device_is_offered_by_itself_and_added_to_its_own_device(
    hass: HomeAssistant, daemon: Daemon, ha_mqtt: MockConfigEntry
) -> None:
    manager = hass.config_entries.flow

    def offered() -> list[dict[str, object]]:
        return [f for f in manager.async_progress_by_handler(DOMAIN)]

    flows = await until(offered, 30, "Home Assistant to offer the edged device")
    assert len(flows) == 1
    flow = flows[0]
    assert flow["context"]["source"] == config_entries.SOURCE_MQTT
    assert flow["context"]["unique_id"] == DEVICE
    assert flow["step_id"] == "confirm"
    result = await manager.async_configure(flow["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {"device_id": DEVICE, "base_topic": "edged"}
    await hass.async_block_till_done()
    entry = result["result"]
    # The camera joins the device the daemon announced over MQTT discovery.
    registry = dr.async_get(hass)
    device = await until(
        lambda: registry.async_get_device(identifiers={("mqtt", DEVICE)}),
        30,
        "the MQTT-discovered device",
    )
    await until(lambda: entry.entry_id in device_entries(registry), 30, "the camera's device")
    assert len([d for d in registry.devices.values() if DEVICE in str(d.identifiers)]) == 1
    # The device page as the daemon describes it: its name, and what it is (not "edged").
    assert device.name == "Front door"
    assert device.manufacturer == "edged" and device.model not in (None, "", "edged")
    # The same device offered again (its availability after a restart) is not added twice.
    again = await manager.async_init(
        DOMAIN,
        context={"source": config_entries.SOURCE_MQTT},
        data=MqttServiceInfo(
            topic=f"edged/{DEVICE}/availability",
            payload="online",
            qos=1,
            retain=True,
            subscribed_topic="edged/+/availability",
            timestamp=0,
        ),
    )
    assert again["type"] is FlowResultType.ABORT and again["reason"] == "already_configured"


def device_entries(registry: dr.DeviceRegistry) -> set[str]:
    device = registry.async_get_device(identifiers={("mqtt", DEVICE)})
    return set(device.config_entries) if device else set()


async def test_a_device_added_by_hand_checks_what_it_is_given(
    hass: HomeAssistant, ha_mqtt: MockConfigEntry
) -> None:
    manager = hass.config_entries.flow
    result = await manager.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    assert result["type"] is FlowResultType.FORM and result["step_id"] == "user"
    result = await manager.async_configure(
        result["flow_id"],
        {"device_id": "door 1", "base_topic": "edged/#", "server_url": "door1:8790"},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {
        "device_id": "invalid_device_id",
        "base_topic": "invalid_base_topic",
        "server_url": "invalid_url",
    }
    result = await manager.async_configure(
        result["flow_id"],
        {"device_id": DEVICE, "base_topic": "home/cams", "server_url": "http://door1.lan:8790/"},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {
        "device_id": DEVICE,
        "base_topic": "home/cams",
        "server_url": "http://door1.lan:8790",
    }
    again = await manager.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    again = await manager.async_configure(again["flow_id"], {"device_id": DEVICE})
    assert again["type"] is FlowResultType.ABORT and again["reason"] == "already_configured"


async def test_a_message_that_is_no_device_availability_is_not_offered(
    hass: HomeAssistant, ha_mqtt: MockConfigEntry
) -> None:
    for topic, payload in (("edged/door1/availability", ""), ("edged/availability", "online")):
        result = await hass.config_entries.flow.async_init(
            DOMAIN,
            context={"source": config_entries.SOURCE_MQTT},
            data=MqttServiceInfo(
                topic=topic,
                payload=payload,
                qos=1,
                retain=True,
                subscribed_topic="edged/+/availability",
                timestamp=0,
            ),
        )
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "invalid_discovery_info"
