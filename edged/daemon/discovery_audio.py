"""Home Assistant entities for the board's intercom: speaker volume and microphone gain
(``number``), speaker mute (``switch``) and the echo mode (``select``).

Each follows the real value in the retained ``state`` (its ``audio`` object) and sends
the matching MQTT command, so Home Assistant shows what the board does, not what was
last asked. :func:`edged.daemon.discovery.build_discovery` adds them for a board with
ALSA audio.
"""

from __future__ import annotations

import json
from typing import Any

_AUDIO = "(value_json.audio | default({}))"

TPL_SPEAKER_VOLUME = "{{ " + _AUDIO + ".speaker_volume | default(none) }}"
TPL_MIC_GAIN = "{{ " + _AUDIO + ".mic_gain_db | default(none) }}"
TPL_ECHO_MODE = "{{ " + _AUDIO + ".echo_mode | default(none) }}"
TPL_SPEAKER_MUTED = (
    "{% set m = " + _AUDIO + ".speaker_muted | default(none) %}"
    "{{ 'None' if m is none else ('ON' if m else 'OFF') }}"
)
CMD_SPEAKER_VOLUME = '{"command": "set_speaker_volume", "volume": {{ value | int }}}'
CMD_MIC_GAIN = '{"command": "set_mic_gain", "gain_db": {{ value | float }}}'
CMD_ECHO_MODE = '{"command": "set_echo_mode", "mode": "{{ value }}"}'
ECHO_MODES = ("cancel", "half_duplex", "off")


def _number(
    name: str, state: str, cmd: str, value: str, command: str, low: float, high: float, **extra: Any
) -> dict[str, Any]:
    return {
        "p": "number",
        "name": name,
        "stat_t": state,
        "val_tpl": value,
        "cmd_t": cmd,
        "cmd_tpl": command,
        "min": low,
        "max": high,
        "step": 1,
        "mode": "slider",
        "ent_cat": "config",
        **extra,
    }


def audio_components(state: str, cmd: str) -> dict[str, dict[str, Any]]:
    """The intercom's components, reading ``state`` and commanding on ``cmd``."""
    return {
        "speaker_volume": _number(
            "Speaker volume",
            state,
            cmd,
            TPL_SPEAKER_VOLUME,
            CMD_SPEAKER_VOLUME,
            0,
            100,
            unit_of_meas="%",
            ic="mdi:volume-high",
        ),
        "mic_gain": _number(
            "Microphone gain",
            state,
            cmd,
            TPL_MIC_GAIN,
            CMD_MIC_GAIN,
            -20,
            30,
            unit_of_meas="dB",
            ic="mdi:microphone-plus",
        ),
        "speaker_mute": {
            "p": "switch",
            "name": "Speaker mute",
            "stat_t": state,
            "val_tpl": TPL_SPEAKER_MUTED,
            "stat_on": "ON",
            "stat_off": "OFF",
            "cmd_t": cmd,
            "pl_on": json.dumps({"command": "mute_speaker", "muted": True}),
            "pl_off": json.dumps({"command": "mute_speaker", "muted": False}),
            "ent_cat": "config",
            "ic": "mdi:volume-off",
        },
        "echo_mode": {
            "p": "select",
            "name": "Echo cancellation",
            "stat_t": state,
            "val_tpl": TPL_ECHO_MODE,
            "cmd_t": cmd,
            "cmd_tpl": CMD_ECHO_MODE,
            "options": list(ECHO_MODES),
            "ent_cat": "config",
            "ic": "mdi:account-voice",
        },
    }
