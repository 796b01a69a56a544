"""The V4L2 capture path, run on FFmpeg's lavfi sources through the same demux code.

A board opens ``/dev/videoN`` with ``format="v4l2"``; these tests open ``testsrc2``
with ``format="lavfi"`` through the same :class:`CaptureTrack`: pacing, decoding,
turning, the track's own encoder, H.264 from a camera passed through, and a device that
vanishes and comes back.
"""

from __future__ import annotations

import asyncio
import errno
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from edged.engine.config import VideoConfig
from edged.errors import ErrorCode
from edged.media.encoders.libx264 import H264Encoder, H264Settings
from edged.media.encoders.v4l2m2m import V4l2m2mEncoder, pick_h264_encoder
from edged.media.h264 import is_keyframe, nal_types
from edged.media.send.fanout import EncodedVideoFanout
from edged.media.sinks.analysis import luma_plane
from edged.media.sources.capture_input import CaptureInput, open_input
from edged.media.sources.orientation import Orientation
from edged.media.sources.testpattern import TestPatternRenderer
from edged.media.sources.v4l2 import CaptureTrack, v4l2_video_source
from edged.testing.waiting import until

TESTSRC = "testsrc2=size=320x240:rate=30"


@pytest.fixture
async def tracks() -> AsyncIterator[list[CaptureTrack]]:
    made: list[CaptureTrack] = []
    yield made
    for track in made:
        track.stop()
        assert track.join(5), "the reader thread did not end"


def capture(made: list[CaptureTrack], spec: CaptureInput, **kw: Any) -> CaptureTrack:
    track = CaptureTrack(spec, **kw)
    made.append(track)
    return track


async def read(track: CaptureTrack, count: int, timeout: float = 20.0) -> list[Any]:
    async def take() -> list[Any]:
        return [await track.recv() for _ in range(count)]

    return await asyncio.wait_for(take(), timeout)


def decode_all(packets: list[Any]) -> list[av.VideoFrame]:
    codec = av.CodecContext.create("h264", "r")
    frames: list[av.VideoFrame] = []
    for packet in packets:
        frames.extend(codec.decode(av.Packet(bytes(packet))))
    return frames


async def test_lavfi_input_is_paced_like_a_camera(tracks: list[CaptureTrack]) -> None:
    track = capture(tracks, CaptureInput.lavfi(TESTSRC))
    started = time.monotonic()
    frames = await read(track, 31)
    elapsed = time.monotonic() - started
    # lavfi renders as fast as it is read; 30 frame intervals at 30 fps take a second.
    assert elapsed > 0.7
    assert all(isinstance(f, av.VideoFrame) for f in frames)
    assert {(f.width, f.height) for f in frames} == {(320, 240)}
    steps = np.diff([f.pts for f in frames])
    assert np.all(steps > 0)
    assert abs(float(np.median(steps)) - 3000) < 30  # 1/30 s in 90 kHz
    assert track.error_code == 0 and track.passing_through is False


def test_v4l2_input_asks_the_driver_for_size_rate_and_format() -> None:
    spec = CaptureInput.v4l2("/dev/video2", 1280, 720, 30, "mjpeg")
    assert spec.format == "v4l2" and spec.clocked and not spec.loop
    assert dict(spec.options) == {
        "video_size": "1280x720",
        "framerate": "30",
        "input_format": "mjpeg",
    }
    assert dict(CaptureInput.v4l2("/dev/video0", 640, 480, 15, "yuyv").options)["input_format"] == (
        "yuyv422"
    )
    assert "input_format" not in CaptureInput.v4l2("/dev/video0", 640, 480, 15).options
    with pytest.raises(ValueError):
        CaptureInput.v4l2("/dev/video0", 640, 480, 15, "bayer")


@pytest.mark.parametrize(
    ("orientation", "expected"),
    [
        (Orientation(90), lambda y: np.rot90(y, -1)),
        (Orientation(180), lambda y: y[::-1, ::-1]),
        (Orientation(270), lambda y: np.rot90(y, 1)),
        (Orientation(hflip=True), lambda y: y[:, ::-1]),
        (Orientation(vflip=True), lambda y: y[::-1]),
        (Orientation(90, hflip=True), lambda y: np.rot90(y[:, ::-1], -1)),
    ],
)
def test_orientation_turns_the_picture(
    orientation: Orientation, expected: Callable[[np.ndarray], np.ndarray]
) -> None:
    frame = TestPatternRenderer(320, 240).render(5)
    turned = orientation.apply(frame)
    assert np.array_equal(luma_plane(turned), expected(luma_plane(frame)))
    assert (turned.pts, turned.time_base) == (frame.pts, frame.time_base)
    assert Orientation().apply(frame) is frame
    with pytest.raises(ValueError):
        Orientation(45)


