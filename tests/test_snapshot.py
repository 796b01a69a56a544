"""Snapshots: a JPEG from a raw frame or from one H.264 keyframe decoded on demand."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import av
import av.logging
import numpy as np
import pytest

from edged.errors import EdgedError, ErrorCode
from edged.media.encoders.libx264 import H264Encoder, H264Settings
from edged.media.h264 import ParameterSets, is_keyframe, nal_types, split_nal_units
from edged.media.sinks.analysis import luma_plane
from edged.media.sinks.snapshot import (
    LatestFrame,
    LatestKeyframe,
    LatestPicture,
    jpeg_from_frame,
    jpeg_from_h264_keyframe,
)
from edged.media.sources.tap import SourceTap
from edged.media.sources.testpattern import TestPatternRenderer, TestPatternTrack
from edged.media.sources.timecode import decode

START = b"\x00\x00\x00\x01"


def open_jpeg(data: bytes) -> av.VideoFrame:
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    with av.open(io.BytesIO(data)) as container:
        frame: av.VideoFrame = next(container.decode(video=0))
    return frame


def sequence_in(frame: av.VideoFrame) -> int:
    code = decode(luma_plane(frame.reformat(format="yuv420p")))
    assert code is not None, "the time code is unreadable"
    return code.sequence


@pytest.mark.parametrize(
    ("size", "expected"),
    [((1280, 720), (640, 360)), ((320, 240), (320, 240)), ((1000, 570), (640, 364))],
)
def test_jpeg_from_frame_is_downscaled_and_keeps_the_time_code(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    frame = TestPatternRenderer(*size).render(1234)
    picture = open_jpeg(jpeg_from_frame(frame))
    assert (picture.width, picture.height) == expected
    assert sequence_in(picture) == 1234


def test_jpeg_max_width_is_honoured() -> None:
    frame = TestPatternRenderer(640, 480).render(7)
    picture = open_jpeg(jpeg_from_frame(frame, max_width=320))
    assert (picture.width, picture.height) == (320, 240)
    assert sequence_in(picture) == 7


def two_halves(
    fmt: str, dark: int, light: int, width: int = 160, height: int = 120
) -> av.VideoFrame:
    """A frame with luma ``dark`` on the left half, ``light`` on the right, no colour."""
    frame = av.VideoFrame(width, height, fmt)
    for index, plane in enumerate(frame.planes):
        rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
        if index == 0:
            rows[:, : plane.width // 2] = dark
            rows[:, plane.width // 2 :] = light
        else:
            rows[:] = 128
    return frame


def rgb_halves() -> av.VideoFrame:
    pixels = np.zeros((120, 160, 3), np.uint8)
    pixels[:, 80:] = 255
    return av.VideoFrame.from_ndarray(pixels, format="rgb24")


@pytest.fixture
def ffmpeg_warnings() -> Iterator[list[tuple[int, str, str]]]:
    """What FFmpeg logs at warning level or worse (what the daemon's journal would show)."""
    level, skip = av.logging.get_level(), av.logging.get_skip_repeated()
    av.logging.set_level(av.logging.WARNING)
    av.logging.set_skip_repeated(False)  # each test sees its own lines, even repeated ones
    try:
        with av.logging.Capture(local=True) as logs:
            yield logs
    finally:
        av.logging.set_skip_repeated(skip)
        av.logging.set_level(level)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(lambda: two_halves("yuv420p", 16, 235), id="limited-range yuv420p"),
        pytest.param(
            lambda: two_halves("yuv420p", 16, 235, 320, 240), id="limited-range, scaled down"
        ),
        pytest.param(lambda: two_halves("yuvj420p", 0, 255), id="MJPEG camera yuvj420p"),
        pytest.param(lambda: two_halves("yuvj422p", 0, 255), id="MJPEG camera yuvj422p"),
        pytest.param(rgb_halves, id="rgb24"),
    ],
)
def test_a_snapshot_logs_no_ffmpeg_warning_and_keeps_black_and_white(
    source: object, ffmpeg_warnings: list[tuple[int, str, str]]
) -> None:
    assert callable(source)
    frame = source()
    before = bytes(frame.planes[0])
    data = jpeg_from_frame(frame, max_width=160)
    # Before: "deprecated pixel format used, make sure you did set range correctly" from
    # swscale on every snapshot (the first one at every start).
    assert ffmpeg_warnings == []
    # The frame is shared with the encoder and the other observers: it is not touched.
    assert bytes(frame.planes[0]) == before
    picture = open_jpeg(data)
    assert (picture.width, picture.height) == (160, 120)
    luma = luma_plane(picture).astype(int)
    # Full-range JPEG: black is 0 and white 255, not a washed-out 16..235 or clipped.
    assert luma[:, :72].max() <= 3
    assert luma[:, 88:].min() >= 252
    chroma = np.frombuffer(memoryview(picture.planes[1]), np.uint8)
    assert abs(int(np.median(chroma)) - 128) <= 2


