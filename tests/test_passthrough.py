"""Mute and preview for sources that hand out H.264 access units (nothing decodes them).

The picamera2 stand-in (its "hardware" encoder) and a file passed through stand for the
pass-through sources. Muted, a viewer decodes black pictures at the source's size, with
increasing timestamps; unmuted, the source's own picture again (its time codes), from a
keyframe asked of it. A local preview gets decoded frames, decoded for it alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from edged.engine.config import PublishConfig, VideoConfig
from edged.engine.engine import Engine
from edged.engine.views import VideoSendCounts
from edged.media.h264 import nal_types
from edged.media.sinks.analysis import luma_plane
from edged.media.sinks.preview_decoder import THREAD_NAME
from edged.media.sources.capture_input import passthrough_refusal
from edged.media.sources.file import FileVideoTrack
from edged.media.sources.mute import black_access_units, h264_size
from edged.media.sources.picamera2.source import picamera2_video_source
from edged.media.sources.testpattern import TestPatternRenderer
from edged.media.sources.timecode import decode
from edged.model import User
from edged.testing.waiting import until

from conftest import RunningServer
from enginekit import AnalysisSink, make_engine

pytest_plugins = ["standinkit"]  # the picamera2 stand-in: fixture `board`
SMALL = VideoConfig(320, 240, 30.0, 300_000)
VIDEO_ONLY = PublishConfig(audio=False)


@dataclass(frozen=True)
class Picture:
    pts: int
    code: int | None
    luma: float
    size: tuple[int, int]

    @property
    def black(self) -> bool:
        return self.code is None and self.luma < 20


class PictureSink:
    """A player sink that keeps, for each received video frame, its pts, time code and
    mean luma; owns the task reading the track."""

    def __init__(self) -> None:
        self.pictures: list[Picture] = []
        self._tasks: list[asyncio.Task[None]] = []

    def attach(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self._tasks.append(asyncio.create_task(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                luma = luma_plane(frame)
                code = decode(luma)
                size = (frame.width, frame.height)
                sequence = code.sequence if code is not None else None
                self.pictures.append(Picture(frame.pts, sequence, float(luma.mean()), size))

    def since(self, mark: int) -> list[Picture]:
        return self.pictures[mark:]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def black(pictures: list[Picture]) -> int:
    return sum(p.black for p in pictures)


def coded(pictures: list[Picture]) -> int:
    return sum(p.code is not None for p in pictures)


def write_clip(
    path: Path,
    frames: int = 60,
    gop: int = 15,
    size: tuple[int, int] = (320, 240),
    rate: fractions.Fraction = fractions.Fraction(30),
) -> Path:
    """A time-code clip in MP4 that passes through (baseline, no B-frames)."""
    renderer = TestPatternRenderer(*size)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        stream.codec_context.profile = "Baseline"
        stream.codec_context.max_b_frames = 0
        stream.codec_context.gop_size = gop
        for i in range(frames):
            frame = renderer.render(i)
            frame.pts, frame.time_base = i, 1 / rate
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


async def publish_and_play(pub: Engine, viewer: Engine, sink: PictureSink) -> None:
    await pub.login_room("r", User("cam"))
    await pub.start_publishing("cam", VIDEO_ONLY)
    await viewer.login_room("r", User("V"))
    await viewer.start_playing("cam", sink)
    await until(lambda: coded(sink.pictures) >= 10, 20)


def sent_video(engine: Engine) -> VideoSendCounts:
    """The published stream "cam"'s video counts."""
    video = engine.publishers["cam"].video
    assert video is not None
    return video


async def mute_and_unmute(pub: Engine, sink: PictureSink) -> dict[str, int]:
    """Mute until the viewer decoded black pictures, unmute until it decodes codes again;
    what the publisher's tap saw and sent while muted."""
    before = sent_video(pub)
    pub.mute_publish_video(True)
    mark = len(sink.pictures)
    await until(lambda: black(sink.since(mark)) >= 4, 20)
    after = sent_video(pub)
    muted = {
        "captured": after.frames_captured - before.frames_captured,
        "black_sent": after.black_frames_sent - before.black_frames_sent,
    }
    pub.mute_publish_video(False)
    mark = len(sink.pictures)
    await until(lambda: coded(sink.since(mark)) >= 10, 20)
    return muted


@pytest.mark.parametrize(
    ("size", "refusal"),
    [((640, 480), None), ((1920, 1080), "1920x1080 at 29.97 fps is above H.264 level 3.1")],
)
def test_a_file_passes_through_by_its_own_size_and_frame_rate(
    tmp_path: Path, size: tuple[int, int], refusal: str | None
) -> None:
    """The decision reads the container's frame rate, whatever type PyAV gives it
    (a Fraction up to PyAV 18, an AVRational from PyAV 19)."""
    clip = write_clip(tmp_path / "clip.mp4", 3, 3, size, fractions.Fraction(30000, 1001))
    with av.open(str(clip)) as container:
        assert passthrough_refusal(container.streams.video[0]) == refusal


