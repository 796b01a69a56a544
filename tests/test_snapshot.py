"""Snapshots: a JPEG from a raw frame or from one H.264 keyframe decoded on demand."""

from __future__ import annotations

import asyncio
import io

import av
import pytest

from edged.errors import EdgedError, ErrorCode
from edged.media.analysis import luma_plane
from edged.media.h264 import H264Encoder, H264Settings, is_keyframe, nal_types, split_nal_units
from edged.media.snapshot import (
    LatestFrame,
    LatestKeyframe,
    LatestPicture,
    ParameterSets,
    jpeg_from_frame,
    jpeg_from_h264_keyframe,
)
from edged.media.tap import SourceTap
from edged.media.testpattern import TestPatternRenderer, TestPatternTrack
from edged.media.timecode import decode

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
