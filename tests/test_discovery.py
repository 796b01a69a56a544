"""Home Assistant device discovery, checked against Home Assistant's documented schema.

The expectations below are transcribed from Home Assistant's MQTT integration:
``abbreviations.py`` (key abbreviations), ``schemas.py`` (device discovery schema:
``device`` with an identifier, ``origin`` with a name, ``components`` each with a
``platform`` and, for entity platforms, a ``unique_id``; shared availability),
``discovery.py`` (topic pattern, abbreviation expansion per scope, empty payload
removes the device), and each platform's schema (sensor, binary_sensor, switch,
button, camera, event). Templates are rendered with Jinja2's sandbox, as Home
Assistant does, with an ``Undefined`` that records every use of a missing value the
way Home Assistant's logging ``Undefined`` logs it.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, ClassVar

import pytest

from edged.daemon.actions import SCHEMAS
from edged.daemon.commands import parse_command
from edged.daemon.discovery import (
    MIN_HA_VERSION,
    build_discovery,
    discovery_object_id,
    discovery_topic,
    removal_payload,
)
from edged.daemon.discovery_device import FALLBACK_MODEL, PROJECT_URL, DeviceInfo
from edged.daemon.health import BoardHealth
from edged.daemon.topics import Topics

# ---- Home Assistant's schema, as documented --------------------------------------

ABBREVIATIONS = {
    "avty": "availability",
    "avty_mode": "availability_mode",
    "avty_t": "availability_topic",
    "avty_tpl": "availability_template",
    "cmd_t": "command_topic",
    "cmd_tpl": "command_template",
    "cmps": "components",
    "dev": "device",
    "dev_cla": "device_class",
    "e": "encoding",
    "en": "enabled_by_default",
    "ent_cat": "entity_category",
    "exp_aft": "expire_after",
    "frc_upd": "force_update",
    "ic": "icon",
    "json_attr_t": "json_attributes_topic",
    "json_attr_tpl": "json_attributes_template",
    "name": "name",
    "o": "origin",
    "obj_id": "object_id",
    "opt": "optimistic",
    "p": "platform",
    "pl_avail": "payload_available",
    "pl_not_avail": "payload_not_available",
    "pl_off": "payload_off",
    "pl_on": "payload_on",
    "pl_prs": "payload_press",
    "ret": "retain",
    "stat_cla": "state_class",
    "stat_off": "state_off",
    "stat_on": "state_on",
    "stat_t": "state_topic",
    "t": "topic",
    "uniq_id": "unique_id",
    "unit_of_meas": "unit_of_measurement",
    "val_tpl": "value_template",
}
DEVICE_ABBREVIATIONS = {
    "cns": "connections",
    "cu": "configuration_url",
    "hw": "hw_version",
    "ids": "identifiers",
    "mdl": "model",
    "mf": "manufacturer",
    "name": "name",
    "sa": "suggested_area",
    "sn": "serial_number",
    "sw": "sw_version",
}
ORIGIN_ABBREVIATIONS = {"name": "name", "sw": "sw_version", "url": "support_url"}

# Options the device level may carry and share with every component (SHARED_OPTIONS).
SHARED = {
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "command_topic",
    "encoding",
    "payload_available",
    "payload_not_available",
    "state_topic",
    "qos",
}
DEVICE_LEVEL = SHARED | {"device", "origin", "components", "message_expiry_interval"}
DEVICE_KEYS = set(DEVICE_ABBREVIATIONS.values()) | {"model_id", "via_device"}
ORIGIN_KEYS = set(ORIGIN_ABBREVIATIONS.values())

# MQTT_ENTITY_COMMON_SCHEMA, the availability schema and MQTT_BASE_SCHEMA.
COMMON = {
    "platform",
    "name",
    "unique_id",
    "qos",
    "encoding",
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "payload_available",
    "payload_not_available",
    "device",
    "origin",
    "enabled_by_default",
    "entity_category",
    "entity_picture",
    "icon",
    "json_attributes_topic",
    "json_attributes_template",
    "default_entity_id",
    "object_id",
    "visible_by_default",
}
PLATFORMS: dict[str, tuple[set[str], set[str]]] = {
    # platform: (required options, further allowed options)
    "sensor": (
        {"state_topic"},
        {
            "value_template",
            "device_class",
            "expire_after",
            "force_update",
            "last_reset_value_template",
            "options",
            "suggested_display_precision",
            "state_class",
            "unit_of_measurement",
        },
    ),
    "binary_sensor": (
        {"state_topic"},
        {
            "value_template",
            "device_class",
            "expire_after",
            "force_update",
            "off_delay",
            "payload_on",
            "payload_off",
        },
    ),
    "switch": (
        {"command_topic"},
        {
            "state_topic",
            "value_template",
            "command_template",
            "optimistic",
            "retain",
            "payload_on",
            "payload_off",
            "state_on",
            "state_off",
            "device_class",
        },
    ),
    "button": ({"command_topic"}, {"command_template", "device_class", "payload_press", "retain"}),
    "number": (
        {"command_topic"},
        {
            "state_topic",
            "value_template",
            "command_template",
            "min",
            "max",
            "step",
            "mode",
            "unit_of_measurement",
            "device_class",
            "optimistic",
            "retain",
            "payload_reset",
        },
    ),
    "select": (
        {"command_topic", "options"},
        {"state_topic", "value_template", "command_template", "optimistic", "retain"},
    ),
    "camera": ({"topic"}, {"image_encoding"}),
    "event": ({"state_topic", "event_types"}, {"value_template", "device_class"}),
}
SENSOR_DEVICE_CLASS_UNITS = {
    "data_rate": {"bit/s", "kbit/s", "Mbit/s", "Gbit/s", "B/s", "kB/s", "MB/s", "GB/s"},
    "duration": {"d", "h", "min", "s", "ms", "µs"},
    "temperature": {"°C", "°F", "K"},
    "enum": {None},
}
BINARY_SENSOR_DEVICE_CLASSES = {"problem", "running", "connectivity", "power"}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
# JSON attributes Home Assistant drops (MQTT_ATTRIBUTES_BLOCKED).
ATTRIBUTES_BLOCKED = {
    "assumed_state",
    "available",
    "context_recent_time",
    "device_class",
    "device_info",
    "entity_category",
    "entity_picture",
    "entity_registry_enabled_default",
    "extra_state_attributes",
    "force_update",
    "friendly_name",
    "icon",
    "name",
    "should_poll",
    "state",
    "supported_features",
    "unique_id",
    "unit_of_measurement",
}
# The discovery topic, after the prefix (discovery.py's TOPIC_MATCHER).
TOPIC_MATCHER = re.compile(
    r"(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config"
)


def expand(payload: dict[str, Any]) -> dict[str, Any]:
    """Home Assistant's abbreviation expansion of a device payload, scope by scope."""
    out = {ABBREVIATIONS.get(k, k): v for k, v in payload.items()}
    out["device"] = {DEVICE_ABBREVIATIONS.get(k, k): v for k, v in out["device"].items()}
    out["origin"] = {ORIGIN_ABBREVIATIONS.get(k, k): v for k, v in out["origin"].items()}
    out["components"] = {
        cid: {ABBREVIATIONS.get(k, k): v for k, v in comp.items()}
        for cid, comp in out["components"].items()
    }
    return out


