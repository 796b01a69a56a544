"""Home Assistant MQTT discovery: one device payload with all its components.

The daemon publishes :func:`build_discovery`'s payload, retained, on
``<prefix>/device/<object_id>/config`` (device-based discovery), and publishes it again
whenever Home Assistant announces ``online`` on ``<prefix>/status``. An empty retained
payload on the same topic (:func:`removal_payload`) removes the device and every
component it announced. A component left out of a later payload is removed alone.

Keys follow Home Assistant's MQTT discovery schema. Structural keys use the documented
abbreviations (``dev``, ``o``, ``cmps``, ``p``, ``uniq_id``, ``stat_t``, ``val_tpl``,
``json_attr_t``, ``avty_t`` ...); the few options without an abbreviation in Home
Assistant's own table (``event_types``, ``options``, ``suggested_display_precision``)
are spelled out. Availability is shared at the device level; ``qos`` is set on each
component, because Home Assistant releases up to at least 2026.5.1 ignored a
device-level ``qos`` (home-assistant/core issue 170166). JSON attribute names avoid
the ones Home Assistant drops (``state``, ``name``, ``icon`` ...).

Templates read exactly the daemon's payloads (``state``, ``quality``'s ``summary``,
``health``) and never dereference a missing key: each lookup goes through
``default(...)``, so a payload without a field yields ``None`` (Home Assistant's
"unknown") instead of a template error. Lists (users, streams) are JSON attributes,
never a state, because a state is capped at 255 characters. The room state is an
``enum`` sensor whose options are words ("Connected", :data:`ROOM_STATE_WORDS`): an
MQTT entity has no translations, so Home Assistant shows an option exactly as sent,
and automations offer the same words.

Minimum Home Assistant: :data:`MIN_HA_VERSION`, the release that brought device-based
discovery (``<prefix>/device/...`` with ``cmps``), the newest feature used here; the
MQTT event platform, discovery ``origin`` and the rest are older.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..model import RoomState
from .discovery_audio import audio_components
from .discovery_device import PROJECT_URL, DeviceInfo
from .health import BoardHealth
from .topics import DEFAULT_DISCOVERY_PREFIX, Topics

MIN_HA_VERSION = "2024.11"
MANUFACTURER = "edged"
ORIGIN_NAME = "edged"
PAYLOAD_AVAILABLE = "online"
PAYLOAD_NOT_AVAILABLE = "offline"
QOS = 1
DIAGNOSTIC = "diagnostic"

_OBJECT_ID_BAD = re.compile(r"[^a-zA-Z0-9_-]")

# ---- templates ------------------------------------------------------------------
# Each renders to the state Home Assistant expects, or to "None" (unknown).

_ROOM = "(value_json.room | default({}))"
_PUB = "(value_json.publisher | default({}))"
_SUMMARY = "(value_json.summary | default({}))"

ROOM_STATE_WORDS = {s.name: s.name.capitalize() for s in RoomState}
"""The room state as the sensor shows it: "Connected", not the enum's CONNECTED."""
TPL_ROOM_STATE = (
    "{{ " + json.dumps(ROOM_STATE_WORDS) + ".get(" + _ROOM + ".state | default(none)) }}"
)
TPL_ROOM_ATTRS = (
    "{% set r = " + _ROOM + " %}"
    "{{ {'room_id': r.room_id | default(none), 'reason': r.reason | default(none),"
    " 'error_code': r.error_code | default(none)} | tojson }}"
)
TPL_USER_COUNT = "{{ value_json.user_count | default(none) }}"
TPL_USERS_ATTRS = "{{ {'users': value_json.users | default([])} | tojson }}"
TPL_STREAM_COUNT = "{{ value_json.stream_count | default(none) }}"
TPL_STREAMS_ATTRS = "{{ {'streams': value_json.streams | default([])} | tojson }}"
TPL_PUBLISHING = (
    "{{ 'ON' if " + _PUB + ".state | default('NO_PUBLISH')"
    " in ('PUBLISH_REQUESTING', 'PUBLISHING') else 'OFF' }}"
)
TPL_PUBLISHER_ATTRS = (
    "{% set p = " + _PUB + " %}"
    "{{ {'stream_id': p.stream_id | default(none), 'publisher_state': p.state | default(none),"
    " 'error_code': p.error_code | default(none)} | tojson }}"
)
TPL_VIEWERS = "{{ " + _PUB + ".viewers | default(none) }}"
TPL_VIDEO_KBPS = "{{ " + _SUMMARY + ".video_kbps | default(none) }}"
TPL_SEND_FPS = "{{ " + _SUMMARY + ".send_fps | default(none) }}"
TPL_RTT_MS = (
    "{% set r = " + _SUMMARY + ".rtt_ms | default(none) %}{{ none if r is none else r | round(1) }}"
)
TPL_PACKET_LOSS_PCT = (
    "{% set r = " + _SUMMARY + ".packet_loss_rate | default(none) %}"
    "{{ none if r is none else (r * 100) | round(2) }}"
)
TPL_CPU_TEMPERATURE = "{{ value_json.cpu_temperature_c | default(none) }}"
TPL_THROTTLED = (
    "{% set t = value_json.throttled | default(none) %}"
    "{{ 'None' if t is none else ('ON' if t else 'OFF') }}"
)
TPL_THROTTLED_ATTRS = (
    "{{ {'throttled_flags': value_json.throttled_flags | default(none),"
    " 'under_voltage': value_json.under_voltage | default(none)} | tojson }}"
)
TPL_UNDER_VOLTAGE = (
    "{% set u = value_json.under_voltage | default(none) %}"
    "{{ 'None' if u is none else ('ON' if u else 'OFF') }}"
)

