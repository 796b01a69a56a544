"""The engine against a real room server, with real aiortc media in the namespace."""

from __future__ import annotations

import asyncio

import pytest

from edged.engine.config import PublishConfig, RoomConfig
from edged.engine.events import (
    PlayerQualityUpdate,
    PlayerRecvVideoFirstFrame,
    PlayerStateUpdate,
    PublisherQualityUpdate,
    PublisherStateUpdate,
    RoomStateChanged,
    RoomStateUpdate,
    RoomStreamUpdate,
    RoomUserUpdate,
)
from edged.model import PlayerState as PS
from edged.model import PublisherState, RoomState, Stream, UpdateType, User
from edged.model import RoomStateChangedReason as R
from edged.testing.waiting import until

from conftest import RunningServer, ServerFactory
from enginekit import AnalysisSink, make_engine

pytestmark = pytest.mark.netns
ROOM_EVENTS = (
    RoomStateChanged,
    RoomStateUpdate,
    RoomUserUpdate,
    RoomStreamUpdate,
    PlayerStateUpdate,
    PlayerRecvVideoFirstFrame,
)


async def test_reference_trace_event_for_event(srv: RunningServer) -> None:
    a, rec_a = make_engine(srv)
    b, rec_b = make_engine(srv)
    async with a, b:
        await a.login_room("r", User("A"), RoomConfig(user_update=True))
        await b.login_room("r", User("B"))
        await b.start_publishing("s1")
        await until(lambda: "s1" in a.streams)
        await a.start_playing("s1")
        await until(lambda: a.player_state("s1") == PS.PLAYING)
        await until(lambda: bool(rec_a.of(PlayerRecvVideoFirstFrame)))
        await b.logout_room()
        await until(
            lambda: any(e.update_type == UpdateType.DELETE for e in rec_a.of(RoomUserUpdate))
        )
        b_user = User("B")
        s1 = Stream("s1", b_user)
        assert [e for e in rec_a.events if isinstance(e, ROOM_EVENTS)] == [
            RoomStateChanged("r", R.LOGINING, 0, {}),
            RoomStateUpdate("r", RoomState.CONNECTING, 0, {}),
            RoomStateChanged("r", R.LOGINED, 0, {}),
            RoomStateUpdate("r", RoomState.CONNECTED, 0, {}),
            RoomUserUpdate("r", UpdateType.ADD, [b_user]),
            RoomStreamUpdate("r", UpdateType.ADD, [s1], {}),
            PlayerStateUpdate("s1", PS.PLAY_REQUESTING, 0, {}),
            PlayerStateUpdate("s1", PS.PLAYING, 0, {}),
            PlayerRecvVideoFirstFrame("s1"),
            RoomStreamUpdate("r", UpdateType.DELETE, [s1], {"reason": "stopped"}),
            PlayerStateUpdate("s1", PS.PLAY_REQUESTING, 0, {}),
            RoomUserUpdate("r", UpdateType.DELETE, [b_user]),
        ]
        assert [e.state for e in rec_b.of(PublisherStateUpdate)] == [
            PublisherState.PUBLISH_REQUESTING,
            PublisherState.PUBLISHING,
            PublisherState.NO_PUBLISH,
        ]


async def test_player_decodes_time_codes_in_order_and_hears_the_tone(srv: RunningServer) -> None:
    a, _ = make_engine(srv)
    b, _ = make_engine(srv)
    sink = AnalysisSink()
    async with a, b:
        await b.login_room("r", User("B"))
        await b.start_publishing("cam")
        await a.login_room("r", User("A"))
        await a.start_playing("cam", sink)
        await until(lambda: sink.video is not None and sink.audio is not None)
        assert sink.video is not None and sink.audio is not None
        await until(lambda: sink.video is not None and sink.video.stats().decoded >= 45, 15)
        await until(lambda: sink.audio is not None and sink.audio.seconds_received >= 1.5, 15)
        stats = sink.video.stats()
        assert stats.out_of_order == 0
        seqs = [o.sequence for o in sink.video.observations]
        assert seqs == sorted(seqs)
        assert sink.audio.tone_present(440.0)


async def test_play_before_publish_waits_then_plays(srv: RunningServer) -> None:
    a, rec_a = make_engine(srv)
    b, _ = make_engine(srv)
    async with a, b:
        await a.login_room("r", User("A"))
        await a.start_playing("later")
        await until(lambda: a.player_state("later") == PS.PLAY_REQUESTING)
        await b.login_room("r", User("B"))
        await b.start_publishing("later")
        await until(lambda: a.player_state("later") == PS.PLAYING)
        assert [e.state for e in rec_a.of(PlayerStateUpdate)] == [
            PS.PLAY_REQUESTING,
            PS.PLAYING,
        ]