def effective(full: dict[str, Any], cid: str) -> dict[str, Any]:
    """A component's configuration with the shared device-level options merged in."""
    comp = dict(full["components"][cid])
    for option in SHARED:
        if option in full and option not in comp:
            comp[option] = full[option]
    return comp


def valid_topic(topic: Any, *, publish: bool) -> bool:
    if not isinstance(topic, str) or not topic or "\0" in topic or len(topic) > 65535:
        return False
    return not (publish and ("+" in topic or "#" in topic))


# ---- fixtures ----------------------------------------------------------------------

TOPICS = Topics("edged", "cam-1")
FULL_HEALTH = BoardHealth(cpu_temperature_c=47.2, throttled_flags=0x50005)


def build(
    health: BoardHealth | None = FULL_HEALTH, audio: bool = True, **kw: Any
) -> tuple[str, dict[str, Any]]:
    return build_discovery(
        TOPICS, "cam-1", "Hall camera", "0.1.0", health=health, audio=audio, **kw
    )


STATE = {
    "device_id": "cam-1",
    "version": "0.1.0",
    "room": {
        "room_id": "r",
        "state": "CONNECTED",
        "state_code": 2,
        "reason": "LOGINED",
        "reason_code": 1,
        "error_code": 0,
    },
    "user_id": "cam-1",
    "users": [{"user_id": "u1", "user_name": "Ann"}],
    "user_count": 1,
    "streams": [{"stream_id": "s1", "user_id": "u1", "extra_info": ""}],
    "stream_count": 1,
    "publisher": {
        "stream_id": "dev-cam",
        "state": "PUBLISHING",
        "state_code": 2,
        "error_code": 0,
        "viewers": 2,
    },
    "players": {"s1": {"state": "PLAYING", "state_code": 2, "error_code": 0}},
    "audio": {
        "speaker_volume": 80,
        "speaker_muted": False,
        "mic_gain_db": 6.0,
        "echo_mode": "half_duplex",
        "echo_canceller": "speexdsp",
    },
}
QUALITY = {
    "publisher": {
        "dev-cam": {
            "video_kbps": 812.3,
            "audio_kbps": 31.9,
            "send_fps": 30.0,
            "capture_fps": 30.0,
            "encode_fps": 30.0,
            "rtt_ms": 3.1,
            "packet_loss_rate": 0.0123,
            "level": 0,
            "viewers": 2,
        }
    },
    "players": {},
    "summary": {
        "video_kbps": 812.3,
        "send_fps": 30.0,
        "rtt_ms": 3.1,
        "packet_loss_rate": 0.0123,
        "viewers": 2,
    },
}
HEALTH = FULL_HEALTH.to_json()