async def test_turned_capture_is_transposed(tracks: list[CaptureTrack]) -> None:
    track = capture(tracks, CaptureInput.lavfi(TESTSRC), orientation=Orientation(270))
    frames = await read(track, 3)
    assert {(f.width, f.height) for f in frames} == {(240, 320)}


async def test_frames_are_encoded_once_by_the_fanout(tracks: list[CaptureTrack]) -> None:
    track = capture(tracks, CaptureInput.lavfi(TESTSRC))
    async with EncodedVideoFanout(track, H264Settings(bitrate=300_000)) as fanout:
        viewers = [fanout.subscribe(f"v{i}") for i in range(3)]
        rounds = [[await asyncio.wait_for(v.recv(), 20) for v in viewers] for _ in range(20)]
        stats = fanout.stats()
    assert stats.encoders_created == 1
    assert all(a is b is c for a, b, c in rounds)  # one encoded packet, shared by all
    packets = [first for first, _, _ in rounds]
    assert is_keyframe(bytes(packets[0]))
    assert {(f.width, f.height) for f in decode_all(packets)} == {(320, 240)}


async def test_own_encoder_yields_packets_and_honours_keyframe_requests(
    tracks: list[CaptureTrack],
) -> None:
    settings = H264Settings(bitrate=300_000, keyframe_interval=30.0)
    track = capture(tracks, CaptureInput.lavfi(TESTSRC), encoder=lambda: H264Encoder(settings))
    packets = await read(track, 10)
    assert all(isinstance(p, av.Packet) for p in packets)
    assert is_keyframe(bytes(packets[0])) and not any(is_keyframe(bytes(p)) for p in packets[5:])
    track.request_keyframe()
    later = await read(track, 10)
    assert any(5 in nal_types(bytes(p)) for p in later), "no IDR after the request"
    assert {(f.width, f.height) for f in decode_all(packets + later)} == {(320, 240)}
    assert np.all(np.diff([p.pts for p in packets + later]) > 0)
    assert track.set_bitrate(200_000) == 200_000


