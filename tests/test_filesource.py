"""The file source: H.264 passed through from MP4 and Matroska, looped without a seam."""

from __future__ import annotations

import asyncio
import fractions
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from av.video.frame import PictureType

from edged.errors import EdgedError, ErrorCode
from edged.media.h264 import is_keyframe, nal_types
from edged.media.send.fanout import EncodedVideoFanout
from edged.media.sinks.analysis import luma_plane
from edged.media.sources.file import FileVideoTrack, file_video_source
from edged.media.sources.testpattern import TestPatternRenderer
from edged.media.sources.timecode import decode
from edged.model import User
from edged.testing.waiting import until

from conftest import RunningServer
from enginekit import AnalysisSink, make_engine

FRAMES = 30  # one second at 30 fps


def write_clip(path: Path, profile: str = "Baseline", b_frames: int = 0) -> Path:
    """A one-second time-code clip, encoded by libx264 into ``path``'s container."""
    renderer = TestPatternRenderer(320, 240)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.codec_context.profile = profile
        stream.codec_context.max_b_frames = b_frames
        stream.codec_context.gop_size = 15
        for i in range(FRAMES):
            frame = renderer.render(i)
            frame.pts, frame.time_base = i, fractions.Fraction(1, 30)
            frame.pict_type = PictureType.NONE
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "mp4": write_clip(folder / "clip.mp4"),
        "mkv": write_clip(folder / "clip.mkv"),
        "bframes": write_clip(folder / "bframes.mp4", "High", b_frames=2),
    }


@pytest.fixture
async def tracks() -> AsyncIterator[list[FileVideoTrack]]:
    made: list[FileVideoTrack] = []
    yield made
    for track in made:
        track.stop()
        assert track.join(5)


def play(made: list[FileVideoTrack], path: Path, **kw: Any) -> FileVideoTrack:
    track = FileVideoTrack(path, **kw)
    made.append(track)
    return track


async def read(track: FileVideoTrack, count: int, timeout: float = 20.0) -> list[Any]:
    async def take() -> list[Any]:
        return [await track.recv() for _ in range(count)]

    return await asyncio.wait_for(take(), timeout)


def sequences(frames: list[av.VideoFrame]) -> list[int]:
    codes = [decode(luma_plane(f)) for f in frames]
    assert all(c is not None for c in codes)
    return [c.sequence for c in codes if c is not None]


def decode_packets(packets: list[av.Packet]) -> list[av.VideoFrame]:
    codec = av.CodecContext.create("h264", "r")
    return [f for p in packets for f in codec.decode(av.Packet(bytes(p)))]


@pytest.mark.parametrize("container", ["mp4", "mkv"])
async def test_h264_passes_through_and_loops_without_a_seam(
    tracks: list[FileVideoTrack], clips: dict[str, Path], container: str
) -> None:
    track = play(tracks, clips[container])
    started = time.monotonic()
    packets = await read(track, FRAMES * 2 + 10)
    elapsed = time.monotonic() - started
    assert track.passing_through is True
    assert all(isinstance(p, av.Packet) for p in packets)
    first = bytes(packets[0])
    assert first.startswith(b"\x00\x00\x00\x01") and {7, 8} <= set(nal_types(first))
    assert all(is_keyframe(bytes(packets[i])) for i in (0, 15, 30, 45, 60))
    expected = [i % FRAMES for i in range(len(packets))]
    assert sequences(decode_packets(packets)) == expected  # every frame, in order, looped
    steps = np.diff([p.pts for p in packets])
    # One frame apart everywhere, the loop included (Matroska keeps milliseconds only).
    assert np.all(np.abs(steps - 3000) <= 100)
    assert elapsed > 1.6  # paced: 70 frames at 30 fps take over two seconds
    assert track.error_code == 0


async def test_b_frames_are_decoded_for_the_fanout_to_encode_once(
    tracks: list[FileVideoTrack], clips: dict[str, Path]
) -> None:
    track = play(tracks, clips["bframes"])
    frames = await read(track, FRAMES + 5)
    assert track.passing_through is False
    assert all(isinstance(f, av.VideoFrame) for f in frames)
    assert sequences(frames) == [i % FRAMES for i in range(FRAMES + 5)]
    assert np.all(np.diff([f.pts for f in frames]) > 0)


async def test_passed_through_file_costs_the_fanout_no_encoder(
    tracks: list[FileVideoTrack], clips: dict[str, Path]
) -> None:
    track = play(tracks, clips["mp4"])
    async with EncodedVideoFanout(track) as fanout:
        viewer = fanout.subscribe()
        packets = [await asyncio.wait_for(viewer.recv(), 20) for _ in range(20)]
        stats = fanout.stats()
    assert stats.encoders_created == 0 and stats.frames_encoded == 0
    assert len(decode_packets(packets)) == 20


def test_a_missing_file_is_refused_with_its_code(tmp_path: Path) -> None:
    with pytest.raises(EdgedError) as error:
        file_video_source(tmp_path / "nothing.mp4")
    assert error.value.code == ErrorCode.MEDIA_FILE_NOT_FOUND


async def test_a_file_that_is_not_media_is_unsupported(
    tracks: list[FileVideoTrack], tmp_path: Path
) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("not a video\n")
    reports: list[int] = []
    play(tracks, path, on_error=reports.append, retry=(0.05, 0.1))
    reader = asyncio.ensure_future(tracks[0].recv())
    await until(lambda: reports == [ErrorCode.MEDIA_FILE_UNSUPPORTED])
    reader.cancel()


async def test_a_vanished_file_is_reported_and_played_again_when_back(
    tracks: list[FileVideoTrack], clips: dict[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "moving.mkv"
    path.write_bytes(clips["mkv"].read_bytes())
    reports: list[int] = []
    track = play(tracks, path, on_error=reports.append, retry=(0.05, 0.2))
    await read(track, 5)
    hidden = path.rename(tmp_path / "hidden.mkv")
    await until(lambda: reports == [ErrorCode.MEDIA_FILE_NOT_FOUND])  # at the loop's end
    hidden.rename(path)
    await until(lambda: reports == [ErrorCode.MEDIA_FILE_NOT_FOUND, 0])
    played = sequences(decode_packets(await read(track, 20)))
    assert 0 in played and played[-1] == played[-2] + 1  # from the start again, in order
    assert track.losses == 1


@pytest.mark.netns
async def test_a_published_file_reaches_a_viewer_untouched_and_looping(
    srv: RunningServer, clips: dict[str, Path]
) -> None:
    publisher, _ = make_engine(srv, video_source=lambda config: file_video_source(clips["mp4"]))
    player, _ = make_engine(srv)
    sink = AnalysisSink()
    async with publisher, player:
        await publisher.login_room("r", User("kiosk"))
        await publisher.start_publishing("loop")
        await player.login_room("r", User("viewer"))
        await player.start_playing("loop", sink)
        await until(lambda: sink.video is not None and sink.video.stats().decoded >= 75, 20)
        stats = publisher.publishers["loop"].video
        assert stats is not None
    assert stats.encoders_created == 0 and stats.frames_encoded == 0  # passed through
    assert sink.video is not None
    seen = [o.sequence for o in sink.video.observations]
    steps = [(b - a) % FRAMES for a, b in itertools.pairwise(seen)]
    assert steps.count(1) >= 0.9 * len(steps)  # frame after frame, across the loop too
    assert any(a == FRAMES - 1 and b == 0 for a, b in itertools.pairwise(seen))
    assert {(o.width, o.height) for o in sink.video.observations} == {(320, 240)}
