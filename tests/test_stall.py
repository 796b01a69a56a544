"""A camera that stops delivering without an error: noticed, shown, restarted, recovered.

The V4L2 path runs on a lavfi source whose reads block (as a driver's read that never
returns); the picamera2 path on the stand-in, whose sensor stops completing requests.
Through the engine, the publisher's state shows CAMERA_LOST while the camera is away and
PUBLISHING when its frames reach the viewer again.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from typing import Any

import av
import numpy as np
import pytest

from edged.engine.config import VideoConfig
from edged.engine.events import EventRecorder, PublisherStateUpdate
from edged.errors import ErrorCode
from edged.media.sinks.analysis import luma_plane
from edged.media.sources.capture_input import CaptureInput, open_input
from edged.media.sources.picamera2.source import Picamera2VideoTrack, picamera2_video_source
from edged.media.sources.timecode import decode
from edged.media.sources.v4l2 import CaptureTrack
from edged.model import PublisherState, User
from edged.testing.waiting import until

from conftest import RunningServer
from enginekit import AnalysisSink, make_engine

pytest_plugins = ["standinkit"]  # the picamera2 stand-in: fixture `board`
SMALL = VideoConfig(320, 240, 30.0, 300_000)
LOST = (PublisherState.PUBLISH_REQUESTING, ErrorCode.CAMERA_LOST)
PUBLISHING = (PublisherState.PUBLISHING, 0)


def publisher_states(rec: EventRecorder) -> list[tuple[int, int]]:
    return [(e.state, e.error_code) for e in rec.of(PublisherStateUpdate)]


# -- picamera2 ------------------------------------------------------------------------


async def test_a_stalled_pi_camera_is_reported_restarted_and_recovered(board: Any) -> None:
    reports: list[int] = []
    track = Picamera2VideoTrack(SMALL, stall_timeout=0.5, retry=(0.2, 0.2))
    track.on_error = reports.append
    packets: list[av.Packet[Any]] = []

    async def keep_reading() -> None:
        while True:
            packets.append(await track.recv())

    reader = asyncio.create_task(keep_reading())
    try:
        await until(lambda: len(packets) >= 10)
        board.stalled = True
        await until(lambda: reports == [ErrorCode.CAMERA_LOST])
        assert track.lost and track.losses == 1
        starts = board.camera_starts
        await until(lambda: board.camera_starts >= starts + 2)  # restarted, still stalled
        assert reports == [ErrorCode.CAMERA_LOST] and track.stalls >= 2
        count = len(packets)
        board.stalled = False
        await until(lambda: reports == [ErrorCode.CAMERA_LOST, 0])
        await until(lambda: len(packets) >= count + 15)
    finally:
        reader.cancel()
        track.stop()
    assert track.error_code == 0 and not board.stalled
    after = packets[count:]
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for p in after for f in decoder.decode(av.Packet(bytes(p)))]
    assert len(frames) == len(after), "the restarted camera starts with an IDR"
    assert all(decode(luma_plane(f)) is not None for f in frames)
    pts = [p.pts for p in packets]
    assert np.all(np.diff(pts) > 0)
    assert max(np.diff(pts)) > 0.5 * 90000, "the stall shows in the timestamps"


@pytest.mark.netns
async def test_a_published_pi_camera_that_stalls_shows_camera_lost_until_it_delivers(
    srv: RunningServer, board: Any
) -> None:
    source = functools.partial(picamera2_video_source, stall_timeout=1.0)
    pub, rec = make_engine(srv, video_source=source, video=SMALL)
    viewer, _ = make_engine(srv)
    sink = AnalysisSink()
    async with pub, viewer:
        await pub.login_room("r", User("cam"))
        await pub.start_publishing("cam")
        await viewer.login_room("r", User("V"))
        await viewer.start_playing("cam", sink)
        await until(lambda: sink.video is not None and sink.video.decoded >= 10, 20)
        board.stalled = True
        await until(lambda: publisher_states(rec)[-1] == LOST, 20)
        assert pub.publisher_state("cam") == PublisherState.PUBLISH_REQUESTING
        starts = board.camera_starts
        await until(lambda: board.camera_starts > starts, 20)  # restarted while stalled
        board.stalled = False
        await until(lambda: publisher_states(rec)[-1] == PUBLISHING, 20)
        assert sink.video is not None
        decoded = sink.video.decoded
        await until(lambda: sink.video is not None and sink.video.decoded >= decoded + 10, 20)
    assert publisher_states(rec)[:4] == [
        (PublisherState.PUBLISH_REQUESTING, 0),
        PUBLISHING,
        LOST,
        PUBLISHING,
    ]


# -- V4L2 -----------------------------------------------------------------------------


class BlockingReads:
    """A container whose reads block while ``stalled`` is set, as a driver's read that
    never returns; the blocked reads go on only when ``release`` is set (at the end)."""

    def __init__(self, container: Any, stall: dict[str, Any]) -> None:
        self.container, self.stall, self.streams = container, stall, container.streams

    def demux(self, stream: Any) -> Any:
        for packet in self.container.demux(stream):
            if self.stall["stalled"]:
                self.stall["release"].wait()
            yield packet

    def close(self) -> None:
        self.container.close()


def stalling_camera(stall: dict[str, Any]) -> Callable[[VideoConfig], CaptureTrack]:
    def make(config: VideoConfig) -> CaptureTrack:
        return CaptureTrack(
            CaptureInput.lavfi(f"testsrc2=size={config.width}x{config.height}:rate=30"),
            opener=lambda spec: BlockingReads(open_input(spec), stall),
            retry=(0.1, 0.5),
            stall_timeout=1.0,
        )

    return make


@pytest.mark.netns
async def test_a_published_v4l2_camera_that_stalls_shows_camera_lost_until_it_delivers(
    srv: RunningServer,
) -> None:
    stall: dict[str, Any] = {"stalled": False, "release": threading.Event()}
    pub, rec = make_engine(srv, video_source=stalling_camera(stall), video=SMALL)
    viewer, _ = make_engine(srv)
    sink = AnalysisSink()
    try:
        async with pub, viewer:
            await pub.login_room("r", User("cam"))
            await pub.start_publishing("cam")
            await viewer.login_room("r", User("V"))
            await viewer.start_playing("cam", sink)
            await until(lambda: sink.video is not None and sink.video.frames_received >= 10, 20)
            stall["stalled"] = True
            await until(lambda: publisher_states(rec)[-1] == LOST, 20)
            assert sink.video is not None
            stall["stalled"] = False
            await until(lambda: publisher_states(rec)[-1] == PUBLISHING, 20)
            received = sink.video.frames_received
            more = received + 20
            await until(lambda: sink.video is not None and sink.video.frames_received > more, 20)
    finally:
        stall["release"].set()
    assert publisher_states(rec)[1:4] == [PUBLISHING, LOST, PUBLISHING]