async def test_second_login_of_the_same_user_kicks_out_the_engine(srv: RunningServer) -> None:
    first, rec = make_engine(srv)
    second, _ = make_engine(srv)
    async with first, second:
        await first.login_room("r", User("dup"))
        await first.start_publishing("cam")
        await second.login_room("r", User("dup"))
        await until(
            lambda: first.room_info is not None and first.room_state == RoomState.DISCONNECTED
        )
        changed = rec.of(RoomStateChanged)[-1]
        assert (changed.reason, changed.error_code) == (R.KICK_OUT, 1002050)
        published = rec.of(PublisherStateUpdate)[-1]
        assert (published.state, published.error_code) == (PublisherState.NO_PUBLISH, 1002050)
        # The same stream id is free for the new session.
        await second.start_publishing("cam")


async def test_max_viewers_refuses_one_more(srv: RunningServer) -> None:
    pub, _ = make_engine(srv)
    v1, _ = make_engine(srv)
    v2, rec2 = make_engine(srv)
    async with pub, v1, v2:
        await pub.login_room("r", User("P"))
        await pub.start_publishing("one", PublishConfig(max_viewers=1))
        for engine, user in ((v1, "V1"), (v2, "V2")):
            await engine.login_room("r", User(user))
        await v1.start_playing("one")
        await until(lambda: v1.player_state("one") == PS.PLAYING)
        await v2.start_playing("one")
        await until(lambda: v2.player_state("one") == PS.NO_PLAY)
        played = rec2.of(PlayerStateUpdate)[-1]
        assert (played.state, played.error_code) == (PS.NO_PLAY, 1004020)


async def test_destroy_sends_the_logout_before_returning(srv: RunningServer) -> None:
    a, _ = make_engine(srv)
    watcher = await srv.user("W", room="r")
    await a.login_room("r", User("A"))
    await a.start_publishing("s")
    await watcher.next_of("room_user_update")
    await watcher.next_of("room_stream_update")
    await a.destroy()
    # Already gone on the server when destroy returns: not after a heartbeat timeout.
    assert srv.server.rooms.store.user_session("testapp", "A") is None
    deleted = await watcher.next_of("room_stream_update", timeout=1)
    assert (deleted["update_type"], deleted["reason"]) == (1, "stopped")


async def test_lost_signaling_resumes_silently_and_media_goes_on(srv: RunningServer) -> None:
    a, rec_a = make_engine(srv)
    b, rec_b = make_engine(srv)
    async with a, b:
        await a.login_room("r", User("A"), RoomConfig(user_update=True))
        await b.login_room("r", User("B"))
        await b.start_publishing("s1")
        await until(lambda: "s1" in a.streams)
        await a.start_playing("s1")
        await until(lambda: a.player_state("s1") == PS.PLAYING)
        before = len(rec_a.events)
        for conn in list(srv.server.connections):  # cut every signaling socket
            if conn.session is not None and conn.session.user.user_id == "B":
                await conn.ws.close()
        await until(lambda: any(e.reason == R.RECONNECTED for e in rec_b.of(RoomStateChanged)))
        reasons = [e.reason for e in rec_b.of(RoomStateChanged)]
        assert reasons[-2:] == [R.RECONNECTING, R.RECONNECTED]
        states = [e.state for e in rec_b.of(PublisherStateUpdate)]
        assert states[-2:] == [PublisherState.PUBLISH_REQUESTING, PublisherState.PUBLISHING]
        # A heard nothing: no DELETE, no ADD, and never stopped playing.
        heard = {type(e) for e in rec_a.events[before:]}
        assert not {RoomUserUpdate, RoomStreamUpdate, PlayerStateUpdate} & heard


