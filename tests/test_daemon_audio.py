"""`edged run` as an intercom: the audio commands change what its speaker PCM receives, the
retained state follows, and Home Assistant gets the entities."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
import yaml
from alsa.pcms import SPEAKER, AlsaPcms, speaker_level

from edged.engine.config import PublishConfig
from edged.media.alsa.webrtc import aec3_available
from edged.model import User
from edged.testing.waiting import until

from broker import Broker
from conftest import RunningServer
from daemonkit import DEVICE, DaemonProcess, command, state_where, write_config
from enginekit import make_engine

pytestmark = pytest.mark.netns

HALF_DB = 20 * 0.30103


@pytest.fixture
async def daemon(
    tmp_path: Path, srv: RunningServer, broker: Broker, pcms: AlsaPcms
) -> AsyncIterator[DaemonProcess]:
    config = tmp_path / "edged.yaml"
    write_config(config, srv, broker)
    document = yaml.safe_load(config.read_text())
    document["audio"]["playback_device"] = SPEAKER
    document["audio"]["speaker_volume"] = 80
    config.write_text(yaml.safe_dump(document))
    d = DaemonProcess(config, tmp_path)
    yield d
    await d.close()


async def test_audio_commands_change_the_speaker_and_the_state(
    daemon: DaemonProcess, broker: Broker, srv: RunningServer, pcms: AlsaPcms
) -> None:
    guest, _ = make_engine(srv)  # publishes a 440 Hz tone
    async with broker.client() as mqtt, guest:
        await mqtt.subscribe(f"edged/{DEVICE}/#", qos=1)
        await mqtt.subscribe("homeassistant/device/#", qos=1)
        await daemon.start()
        state = await state_where(mqtt, lambda s: s["room"]["state"] == "CONNECTED")
        assert state["audio"]["speaker_volume"] == 80 and state["audio"]["echo_mode"] == "cancel"
        # audio.echo_canceller "auto": WebRTC's AEC3 where its plugin is installed.
        assert state["audio"]["echo_canceller"] == ("webrtc" if aec3_available() else "speexdsp")
        await guest.login_room("porch", User("guest"))
        await guest.start_publishing("guest-voice", PublishConfig(video=False))
        assert (await command(mqtt, "start_playing", stream_id="guest-voice"))["ok"]
        await until(lambda: len(pcms.speaker_samples(2)) > 48_000, 30, "the speaker plays")
        before = await speaker_level(pcms)

        answer = await command(mqtt, "set_speaker_volume", volume=40)
        assert answer["ok"] and answer["result"]["speaker_volume"] == 40
        await state_where(mqtt, lambda s: s["audio"]["speaker_volume"] == 40)
        halved = await speaker_level(pcms)

        assert (await command(mqtt, "mute_speaker"))["result"]["speaker_muted"] is True
        muted = await speaker_level(pcms)
        await command(mqtt, "mute_speaker", muted=False)

        assert (await command(mqtt, "set_mic_gain", gain_db=-6))["result"]["mic_gain_db"] == -6
        mode = await command(mqtt, "set_echo_mode", mode="half_duplex")
        assert mode["result"]["echo_mode"] == "half_duplex"
        state = await state_where(mqtt, lambda s: s["audio"]["echo_mode"] == "half_duplex")
        assert (state["audio"]["mic_gain_db"], state["audio"]["speaker_muted"]) == (-6, False)
        refused = await command(mqtt, "set_speaker_volume", volume=150)
        assert refused["error"]["code"] == 1006012
        discovery = await mqtt_discovery(mqtt)
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait() == 0
    # 80 % to 40 % of full scale is -6 dB.
    assert abs(before - halved - HALF_DB) <= 0.5, (before, halved)
    assert before - muted >= 60
    assert {"speaker_volume", "mic_gain", "speaker_mute", "echo_mode"} <= set(discovery)


async def mqtt_discovery(mqtt: aiomqtt.Client) -> dict[str, object]:
    """The components of the device's retained discovery payload."""
    await mqtt.unsubscribe("homeassistant/device/#")
    await mqtt.subscribe("homeassistant/device/#", qos=1)  # the retained copy again
    async for message in mqtt.messages:
        if message.topic.matches(f"homeassistant/device/{DEVICE}/config"):
            payload = json.loads(message.payload)  # type: ignore[arg-type]
            return dict(payload["cmps"])
    raise AssertionError("unreachable")
