"""Encode once, fan out to many: queues, keyframe requests, and real aiortc viewers."""

from __future__ import annotations

import asyncio
import fractions
import ipaddress
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import av
import ifaddr
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtcpPsfbPacket, pack_remb_fci

from edged.media.aiortc_internals import RTCP_PSFB_APP, passthrough_receivers, send_pli
from edged.media.fanout import (
    EncodedAudioFanout,
    EncodedFanout,
    EncodedVideoFanout,
    KeyframeLimiter,
    ViewerAudioTrack,
    ViewerVideoTrack,
)
from edged.media.h264 import H264Encoder, H264Settings, is_keyframe, split_nal_units

TB = fractions.Fraction(1, 90000)
FPS = 30


def only_benchmarking_addresses() -> bool:
    """True when every address here is loopback, link-local or in 198.18.0.0/15:
    then ICE can only gather candidates that reach nothing outside this namespace."""
    allowed = ipaddress.ip_network("198.18.0.0/15")
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            address = ipaddress.ip_address(ip.ip if isinstance(ip.ip, str) else ip.ip[0])
            if not (address.is_loopback or address.is_link_local or address in allowed):
                return False
    return True


@pytest.fixture(autouse=True)
def _private_network_only(request: pytest.FixtureRequest) -> None:
    """Never let a peer connection run where it could reach another machine."""
    if request.node.get_closest_marker("netns") and not only_benchmarking_addresses():
        pytest.fail("peer connections run only inside a private network namespace", False)