async def test_server_restart_mid_call_recovers_both_sides(
    server_factory: ServerFactory,
) -> None:
    srv = await server_factory()
    a, rec_a = make_engine(srv)
    b, rec_b = make_engine(srv)
    sink = AnalysisSink()
    async with a, b:
        await a.login_room("r", User("A"))
        await b.login_room("r", User("B"))
        await b.start_publishing("s1")
        await until(lambda: "s1" in a.streams)
        await a.start_playing("s1", sink)
        await until(lambda: a.player_state("s1") == PS.PLAYING)
        port = int(srv.url.rsplit(":", 1)[1].split("/")[0])
        # Stop the server: every connection drops and every session is forgotten.
        await srv.runner.cleanup()
        try:
            await until(lambda: a.player_state("s1") == PS.PLAY_REQUESTING)
        except AssertionError as exc:  # say what the engine went through instead
            rooms = [(e.reason, e.error_code) for e in rec_a.of(RoomStateChanged)]
            players = [(e.state, e.error_code) for e in rec_a.of(PlayerStateUpdate)]
            raise AssertionError(f"{exc}; room {rooms}; player {players}") from None
        await asyncio.sleep(0.5)  # the server stays down a moment: clients retry meanwhile
        # The publisher's media still arrives (peer to peer) but signaling is down: the
        # player stays PLAY_REQUESTING rather than PLAYING again at the next frame.
        assert a.player_state("s1") == PS.PLAY_REQUESTING
        restarted = await server_factory(port=port)
        await until(
            lambda: (
                b.publisher_state("s1") == PublisherState.PUBLISHING
                and a.player_state("s1") == PS.PLAYING
            ),
            20,
        )
        assert restarted.server.rooms.store.count() == (1, 2, 1)
        decoded = sink.video.stats().decoded if sink.video else 0
        await until(lambda: sink.video is not None and sink.video.stats().decoded > decoded + 10)
        assert [e.reason for e in rec_a.of(RoomStateChanged)][-2:] == [
            R.RECONNECTING,
            R.RECONNECTED,
        ]
        assert [e.state for e in rec_b.of(PublisherStateUpdate)][-2:] == [
            PublisherState.PUBLISH_REQUESTING,
            PublisherState.PUBLISHING,
        ]


async def test_four_viewers_share_one_encoder_and_a_late_viewer_gets_a_picture(
    srv: RunningServer,
) -> None:
    from edged.engine.config import VideoConfig

    # A natural keyframe only every 30 s: a picture sooner proves the requested keyframe.
    pub, _ = make_engine(srv, video=VideoConfig(320, 240, 30.0, 300_000, keyframe_interval_s=30))
    viewers = [make_engine(srv)[0] for _ in range(4)]
    sinks = [AnalysisSink() for _ in viewers]
    async with pub:
        await pub.login_room("r", User("P"))
        await pub.start_publishing("cam")
        for i, (viewer, sink) in enumerate(zip(viewers[:3], sinks[:3], strict=True)):
            await viewer.login_room("r", User(f"V{i}"))
            await viewer.start_playing("cam", sink)
        await until(lambda: all(s.video and s.video.stats().decoded > 10 for s in sinks[:3]))
        await asyncio.sleep(1.0)  # well past the first keyframes
        video = pub.publishers["cam"].video
        assert video is not None
        keyframes_before = video.keyframes_sent
        late, late_sink = viewers[3], sinks[3]
        await late.login_room("r", User("late"))
        await late.start_playing("cam", late_sink)
        await until(lambda: late_sink.video is not None and late_sink.video.stats().decoded > 0, 5)
        publisher = pub.publishers["cam"]
        video = publisher.video
        assert video is not None
        assert video.encoders_created == 1
        assert publisher.viewer_count == 4
        assert video.frames_encoded >= video.frames_sent - 2
        assert video.keyframes_sent > keyframes_before
        for viewer in viewers:
            await viewer.destroy()


async def test_muted_video_turns_black_and_comes_back(srv: RunningServer) -> None:
    pub, _ = make_engine(srv)
    viewer, _ = make_engine(srv)
    sink = AnalysisSink()
    async with pub, viewer:
        await pub.login_room("r", User("P"))
        await pub.start_publishing("cam")
        await viewer.login_room("r", User("V"))
        await viewer.start_playing("cam", sink)
        await until(lambda: sink.video is not None and sink.video.stats().decoded > 5)
        assert sink.video is not None
        video = sink.video
        black = video.frames_received - video.decoded  # frames without a time code
        pub.mute_publish_video(True)
        await until(lambda: video.frames_received - video.decoded > black + 2)  # black arrives
        decoded, frames = sink.video.decoded, sink.video.frames_received
        await until(lambda: sink.video is not None and sink.video.frames_received > frames + 20)
        assert sink.video.decoded - decoded <= 3  # black frames carry no time code
        pub.mute_publish_video(False)
        await until(lambda: sink.video is not None and sink.video.decoded > decoded + 10)


