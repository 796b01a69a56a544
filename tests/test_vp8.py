"""VP8 for viewers without H.264: one more encode per stream, shared by every VP8 viewer,
from the frames the H.264 encode reads or from the camera's own H.264 decoded once."""

from __future__ import annotations

from typing import Any

import pytest

from edged.engine.config import VideoConfig
from edged.engine.engine import Engine
from edged.engine.views import VideoSendCounts
from edged.media.sources.picamera2.source import picamera2_video_source
from edged.model import User
from edged.testing.waiting import until
from edged.tokens import mint

from conftest import APP, SECRET, RunningServer
from enginekit import make_engine
from test_whep import Played, whep_play

pytestmark = pytest.mark.netns
pytest_plugins = ["standinkit"]  # the picamera2 stand-in: fixture `board`

VP8 = "video/VP8"


def answered_codec(played: Played) -> str:
    """The video codec the publisher's answer chose (its first rtpmap in m=video)."""
    section = played.body.split("m=video", 1)[1].split("m=", 1)[0]
    line = next(x for x in section.splitlines() if x.startswith("a=rtpmap:"))
    return line.split()[1].split("/")[0]


async def decoding(played: Played, frames: int = 30) -> None:
    sink = played.sink
    await until(lambda: sink.video is not None and sink.video.stats().decoded >= frames, 30)
    assert sink.video is not None and sink.video.stats().out_of_order == 0


async def board_publishing(engine: Engine) -> None:
    await engine.login_room("r", User("board"))
    await engine.start_publishing("cam")


async def test_viewers_without_h264_share_one_vp8_encode_beside_the_h264_one(
    srv: RunningServer,
) -> None:
    engine, _ = make_engine(srv)
    async with engine:
        await board_publishing(engine)
        vp8 = [
            await whep_play(srv, mint(SECRET, APP, f"ff{i}", 600), video_codec=VP8) for i in (1, 2)
        ]
        h264 = await whep_play(srv, mint(SECRET, APP, "chrome", 600))
        try:
            assert [p.status for p in (*vp8, h264)] == [201, 201, 201], vp8[0].body
            assert [answered_codec(p) for p in (*vp8, h264)] == ["VP8", "VP8", "H264"]
            for played in (*vp8, h264):
                await decoding(played)
            sent = sent_video(engine)
            assert (sent.vp8_encoders_created, sent.vp8_viewers) == (1, 2)
            assert sent.encoders_created == 1
        finally:
            for played in (*vp8, h264):
                await played.pc.close()


async def test_a_camera_encoding_h264_itself_is_transcoded_once_for_vp8_viewers(
    srv: RunningServer, board: Any
) -> None:
    engine, _ = make_engine(
        srv, video_source=picamera2_video_source, video=VideoConfig(320, 240, 30.0, 300_000)
    )
    async with engine:
        await board_publishing(engine)
        played = await whep_play(srv, mint(SECRET, APP, "ff", 600), video_codec=VP8)
        try:
            assert played.status == 201 and answered_codec(played) == "VP8", played.body
            await decoding(played)
            sent = sent_video(engine)
            assert sent.encoders_created == 0, "the camera's H.264 passes through"
            assert sent.vp8_encoders_created == 1
        finally:
            await played.pc.close()


async def test_without_vp8_viewers_nothing_is_encoded_for_vp8(srv: RunningServer) -> None:
    engine, _ = make_engine(srv)
    async with engine:
        await board_publishing(engine)
        played = await whep_play(srv, mint(SECRET, APP, "ff", 600), video_codec=VP8)
        await decoding(played)
        await played.pc.close()
        await until(lambda: sent_video(engine).vp8_viewers == 0, 20, "the VP8 viewer gone")
        before = sent_video(engine)
        await until(lambda: sent_video(engine).frames_captured >= before.frames_captured + 15, 10)
        assert sent_video(engine).vp8_frames_encoded <= before.vp8_frames_encoded + 1


def sent_video(engine: Engine) -> VideoSendCounts:
    video = engine.publishers["cam"].video
    assert video is not None
    return video