def test_a_snapshot_of_a_snapshot_keeps_the_picture(
    ffmpeg_warnings: list[tuple[int, str, str]],
) -> None:
    first = open_jpeg(jpeg_from_frame(TestPatternRenderer(320, 240).render(99)))
    start = len(ffmpeg_warnings)
    again = jpeg_from_frame(first)
    assert ffmpeg_warnings[start:] == []
    second = open_jpeg(again)
    difference = np.abs(luma_plane(first).astype(int) - luma_plane(second).astype(int))
    assert difference.mean() < 1.0
    assert sequence_in(second) == 99


def encoded(count: int, keyframe_interval: float = 1.0) -> list[bytes]:
    encoder = H264Encoder(H264Settings(bitrate=400_000, keyframe_interval=keyframe_interval))
    renderer = TestPatternRenderer(640, 480)
    return [bytes(p) for i in range(count) for p in encoder.encode(renderer.render(i))]


def test_jpeg_from_an_h264_keyframe() -> None:
    keyframe = encoded(1)[0]
    picture = open_jpeg(jpeg_from_h264_keyframe(keyframe))
    assert (picture.width, picture.height) == (640, 480)
    assert sequence_in(picture) == 0


def test_a_picture_that_is_not_a_keyframe_is_refused() -> None:
    delta = encoded(2)[1]
    with pytest.raises(EdgedError) as error:
        jpeg_from_h264_keyframe(delta)
    assert error.value.code == ErrorCode.SNAPSHOT_FAILED
    with pytest.raises(EdgedError):
        jpeg_from_h264_keyframe(b"\x00\x00\x00\x01\x67garbage")


async def test_latest_frame_observes_the_capture_tap() -> None:
    tap = SourceTap(TestPatternTrack(320, 240, 30))
    latest = LatestFrame()
    tap.observers.append(latest)
    with pytest.raises(EdgedError):
        latest.jpeg()
    frames = [await asyncio.wait_for(tap.recv(), 5) for _ in range(5)]
    tap.stop()
    assert latest.frame is frames[-1]  # a reference, nothing converted meanwhile
    assert sequence_in(open_jpeg(latest.jpeg())) == 4


def test_latest_keyframe_keeps_the_last_one_and_decodes_it_on_demand() -> None:
    packets = encoded(75)  # keyframes at 0, 30 and 60
    latest = LatestKeyframe()
    for i, data in enumerate(packets):
        packet = av.Packet(data)
        packet.pts = i
        latest(packet)
        latest(TestPatternRenderer(320, 240).render(0))  # frames are not its business
    assert latest.pts == 60
    assert sequence_in(open_jpeg(latest.jpeg())) == 60


def test_keyframes_without_parameter_sets_get_them() -> None:
    """Cameras and hardware encoders that send SPS/PPS once, or as a buffer of their own."""
    first, *rest = encoded(31)
    nals = split_nal_units(first)
    headers = [n for n in nals if n[0] & 0x1F in (7, 8)]
    slices = [n for n in nals if n[0] & 0x1F not in (7, 8)]
    bare_idr = b"".join(START + n for n in slices)
    sets = ParameterSets()
    assert sets.complete(b"".join(START + n for n in headers)) is None  # held back
    joined = sets.complete(bare_idr)
    assert joined is not None and nal_types(joined)[:2] == [7, 8]
    later_idr = rest[-1]
    assert is_keyframe(later_idr)
    later_bare = b"".join(START + n for n in split_nal_units(later_idr) if n[0] & 0x1F == 5)
    completed = sets.complete(later_bare)
    assert completed is not None and nal_types(completed)[:2] == [7, 8]
    assert sequence_in(open_jpeg(jpeg_from_h264_keyframe(completed))) == 30
    delta = rest[0]
    assert sets.complete(delta) == delta


def test_latest_picture_follows_whichever_kind_it_sees() -> None:
    latest = LatestPicture()
    assert not latest.available
    latest(TestPatternRenderer(320, 240).render(3))
    assert sequence_in(open_jpeg(latest.jpeg())) == 3
    packet = av.Packet(encoded(1)[0])
    latest(packet)
    picture = open_jpeg(latest.jpeg())
    assert (picture.width, sequence_in(picture)) == (640, 0)