async def test_preview_shows_the_camera_before_and_while_publishing(srv: RunningServer) -> None:
    from edged.engine.config import default_video_source

    opened: list[object] = []

    def counting_source(config: object) -> object:
        track = default_video_source(config)  # type: ignore[arg-type]
        opened.append(track)
        return track

    engine, _ = make_engine(srv, video_source=counting_source)
    sink = AnalysisSink()
    async with engine:
        engine.start_preview(sink)
        await until(lambda: sink.video is not None and sink.video.stats().decoded > 5)
        assert len(opened) == 1  # the preview's own capture
        await engine.login_room("r", User("P"))
        await engine.start_publishing("cam")
        assert sink.video is not None
        decoded = sink.video.decoded
        await until(lambda: sink.video is not None and sink.video.decoded > decoded + 10)
        # One camera: the preview now watches the publisher's capture, its own is closed.
        assert len(opened) == 2 and opened[0].readyState == "ended"  # type: ignore[attr-defined]


async def test_quality_reports_are_present_and_plausible(srv: RunningServer) -> None:
    from edged.model import PlayQuality, PublishQuality, QualityLevel

    pub, rec_pub = make_engine(srv)
    viewer, rec_view = make_engine(srv)
    async with pub, viewer:
        await pub.login_room("r", User("P"))
        await pub.start_publishing("cam")
        await viewer.login_room("r", User("V"))
        await viewer.start_playing("cam")
        await until(lambda: len(rec_pub.of(PublisherQualityUpdate)) >= 3, 10)
        await until(lambda: len(rec_view.of(PlayerQualityUpdate)) >= 3, 10)
        sent: PublishQuality = rec_pub.of(PublisherQualityUpdate)[-1].quality
        got: PlayQuality = rec_view.of(PlayerQualityUpdate)[-1].quality
        assert sent.viewers == 1 and (sent.width, sent.height) == (320, 240)
        assert 20 <= sent.capture_fps <= 40 and 20 <= sent.send_fps <= 40
        assert 50 < sent.video_kbps < 2000 and 5 < sent.audio_kbps < 200
        assert sent.total_bytes_sent > 10_000 and sent.codec == "H264"
        assert sent.packet_loss_rate == 0.0
        assert sent.level in (QualityLevel.EXCELLENT, QualityLevel.GOOD)
        assert sent.rtt_ms is None or 0 <= sent.rtt_ms < 200
        assert 20 <= got.recv_fps <= 40 and (got.width, got.height) == (320, 240)
        assert got.packet_loss_rate == 0.0
        assert got.level in (QualityLevel.EXCELLENT, QualityLevel.GOOD)


async def test_reconnect_gives_up_after_the_configured_time(
    server_factory: ServerFactory,
) -> None:
    from dataclasses import replace

    from enginekit import FAST

    srv = await server_factory()
    engine, rec = make_engine(srv, timers=replace(FAST, reconnect_give_up=1.5))
    async with engine:
        await engine.login_room("r", User("A"))
        await engine.start_publishing("cam")
        await srv.runner.cleanup()  # the server is gone for good
        await until(
            lambda: engine.room_info is not None and engine.room_state == RoomState.DISCONNECTED, 15
        )
        assert [(e.reason, e.error_code) for e in rec.of(RoomStateChanged)][-2:] == [
            (R.RECONNECTING, 1002051),
            (R.RECONNECT_FAILED, 1002053),
        ]
        published = rec.of(PublisherStateUpdate)[-1]
        assert (published.state, published.error_code) == (PublisherState.NO_PUBLISH, 1002053)


async def test_audio_only_play_declines_the_video(srv: RunningServer) -> None:
    """``video=False``: the tone arrives, no video frame does (the publisher sends none),
    while another viewer of the same stream gets both."""
    pub, _ = make_engine(srv)
    ears, _ = make_engine(srv)
    eyes, _ = make_engine(srv)
    heard, seen = AnalysisSink(), AnalysisSink()
    async with pub, ears, eyes:
        await pub.login_room("r", User("P"))
        await pub.start_publishing("cam")
        await ears.login_room("r", User("ears"))
        await eyes.login_room("r", User("eyes"))
        await ears.start_playing("cam", heard, video=False)
        await eyes.start_playing("cam", seen)
        await until(lambda: heard.audio is not None and heard.audio.seconds_received >= 1.5, 15)
        await until(lambda: seen.video is not None and seen.video.stats().decoded >= 30, 15)
        assert heard.audio is not None and heard.audio.tone_present(440.0)
        assert heard.video is None
        assert ears.player_state("cam") == PS.PLAYING
        assert (await ears.packets_received("cam")).get("video", 0) == 0
        assert (await eyes.packets_received("cam")).get("video", 0) > 0