# ---- the payload, key by key -------------------------------------------------------


def test_topic_is_device_discovery_topic() -> None:
    topic, _ = build()
    assert topic == "homeassistant/device/cam-1/config"
    match = TOPIC_MATCHER.fullmatch(topic.removeprefix("homeassistant/"))
    assert match and match["component"] == "device" and match["object_id"] == "cam-1"
    assert build_discovery(TOPICS, "cam-1", "x", "1", discovery_prefix="ha")[0].startswith("ha/")


def test_object_id_of_a_device_id_with_a_dot() -> None:
    assert discovery_object_id("pi.hall") == "pi_hall"
    topic = discovery_topic("pi.hall")
    assert TOPIC_MATCHER.fullmatch(topic.removeprefix("homeassistant/"))
    _, payload = build_discovery(Topics("edged", "pi.hall"), "pi.hall", "Pi", "0.1.0")
    assert payload["cmps"]["users"]["uniq_id"] == "pi.hall_users"


def test_every_key_is_documented() -> None:
    _, payload = build()
    for key in payload:
        assert key in ABBREVIATIONS, f"device-level key {key!r} is not an HA abbreviation"
    full = expand(payload)
    assert set(full) <= DEVICE_LEVEL
    for key in payload["dev"]:
        assert key in DEVICE_ABBREVIATIONS
    for key in payload["o"]:
        assert key in ORIGIN_ABBREVIATIONS
    for cid, comp in full["components"].items():
        required, allowed = PLATFORMS[comp["platform"]]
        unknown = set(comp) - COMMON - required - allowed
        assert not unknown, f"{cid}: options HA does not know: {unknown}"
        short = {k for k in payload["cmps"][cid] if k not in ABBREVIATIONS}
        assert short <= required | allowed | COMMON, f"{cid}: {short}"


def test_device_discovery_schema() -> None:
    _, payload = build()
    full = expand(payload)
    assert set(full) >= {"device", "origin", "components"}
    device, origin = full["device"], full["origin"]
    assert set(device) <= DEVICE_KEYS
    assert device["identifiers"] == ["cam-1"]
    assert device["name"] == "Hall camera"
    assert device["manufacturer"] == "edged"
    assert device["model"] == FALLBACK_MODEL
    assert device["sw_version"] == "0.1.0"
    assert "hw_version" not in device and "configuration_url" not in device
    assert set(origin) <= ORIGIN_KEYS
    assert origin == {"name": "edged", "sw_version": "0.1.0", "support_url": PROJECT_URL}
    # availability_topic and availability are mutually exclusive
    assert "availability" not in full
    assert full["availability_topic"] == TOPICS.availability
    assert full["payload_available"] == "online"
    assert full["payload_not_available"] == "offline"
    json.dumps(payload)  # serialisable as is


def test_model_and_support_url() -> None:
    info = DeviceInfo("Raspberry Pi 4 Model B", "Rev 1.4", "http://door.local:8790")
    _, payload = build(device=info, support_url="https://example.org/edged")
    assert payload["dev"]["mdl"] == "Raspberry Pi 4 Model B"
    assert payload["dev"]["hw"] == "Rev 1.4"
    assert payload["dev"]["cu"] == "http://door.local:8790"
    assert payload["o"]["url"] == "https://example.org/edged"
    _, payload = build(support_url=None)
    assert "url" not in payload["o"]


