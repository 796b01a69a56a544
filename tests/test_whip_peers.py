"""WHIP with peers nobody here wrote: Debian's ``simple-whip-client`` (GStreamer's
webrtcbin) publishing into an edged room by WHIP ingest, and edged's WHIP out into
Debian's ``simple-whip-server`` (its Janus backend). Both are Debian 13's, run from a root
of their own (tests/whippeers.py); Janus is the host's, as in the other relay tests.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from edged.engine.config import PublishConfig, RoomConfig
from edged.engine.peer import make_peer_connection
from edged.engine.whip_out import TargetState, WhipTarget
from edged.media.sinks.analysis import AnalysisSink
from edged.model import PlayerState, UpdateType, User
from edged.server.janus import JanusConnection
from edged.server.settings import SfuSettings
from edged.testing.daemon import start_listening, stop_process
from edged.testing.janus import Janus, free_port
from edged.testing.waiting import until
from edged.tokens import mint

from conftest import APP, JANUS_SECRET, SECRET, RunningServer, ServerFactory
from enginekit import make_engine
from janusd import requires_janus, subscribe
from pagekit import page_url
from test_whip import pictures, streams_of
from whippeers import in_root, requires_peers, version

pytestmark = [pytest.mark.netns, requires_janus, requires_peers]

TONE_HZ = 880
AUDIO = (
    f"audiotestsrc is-live=true wave=sine freq={TONE_HZ} volume=0.3 ! audioconvert ! "
    "audioresample ! audio/x-raw,rate=48000,channels=2 ! opusenc bitrate=32000 ! "
    "rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111"
)
VIDEO = (
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1 ! "
    "videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 bitrate=300 ! "
    "video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 pt=96 ! "
    "application/x-rtp,media=video,encoding-name=H264,payload=96"
)


async def test_debians_whip_client_publishes_into_a_room_played_through_janus(
    server_factory: ServerFactory, janus: Janus, tmp_path: Path
) -> None:
    srv = await server_factory(sfu=SfuSettings([janus.url], JANUS_SECRET))
    viewer, rec = make_engine(srv)
    sink = AnalysisSink()
    log = tmp_path / "whip-client.log"
    url = f"{page_url(srv)}/whip/{APP}/r/gst-cam"
    argv = in_root(
        "whip-client",
        "-o",
        "-u",
        url,
        "-t",
        mint(SECRET, APP, "gst", 600),
        "-A",
        AUDIO,
        "-V",
        VIDEO,
    )
    async with viewer:
        await viewer.login_room("r", User("viewer"), RoomConfig(user_update=True))
        with log.open("wb") as out:
            client = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=out)
        try:
            what = f"simple-whip-client {version('simple-whip-client')}'s stream (see {log})"
            await until(lambda: "gst-cam" in viewer.streams, 30, what)
            stream = viewer.streams["gst-cam"]
            assert (stream.user.user_id, stream.has_video, stream.has_audio) == ("gst", True, True)
            await viewer.start_playing("gst-cam", sink)
            await until(lambda: pictures(sink) >= 30, 30)
            await until(lambda: sink.audio is not None and sink.audio.seconds_received >= 2, 20)
            assert sink.audio is not None
            assert sink.audio.tone_present(TONE_HZ)
            assert viewer.player_state("gst-cam") == PlayerState.PLAYING
            # Stopped as a person stops it (Ctrl-C): it DELETEs its resource, and the room
            # hears the stream go.
            client.send_signal(signal.SIGINT)
            await until(lambda: "gst-cam" in streams_of(rec, UpdateType.DELETE), 20)
            assert "gst-cam" not in viewer.streams
        finally:
            await stop_process(client, 5)
            await sink.close()


async def test_the_boards_stream_reaches_debians_whip_server_and_a_janus_subscriber(
    srv: RunningServer, janus: Janus, tmp_path: Path
) -> None:
    room = "whipped"
    conn = await JanusConnection.connect(janus.url, api_secret=JANUS_SECRET)
    session = await conn.create_session()
    admin = await session.attach("janus.plugin.videoroom")
    await admin.request(
        {"request": "create", "room": room, "videocodec": "h264", "h264_profile": "42e01f"}
    )
    port = free_port()
    config = tmp_path / "simple-whip-server.js"
    config.write_text(
        f"module.exports = {{ janus: {{ address: '{janus.url}', apiSecret: '{JANUS_SECRET}' }},"
        f" port: {port}, rest: '/whip', allowTrickle: true, strictETags: false,"
        " iceServers: [] };\n"
    )
    argv = in_root(
        "node",
        "/usr/share/simple-whip-server/src/server.js",
        binds={config: "/etc/simple-whip-server/config.js"},
        env={"DEBUG": "whip:info,whip:warn,whip:error", "DEBUG_COLORS": "no"},
    )
    log = tmp_path / "simple-whip-server.log"
    server = await start_listening(argv, log, "127.0.0.1", port)
    board, _ = make_engine(srv)
    viewer = make_peer_connection([])
    sink = AnalysisSink()
    viewer.on("track", sink.attach)
    try:
        base = f"http://127.0.0.1:{port}/whip"
        endpoint = {"id": "board", "room": room, "token": "door-token"}
        async with srv.http.post(f"{base}/create", json=endpoint) as created:
            assert created.status == 200, await created.text()
        target = WhipTarget(f"{base}/endpoint/board", "door-token")
        async with board:
            await board.login_room("home", User("board"))
            await board.start_publishing("cam", PublishConfig(targets=(target,)))
            what = f"simple-whip-server {version('simple-whip-server')} to take the stream"
            await until(
                lambda: board.publishers["cam"].targets[0].state == TargetState.SENDING, 20, what
            )

            async def feeds() -> list[str]:
                listed = await admin.request({"request": "listparticipants", "room": room})
                return [str(p["id"]) for p in listed["participants"] if p.get("publisher")]

            published = await until(feeds, 20, "the board's feed in Janus's room")
            await subscribe(
                await session.attach("janus.plugin.videoroom"), room, viewer, published[0]
            )
            await until(lambda: sink.video is not None and sink.video.stats().decoded >= 30, 30)
            await until(lambda: sink.audio is not None and sink.audio.seconds_received >= 1, 20)
            assert sink.video is not None and sink.video.stats().out_of_order == 0
            assert sink.audio is not None and sink.audio.tone_present(440.0)
            # The board stops: it DELETEs its resource, and the feed leaves the room.
            await board.stop_publishing("cam")
            await until(lambda: "[board] Terminating WHIP session" in log.read_text(), 20)

            async def gone() -> bool:
                return not await feeds()

            await until(gone, 20, "the feed to leave Janus's room")
    finally:
        await viewer.close()
        await sink.close()
        await session.destroy()
        await conn.close()
        await stop_process(server, 5)
