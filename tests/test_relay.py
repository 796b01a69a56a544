"""Streams relayed through a real Janus that the room server drives: engines see no Janus."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser import Chromium

from edged.engine.config import PublishConfig, VideoConfig
from edged.engine.engine import Engine
from edged.engine.events import EventRecorder, PlayerStateUpdate, PublisherStateUpdate
from edged.errors import ErrorCode
from edged.media.sources.picamera2.source import picamera2_video_source
from edged.model import PlayerState, PublisherState, User
from edged.server.links import Link
from edged.server.settings import SfuSettings
from edged.testing.faults import NetworkFaults
from edged.testing.janus import Janus
from edged.testing.waiting import until

from conftest import APP, JANUS_SECRET, RunningServer, ServerFactory
from enginekit import AnalysisSink, make_engine
from janusd import requires_janus
from pagekit import fresh_time_code, joined_page

pytestmark = requires_janus
pytest_plugins = ["pagekit", "standinkit"]  # fixtures `chromium` and `board` (picamera2)


async def relaying_server(
    server_factory: ServerFactory, janus: Janus, relay: str, p2p_max_viewers: int = 4
) -> RunningServer:
    sfu = SfuSettings([janus.url], JANUS_SECRET, relay=relay, p2p_max_viewers=p2p_max_viewers)
    return await server_factory(sfu=sfu)


def links_of(srv: RunningServer, stream_id: str) -> list[Link]:
    rooms = srv.server.rooms
    return [
        link
        for session in rooms.sessions.values()
        for link_id in session.serving | set(session.playing.values())
        if (link := rooms.links.get(link_id)) is not None and link.stream_id == stream_id
    ]


@dataclass
class Relayed:
    """The board publishing ``cam`` and its viewers, each with its event recorder."""

    board: Engine
    board_events: EventRecorder
    viewers: list[Engine]
    viewer_events: list[EventRecorder]
    sinks: list[AnalysisSink]


@contextlib.asynccontextmanager
async def board_and_viewers(
    srv: RunningServer,
    viewers: int,
    publish: PublishConfig | None = None,
    each: int = 0,
    camera: dict[str, Any] | None = None,
) -> AsyncIterator[Relayed]:
    """The board publishing ``cam`` in room ``r`` (its engine profile's ``camera``
    fields) and ``viewers`` engines playing it, one after the other (each first decoding
    ``each`` frames before the next plays)."""
    board, board_events = make_engine(srv, **(camera or {}))
    made = [make_engine(srv) for _ in range(viewers)]
    call = Relayed(
        board,
        board_events,
        [e for e, _ in made],
        [r for _, r in made],
        [AnalysisSink() for _ in made],
    )
    async with contextlib.AsyncExitStack() as stack:
        for engine in (board, *call.viewers):
            await stack.enter_async_context(engine)
        await board.login_room("r", User("board"))
        await board.start_publishing("cam", publish)
        for i, (viewer, sink) in enumerate(zip(call.viewers, call.sinks, strict=True)):
            await viewer.login_room("r", User(f"viewer{i}"))
            await viewer.start_playing("cam", sink)
            if each:
                await until(lambda s=sink: s.video is not None and s.video.stats().decoded >= each)
        yield call


async def test_viewers_through_janus_decode_the_stream_and_the_board_sends_it_once(
    server_factory: ServerFactory, janus: Janus
) -> None:
    srv = await relaying_server(server_factory, janus, "sfu")
    async with board_and_viewers(srv, 3) as call:
        board, viewers, sinks = call.board, call.viewers, call.sinks
        for sink in sinks:
            await until(lambda s=sink: s.video is not None and s.video.stats().decoded >= 30, 20)
            await until(lambda s=sink: s.audio is not None and s.audio.seconds_received >= 1, 20)
        for viewer, sink in zip(viewers, sinks, strict=True):
            assert viewer.player_state("cam") == PlayerState.PLAYING
            assert sink.video is not None and sink.video.stats().out_of_order == 0
            seqs = [o.sequence for o in sink.video.observations]
            assert seqs == sorted(seqs)
            assert sink.audio is not None and sink.audio.tone_present(440.0)
        links = links_of(srv, "cam")
        up = [lk for lk in links if lk.up]
        assert len(up) == 1, "the board sends the stream once, to Janus"
        assert sorted(lk.player.user.user_id for lk in links if lk.down) == [  # type: ignore[union-attr]
            "viewer0",
            "viewer1",
            "viewer2",
        ]
        assert not [lk for lk in links if not lk.via_sfu]
        assert board.publishers["cam"].viewer_count == 1


@pytest.mark.netns
async def test_the_cameras_own_h264_and_a_tone_reach_eight_engines_and_a_page_through_janus(
    server_factory: ServerFactory, janus: Janus, board: Any, chromium: Chromium
) -> None:
    """The camera's hardware-encoded H.264 (the picamera2 stand-in) passes through the
    board untouched, once, to Janus; eight engines decode its time codes in order and
    hear the tone, and the web page shows a fresh time code."""
    srv = await relaying_server(server_factory, janus, "sfu")
    source = {"video_source": picamera2_video_source}
    async with board_and_viewers(srv, 8, camera=source) as call:
        for sink in call.sinks:
            await until(lambda s=sink: s.video is not None and s.video.stats().decoded >= 30, 30)
            await until(lambda s=sink: s.audio is not None and s.audio.seconds_received >= 1, 20)
        page = await joined_page(chromium, srv, "page", room="r")
        await fresh_time_code(page, "cam")
        for viewer, sink in zip(call.viewers, call.sinks, strict=True):
            assert viewer.player_state("cam") == PlayerState.PLAYING
            assert sink.video is not None and sink.video.stats().out_of_order == 0
            seqs = [o.sequence for o in sink.video.observations]
            assert seqs == sorted(seqs)
            # A second of the tone (a second read while a loaded machine delays packets may
            # hold the receiver's concealment, so the next second counts too).
            await until(lambda s=sink: s.audio is not None and s.audio.tone_present(440.0), 10)
        published = call.board.publishers["cam"]
        assert [(v.user_id, v.relayed) for v in published.viewers] == [("edged-sfu", True)]
        assert published.video is not None and published.video.encoders_created == 0
        players = sorted(lk.player.user.user_id for lk in links_of(srv, "cam") if lk.player)
        assert players == sorted(["page", *(f"viewer{i}" for i in range(8))])


async def test_auto_relays_the_viewer_past_the_cap_and_keeps_the_first_peer_to_peer(
    server_factory: ServerFactory, janus: Janus
) -> None:
    srv = await relaying_server(server_factory, janus, "auto", p2p_max_viewers=2)
    async with board_and_viewers(srv, 3, each=15) as call:
        viewers, sinks = call.viewers, call.sinks
        links = {lk.player.user.user_id: lk for lk in links_of(srv, "cam") if lk.player}
        assert [links[f"viewer{i}"].via_sfu for i in range(3)] == [False, False, True]
        first = sinks[0].video
        assert first is not None
        decoded = first.stats().decoded
        await until(lambda: first.stats().decoded >= decoded + 30, 20)  # undisturbed
        await viewers[2].stop_playing("cam")
        await until(lambda: not [lk for lk in links_of(srv, "cam") if lk.via_sfu])


async def test_janus_killed_and_restarted_mid_call_the_viewers_play_again_by_themselves(
    server_factory: ServerFactory, janus: Janus
) -> None:
    srv = await relaying_server(server_factory, janus, "sfu")
    async with board_and_viewers(srv, 1, each=15) as call:
        board, viewer, rec, sink = call.board, call.viewers[0], call.viewer_events[0], call.sinks[0]
        await janus.kill()
        await until(lambda: viewer.player_state("cam") == PlayerState.PLAY_REQUESTING, 10)
        await until(lambda: board.publisher_state("cam") == PublisherState.PUBLISH_REQUESTING, 10)
        assert not [lk for lk in links_of(srv, "cam") if lk.via_sfu and lk.janus is not None]
        before = sink.video
        await janus.start()
        # The new link's track gets a new decoder of its own in the sink.
        await until(lambda: sink.video is not before and sink.video.stats().decoded >= 30, 30)
        assert viewer.player_state("cam") == PlayerState.PLAYING
        states = [(e.state, e.error_code) for e in rec.of(PlayerStateUpdate)]
        assert states[:3] == [
            (PlayerState.PLAY_REQUESTING, 0),
            (PlayerState.PLAYING, 0),
            (PlayerState.PLAY_REQUESTING, ErrorCode.RELAY_UNAVAILABLE),
        ]
        assert states[-1] == (PlayerState.PLAYING, 0)
        await until(lambda: board.publisher_state("cam") == PublisherState.PUBLISHING)
        published = [(e.state, e.error_code) for e in call.board_events.of(PublisherStateUpdate)]
        assert published == [
            (PublisherState.PUBLISH_REQUESTING, 0),
            (PublisherState.PUBLISHING, 0),
            (PublisherState.PUBLISH_REQUESTING, ErrorCode.PUBLISH_RELAY_LOST),
            (PublisherState.PUBLISHING, 0),
        ]


async def test_a_janus_that_refuses_gives_the_players_its_own_code_at_once(
    server_factory: ServerFactory, janus: Janus
) -> None:
    """A wrong API secret: Janus answers 403, the viewer hears 1004052 RELAY_REFUSED (not
    a hang, not "unavailable") and keeps asking; the board hears that its relayed viewers
    get nothing; its stream stays listed."""
    srv = await server_factory(sfu=SfuSettings([janus.url], "not-the-secret", relay="sfu"))
    async with board_and_viewers(srv, 1) as call:
        viewer, rec = call.viewers[0], call.viewer_events[0]

        def refused() -> bool:
            return (PlayerState.PLAY_REQUESTING, ErrorCode.RELAY_REFUSED) in [
                (e.state, e.error_code) for e in rec.of(PlayerStateUpdate)
            ]

        await until(refused, 10)
        assert viewer.player_state("cam") == PlayerState.PLAY_REQUESTING
        relay_lost = (PublisherState.PUBLISH_REQUESTING, ErrorCode.PUBLISH_RELAY_LOST)
        await until(lambda: call.board.publisher_state("cam") == relay_lost[0], 10)
        assert call.board.publishers["cam"].error_code == relay_lost[1]
        assert "cam" in viewer.streams


async def test_a_room_whose_janus_dies_moves_to_the_next_and_plays_again_there(
    server_factory: ServerFactory, janus: Janus, tmp_path: Path
) -> None:
    second = Janus(tmp_path / "second", api_secret=JANUS_SECRET, rtp_ports=(21000, 21999))
    await second.start()
    try:
        sfu = SfuSettings([janus.url, second.url], JANUS_SECRET, relay="sfu")
        srv = await server_factory(sfu=sfu)
        assert srv.server.rooms.relay_links is not None
        relay = srv.server.rooms.relay_links.relay
        first = relay.janus_order(APP, "r")[0]
        owner, other = (janus, second) if first == janus.url else (second, janus)
        async with board_and_viewers(srv, 1, each=15) as call:
            viewer, sink = call.viewers[0], call.sinks[0]
            assert relay.janus_of(APP, "r") == owner.url
            await owner.kill()  # and it stays down
            await until(lambda: viewer.player_state("cam") == PlayerState.PLAY_REQUESTING, 10)
            before = sink.video
            await until(lambda: sink.video is not before and sink.video.stats().decoded >= 30, 30)
            assert relay.janus_of(APP, "r") == other.url
            assert viewer.player_state("cam") == PlayerState.PLAYING
            assert call.board.publisher_state("cam") == PublisherState.PUBLISHING
            states = [e.state for e in call.viewer_events[0].of(PlayerStateUpdate)]
            assert states[-1] == PlayerState.PLAYING
    finally:
        await second.stop()


@pytest.mark.parametrize("camera", ["libx264", "picamera2"])
async def test_a_late_viewer_through_janus_sees_a_picture_long_before_the_next_keyframe(
    server_factory: ServerFactory, janus: Janus, board: Any, camera: str
) -> None:
    """Janus asks the board for a keyframe (PLI) for its new subscriber, and the board
    asks its source: edged's own encoder, or the camera's (pass-through H.264). Without
    it the late viewer would wait up to 30 s for the next one."""
    srv = await relaying_server(server_factory, janus, "sfu")
    rare = VideoConfig(320, 240, 30.0, 300_000, keyframe_interval_s=30)
    source = {"video_source": picamera2_video_source} if camera == "picamera2" else {}
    cam, _ = make_engine(srv, video=rare, **source)
    early, _ = make_engine(srv)
    late, _ = make_engine(srv)
    early_sink, late_sink = AnalysisSink(), AnalysisSink()
    async with cam, early, late:
        await cam.login_room("r", User("board"))
        await cam.start_publishing("cam")
        await early.login_room("r", User("early"))
        await early.start_playing("cam", early_sink)
        await until(lambda: early_sink.video is not None and early_sink.video.stats().decoded >= 30)
        forced = board.keyframes_forced
        keyframes = cam.publishers["cam"].video.keyframes_sent  # type: ignore[union-attr]
        await late.login_room("r", User("late"))
        await late.start_playing("cam", late_sink)
        await until(
            lambda: late_sink.video is not None and late_sink.video.stats().decoded >= 1, 10
        )
        assert cam.publishers["cam"].video.keyframes_sent > keyframes  # type: ignore[union-attr]
        if camera == "picamera2":
            assert board.keyframes_forced > forced, "the camera's encoder made the keyframe"


async def test_the_room_cap_janus_announces_by_remb_becomes_the_board_encoder_bitrate(
    server_factory: ServerFactory, janus: Janus
) -> None:
    sfu = SfuSettings([janus.url], JANUS_SECRET, relay="sfu", bitrate_cap=200_000)
    srv = await server_factory(sfu=sfu)
    board, _ = make_engine(srv, video=VideoConfig(320, 240, 30.0, 300_000))
    viewer, _ = make_engine(srv)
    sink = AnalysisSink()
    async with board, viewer:
        await board.login_room("r", User("board"))
        await board.start_publishing("cam")
        assert board.publishers["cam"].video is not None
        assert board.publishers["cam"].video.bitrate is None  # nobody asked yet
        await viewer.login_room("r", User("viewer"))
        await viewer.start_playing("cam", sink)
        # Janus ramps its REMB up to the room's cap: the encoder follows it there, under
        # the 300 kbit/s the board was configured with.
        await until(lambda: board.publishers["cam"].video.bitrate == 200_000)  # type: ignore[union-attr]
        viewers = board.publishers["cam"].viewers
        assert [(v.user_id, v.relayed) for v in viewers] == [("edged-sfu", True)]


@pytest.mark.parametrize(
    ("asked", "cap", "relayed"),
    [("auto", 1, [False, True]), ("p2p", None, [False, False])],
)
async def test_a_board_asks_its_own_relay_policy_on_publish(
    server_factory: ServerFactory,
    janus: Janus,
    asked: str,
    cap: int | None,
    relayed: list[bool],
) -> None:
    srv = await relaying_server(server_factory, janus, "sfu")
    publish = PublishConfig(relay=asked, p2p_max_viewers=cap)
    async with board_and_viewers(srv, 2, publish, each=15):
        links = {lk.player.user.user_id: lk for lk in links_of(srv, "cam") if lk.player}
        assert [links[f"viewer{i}"].via_sfu for i in range(2)] == relayed


async def test_a_relayed_stream_survives_five_seconds_without_media_unnoticed(
    server_factory: ServerFactory, janus: Janus
) -> None:
    """All UDP is dropped for 5 s (the board's uplink to Janus and Janus's to the viewer):
    shorter than ICE consent, so nobody's state changes and the same connections carry
    the picture again, in order, once the network is back."""
    sfu = SfuSettings([janus.url], JANUS_SECRET)
    srv = await server_factory(heartbeat_interval_s=10.0, heartbeat_timeout_s=30.0, sfu=sfu)
    async with board_and_viewers(srv, 1, each=15) as call:
        rec_board, rec_viewer, sink = call.board_events, call.viewer_events[0], call.sinks[0]
        video = sink.video
        assert video is not None
        marks = len(rec_board.events), len(rec_viewer.events)
        with NetworkFaults() as faults:
            faults.partition(udp=True)
            await asyncio.sleep(1.0)  # the loss lasts 5 s: what was on the way lands
            frozen = video.stats().decoded
            await asyncio.sleep(4.0)  # and then nothing for the rest of it
            assert video.stats().decoded - frozen <= 2
        resumed = video.stats().decoded
        await until(lambda: video.stats().decoded >= resumed + 30, 20)
        assert sink.video is video, "the same link carries the picture again"
        assert video.stats().out_of_order == 0
        states = (PlayerStateUpdate, PublisherStateUpdate)
        assert [e for e in rec_board.events[marks[0] :] if isinstance(e, states)] == []
        assert [e for e in rec_viewer.events[marks[1] :] if isinstance(e, states)] == []