def test_components_have_platform_unique_id_and_required_options() -> None:
    _, payload = build()
    full = expand(payload)
    unique_ids = set()
    for cid, comp in full["components"].items():
        assert re.fullmatch(r"[a-z_]+", cid)
        assert comp["platform"] in PLATFORMS
        assert comp["unique_id"] == f"cam-1_{cid}"
        unique_ids.add(comp["unique_id"])
        required, _ = PLATFORMS[comp["platform"]]
        assert required <= set(comp), f"{cid} lacks {required - set(comp)}"
        assert comp["qos"] == 1
        assert isinstance(comp["name"], str) and comp["name"]
        assert not comp["name"].lower().startswith("hall camera")
        eff = effective(full, cid)
        assert eff["availability_topic"] == TOPICS.availability
        for key in ("state_topic", "json_attributes_topic", "topic"):
            if key in comp:
                assert valid_topic(comp[key], publish=False)
                assert comp[key] in TOPICS.all().values()
        if "command_topic" in comp:
            assert comp["command_topic"] == TOPICS.command
            assert valid_topic(comp["command_topic"], publish=True)
        if "entity_category" in comp:
            assert comp["entity_category"] in {"config", "diagnostic"}
            if comp["platform"] in ("sensor", "binary_sensor"):
                assert comp["entity_category"] != "config"
    assert len(unique_ids) == len(full["components"])


def test_the_entities_asked_for() -> None:
    _, payload = build()
    full = expand(payload)["components"]
    platforms = {cid: comp["platform"] for cid, comp in full.items()}
    assert platforms == {
        "room_state": "sensor",
        "users": "sensor",
        "streams": "sensor",
        "publishing": "switch",
        "login": "button",
        "logout": "button",
        "take_snapshot": "button",
        "snapshot": "camera",
        "user_events": "event",
        "viewers": "sensor",
        "bitrate": "sensor",
        "fps": "sensor",
        "rtt": "sensor",
        "packet_loss": "sensor",
        "cpu_temperature": "sensor",
        "throttled": "binary_sensor",
        "speaker_volume": "number",
        "mic_gain": "number",
        "speaker_mute": "switch",
        "echo_mode": "select",
    }
    assert full["snapshot"]["topic"] == TOPICS.snapshot
    assert "image_encoding" not in full["snapshot"]  # raw JPEG bytes
    assert full["user_events"]["state_topic"] == TOPICS.user_event
    assert full["user_events"]["event_types"] == ["joined", "left"]
    assert full["bitrate"]["device_class"] == "data_rate"
    assert full["bitrate"]["unit_of_measurement"] == "kbit/s"
    assert full["rtt"]["device_class"] == "duration"
    assert full["rtt"]["unit_of_measurement"] == "ms"
    assert full["packet_loss"]["unit_of_measurement"] == "%"
    assert full["cpu_temperature"]["device_class"] == "temperature"
    assert full["cpu_temperature"]["unit_of_measurement"] == "°C"
    assert full["throttled"]["device_class"] == "problem"
    for cid in ("fps", "rtt", "packet_loss", "cpu_temperature", "throttled"):
        assert full[cid]["entity_category"] == "diagnostic"
    for cid in ("users", "streams", "room_state", "publishing"):
        assert full[cid]["json_attributes_topic"] == TOPICS.state


def test_sensor_classes_units_and_options() -> None:
    _, payload = build()
    for cid, comp in expand(payload)["components"].items():
        if comp["platform"] == "sensor":
            dc = comp.get("device_class")
            if dc is not None:
                assert comp.get("unit_of_measurement") in SENSOR_DEVICE_CLASS_UNITS[dc], cid
            if "state_class" in comp:
                assert comp["state_class"] in STATE_CLASSES
            if "options" in comp:  # only for enum sensors, without unit or state class
                assert dc == "enum" and comp["options"]
                assert "state_class" not in comp and "unit_of_measurement" not in comp
            if "suggested_display_precision" in comp:
                assert isinstance(comp["suggested_display_precision"], int)
                assert comp["suggested_display_precision"] >= 0
        elif comp["platform"] == "binary_sensor":
            assert comp["device_class"] in BINARY_SENSOR_DEVICE_CLASSES


