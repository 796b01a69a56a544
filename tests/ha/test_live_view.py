"""Live view in Home Assistant: the frontend's WebRTC offer, through the integration's
camera entity and the device's WHEP endpoint, answered by a running `edged run`.

A real aiortc peer stands in for Home Assistant's frontend and speaks to Home Assistant
as the frontend does (the websocket API's ``camera/webrtc/offer`` and ``candidate``);
it checks what a person watching would notice: the test pattern's time codes, decoded
in order.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from alsa.pcms import tone_share
from homeassistant.components import mqtt
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from edged.media.sinks.analysis import AnalysisSink
from edged.media.sources.tone import ToneTrack
from edged.testing.waiting import until
from edged.tokens import mint

from conftest import APP, DEVICE, SECRET, Daemon, DeviceState
from custom_components.edged.const import DOMAIN
from custom_components.edged.whep import WhepError, WhepSession

CAMERA = "camera.front_door_live_view"
"""The device's name (from the daemon's discovery) and the entity's."""


@dataclass
class Viewer:
    """The frontend's stand-in: a peer, what it decodes, and its websocket session."""

    pc: RTCPeerConnection = field(default_factory=RTCPeerConnection)
    sink: AnalysisSink = field(default_factory=AnalysisSink)
    messages: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    subscription: int = 0
    session_id: str = ""

    def decoded(self) -> int:
        return self.sink.video.stats().decoded if self.sink.video else 0


async def add_device(hass: HomeAssistant) -> MockConfigEntry:
    """Add the device as a person does: once Home Assistant shows the device the daemon
    announced over MQTT discovery."""
    devices = dr.async_get(hass)
    await until(
        lambda: devices.async_get_device(identifiers={("mqtt", DEVICE)}), 30, "the MQTT device"
    )
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=DEVICE,
        title=DEVICE,
        data={"device_id": DEVICE, "base_topic": "edged"},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def watch(hass: HomeAssistant, ws: Any, microphone: MediaStreamTrack | None = None) -> Viewer:
    """Make the offer as the frontend does: audio (recvonly, or sendrecv with the
    ``microphone`` when its talk button is on), then video recvonly; candidates trickled
    one by one after the offer."""
    viewer = Viewer()
    viewer.pc.on("track", viewer.sink.attach)
    if microphone is None:
        viewer.pc.addTransceiver("audio", direction="recvonly")
    else:
        viewer.pc.addTransceiver(microphone, direction="sendrecv")
    viewer.pc.addTransceiver("video", direction="recvonly")
    await viewer.pc.setLocalDescription(await viewer.pc.createOffer())
    sdp = viewer.pc.localDescription.sdp
    # A browser's offer, made before gathering ends: no candidates, no end-of-candidates.
    offer = "".join(
        line + "\r\n"
        for line in sdp.splitlines()
        if not line.startswith(("a=candidate", "a=end-of-candidates"))
    )
    candidates = [
        (index, line[2:]) for index, line in media_lines(sdp) if line.startswith("a=candidate")
    ]
    await ws.send_json_auto_id({"type": "camera/webrtc/offer", "entity_id": CAMERA, "offer": offer})
    result = await ws.receive_json()
    assert result["success"], result
    viewer.subscription = result["id"]
    session = await ws.receive_json()
    assert session["event"]["type"] == "session"
    viewer.session_id = session["event"]["session_id"]
    for index, candidate in candidates:
        await ws.send_json_auto_id(
            {
                "type": "camera/webrtc/candidate",
                "entity_id": CAMERA,
                "session_id": viewer.session_id,
                "candidate": {"candidate": candidate, "sdpMLineIndex": index},
            }
        )
        reply = await ws.receive_json()
        assert reply["success"], reply
    event = (await ws.receive_json())["event"]
    assert event["type"] == "answer", event
    await viewer.pc.setRemoteDescription(RTCSessionDescription(event["answer"], "answer"))
    return viewer


def media_lines(sdp: str) -> list[tuple[int, str]]:
    """Each media-level line with the index of its m-section."""
    index, out = -1, []
    for line in sdp.splitlines():
        if line.startswith("m="):
            index += 1
        elif index >= 0:
            out.append((index, line))
    return out


def viewers(state: dict[str, Any]) -> set[str]:
    return {u["user_id"] for u in state["users"] if u["user_id"].startswith("viewer-")}


