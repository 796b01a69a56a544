"""The web client page in Debian's Chromium, in calls with edged engines and browsers.

Every test drives the real page (edged/server/web) through Playwright against a real
room server, with Chromium's fake camera (a test picture) and microphone (a beep).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from browser import Chromium

from edged.engine.events import EventRecorder, RoomStreamUpdate, RoomUserUpdate
from edged.errors import ERRORS, ErrorCode
from edged.model import UpdateType, User
from edged.testing.waiting import until

from conftest import APP, RunningServer, ServerFactory
from enginekit import AnalysisSink, make_engine
from pagekit import frames_at_least, fresh_time_code, join_query, joined_page, page_url

pytest_plugins = ["pagekit"]  # fixture `chromium`

HOST_ADDRESSES = ("198.18.0.1", "198.18.0.2")


@pytest.mark.netns
async def test_browser_plays_an_engine_stream_and_reads_its_time_code(
    srv: RunningServer, chromium: Chromium
) -> None:
    engine, _ = make_engine(srv)
    async with engine:
        await engine.login_room("r1", User("device", "Front door"))
        await engine.start_publishing("door-cam")
        page = await joined_page(chromium, srv, "alice")
        code = await fresh_time_code(page, "door-cam")
        assert (code["width"], code["height"]) == (320, 240)
        tile = ".tile[data-stream-id='door-cam']"
        assert "Front door" in await page.page.inner_text(tile)
        await page.wait_text(f"{tile} .quality", "H264")


WITHOUT_H264 = """
  const real = RTCRtpReceiver.getCapabilities.bind(RTCRtpReceiver);
  RTCRtpReceiver.getCapabilities = (kind) => {
    const caps = real(kind);
    if (kind !== "video" || caps === null) return caps;
    return { ...caps, codecs: caps.codecs.filter((c) => c.mimeType !== "video/H264") };
  };