def test_commands_are_accepted_by_the_daemon() -> None:
    _, payload = build()
    full = expand(payload)["components"]
    sent = {
        "login": full["login"]["payload_press"],
        "logout": full["logout"]["payload_press"],
        "take_snapshot": full["take_snapshot"]["payload_press"],
        "on": full["publishing"]["payload_on"],
        "off": full["publishing"]["payload_off"],
    }
    names = {k: parse_command(v, SCHEMAS).name for k, v in sent.items()}
    assert names == {
        "login": "login_room",
        "logout": "logout_room",
        "take_snapshot": "snapshot",
        "on": "start_publishing",
        "off": "stop_publishing",
    }
    # the switch compares its state with state_on/state_off, not with the command JSON
    assert full["publishing"]["state_on"] == "ON"
    assert full["publishing"]["state_off"] == "OFF"


def test_intercom_entities_send_commands_the_daemon_accepts() -> None:
    comps = components()
    sent = [
        render(comps["speaker_volume"]["command_template"], 55.0, raw=True),
        render(comps["mic_gain"]["command_template"], "-6", raw=True),
        render(comps["echo_mode"]["command_template"], "off", raw=True),
        comps["speaker_mute"]["payload_on"],
        comps["speaker_mute"]["payload_off"],
    ]
    parsed = [parse_command(text, SCHEMAS) for text in sent]
    assert [(c.name, c.args.model_dump()) for c in parsed] == [
        ("set_speaker_volume", {"volume": 55}),
        ("set_mic_gain", {"gain_db": -6.0}),
        ("set_echo_mode", {"mode": "off"}),
        ("mute_speaker", {"muted": True}),
        ("mute_speaker", {"muted": False}),
    ]
    for cid in ("speaker_volume", "mic_gain", "speaker_mute", "echo_mode"):
        assert comps[cid]["entity_category"] == "config"
    muted = {**STATE, "audio": {**STATE["audio"], "speaker_muted": True}}
    assert render(comps["speaker_mute"]["value_template"], muted) == "ON"


def test_intercom_entities_only_for_a_board_with_audio() -> None:
    _, payload = build(audio=False)
    assert not set(payload["cmps"]) & {"speaker_volume", "mic_gain", "speaker_mute", "echo_mode"}


@pytest.mark.parametrize(
    ("health", "present"),
    [
        (None, set()),
        (BoardHealth(), set()),
        (BoardHealth(cpu_temperature_c=40.0), {"cpu_temperature"}),
        (BoardHealth(throttled_flags=0), {"throttled"}),
        (BoardHealth(under_voltage_alarm=False), {"under_voltage"}),
        (FULL_HEALTH, {"cpu_temperature", "throttled"}),
    ],
)
def test_board_health_components_only_when_reported(
    health: BoardHealth | None, present: set[str]
) -> None:
    _, payload = build(health)
    health_ids = {"cpu_temperature", "throttled", "under_voltage"}
    assert set(payload["cmps"]) & health_ids == present


def test_removal_and_min_version() -> None:
    assert removal_payload() == ""
    assert re.fullmatch(r"20\d\d\.\d{1,2}", MIN_HA_VERSION)
    year, month = (int(x) for x in MIN_HA_VERSION.split("."))
    assert (year, month) >= (2024, 11)  # device-based discovery (cmps)


# ---- templates, rendered -----------------------------------------------------------


@functools.cache
def jinja_env() -> tuple[Any, Any]:
    """Jinja2's sandbox, as Home Assistant uses, and an ``Undefined`` that records
    what Home Assistant's logging ``Undefined`` would log."""
    jinja2 = pytest.importorskip("jinja2")
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class RecordingUndefined(jinja2.Undefined):  # type: ignore[misc,name-defined]
        used: ClassVar[list[str]] = []

        def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
            self.used.append(self._undefined_message)
            return super()._fail_with_undefined_error(*args, **kwargs)

        def __str__(self) -> str:
            self.used.append(self._undefined_message)
            return str(super().__str__())

        def __iter__(self) -> Any:
            self.used.append(self._undefined_message)
            return super().__iter__()

        def __bool__(self) -> bool:
            self.used.append(self._undefined_message)
            return bool(super().__bool__())

    return ImmutableSandboxedEnvironment(undefined=RecordingUndefined), RecordingUndefined


def render(template: str, payload: Any, *, raw: bool = False) -> str:
    """``template`` rendered on a received ``payload`` (as JSON), or with ``raw``, as a
    command template on an entity's own value."""
    env, undefined = jinja_env()
    undefined.used.clear()
    if raw:
        out = env.from_string(template).render(value=payload).strip()
    else:
        text = json.dumps(payload)
        out = env.from_string(template).render(value=text, value_json=json.loads(text)).strip()
    assert not undefined.used, f"undefined used: {undefined.used}"
    return str(out)