USER_EVENT_TYPES = ("joined", "left")


def command_payload(name: str) -> str:
    """The JSON a Home Assistant button or switch sends on the command topic."""
    return json.dumps({"command": name})


def discovery_object_id(device_id: str) -> str:
    """The device id as Home Assistant's discovery topic allows it ([a-zA-Z0-9_-])."""
    return _OBJECT_ID_BAD.sub("_", device_id)


def discovery_topic(device_id: str, discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX) -> str:
    """``<prefix>/device/<object_id>/config``: where the device payload is retained."""
    return f"{discovery_prefix}/device/{discovery_object_id(device_id)}/config"


def removal_payload() -> str:
    """The payload that removes the device: empty, retained, on :func:`discovery_topic`.

    Home Assistant then removes every component the device announced, and the
    broker drops the retained discovery message.
    """
    return ""


def _sensor(name: str, topic: str, template: str, **extra: Any) -> dict[str, Any]:
    return {"p": "sensor", "name": name, "stat_t": topic, "val_tpl": template, **extra}


def _components(topics: Topics, health: BoardHealth | None) -> dict[str, dict[str, Any]]:
    state, quality, cmd = topics.state, topics.quality, topics.command
    measurement = {"stat_cla": "measurement"}
    comps: dict[str, dict[str, Any]] = {
        "room_state": _sensor(
            "Room state",
            state,
            TPL_ROOM_STATE,
            dev_cla="enum",
            options=list(ROOM_STATE_WORDS.values()),
            json_attr_t=state,
            json_attr_tpl=TPL_ROOM_ATTRS,
            ic="mdi:door",
        ),
        "users": _sensor(
            "Other users in the room",
            state,
            TPL_USER_COUNT,
            json_attr_t=state,
            json_attr_tpl=TPL_USERS_ATTRS,
            ic="mdi:account-multiple",
            **measurement,
        ),
        "streams": _sensor(
            "Streams from others",
            state,
            TPL_STREAM_COUNT,
            json_attr_t=state,
            json_attr_tpl=TPL_STREAMS_ATTRS,
            ic="mdi:video-box",
            **measurement,
        ),
        "publishing": {
            "p": "switch",
            "name": "Publishing",
            "stat_t": state,
            "val_tpl": TPL_PUBLISHING,
            "stat_on": "ON",
            "stat_off": "OFF",
            "cmd_t": cmd,
            "pl_on": command_payload("start_publishing"),
            "pl_off": command_payload("stop_publishing"),
            "json_attr_t": state,
            "json_attr_tpl": TPL_PUBLISHER_ATTRS,
            "ic": "mdi:broadcast",
        },
        "login": {
            "p": "button",
            "name": "Log in",
            "cmd_t": cmd,
            "pl_prs": command_payload("login_room"),
            "ic": "mdi:login",
        },
        "logout": {
            "p": "button",
            "name": "Log out",
            "cmd_t": cmd,
            "pl_prs": command_payload("logout_room"),
            "ic": "mdi:logout",
        },
        "take_snapshot": {
            "p": "button",
            "name": "Take snapshot",
            "cmd_t": cmd,
            "pl_prs": command_payload("snapshot"),
            "ic": "mdi:camera-iris",
        },
        "snapshot": {"p": "camera", "name": "Snapshot", "t": topics.snapshot},
        "user_events": {
            "p": "event",
            "name": "Users joining and leaving",
            "stat_t": topics.user_event,
            "event_types": list(USER_EVENT_TYPES),
            "ic": "mdi:account-switch",
        },
        "viewers": _sensor("Viewers", state, TPL_VIEWERS, ic="mdi:eye", **measurement),
        "bitrate": _sensor(
            "Video bitrate",
            quality,
            TPL_VIDEO_KBPS,
            dev_cla="data_rate",
            unit_of_meas="kbit/s",
            suggested_display_precision=0,
            **measurement,
        ),
        "fps": _sensor(
            "Send frame rate",
            quality,
            TPL_SEND_FPS,
            unit_of_meas="fps",
            suggested_display_precision=1,
            ic="mdi:filmstrip",
            ent_cat=DIAGNOSTIC,
            **measurement,
        ),
        "rtt": _sensor(
            "Round-trip time",
            quality,
            TPL_RTT_MS,
            dev_cla="duration",
            unit_of_meas="ms",
            suggested_display_precision=1,
            ent_cat=DIAGNOSTIC,
            **measurement,
        ),
        "packet_loss": _sensor(
            "Packet loss",
            quality,
            TPL_PACKET_LOSS_PCT,
            unit_of_meas="%",
            suggested_display_precision=2,
            ic="mdi:lan-disconnect",
            ent_cat=DIAGNOSTIC,
            **measurement,
        ),
    }
    if health is not None and health.reports_temperature:
        comps["cpu_temperature"] = _sensor(
            "CPU temperature",
            topics.health,
            TPL_CPU_TEMPERATURE,
            dev_cla="temperature",
            unit_of_meas="°C",
            suggested_display_precision=1,
            ent_cat=DIAGNOSTIC,
            **measurement,
        )
    if health is not None and health.reports_throttling:
        comps["throttled"] = {
            "p": "binary_sensor",
            "name": "Throttled",
            "stat_t": topics.health,
            "val_tpl": TPL_THROTTLED,
            "pl_on": "ON",
            "pl_off": "OFF",
            "dev_cla": "problem",
            "json_attr_t": topics.health,
            "json_attr_tpl": TPL_THROTTLED_ATTRS,
            "ent_cat": DIAGNOSTIC,
        }
    elif health is not None and health.under_voltage is not None:
        comps["under_voltage"] = {
            "p": "binary_sensor",
            "name": "Under-voltage",
            "stat_t": topics.health,
            "val_tpl": TPL_UNDER_VOLTAGE,
            "pl_on": "ON",
            "pl_off": "OFF",
            "dev_cla": "problem",
            "ent_cat": DIAGNOSTIC,
        }
    return comps