"""
"""What stock Firefox on Debian says: it cannot decode H.264 (no OpenH264)."""


@pytest.mark.netns
async def test_a_browser_without_h264_offers_vp8_and_reads_the_device_time_code(
    srv: RunningServer, chromium: Chromium
) -> None:
    """A page whose browser cannot decode H.264 (as stock Firefox) makes the offer itself
    with what it can decode; the device answers VP8 from one more encode."""
    engine, _ = make_engine(srv)
    async with engine:
        await engine.login_room("r1", User("device", "Front door"))
        await engine.start_publishing("door-cam")
        page = await chromium.page()
        await page.page.add_init_script(WITHOUT_H264)
        await page.open(page_url(srv), **join_query(srv, "alice"))
        await page.join()
        code = await fresh_time_code(page, "door-cam")
        assert (code["width"], code["height"]) == (320, 240)
        await page.wait_text(".tile[data-stream-id='door-cam'] .quality", "VP8")
        video = engine.publishers["door-cam"].video
        assert video is not None and (video.vp8_encoders_created, video.vp8_viewers) == (1, 1)


@pytest.mark.netns
async def test_engine_plays_the_browser_camera_and_microphone_over_h264(
    srv: RunningServer, chromium: Chromium
) -> None:
    page = await joined_page(chromium, srv, "alice")
    await page.publish("camera")
    engine, _ = make_engine(srv)
    async with engine:
        await engine.login_room("r1", User("device"))
        sink = AnalysisSink()
        await engine.start_playing("alice-cam", sink)
        await until(lambda: sink.video is not None and sink.video.frames_received >= 30, 30)
        await until(lambda: sink.audio is not None and sink.audio.seconds_received >= 3.0, 30)
        assert sink.audio is not None
        beep = np.abs(sink.audio.samples(3.0))
        assert beep.max() > 0.05, "the fake microphone's beep did not arrive"
        codec = await page.evaluate(
            """async () => {
              const link = [...window.edged.call.publisher.links.values()][0];
              const stats = await link.pc.getStats();
              const video = [...stats.values()]
                .find(s => s.type === 'outbound-rtp' && s.kind === 'video');
              return stats.get(video.codecId).mimeType;
            }"""
        )
        assert codec == "video/H264"


@pytest.mark.netns
async def test_viewer_without_camera_permission_hides_behind_mdns_and_the_engine_resolves_it(
    srv: RunningServer, chromium: Chromium
) -> None:
    engine, _ = make_engine(srv)
    async with engine:
        await engine.login_room("r1", User("device"))
        await engine.start_publishing("door-cam")
        page = await joined_page(chromium, srv, "viewer", fake_media=False)
        await page.wait_playing("door-cam")
        sent = await page.evaluate(
            "() => window.edged.call.players.get('door-cam').link.candidatesSent"
        )
        hosts = [c.split()[4] for c in sent if c]
        assert hosts and all(h.endswith(".local") for h in hosts), sent
        await until(
            lambda: any(
                address in HOST_ADDRESSES
                for viewer in engine.publishers["door-cam"].viewers
                for address in viewer.addresses
            )
        )


@pytest.mark.netns
async def test_users_and_streams_coming_and_going_appear_in_the_page(
    srv: RunningServer, chromium: Chromium
) -> None:
    page = await joined_page(chromium, srv, "alice")
    assert await page.list_ids("users", "data-user-id") == ["alice"]
    engine, _ = make_engine(srv)
    async with engine:
        await engine.login_room("r1", User("bob", "Bob"))
        await page.wait_list("users", "data-user-id", "bob")
        await engine.start_publishing("bob-cam")
        await page.wait_list("streams", "data-stream-id", "bob-cam")
        await page.wait_playing("bob-cam")
        await engine.stop_publishing("bob-cam")
        await page.wait_list_without("streams", "data-stream-id", "bob-cam")
        await page.page.wait_for_selector(".tile[data-stream-id='bob-cam']", state="detached")
        await engine.logout_room()
    await page.wait_list_without("users", "data-user-id", "bob")
    log = await page.page.inner_text("#log")
    for line in ("Bob joined", "Bob publishes bob-cam", "bob-cam ended (stopped)", "Bob left"):
        assert line in log


@pytest.mark.netns
async def test_leaving_shows_the_room_left_and_the_others_see_it(
    srv: RunningServer, chromium: Chromium
) -> None:
    engine, rec = make_engine(srv)
    async with engine:
        await engine.login_room("r1", User("device"), _notify())
        page = await joined_page(chromium, srv, "alice")
        await page.publish("camera")
        await until(lambda: _stream_added(rec, "alice-cam"))
        await page.leave()
        await page.wait_room("DISCONNECTED", "LOGOUT")
        state = await page.room_state()
        assert state["text"] == "Not in a room" and state["message"] == ""
        assert await page.list_ids("users", "data-user-id") == []
        await until(lambda: _user_deleted(rec, "alice"))
        assert await page.page.is_enabled("#join")


@pytest.mark.netns
async def test_same_user_logging_in_elsewhere_kicks_the_page_out_with_1002050(
    srv: RunningServer, chromium: Chromium
) -> None:
    page = await joined_page(chromium, srv, "alice")
    await srv.user("alice")  # the same user id logs in from another client
    await page.wait_room("DISCONNECTED", "KICK_OUT")
    state = await page.room_state()
    assert state["text"] == "Kicked out"
    assert state["code"] == "1002050"
    assert "1002050 KICKED_OUT" in state["message"]
    assert ERRORS[ErrorCode.KICKED_OUT].meaning in state["message"]
    assert "KICK_OUT" in state["detail"]
    await page.screenshot("web-kicked-out.png")


@pytest.mark.netns
async def test_a_lost_socket_is_resumed_silently_and_the_call_goes_on(
    srv: RunningServer, chromium: Chromium
) -> None:
    engine, rec = make_engine(srv)
    async with engine:
        await engine.login_room("r1", User("device"), _notify())
        await engine.start_publishing("door-cam")
        page = await joined_page(chromium, srv, "alice")
        await page.wait_playing("door-cam")
        conn = next(
            c for c in srv.server.connections if c.session and c.session.user.user_id == "alice"
        )
        await conn.ws.close()
        await page.wait_room("CONNECTED", "RECONNECTED")
        log = await page.page.inner_text("#log")
        assert "RECONNECTING" in log
        await page.wait_playing("door-cam")
        shown = await page.video_frames("door-cam")
        await until(lambda: frames_at_least(page, "door-cam", shown + 10))
        assert not _user_deleted(rec, "alice"), "a resume must be silent to the others"


@pytest.mark.netns
async def test_a_refused_token_is_explained_with_the_error_table(
    srv: RunningServer, chromium: Chromium
) -> None:
    page = await (await chromium.page()).open(
        page_url(srv), app=APP, room="r1", user="alice", token="not-a-token"
    )
    await page.join()
    await page.wait_room("DISCONNECTED", "LOGIN_FAILED")
    state = await page.room_state()
    info = ERRORS[ErrorCode.AUTHENTICATION_FAILED]
    assert state["text"] == "Could not join"
    assert f"1002033 AUTHENTICATION_FAILED: {info.meaning}" in state["message"]
    assert info.remedy in state["message"]


@pytest.mark.netns
async def test_development_mode_hands_the_page_a_token(
    server_factory: ServerFactory, chromium: Chromium
) -> None:
    srv = await server_factory(dev_mode=True)
    page = await (await chromium.page()).open(page_url(srv), app=APP, room="lab", user="tester")
    assert await page.page.is_visible("#dev-note")
    await page.join()
    await page.wait_room("CONNECTED", "LOGINED")
    token = await page.page.input_value("#token")
    assert token.count(".") == 2  # a JWT the server minted for this room


@pytest.mark.netns
async def test_two_browsers_call_each_other_with_the_time_code_pattern(
    srv: RunningServer, chromium: Chromium
) -> None:
    sender = await joined_page(chromium, srv, "sender")
    await sender.publish("timecode")
    viewer = await joined_page(chromium, srv, "viewer")
    await viewer.wait_playing("sender-cam")

    async def measured() -> dict[str, Any] | None:
        # Ten frames at least: one frame's figure may be a millisecond below zero, the two
        # tabs' clocks being read through coarsened timers.
        summary: dict[str, Any] | None = await viewer.evaluate(
            "() => window.edged.view.tiles.get('sender-cam').reader.summary()"
        )
        return summary if summary is not None and summary["count"] >= 10 else None

    latency = await until(measured, 30, "ten time codes read on the viewer's tile")
    assert 0 <= latency["p50"] < 3000, latency
    await viewer.wait_text(".tile[data-stream-id='sender-cam'] .latency", "glass-to-glass")


@pytest.mark.netns
async def test_a_two_way_call_with_an_engine_looks_right(
    srv: RunningServer, chromium: Chromium
) -> None:
    """Screenshots of the page in a call (desktop and phone) for a person to look at."""
    engine, _ = make_engine(srv)
    async with engine:
        await engine.login_room("r1", User("door", "Front door"))
        await engine.start_publishing("door-cam")
        page = await joined_page(chromium, srv, "alice", name="Alice")
        await page.publish("camera")
        await engine.start_playing("alice-cam", AnalysisSink())
        await page.wait_playing("door-cam")
        await page.wait_text("#publisher-quality", "1 viewer", timeout=30)
        await page.wait_text(".tile[data-stream-id='door-cam'] .quality", "H264", timeout=30)
        await page.page.wait_for_function(  # a second report: rates and a level
            "() => !['#publisher-quality', '.tile .quality'].some(s =>"
            " document.querySelector(s).textContent.endsWith('unknown'))",
            timeout=30_000,
        )
        await page.screenshot("web-call-desktop.png")
        await page.page.set_viewport_size({"width": 390, "height": 844})
        await page.screenshot("web-call-phone.png")


def _connection_of(srv: RunningServer, user_id: str) -> Any:
    return next(
        c for c in srv.server.connections if c.session and c.session.user.user_id == user_id
    )


def _notify() -> Any:
    from edged.engine.config import RoomConfig

    return RoomConfig(user_update=True)


def _stream_added(rec: EventRecorder, stream_id: str) -> bool:
    return any(
        e.update_type == UpdateType.ADD and any(s.stream_id == stream_id for s in e.streams)
        for e in rec.of(RoomStreamUpdate)
    )


def _user_deleted(rec: EventRecorder, user_id: str) -> bool:
    return any(
        e.update_type == UpdateType.DELETE and any(u.user_id == user_id for u in e.users)
        for e in rec.of(RoomUserUpdate)
    )