@pytest.fixture(scope="module")
def camera_h264(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What an H.264 camera sends: Annex-B access units, no container framing."""
    path = tmp_path_factory.mktemp("h264") / "camera.h264"
    encoder = H264Encoder(H264Settings(bitrate=300_000, keyframe_interval=1.0))
    renderer = TestPatternRenderer(320, 240)
    with path.open("wb") as out:
        for i in range(60):
            for packet in encoder.encode(renderer.render(i)):
                out.write(bytes(packet))
    return path


async def test_camera_h264_passes_through_untouched(
    tracks: list[CaptureTrack], camera_h264: Path
) -> None:
    raw = await asyncio.to_thread(camera_h264.read_bytes)
    track = capture(tracks, CaptureInput(str(camera_h264), "h264", {"framerate": "30"}))
    packets = await read(track, 40)
    requests = track.keyframe_requests
    assert track.passing_through is True
    assert all(isinstance(p, av.Packet) for p in packets)
    assert all(bytes(p) in raw for p in packets)  # byte for byte what the camera made
    assert is_keyframe(bytes(packets[0]))
    track.request_keyframe()  # nothing can honour it: the camera's own GOP decides
    assert track.keyframe_requests == requests + 1
    assert len(decode_all(packets)) == 40
    assert track.frames_dropped == 0


def failing_opener(state: dict[str, Any]) -> Callable[[CaptureInput], Any]:
    """Opens the real input unless the test unplugged the "camera"."""

    def opener(spec: CaptureInput) -> Any:
        state["attempts"] += 1
        if state["gone"]:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", spec.url)
        return ReadFails(open_input(spec), state) if state["read_fails_after"] else open_input(spec)

    return opener


class ReadFails:
    """A container whose reads fail after some packets (a camera unplugged mid-stream)."""

    def __init__(self, container: Any, state: dict[str, Any]) -> None:
        self.container, self.state, self.streams = container, state, container.streams

    def demux(self, stream: Any) -> Any:
        for count, packet in enumerate(self.container.demux(stream)):
            if count >= self.state["read_fails_after"]:
                self.state["read_fails_after"] = 0
                self.state["gone"] = True
                raise OSError(errno.ENODEV, "No such device")
            yield packet

    def close(self) -> None:
        self.container.close()


async def test_lost_camera_is_reported_retried_and_recovered(
    tracks: list[CaptureTrack],
) -> None:
    state: dict[str, Any] = {"attempts": 0, "gone": False, "read_fails_after": 15}
    reports: list[int] = []
    track = capture(
        tracks,
        CaptureInput.lavfi(TESTSRC),
        opener=failing_opener(state),
        on_error=reports.append,
        retry=(0.05, 0.2),
    )
    before = await read(track, 10)
    await until(lambda: reports == [ErrorCode.CAMERA_LOST])  # on_error runs on the loop
    assert track.lost and track.error_code == ErrorCode.CAMERA_LOST
    attempts = state["attempts"]
    await until(lambda: state["attempts"] >= attempts + 3)  # retrying while it is gone
    assert reports == [ErrorCode.CAMERA_LOST]  # reported once, not at every retry
    gone_for = time.monotonic()
    state["gone"] = False
    after = await read(track, 10)
    await until(lambda: reports == [ErrorCode.CAMERA_LOST, 0])
    assert track.error_code == 0 and track.losses == 1
    pts = [f.pts for f in before + after]
    assert np.all(np.diff(pts) > 0)
    assert gone_for > 0 and max(np.diff(pts)) > 9000  # the gap shows in the timestamps


async def test_camera_that_ends_is_lost_until_it_returns(tracks: list[CaptureTrack]) -> None:
    state: dict[str, Any] = {"attempts": 0, "gone": False, "read_fails_after": 0}
    opener = failing_opener(state)

    def short_lived(spec: CaptureInput) -> Any:
        container = opener(spec)
        state["gone"] = state["attempts"] == 1  # gone after the first run
        return container

    reports: list[int] = []
    track = capture(
        tracks,
        CaptureInput.lavfi(TESTSRC + ":duration=0.5"),
        opener=short_lived,
        on_error=reports.append,
        retry=(0.05, 0.1),
    )
    await read(track, 5)
    await until(lambda: ErrorCode.CAMERA_LOST in reports)
    state["gone"] = False
    await until(lambda: reports[-1:] == [0])
    await read(track, 5)


async def test_camera_that_never_was_is_not_found(tracks: list[CaptureTrack]) -> None:
    reports: list[int] = []
    track = v4l2_video_source(VideoConfig(320, 240, 30.0), device="/dev/video-none")
    tracks.append(track)
    track.on_error = reports.append
    reader = asyncio.ensure_future(track.recv())
    await until(lambda: reports == [ErrorCode.CAMERA_NOT_FOUND])
    assert track.error_code == ErrorCode.CAMERA_NOT_FOUND and track.losses == 0
    track.stop()
    with pytest.raises(Exception):  # noqa: B017 - MediaStreamError ends the reader
        await asyncio.wait_for(reader, 5)


def test_encoder_choice_is_libx264_without_a_hardware_encoder() -> None:
    choice = pick_h264_encoder()
    assert choice.hardware == (choice.name == "h264_v4l2m2m")
    if not Path("/dev/video11").exists():  # the Raspberry Pi's encoder node
        assert tuple(choice) == ("libx264", False)


class SoftV4l2m2m(V4l2m2mEncoder):
    """The hardware encoder's logic on libx264, for a machine without the hardware."""

    codec_name = "libx264"
    codec_options = {"tune": "zerolatency"}  # out at once, as from the hardware
    reopen_interval = 0.3


def test_hardware_encoder_reopens_for_a_new_bitrate_and_starts_with_an_idr() -> None:
    encoder = SoftV4l2m2m(H264Settings(bitrate=400_000, min_bitrate=100_000, keyframe_interval=30))
    renderer = TestPatternRenderer(320, 240)
    packets = [p for i in range(5) for p in encoder.encode(renderer.render(i))]
    assert encoder.opened == 1 and is_keyframe(bytes(packets[0]))
    encoder.request_keyframe()
    forced = encoder.encode(renderer.render(5))
    assert forced and is_keyframe(bytes(forced[0]))
    assert encoder.set_bitrate(390_000) == 390_000  # within 10 %: no reopen
    time.sleep(0.35)  # past the reopen interval: a change within 10 % still does not reopen
    encoder.encode(renderer.render(6))
    assert encoder.opened == 1
    encoder.set_bitrate(200_000)
    reopened = encoder.encode(renderer.render(7))
    assert encoder.opened == 2 and is_keyframe(bytes(reopened[0]))
    encoder.set_bitrate(400_000)
    encoder.encode(renderer.render(8))
    assert encoder.opened == 2  # at most one reopen per interval


# -- a camera that stops delivering without an error ----------------------------------


class Stalls:
    """A container whose reads block while ``state["stalled"]`` is set, as a driver's read
    that never returns; the blocked reads go on only once ``state["release"]`` is set."""

    def __init__(self, container: Any, state: dict[str, Any]) -> None:
        self.container, self.state, self.streams = container, state, container.streams

    def demux(self, stream: Any) -> Any:
        for packet in self.container.demux(stream):
            if self.state["stalled"]:
                self.state["blocked"] += 1
                self.state["release"].wait()
            yield packet

    def close(self) -> None:
        self.container.close()


def stalling_opener(state: dict[str, Any]) -> Callable[[CaptureInput], Any]:
    def opener(spec: CaptureInput) -> Any:
        state["opened"] += 1
        return Stalls(open_input(spec), state)

    return opener


def stall_state() -> dict[str, Any]:
    return {"stalled": False, "opened": 0, "blocked": 0, "release": threading.Event()}


async def test_a_camera_that_stops_delivering_is_lost_restarted_and_recovered(
    tracks: list[CaptureTrack],
) -> None:
    state = stall_state()
    reports: list[int] = []
    track = capture(
        tracks,
        CaptureInput.lavfi(TESTSRC),
        opener=stalling_opener(state),
        on_error=reports.append,
        retry=(0.05, 0.2),
        stall_timeout=0.5,
    )
    try:
        before = await read(track, 10)
        state["stalled"] = True
        await until(lambda: reports == [ErrorCode.CAMERA_LOST])
        assert track.lost and track.losses == 1 and track.stalls == 1
        opened = state["opened"]
        # Reopened, still stalled, given up on again: with backoff, reported only once.
        await until(lambda: state["opened"] >= opened + 2 and track.stalls >= 3)
        assert reports == [ErrorCode.CAMERA_LOST] and track.restarts >= 3
        assert state["blocked"] >= 3, "every run is stuck in its read, none was interrupted"
        state["stalled"] = False
        await until(lambda: reports == [ErrorCode.CAMERA_LOST, 0])
        after = await read(track, 20)
        assert track.error_code == 0 and track.losses == 1
    finally:
        state["release"].set()  # the stuck reads return; their runs end without delivering
    pts = [f.pts for f in before + after]
    assert np.all(np.diff(pts) > 0)
    assert max(np.diff(pts)) > 0.5 * 90000, "the stall shows in the timestamps"
    assert all(isinstance(f, av.VideoFrame) and f.width == 320 for f in after)


async def test_a_slow_camera_is_not_a_stalled_one(tracks: list[CaptureTrack]) -> None:
    reports: list[int] = []
    track = capture(
        tracks,
        CaptureInput.lavfi("testsrc2=size=320x240:rate=5"),
        on_error=reports.append,
        stall_timeout=2.0,  # ten frame intervals
    )
    await read(track, 10)
    assert track.stalls == 0 and reports == [] and track.opens == 1


async def test_a_stalled_camera_with_its_own_encoder_starts_again_at_a_keyframe(
    tracks: list[CaptureTrack],
) -> None:
    state = stall_state()
    settings = H264Settings(bitrate=300_000, keyframe_interval=30.0)
    track = capture(
        tracks,
        CaptureInput.lavfi(TESTSRC),
        opener=stalling_opener(state),
        encoder=lambda: H264Encoder(settings),
        retry=(0.05, 0.2),
        stall_timeout=0.5,
    )
    try:
        await read(track, 10)
        state["stalled"] = True
        await until(lambda: track.stalls >= 1)
        state["stalled"] = False
        await until(lambda: track.error_code == 0)
        after = await read(track, 10 + 4)  # the queue may still hold packets from before
    finally:
        state["release"].set()
    fresh = after[-10:]
    starts = [i for i, p in enumerate(after) if is_keyframe(bytes(p))]
    assert starts, "the restarted run's encoder starts with an IDR"
    assert len(decode_all(after[starts[-1] :])) == len(after) - starts[-1]
    assert all(isinstance(p, av.Packet) for p in fresh)