def build_discovery(
    topics: Topics,
    device_id: str,
    device_name: str,
    version: str,
    discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX,
    health: BoardHealth | None = None,
    device: DeviceInfo | None = None,
    support_url: str | None = PROJECT_URL,
    audio: bool = False,
) -> tuple[str, dict[str, Any]]:
    """The discovery topic and the device payload (publish it as JSON, retained, QoS 1).

    Every component's unique id is ``<device_id>_<key>``, ``<key>`` being its key in
    ``cmps``. CPU temperature and throttling (or under-voltage alone) appear only when
    ``health`` shows the board reports them; the intercom's controls when ``audio``
    (:mod:`.discovery_audio`). ``device`` is what the device page says the device is
    and where its web page is (:mod:`.discovery_device`).
    """
    components = _components(topics, health)
    if audio:
        components.update(audio_components(topics.state, topics.command))
    for key, comp in components.items():
        comp["uniq_id"] = f"{device_id}_{key}"
        comp["qos"] = QOS
    origin: dict[str, Any] = {"name": ORIGIN_NAME, "sw": version}
    if support_url:
        origin["url"] = support_url
    info = device or DeviceInfo()
    dev: dict[str, Any] = {
        "ids": [device_id],
        "name": device_name,
        "mf": MANUFACTURER,
        "mdl": info.model,
        "sw": version,
    }
    if info.hw_version:
        dev["hw"] = info.hw_version
    if info.configuration_url:
        dev["cu"] = info.configuration_url
    payload: dict[str, Any] = {
        "dev": dev,
        "o": origin,
        "avty_t": topics.availability,
        "pl_avail": PAYLOAD_AVAILABLE,
        "pl_not_avail": PAYLOAD_NOT_AVAILABLE,
        "cmps": components,
    }
    return discovery_topic(device_id, discovery_prefix), payload