async def test_the_dashboard_plays_the_device_live_and_two_viewers_at_once(
    hass: HomeAssistant,
    daemon: Daemon,
    ha_mqtt: MockConfigEntry,
    device_state: DeviceState,
    hass_ws_client: WebSocketGenerator,
) -> None:
    await add_device(hass)
    registry = er.async_get(hass)
    camera = registry.async_get(CAMERA)
    assert camera is not None and camera.unique_id == f"{DEVICE}_live_view"
    device = dr.async_get(hass).async_get(camera.device_id or "")
    assert device is not None and ("mqtt", DEVICE) in device.identifiers
    await until(lambda: hass.states.get(CAMERA).state != STATE_UNAVAILABLE, 30, "camera online")
    ws = await hass_ws_client(hass)
    await device_state.until(lambda s: s["publisher"]["state"] == "PUBLISHING", "publishing")

    first = await watch(hass, ws)
    await until(lambda: first.decoded() >= 30, 30, "30 frames in the first view")
    assert first.sink.video is not None and first.sink.video.stats().out_of_order == 0
    state = await device_state.until(lambda s: len(viewers(s)) == 1, "one viewer in the room")
    (first_user,) = viewers(state)

    second = await watch(hass, ws)  # a second offer while the first runs
    await until(lambda: second.decoded() >= 30, 30, "30 frames in the second view")
    await device_state.until(lambda s: len(viewers(s)) == 2, "two viewers in the room")
    still = first.decoded()
    await until(lambda: first.decoded() >= still + 10, 20, "the first view going on")

    # The frontend closes the first session: its viewer leaves the room at once.
    await ws.send_json_auto_id({"type": "unsubscribe_events", "subscription": first.subscription})
    await device_state.until(
        lambda s: first_user not in viewers(s) and len(viewers(s)) == 1, "the first viewer gone"
    )
    going = second.decoded()
    await until(lambda: second.decoded() >= going + 10, 20, "the second view going on")
    for viewer in (first, second):
        await viewer.pc.close()
        await viewer.sink.close()


async def test_talking_from_the_dashboard_plays_on_the_devices_speaker(
    hass: HomeAssistant,
    daemon: Daemon,
    ha_mqtt: MockConfigEntry,
    device_state: DeviceState,
    hass_ws_client: WebSocketGenerator,
) -> None:
    """The frontend's microphone (a 660 Hz tone) through the integration to the device,
    which plays it on its speaker while the dashboard goes on seeing and hearing it."""
    await add_device(hass)
    await device_state.until(lambda s: s["publisher"]["state"] == "PUBLISHING", "publishing")
    ws = await hass_ws_client(hass)
    viewer = await watch(hass, ws, microphone=ToneTrack(660.0))
    speaker = daemon.pcms
    try:
        await until(lambda: viewer.decoded() >= 30, 30, "30 frames while talking")
        await until(lambda: len(speaker.speaker_samples(2)) > 96_000, 30, "the speaker plays")
        mark = len(speaker.speaker_samples(2))
        await until(lambda: len(speaker.speaker_samples(2)) >= mark + 48_000, 10)
        heard = speaker.speaker_samples(2)[mark : mark + 48_000]
        assert tone_share(heard, 48_000, 660.0) > 0.5, "the dashboard's voice is not heard"
        assert viewer.sink.audio is not None and viewer.sink.audio.tone_present(440.0)
    finally:
        await viewer.pc.close()
        await viewer.sink.close()


async def test_the_camera_follows_the_device_offline_and_back(
    hass: HomeAssistant, daemon: Daemon, ha_mqtt: MockConfigEntry
) -> None:
    await add_device(hass)
    await until(lambda: hass.states.get(CAMERA).state != STATE_UNAVAILABLE, 30, "camera online")
    await daemon.stop()  # the daemon says "offline" as it leaves (and its will would)
    await until(lambda: hass.states.get(CAMERA).state == STATE_UNAVAILABLE, 30, "unavailable")
    await daemon.start()
    await until(lambda: hass.states.get(CAMERA).state != STATE_UNAVAILABLE, 30, "online again")


async def test_a_refused_view_is_an_error_the_frontend_shows(
    hass: HomeAssistant,
    daemon: Daemon,
    ha_mqtt: MockConfigEntry,
    device_state: DeviceState,
    hass_ws_client: WebSocketGenerator,
) -> None:
    await add_device(hass)
    await device_state.until(lambda s: s["publisher"]["state"] == "PUBLISHING", "publishing")
    await mqtt.async_publish(hass, f"edged/{DEVICE}/command", '{"command": "stop_publishing"}')
    await device_state.until(lambda s: s["publisher"]["state"] == "NO_PUBLISH", "stopped")
    ws = await hass_ws_client(hass)
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    await ws.send_json_auto_id(
        {"type": "camera/webrtc/offer", "entity_id": CAMERA, "offer": pc.localDescription.sdp}
    )
    assert (await ws.receive_json())["success"]
    assert (await ws.receive_json())["event"]["type"] == "session"
    error = (await ws.receive_json())["event"]
    assert error["type"] == "error"
    assert error["code"] == "1003031"  # NOT_PUBLISHING, from the device's view_token
    await pc.close()


async def test_an_expired_token_is_refused_by_the_endpoint_with_its_code(
    hass: HomeAssistant, daemon: Daemon
) -> None:
    from homeassistant.helpers.aiohttp_client import async_get_clientsession

    expired = mint(SECRET, APP, "viewer-old", 60, room_id="porch", now=time.time() - 3600)
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    session = WhepSession(
        async_get_clientsession(hass), f"{daemon.url}/whep/{APP}/{DEVICE}-cam", expired
    )
    try:
        await session.post(pc.localDescription.sdp)
    except WhepError as err:
        assert err.code == "1002042"  # TOKEN_EXPIRED
        assert "TOKEN_EXPIRED" in str(err)
    else:
        raise AssertionError("an expired token played")
    finally:
        await pc.close()