def test_the_black_picture_is_an_idr_at_the_size_asked_for() -> None:
    first, second = black_access_units(320, 240)
    assert black_access_units(320, 240) == (first, second), "encoded once, then cached"
    assert first != second and {5, 7, 8} <= set(nal_types(first)) and 5 in nal_types(second)
    assert h264_size(first) == (320, 240) and h264_size(b"\x00\x00\x01\x09\xf0") is None
    codec = av.CodecContext.create("h264", "r")
    frames = [f for unit in (first, second) for f in codec.decode(av.Packet(unit))]
    assert [(f.width, f.height) for f in frames] == [(320, 240)] * 2
    assert all(float(luma_plane(f).mean()) < 20 for f in frames)


@pytest.mark.netns
async def test_a_muted_pi_camera_shows_black_then_its_picture_again(
    srv: RunningServer, board: Any
) -> None:
    pub, _ = make_engine(srv, video_source=picamera2_video_source, video=SMALL)
    viewer, _ = make_engine(srv)
    sink = PictureSink()
    async with pub, viewer:
        await publish_and_play(pub, viewer, sink)
        forced = board.keyframes_forced
        muted = await mute_and_unmute(pub, sink)
        assert board.keyframes_forced > forced, "the camera was asked for a keyframe"
        stats = sent_video(pub)
    assert stats.encoders_created == 0 and stats.frames_encoded == 0
    assert 0 < 2 * muted["black_sent"] < muted["captured"], "black goes out at a low rate"
    pictures = sink.pictures
    assert all(p.size == (320, 240) for p in pictures)
    assert np.all(np.diff([p.pts for p in pictures]) > 0), "timestamps keep increasing"
    first_black = next(i for i, p in enumerate(pictures) if p.black)
    last_black = max(i for i, p in enumerate(pictures) if p.black)
    assert coded(pictures[:first_black]) >= 10 and coded(pictures[last_black:]) >= 10
    assert coded(pictures[first_black:last_black]) == 0, "no camera picture while muted"


@pytest.mark.netns
async def test_a_muted_file_passed_through_shows_black_then_its_picture_again(
    srv: RunningServer, tmp_path: Path
) -> None:
    clip = await asyncio.to_thread(write_clip, tmp_path / "clip.mp4")
    tracks: list[FileVideoTrack] = []

    def source(config: VideoConfig) -> FileVideoTrack:
        tracks.append(FileVideoTrack(clip))
        return tracks[-1]

    pub, _ = make_engine(srv, video_source=source, video=SMALL)
    viewer, _ = make_engine(srv)
    sink = PictureSink()
    async with pub, viewer:
        await publish_and_play(pub, viewer, sink)
        assert tracks[0].passing_through is True
        await mute_and_unmute(pub, sink)
    pictures = sink.pictures
    assert black(pictures) >= 4 and all(p.size == (320, 240) for p in pictures)
    assert np.all(np.diff([p.pts for p in pictures]) > 0)
    last_black = max(i for i, p in enumerate(pictures) if p.black)
    assert coded(pictures[last_black:]) >= 10, "the file's own picture after a keyframe"


def preview_decoders() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME)]


async def test_preview_of_a_pass_through_camera_decodes_only_while_it_is_watched(
    srv: RunningServer, board: Any
) -> None:
    engine, _ = make_engine(srv, video_source=picamera2_video_source, video=SMALL)
    sink = AnalysisSink()
    async with engine:
        await engine.login_room("r", User("cam"))
        await engine.start_publishing("cam", VIDEO_ONLY)
        await until(lambda: sent_video(engine).frames_captured >= 10)
        assert preview_decoders() == [], "publishing alone decodes nothing"
        engine.start_preview(sink)
        await until(lambda: sink.video is not None and sink.video.decoded >= 20, 20)
        assert sink.video is not None and sink.video.stats().out_of_order == 0
        assert {(o.width, o.height) for o in sink.video.observations} == {(320, 240)}
        assert preview_decoders(), "decoded for the preview"
        await engine.stop_preview()
        await until(lambda: preview_decoders() == [])
        frames = sent_video(engine).frames_captured
        await until(lambda: sent_video(engine).frames_captured >= frames + 10)  # undecoded
        assert preview_decoders() == []


async def test_preview_of_a_pass_through_camera_before_publishing(
    srv: RunningServer, board: Any
) -> None:
    engine, _ = make_engine(srv, video_source=picamera2_video_source, video=SMALL)
    sink = AnalysisSink()
    async with engine:
        engine.start_preview(sink)
        await until(lambda: sink.video is not None and sink.video.decoded >= 10, 20)
        await engine.login_room("r", User("cam"))
        await engine.start_publishing("cam", VIDEO_ONLY)
        assert sink.video is not None
        decoded = sink.video.decoded
        await until(lambda: sink.video is not None and sink.video.decoded >= decoded + 10, 20)
        await engine.stop_preview()
    await until(lambda: preview_decoders() == [])