def picture(i: int, width: int = 320, height: int = 240) -> av.VideoFrame:
    y = (np.add.outer(np.arange(height), np.arange(width)) + 5 * i) % 220 + 16
    uv = np.full((height // 2, width), 128, np.uint8)
    frame = av.VideoFrame.from_ndarray(np.vstack([y.astype(np.uint8), uv]), format="yuv420p")
    frame.pts, frame.time_base = i * 3000, TB
    return frame


class SyntheticVideoTrack(MediaStreamTrack):
    """A moving gradient at 30 fps in real time."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self._start = time.monotonic()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await asyncio.sleep(max(0.0, self._start + self.count / FPS - time.monotonic()))
        self.count += 1
        return picture(self.count)


class PreEncodedTrack(MediaStreamTrack):
    """Replays H.264 access units like a hardware encoder, jumping to an IDR on request."""

    kind = "video"

    def __init__(self, frames: int = 60, keyframe_interval: float = 1.0) -> None:
        super().__init__()
        enc = H264Encoder(H264Settings(keyframe_interval=keyframe_interval))
        self.units = [bytes(enc.encode(picture(i))[0]) for i in range(frames)]
        self.keyframe_at = [i for i, u in enumerate(self.units) if is_keyframe(u)]
        self.emitted: list[av.Packet[Any]] = []
        self.keyframe_requests = 0
        self._next = 1
        self._start = time.monotonic()

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._next = self.keyframe_at[0]

    async def recv(self) -> av.Packet[Any]:
        n = len(self.emitted)
        await asyncio.sleep(max(0.0, self._start + n / FPS - time.monotonic()))
        packet = av.Packet(self.units[self._next % len(self.units)])
        packet.pts, packet.time_base = n * 3000, TB
        self._next += 1
        self.emitted.append(packet)
        return packet


def fake_packet(key: bool, n: int = 0) -> tuple[av.Packet[Any], bool]:
    packet = av.Packet(bytes([0, 0, 0, 1, 0x65 if key else 0x41, n]))
    packet.pts, packet.time_base = n, TB
    return packet, key


# -- queues and limits, no network ---------------------------------------------------


async def test_an_overflowing_viewer_drops_until_the_next_keyframe() -> None:
    overflows: list[int] = []
    viewer = ViewerVideoTrack("v", maxsize=3, on_overflow=lambda: overflows.append(1))
    for key, n in [(True, 1), (False, 2), (False, 3), (False, 4), (False, 5), (False, 6)]:
        viewer.push(*fake_packet(key, n))
    assert overflows == [1] and viewer.stats().waiting_for_keyframe
    viewer.push(*fake_packet(True, 7))
    viewer.push(*fake_packet(False, 8))
    first = await viewer.recv()
    assert first.pts == 7 and is_keyframe(bytes(first))
    assert (await viewer.recv()).pts == 8
    assert viewer.stats().dropped == 6  # 3 flushed, the overflowing one, 2 skipped
    assert viewer.stats().sent == 2


async def test_a_new_viewer_starts_at_a_keyframe() -> None:
    viewer = ViewerVideoTrack("v", maxsize=5)
    viewer.push(*fake_packet(False, 1))
    viewer.push(*fake_packet(True, 2))
    assert (await viewer.recv()).pts == 2 and viewer.stats().dropped == 1


async def test_an_overflowing_audio_viewer_keeps_the_newest_packet() -> None:
    viewer = ViewerAudioTrack("a", maxsize=2)
    for n in range(3):
        viewer.push(*fake_packet(True, n))
    assert (await viewer.recv()).pts == 2 and viewer.stats().dropped == 2


async def test_keyframe_requests_are_rate_limited_with_one_trailing_request() -> None:
    forwarded: list[float] = []
    limiter = KeyframeLimiter(lambda: forwarded.append(time.monotonic()), min_interval=0.2)
    results = [limiter.request() for _ in range(20)]
    assert results[0] and not any(results[1:])
    assert len(forwarded) == 1
    await asyncio.sleep(0.5)
    assert len(forwarded) == 2, "the suppressed requests collapse into one trailing request"
    assert forwarded[1] - forwarded[0] >= 0.19
    assert limiter.request() and len(forwarded) == 3
    limiter.close()


async def read(track: MediaStreamTrack, count: int, timeout: float = 8.0) -> list[Any]:
    async def take() -> list[Any]:
        return [await track.recv() for _ in range(count)]

    return await asyncio.wait_for(take(), timeout)


def decodes(packets: list[av.Packet[Any]]) -> int:
    decoder = av.CodecContext.create("h264", "r")
    return sum(len(decoder.decode(av.Packet(bytes(p)))) for p in packets)  # type: ignore[arg-type]


async def test_one_encoder_serves_every_viewer() -> None:
    source = SyntheticVideoTrack()
    async with EncodedVideoFanout(source) as fanout:
        viewers = [fanout.subscribe() for _ in range(3)]
        streams = await asyncio.gather(*(read(v, 30) for v in viewers))
        stats = fanout.stats()
    assert all(decodes(s) == 30 for s in streams)
    assert all(is_keyframe(bytes(s[0])) for s in streams)
    assert stats.encoders_created == 1
    assert stats.frames_in - stats.frames_idle - stats.frames_encoded <= 1
    assert stats.keyframe_requests["subscribe"] == 3 and stats.keyframes_forwarded <= 2


async def test_pre_encoded_packets_pass_through_untouched_with_zero_encodes() -> None:
    source = PreEncodedTrack()
    async with EncodedVideoFanout(source) as fanout:
        viewer = fanout.subscribe()
        received = await read(viewer, 20)
        stats = fanout.stats()
    assert source.keyframe_requests == 1, "subscribing asked the source for a keyframe"
    sent = {id(p): p for p in source.emitted}
    assert all(id(p) in sent for p in received), "the very same packets, not copies"
    assert bytes(received[0]) == source.units[0] and is_keyframe(bytes(received[0]))
    assert stats.encoders_created == 0 and stats.frames_encoded == 0 and fanout.encoder is None


async def test_an_async_iterator_of_packets_is_a_source_too() -> None:
    async def packets() -> AsyncIterator[av.Packet[Any]]:
        for n in range(5):
            await asyncio.sleep(0.01)
            yield fake_packet(n == 0, n)[0]

    fanout = EncodedVideoFanout(packets())
    viewer = fanout.subscribe()
    assert [p.pts for p in await read(viewer, 5)] == [0, 1, 2, 3, 4]
    with pytest.raises(MediaStreamError):
        await viewer.recv()  # the source ended
    await fanout.close()


async def test_closing_ends_viewers_and_a_stopped_viewer_leaves() -> None:
    fanout = EncodedVideoFanout(SyntheticVideoTrack())
    staying, leaving = fanout.subscribe(), fanout.subscribe()
    await read(staying, 2)
    leaving.stop()
    assert fanout.viewers == {staying}
    await fanout.close()
    with pytest.raises(MediaStreamError):
        while True:
            await staying.recv()
    assert fanout._task is not None and fanout._task.done()


async def test_the_lowest_remb_of_the_viewers_sets_the_encoder_bitrate() -> None:
    settings = H264Settings(bitrate=1_500_000, min_bitrate=100_000)
    async with EncodedVideoFanout(SyntheticVideoTrack(), settings) as fanout:
        senders = []
        for _ in range(2):
            viewer = fanout.subscribe()
            sender = RTCRtpSender(viewer, cast(RTCDtlsTransport, type("T", (), {"state": "new"})))
            fanout.attach_sender(viewer, sender)
            senders.append(sender)
        await read(viewer, 1)
        for sender, bitrate in zip(senders, (900_000, 400_000), strict=True):
            fci = pack_remb_fci(bitrate, [sender._ssrc])
            await sender._handle_rtcp_packet(RtcpPsfbPacket(RTCP_PSFB_APP, 1, 0, fci))
        assert fanout.encoder is not None and fanout.encoder.bitrate == 400_000
        assert {v.remb_bitrate for v in fanout.stats().viewers} == {900_000, 400_000}


# -- real peer connections (inside a private network namespace) ----------------------


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def media_section(sdp: str, kind: str) -> list[str]:
    lines, inside = [], False
    for line in sdp.splitlines():
        if line.startswith("m="):
            inside = line.startswith(f"m={kind}")
        if inside:
            lines.append(line)
    return lines


def codec_names(sdp: str, kind: str) -> set[str]:
    rtpmaps = [ln for ln in media_section(sdp, kind) if ln.startswith("a=rtpmap:")]
    return {ln.split()[1].split("/")[0] for ln in rtpmaps}


@dataclass
class Call:
    """A board-side connection (sending the fan-out) and a viewer-side one (receiving)."""

    board: RTCPeerConnection
    viewer: RTCPeerConnection
    sent: MediaStreamTrack
    received: MediaStreamTrack
    answer: str
    frames: list[Any] = field(default_factory=list)

    async def close(self) -> None:
        await self.viewer.close()
        await self.board.close()


async def call(fanout: EncodedFanout, board_offers: bool) -> Call:
    """Connect one viewer; with ``board_offers`` False the viewer offers, like a browser."""
    board, viewer = new_pc(), new_pc()
    tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
    viewer.on("track", tracks.put_nowait)
    if board_offers:
        sent = fanout.add_to(board)
        offerer, answerer = board, viewer
    else:
        viewer.addTransceiver(fanout.kind, direction="recvonly")
        offerer, answerer = viewer, board
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    if not board_offers:
        sent = fanout.add_to(board)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    received = await asyncio.wait_for(tracks.get(), 5)
    return Call(board, viewer, sent, received, answerer.localDescription.sdp)


@pytest.fixture
async def calls() -> AsyncIterator[list[Call]]:
    made: list[Call] = []
    yield made
    await asyncio.gather(*(c.close() for c in made))


async def watch(c: Call, count: int, timeout: float = 8.0) -> float:
    """Read ``count`` decoded frames; returns seconds to the first one."""
    started = time.monotonic()
    first = 0.0

    async def take() -> None:
        nonlocal first
        while len(c.frames) < count:
            c.frames.append(await c.received.recv())
            first = first or time.monotonic() - started

    await asyncio.wait_for(take(), timeout)
    return first


@pytest.mark.netns
async def test_four_viewers_decode_h264_from_a_single_encoder(calls: list[Call]) -> None:
    async with EncodedVideoFanout(SyntheticVideoTrack()) as fanout:
        for i in range(4):
            calls.append(await call(fanout, board_offers=i % 2 == 0))
        assert all(codec_names(c.answer, "video") == {"H264", "rtx"} for c in calls)
        await asyncio.gather(*(watch(c, 30) for c in calls))
        stats = fanout.stats()
    assert all(isinstance(f, av.VideoFrame) and f.width == 320 for c in calls for f in c.frames)
    assert stats.encoders_created == 1
    assert stats.frames_in - stats.frames_idle - stats.frames_encoded <= 1
    assert all(v.sent >= 30 for v in stats.viewers)


@pytest.mark.netns
async def test_a_late_viewer_decodes_quickly_despite_a_long_keyframe_interval(
    calls: list[Call],
) -> None:
    settings = H264Settings(keyframe_interval=10)
    async with EncodedVideoFanout(SyntheticVideoTrack(), settings) as fanout:
        calls.append(await call(fanout, board_offers=True))
        await watch(calls[0], 30)
        await asyncio.sleep(0.5)
        joined = time.monotonic()
        calls.append(await call(fanout, board_offers=False))
        await watch(calls[1], 1)
        to_picture = time.monotonic() - joined
        stats = fanout.stats()
    print(f"late viewer: first decoded picture {to_picture * 1000:.0f} ms after joining")
    assert to_picture < 3.0, "without a keyframe on subscribe this would take up to 10 s"
    assert stats.keyframe_requests["subscribe"] == 2
    assert fanout.encoder is not None and fanout.encoder.keyframes >= 2


@pytest.mark.netns
async def test_a_pli_from_a_viewer_reaches_the_encoder(calls: list[Call]) -> None:
    async with EncodedVideoFanout(SyntheticVideoTrack(), keyframe_min_interval=0.2) as fanout:
        calls.append(await call(fanout, board_offers=True))
        await watch(calls[0], 10)
        assert fanout.encoder is not None
        before_encoder = fanout.encoder.keyframes_requested
        before_pli = fanout.keyframe_requests.get("pli", 0)
        await asyncio.sleep(0.3)  # let the limiter's interval pass
        receiver = calls[0].viewer.getTransceivers()[0].receiver
        assert await send_pli(receiver) == 1
        for _ in range(50):
            if fanout.encoder.keyframes_requested > before_encoder:
                break
            await asyncio.sleep(0.05)
        assert fanout.keyframe_requests.get("pli", 0) > before_pli
        assert fanout.encoder.keyframes_requested > before_encoder
        assert fanout.stats().viewers[0].keyframe_requests >= 1


@pytest.mark.netns
async def test_pre_encoded_h264_reaches_non_decoding_viewers_unchanged(
    calls: list[Call],
) -> None:
    source = PreEncodedTrack(frames=90)
    with passthrough_receivers(kinds=["video"]) as counter:
        async with EncodedVideoFanout(source) as fanout:
            calls.append(await call(fanout, board_offers=False))
            calls.append(await call(fanout, board_offers=True))
            await asyncio.gather(*(watch(c, 20) for c in calls))
            stats = fanout.stats()
    units = {tuple(split_nal_units(u)) for u in source.units}
    for c in calls:
        assert all(isinstance(p, av.Packet) for p in c.frames), "viewers did not decode"
        assert all(tuple(split_nal_units(bytes(p))) in units for p in c.frames)
        assert is_keyframe(bytes(c.frames[0]))
    assert counter.frames["video"] >= 40
    assert stats.encoders_created == 0 and source.keyframe_requests >= 2


@pytest.mark.netns
async def test_two_audio_viewers_decode_opus_from_a_single_encoder(calls: list[Call]) -> None:
    async with EncodedAudioFanout(AudioStreamTrack()) as fanout:
        for offers in (True, False):
            calls.append(await call(fanout, board_offers=offers))
        assert all(codec_names(c.answer, "audio") == {"opus"} for c in calls)
        await asyncio.gather(*(watch(c, 25) for c in calls))
    assert all(isinstance(f, av.AudioFrame) for c in calls for f in c.frames)
    assert fanout.encoders_created == 1
    assert fanout.frames_in - fanout.frames_idle - fanout.frames_encoded <= 1
