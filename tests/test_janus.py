"""The room server's Janus client against a real Janus (Debian's ``janus``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from edged.engine.peer import make_peer_connection
from edged.media.aiortc.codec_choice import prefer_codec
from edged.media.sinks.analysis import luma_plane
from edged.media.sources.testpattern import TestPatternTrack
from edged.media.sources.timecode import decode
from edged.server.janus import (
    JanusConnection,
    JanusError,
    JanusHandle,
    JanusUnavailable,
)
from edged.testing.janus import Janus, free_port

from conftest import JANUS_SECRET
from janusd import requires_janus, subscribe

VIDEOROOM = "janus.plugin.videoroom"

pytestmark = requires_janus


@pytest.fixture
async def conn(janus: Janus) -> AsyncIterator[JanusConnection]:
    connection = await JanusConnection.connect(janus.url, api_secret=JANUS_SECRET)
    try:
        yield connection
    finally:
        await connection.close()


async def test_janus_answers_with_the_videoroom_plugin_only(conn: JanusConnection) -> None:
    info = await conn.info()
    assert info["janus"] == "server_info"
    assert list(info["plugins"]) == [VIDEOROOM]
    assert list(info["transports"]) == ["janus.transport.websockets"]


async def test_a_wrong_api_secret_is_refused_with_janus_own_code(janus: Janus) -> None:
    wrong = await JanusConnection.connect(janus.url, api_secret="not-the-secret")
    try:
        with pytest.raises(JanusError) as refused:
            await wrong.create_session()
        assert refused.value.code == 403
    finally:
        await wrong.close()


async def test_an_unreachable_janus_fails_at_once_with_a_clear_error() -> None:
    url = f"ws://127.0.0.1:{free_port()}/"
    with pytest.raises(JanusUnavailable, match="cannot reach janus"):
        await JanusConnection.connect(url, timeout_s=2.0)


async def test_plugin_refusals_carry_the_plugin_code(conn: JanusConnection) -> None:
    session = await conn.create_session()
    handle = await session.attach(VIDEOROOM)
    created = await handle.request({"request": "create", "room": "app/room-1"})
    assert created == {"videoroom": "created", "room": "app/room-1", "permanent": False}
    with pytest.raises(JanusError) as exists:
        await handle.request({"request": "create", "room": "app/room-1"})
    assert exists.value.code == 427  # JANUS_VIDEOROOM_ERROR_ROOM_EXISTS
    with pytest.raises(JanusError) as missing:
        await handle.message({"request": "join", "ptype": "publisher", "room": "nope", "id": "u"})
    assert missing.value.code == 426  # JANUS_VIDEOROOM_ERROR_NO_SUCH_ROOM
    await session.destroy()


async def test_a_kept_alive_session_outlives_the_timeout_and_a_silent_one_ends(
    tmp_path: Path,
) -> None:
    server = Janus(tmp_path, session_timeout_s=3)
    await server.start()
    connection = await JanusConnection.connect(server.url)
    try:
        kept = await connection.create_session(keepalive_s=1.0)
        silent = await connection.create_session(keepalive_s=3600.0)
        await asyncio.wait_for(silent.ended.wait(), 15)  # Janus's own "timeout" message
        assert not kept.ended.is_set()
        handle = await kept.attach(VIDEOROOM)  # Janus still knows the kept session
        assert handle.handle_id
    finally:
        await connection.close()
        await server.stop()


async def test_a_lost_janus_fails_waiting_requests_and_tells_every_handle(
    janus: Janus, conn: JanusConnection
) -> None:
    session = await conn.create_session()
    handle = await session.attach(VIDEOROOM)
    await janus.kill()
    assert await handle.events.get() == {"janus": "connection_lost"}
    assert conn.closed.is_set() and session.ended.is_set()
    with pytest.raises(JanusUnavailable):
        await handle.request({"request": "list"})


# ---- media through the VideoRoom ---------------------------------------------------------


async def publish(handle: JanusHandle, room: str, pc: RTCPeerConnection) -> None:
    await handle.message({"request": "join", "ptype": "publisher", "room": room, "id": "cam"})
    await pc.setLocalDescription(await pc.createOffer())
    reply = await handle.message(
        {"request": "publish", "audio": False, "video": True},
        {"type": "offer", "sdp": pc.localDescription.sdp},
    )
    assert reply.data.get("configured") == "ok" and reply.jsep is not None
    await pc.setRemoteDescription(RTCSessionDescription(reply.jsep["sdp"], "answer"))
    while (event := await asyncio.wait_for(handle.events.get(), 10))["janus"] != "webrtcup":
        assert event["janus"] not in ("hangup", "connection_lost"), event


async def test_time_coded_video_goes_through_a_janus_room_in_order(
    conn: JanusConnection,
) -> None:
    session = await conn.create_session()
    admin = await session.attach(VIDEOROOM)
    room = "testapp/relayed"
    await admin.request(
        {"request": "create", "room": room, "videocodec": "h264", "h264_profile": "42e01f"}
    )
    publisher, viewer = make_peer_connection([]), make_peer_connection([])
    try:
        source = TestPatternTrack(320, 240, 30)
        prefer_codec(publisher.addTransceiver(source, "sendonly"), "video/H264")
        await publish(await session.attach(VIDEOROOM), room, publisher)
        tracks: asyncio.Queue[Any] = asyncio.Queue()
        viewer.on("track", tracks.put_nowait)
        await subscribe(await session.attach(VIDEOROOM), room, viewer)
        track = await asyncio.wait_for(tracks.get(), 10)
        codes = []
        while len(codes) < 30:
            frame = await asyncio.wait_for(track.recv(), 10)
            code = decode(luma_plane(frame))
            if code is not None:
                codes.append(code.sequence)
        assert codes == sorted(codes) and len(set(codes)) == len(codes)
        participants = await admin.request({"request": "listparticipants", "room": room})
        assert [p["id"] for p in participants["participants"]] == ["cam"]
    finally:
        await publisher.close()
        await viewer.close()
        await session.destroy()