def payload_for(comp: dict[str, Any]) -> Any:
    topic = comp.get("state_topic")
    return {TOPICS.state: STATE, TOPICS.quality: QUALITY, TOPICS.health: HEALTH}[topic]


def components() -> dict[str, dict[str, Any]]:
    _, payload = build()
    return expand(payload)["components"]


def test_value_templates_on_the_daemon_payloads() -> None:
    comps = components()
    states = {
        cid: render(comp["value_template"], payload_for(comp))
        for cid, comp in comps.items()
        if "value_template" in comp
    }
    assert states == {
        "room_state": "Connected",
        "users": "1",
        "streams": "1",
        "publishing": "ON",
        "viewers": "2",
        "bitrate": "812.3",
        "fps": "30.0",
        "rtt": "3.1",
        "packet_loss": "1.23",
        "cpu_temperature": "47.2",
        "throttled": "ON",
        "speaker_volume": "80",
        "mic_gain": "6.0",
        "speaker_mute": "OFF",
        "echo_mode": "half_duplex",
    }
    assert states["echo_mode"] in comps["echo_mode"]["options"]
    assert states["room_state"] in comps["room_state"]["options"]


def test_attribute_templates_render_json_objects() -> None:
    comps = components()
    attrs = {
        cid: json.loads(render(comp["json_attributes_template"], payload_for(comp)))
        for cid, comp in comps.items()
        if "json_attributes_template" in comp
    }
    assert attrs["users"] == {"users": STATE["users"]}
    assert attrs["streams"] == {"streams": STATE["streams"]}
    assert attrs["room_state"] == {"room_id": "r", "reason": "LOGINED", "error_code": 0}
    assert attrs["publishing"] == {
        "stream_id": "dev-cam",
        "publisher_state": "PUBLISHING",
        "error_code": 0,
    }
    for cid, names in attrs.items():
        assert not set(names) & ATTRIBUTES_BLOCKED, cid
    assert attrs["throttled"] == {"throttled_flags": "0x50005", "under_voltage": True}


@pytest.mark.parametrize(
    ("state", "expected"),
    [("NO_PUBLISH", "OFF"), ("PUBLISH_REQUESTING", "ON"), ("PUBLISHING", "ON")],
)
def test_publishing_switch_follows_the_publisher(state: str, expected: str) -> None:
    tpl = components()["publishing"]["value_template"]
    assert render(tpl, {**STATE, "publisher": {**STATE["publisher"], "state": state}}) == expected


@pytest.mark.parametrize(
    ("rate", "expected"), [(0.0, "0.0"), (0.5, "50.0"), (1.0, "100.0"), (None, "None")]
)
def test_packet_loss_is_a_percentage(rate: float | None, expected: str) -> None:
    tpl = components()["packet_loss"]["value_template"]
    assert render(tpl, {"summary": {**QUALITY["summary"], "packet_loss_rate": rate}}) == expected


@pytest.mark.parametrize(
    ("flags", "expected"), [(0, "OFF"), (0x50000, "OFF"), (0x4, "ON"), (None, "None")]
)
def test_throttled_binary_sensor(flags: int | None, expected: str) -> None:
    tpl = components()["throttled"]["value_template"]
    assert render(tpl, BoardHealth(throttled_flags=flags).to_json()) == expected


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"summary": {}},
        {"summary": None},
        {"room": None, "publisher": None, "summary": {"rtt_ms": None}},
        {"cpu_temperature_c": None, "throttled": None},
    ],
)
def test_templates_survive_missing_keys(payload: dict[str, Any]) -> None:
    for cid, comp in components().items():
        if "value_template" in comp:
            out = render(comp["value_template"], payload)
            expected = "OFF" if cid == "publishing" else "None"
            assert out == expected, cid
        if "json_attributes_template" in comp:
            assert isinstance(json.loads(render(comp["json_attributes_template"], payload)), dict)


def test_numeric_sensors_render_numbers_or_none() -> None:
    for cid, comp in components().items():
        numeric = comp["platform"] == "sensor" and (
            "state_class" in comp or "unit_of_measurement" in comp
        )
        if numeric:
            out = render(comp["value_template"], payload_for(comp))
            assert out == "None" or float(out) >= 0, cid


def test_user_event_payload_is_used_as_is() -> None:
    comp = components()["user_events"]
    # no value template: the message itself is the JSON object with "event_type"
    assert "value_template" not in comp
    assert set(comp["event_types"]) == {"joined", "left"}
