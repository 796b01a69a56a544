"""The picamera2 camera source, against the stand-in in tests/fake_picamera2.

The stand-in mirrors the picamera2 0.3.x API edged uses and encodes a time-code test
pattern with libx264 in its own "hardware encoder" thread, counting what it encodes:
these tests prove that edged passes its access units to viewers untouched (zero
encodes, zero decodes of its own), routes keyframe requests and bitrate changes to the
encoder, and falls back to encoding once itself where the board has no encoder.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtcpPsfbPacket, pack_remb_fci

from edged.engine.config import VideoConfig
from edged.engine.events import PublisherStateUpdate
from edged.errors import EdgedError, ErrorCode
from edged.media.aiortc.receivers import passthrough_receivers, send_pli
from edged.media.aiortc.sender_hook import RTCP_PSFB_APP
from edged.media.h264 import is_keyframe, split_nal_units, sps_profile_level
from edged.media.send.fanout import EncodedVideoFanout
from edged.media.sinks.analysis import luma_plane
from edged.media.sources.picamera2.source import Picamera2VideoTrack, picamera2_video_source
from edged.media.sources.timecode import decode
from edged.model import PublisherState, User
from edged.testing.waiting import until

from conftest import RunningServer
from enginekit import AnalysisSink, make_engine

pytest_plugins = ["standinkit"]  # the picamera2 stand-in: fixture `board`
SMALL = VideoConfig(320, 240, 30.0, 300_000, min_bitrate=100_000, max_bitrate=1_000_000)


@pytest.fixture
async def tracks() -> AsyncIterator[list[Picamera2VideoTrack]]:
    made: list[Picamera2VideoTrack] = []
    yield made
    for track in made:
        track.stop()


def camera(made: list[Picamera2VideoTrack], config: VideoConfig = SMALL, **kw: Any) -> Any:
    track = picamera2_video_source(config, **kw)
    made.append(track)
    return track


async def read(track: MediaStreamTrack, count: int, timeout: float = 10.0) -> list[Any]:
    async def take() -> list[Any]:
        return [await track.recv() for _ in range(count)]

    return await asyncio.wait_for(take(), timeout)


def decoded_codes(packets: list[av.Packet[Any]]) -> list[int]:
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for p in packets for f in decoder.decode(av.Packet(bytes(p)))]  # type: ignore[arg-type]
    return [code.sequence for f in frames if (code := decode(luma_plane(f))) is not None]


# -- what a user configures, and what goes wrong -------------------------------------


def test_without_picamera2_the_source_reports_picamera2_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(EdgedError) as raised:
        picamera2_video_source(SMALL)
    assert raised.value.code == ErrorCode.PICAMERA2_UNAVAILABLE


async def test_publishing_without_picamera2_fails_with_its_code(
    srv: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    engine, rec = make_engine(srv, video_source=picamera2_video_source)
    async with engine:
        await engine.login_room("r", User("cam"))
        with pytest.raises(EdgedError) as raised:
            await engine.start_publishing("cam")
        assert raised.value.code == ErrorCode.PICAMERA2_UNAVAILABLE
        last = rec.of(PublisherStateUpdate)[-1]
        assert (last.state, last.error_code) == (
            PublisherState.NO_PUBLISH,
            ErrorCode.PICAMERA2_UNAVAILABLE,
        )


def test_a_board_without_camera_reports_camera_not_found(board: Any) -> None:
    board.cameras = []
    with pytest.raises(EdgedError) as raised:
        picamera2_video_source(SMALL)
    assert raised.value.code == ErrorCode.CAMERA_NOT_FOUND


@pytest.mark.parametrize("rotation", [90, 270])
def test_quarter_turns_are_refused_as_unsupported(board: Any, rotation: int) -> None:
    with pytest.raises(EdgedError) as raised:
        picamera2_video_source(SMALL, rotation=rotation)
    assert raised.value.code == ErrorCode.CAMERA_FORMAT_UNSUPPORTED


async def test_the_camera_and_encoder_are_set_up_as_configured_at_level_31(
    board: Any, tracks: list[Picamera2VideoTrack]
) -> None:
    import videodev2 as v4l2

    track = camera(tracks, rotation=180, hflip=True)
    first = (await read(track, 1))[0]
    config = board.configurations[-1]
    assert config["main"]["size"] == (320, 240) and config["main"]["format"] == "YUV420"
    assert config["lores"]["size"] == (160, 120)
    assert config["controls"]["FrameRate"] == 30.0
    transform = config["transform"]
    assert (transform.hflip, transform.vflip) == (False, True), "180 degrees, then mirrored"
    assert board.bitrates == [300_000]
    assert board.controls[v4l2.V4L2_CID_MPEG_VIDEO_H264_PROFILE] == 0  # baseline
    assert board.controls[v4l2.V4L2_CID_MPEG_VIDEO_H264_LEVEL] == 9  # 3.1
    assert board.controls[v4l2.V4L2_CID_MPEG_VIDEO_H264_I_PERIOD] == 60  # 2 s at 30 fps
    assert board.controls[v4l2.V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER] == 1
    profile_level = sps_profile_level(bytes(first))
    assert profile_level is not None and profile_level[:2] == "42" and profile_level[4:] == "1f"
    assert track.hardware_encode and is_keyframe(bytes(first))


async def test_a_size_beyond_level_31_is_reduced_to_fit(
    board: Any, tracks: list[Picamera2VideoTrack]
) -> None:
    track = camera(tracks, VideoConfig(1920, 1080, 30.0, 2_000_000))
    await read(track, 1)
    width, height = board.configurations[-1]["main"]["size"]
    assert (width, height) == (track.width, track.height)
    assert width * height <= 1280 * 720 and abs(width / height - 16 / 9) < 0.02


async def test_access_units_keep_the_camera_clock_in_90_khz(
    board: Any, tracks: list[Picamera2VideoTrack]
) -> None:
    track = camera(tracks)
    packets = await read(track, 30)
    assert all(p.time_base.denominator == 90000 for p in packets)
    steps = [b.pts - a.pts for a, b in itertools.pairwise(packets)]
    assert all(step > 0 for step in steps)
    assert 2000 < sum(steps) / len(steps) < 4500, "about 3000 ticks per frame at 30 fps"
    assert decoded_codes(packets) == list(range(30)), "every picture, in order"


async def test_the_low_resolution_snapshot_shows_the_rotated_picture(
    board: Any, tracks: list[Picamera2VideoTrack]
) -> None:
    track = camera(tracks, rotation=180)
    await read(track, 1)
    jpeg = track.snapshot_jpeg()
    assert jpeg[:2] == b"\xff\xd8"
    picture = av.CodecContext.create("mjpeg", "r").decode(av.Packet(jpeg))[0]
    assert (picture.width, picture.height) == (160, 120)
    luma = luma_plane(picture)
    assert decode(luma) is None, "upside down, the time code cannot be read"
    assert decode(np.ascontiguousarray(luma[::-1, ::-1])) is not None


# -- pass-through to the fan-out -----------------------------------------------------


async def test_the_fanout_passes_the_encoders_packets_untouched(
    board: Any, tracks: list[Picamera2VideoTrack]
) -> None:
    track = camera(tracks)
    async with EncodedVideoFanout(track) as fanout:
        viewers = [fanout.subscribe() for _ in range(2)]
        streams = await asyncio.gather(*(read(v, 30) for v in viewers))
        stats = fanout.stats()
    emitted = set(board.units)
    assert all(bytes(p) in emitted for s in streams for p in s), "the encoder's own bytes"
    assert all(is_keyframe(bytes(s[0])) for s in streams)
    assert stats.encoders_created == 0 and stats.frames_encoded == 0 and fanout.encoder is None
    assert board.encodes >= stats.packets_out


async def test_a_stalled_event_loop_resumes_at_a_requested_keyframe(
    board: Any, tracks: list[Picamera2VideoTrack]
) -> None:
    track = Picamera2VideoTrack(VideoConfig(320, 240, keyframe_interval_s=30), queue_size=5)
    tracks.append(track)
    await read(track, 5)
    time.sleep(1.0)  # noqa: ASYNC251 - the event loop stalls; the camera goes on
    after = (await read(track, 1))[0]
    assert is_keyframe(bytes(after)), "no picture without its reference frames"
    assert track.dropped > 0 and track.keyframe_requests >= 1
    await until(lambda: board.keyframes_forced >= 1)


async def test_bitrate_changes_reach_the_encoder_within_bounds(
    board: Any, tracks: list[Picamera2VideoTrack]
) -> None:
    track = camera(tracks)
    packets: list[av.Packet[Any]] = []

    async def keep_reading() -> None:
        while True:
            packets.append(await track.recv())

    reader = asyncio.create_task(keep_reading())
    await until(lambda: len(packets) >= 5)
    assert track.set_bitrate(500_000) == 500_000
    await until(lambda: board.bitrates[-1] == 500_000)
    assert track.set_bitrate(50_000_000) == 1_000_000, "capped at max_bitrate"
    assert track.set_bitrate(310_000) == 310_000, "the newest target wins"
    await until(lambda: board.bitrates[-1] == 310_000)
    assert track.set_bitrate(10) == 100_000, "floored at min_bitrate"
    assert track.set_bitrate(105_000) == 100_000, "a small change is not worth a restart"
    await until(lambda: board.bitrates[-1] == 100_000)
    await until(lambda: track.encoder_restarts == 3)
    count = len(packets)
    await until(lambda: len(packets) >= count + 10)
    reader.cancel()
    assert board.bitrates == [300_000, 500_000, 310_000, 100_000]
    pts = [p.pts for p in packets]
    assert pts == sorted(set(pts)), "timestamps go on increasing across encoder restarts"


async def test_stopping_releases_the_camera_for_the_next_capture(
    board: Any, tracks: list[Picamera2VideoTrack]
) -> None:
    preview = camera(tracks)
    await read(preview, 3)
    preview.stop()
    publisher = camera(tracks)
    await read(publisher, 3)  # opened once the first capture has closed
    publisher.stop()
    await until(lambda: not board.open_cameras and board.encoder_stops == 2)
    names = ("picamera2-", "v4l2-encoder", "stand-in sensor")
    await until(lambda: not [t for t in threading.enumerate() if t.name.startswith(names)])


# -- boards without a hardware encoder ------------------------------------------------


async def test_a_pi5_has_no_hardware_encoder_and_the_fanout_encodes_once(
    board: Any, tracks: list[Picamera2VideoTrack]
) -> None:
    board.make_pi5()
    track = camera(tracks)
    async with EncodedVideoFanout(track) as fanout:
        viewers = [fanout.subscribe() for _ in range(2)]
        streams = await asyncio.gather(*(read(v, 20) for v in viewers))
        stats = fanout.stats()
    assert track.hardware_encode is False
    assert board.encodes == 0 and board.encoder_starts == 0
    assert stats.encoders_created == 1 and stats.frames_encoded >= 20
    assert all(len(decoded_codes(s)) == 20 for s in streams)


async def test_a_missing_encoder_device_falls_back_to_software(
    board: Any, tracks: list[Picamera2VideoTrack]
) -> None:
    board.hardware_encoder = False  # a VC4 board whose /dev/video11 is absent
    track = camera(tracks)
    assert track.hardware_encode, "what picamera2's platform promises"
    frame = (await read(track, 1))[0]
    assert isinstance(frame, av.VideoFrame) and (frame.width, frame.height) == (320, 240)
    assert track.hardware_encode is False
    assert decode(luma_plane(frame)) is not None


# -- real viewers (inside a private network namespace) --------------------------------


@dataclass
class Viewer:
    """A receiving peer connection and the track it got."""

    board_pc: RTCPeerConnection
    pc: RTCPeerConnection
    track: MediaStreamTrack
    items: list[Any] = field(default_factory=list)

    async def take(self, count: int, timeout: float = 10.0) -> None:
        async def loop() -> None:
            while len(self.items) < count:
                self.items.append(await self.track.recv())

        await asyncio.wait_for(loop(), timeout)

    async def close(self) -> None:
        await self.pc.close()
        await self.board_pc.close()


async def connect(fanout: EncodedVideoFanout) -> Viewer:
    board_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    got: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
    pc.on("track", got.put_nowait)
    fanout.add_to(board_pc)
    await board_pc.setLocalDescription(await board_pc.createOffer())
    await pc.setRemoteDescription(board_pc.localDescription)
    await pc.setLocalDescription(await pc.createAnswer())
    await board_pc.setRemoteDescription(pc.localDescription)
    return Viewer(board_pc, pc, await asyncio.wait_for(got.get(), 5))


@pytest.fixture
async def viewers() -> AsyncIterator[list[Viewer]]:
    made: list[Viewer] = []
    yield made
    await asyncio.gather(*(v.close() for v in made))


@pytest.mark.netns
async def test_non_decoding_viewers_receive_the_encoders_nal_units(
    board: Any, tracks: list[Picamera2VideoTrack], viewers: list[Viewer]
) -> None:
    with passthrough_receivers(kinds=["video"]) as counter:
        async with EncodedVideoFanout(camera(tracks)) as fanout:
            viewers += [await connect(fanout) for _ in range(2)]
            await asyncio.gather(*(v.take(30) for v in viewers))
            stats = fanout.stats()
    units = {tuple(split_nal_units(u)) for u in board.units}
    for viewer in viewers:
        assert all(tuple(split_nal_units(bytes(p))) in units for p in viewer.items)
        assert is_keyframe(bytes(viewer.items[0]))
    assert counter.frames["video"] >= 60 and stats.encoders_created == 0


@pytest.mark.netns
async def test_a_new_viewer_and_a_pli_reach_force_key_frame(
    board: Any, tracks: list[Picamera2VideoTrack], viewers: list[Viewer]
) -> None:
    rare = VideoConfig(320, 240, 30.0, 300_000, keyframe_interval_s=30)
    fanout = EncodedVideoFanout(camera(tracks, rare), keyframe_min_interval=0.2)
    async with fanout:
        viewers.append(await connect(fanout))
        await viewers[0].take(10)
        forced = board.keyframes_forced
        joined = time.monotonic()
        viewers.append(await connect(fanout))
        await viewers[1].take(1)
        print(f"late viewer: first picture {1000 * (time.monotonic() - joined):.0f} ms")
        await until(lambda: board.keyframes_forced > forced)
        forced = board.keyframes_forced
        await asyncio.sleep(0.3)  # past the limiter's interval
        assert await send_pli(viewers[0].pc.getTransceivers()[0].receiver) == 1
        await until(lambda: board.keyframes_forced > forced)
    assert fanout.keyframe_requests["subscribe"] == 2 and fanout.keyframe_requests["pli"] >= 1
    assert all(isinstance(f, av.VideoFrame) for v in viewers for f in v.items)


async def test_the_lowest_remb_of_the_viewers_reaches_the_encoder(
    board: Any, tracks: list[Picamera2VideoTrack]
) -> None:
    async with EncodedVideoFanout(camera(tracks)) as fanout:
        senders = []
        for _ in range(2):
            viewer = fanout.subscribe()
            sender = RTCRtpSender(viewer, cast(RTCDtlsTransport, type("T", (), {"state": "new"})))
            fanout.attach_sender(viewer, sender)
            senders.append(sender)
        await read(viewer, 1)
        for sender, bitrate in zip(senders, (900_000, 450_000), strict=True):
            fci = pack_remb_fci(bitrate, [sender._ssrc])
            await sender._handle_rtcp_packet(RtcpPsfbPacket(RTCP_PSFB_APP, 1, 0, fci))
        await until(lambda: board.bitrates[-1] == 450_000)


# -- through the engine (publisher and players in the namespace) ----------------------


@pytest.mark.netns
async def test_two_players_decode_the_cameras_time_codes_with_no_encode_in_edged(
    srv: RunningServer, board: Any
) -> None:
    pub, _ = make_engine(srv, video_source=picamera2_video_source, video=SMALL)
    players = [make_engine(srv)[0] for _ in range(2)]
    sinks = [AnalysisSink() for _ in players]
    async with pub, players[0], players[1]:
        await pub.login_room("r", User("cam"))
        await pub.start_publishing("cam")
        for i, (player, sink) in enumerate(zip(players, sinks, strict=True)):
            await player.login_room("r", User(f"P{i}"))
            await player.start_playing("cam", sink)
        await until(lambda: all(s.video and s.video.stats().decoded >= 45 for s in sinks), 20)
        stats = pub.publishers["cam"].video
        assert stats is not None
    for sink in sinks:
        assert sink.video is not None and sink.video.stats().out_of_order == 0
        seqs = [o.sequence for o in sink.video.observations]
        assert seqs == sorted(seqs)
    assert stats.encoders_created == 0 and stats.frames_encoded == 0
    assert board.encodes >= stats.packets_sent >= 45


@pytest.mark.netns
async def test_a_late_player_gets_a_picture_from_a_forced_keyframe(
    srv: RunningServer, board: Any
) -> None:
    rare = VideoConfig(320, 240, 30.0, 300_000, keyframe_interval_s=30)
    pub, _ = make_engine(srv, video_source=picamera2_video_source, video=rare)
    early, late = make_engine(srv)[0], make_engine(srv)[0]
    sinks = [AnalysisSink(), AnalysisSink()]
    async with pub, early, late:
        await pub.login_room("r", User("cam"))
        await pub.start_publishing("cam")
        await early.login_room("r", User("early"))
        await early.start_playing("cam", sinks[0])
        await until(lambda: sinks[0].video is not None and sinks[0].video.stats().decoded > 10)
        forced = board.keyframes_forced
        await late.login_room("r", User("late"))
        await late.start_playing("cam", sinks[1])
        await until(lambda: sinks[1].video is not None and sinks[1].video.stats().decoded > 0, 8)
        assert board.keyframes_forced > forced


async def test_set_video_config_changes_the_camera_encoders_bitrate(
    srv: RunningServer, board: Any
) -> None:
    pub, _ = make_engine(srv, video_source=picamera2_video_source, video=SMALL)
    async with pub:
        await pub.login_room("r", User("cam"))
        await pub.start_publishing("cam", None)
        pub.set_video_config(VideoConfig(320, 240, 30.0, 600_000))
        await until(lambda: board.bitrates[-1] == 600_000, 8)
