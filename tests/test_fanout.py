"""Encode once, fan out to many: queues, keyframe requests, and real aiortc viewers."""

from __future__ import annotations

import asyncio
import fractions
import ipaddress
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import av
import ifaddr
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.clock import current_ntp_time
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtcpPsfbPacket, pack_remb_fci

from edged.media.aiortc.receivers import passthrough_receivers, send_pli
from edged.media.aiortc.sender_hook import RTCP_PSFB_APP
from edged.media.aiortc.sender_reports import wrap_sender_report_counters
from edged.media.encoders.libx264 import H264Encoder, H264Settings
from edged.media.h264 import is_keyframe, split_nal_units
from edged.media.send.fanout import EncodedAudioFanout, EncodedFanout, EncodedVideoFanout
from edged.media.send.keyframes import KeyframeLimiter
from edged.media.send.rtp_frames import FramePacker, RtpFrame, ntp_time
from edged.media.send.viewer import ViewerAudioTrack, ViewerVideoTrack
from edged.media.sources.base import Capabilities, SourceTrack
from edged.testing.waiting import until

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


class PreEncodedTrack(SourceTrack):
    """Replays H.264 access units like a hardware encoder, jumping to an IDR on request."""

    kind = "video"
    capabilities = Capabilities(keyframe_on_request=True, hardware_encode=True)

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


class FakeDirect:
    """Stands in for a DirectSender: records the frames it is given."""

    def __init__(self) -> None:
        self.frames: list[RtpFrame] = []
        self.usable = True
        self.closed = False

    def send(self, frame: RtpFrame) -> bool:
        if self.usable:
            self.frames.append(frame)
        return self.usable

    def close(self) -> None:
        self.closed = True


def rtp_frame(n: int) -> RtpFrame:
    return RtpFrame([bytes([n])], n * 3000, n, n + 1, 0, 0)


async def test_a_connected_viewer_sends_its_queue_then_live_packets_directly_until_unusable() -> (
    None
):
    direct = FakeDirect()
    viewer = ViewerVideoTrack("v", maxsize=5, open_direct=lambda _viewer: cast(Any, direct))
    for n, key in enumerate([True, False]):
        viewer.push(*fake_packet(key, n), rtp_frame(n))
    reading = asyncio.ensure_future(viewer.recv())  # the sender starts: DTLS is up
    await until(lambda: len(direct.frames) >= 2)
    assert [f.first_index for f in direct.frames] == [0, 1], "the queue went first, in order"
    viewer.push(*fake_packet(False, 2), rtp_frame(2))
    assert [f.first_index for f in direct.frames] == [0, 1, 2] and viewer.stats().direct
    assert not reading.done(), "aiortc's task has nothing to send meanwhile"
    direct.usable = False  # the connection closed: aiortc's own path takes over
    viewer.push(*fake_packet(False, 3), rtp_frame(3))
    assert (await asyncio.wait_for(reading, 1)).pts == 3
    assert direct.closed and not viewer.stats().direct and viewer.stats().sent == 4


async def test_a_viewer_read_by_something_else_than_a_sender_keeps_its_queue() -> None:
    viewer = ViewerVideoTrack("recorder", maxsize=5, open_direct=lambda _viewer: None)
    viewer.push(*fake_packet(True, 0), rtp_frame(0))
    viewer.push(*fake_packet(False, 1), None)  # not packed: nobody needs RTP here
    assert [(await viewer.recv()).pts for _ in range(2)] == [0, 1]
    assert not viewer.stats().direct


class CountingPacker:
    def __init__(self) -> None:
        self.calls = 0

    def pack(self, packet: av.Packet[Any]) -> tuple[list[bytes], int]:
        self.calls += 1
        data = bytes(packet)
        return [data[i : i + 2] for i in range(0, len(data), 2)], packet.pts or 0


def test_each_access_unit_is_packed_once_and_its_recent_payloads_are_kept() -> None:
    packer = CountingPacker()
    frames = FramePacker(packer, history=4, clock=lambda: 5 << 32)
    first = frames.pack(fake_packet(True, 1)[0])  # 6 bytes: 3 payloads
    second = frames.pack(fake_packet(False, 2)[0])
    assert packer.calls == 2 and frames.frames_packed == 2
    assert (first.first_index, first.end_index, second.first_index) == (0, 3, 3)
    assert frames.find(4) == (second, 1)
    assert frames.find(0) is None and frames.find(1) is None, "older than the last 4"
    assert frames.find(6) is None, "not sent yet"
    assert second.ntp_time == 5 << 32 and second.abs_send_time == ((5 << 32) >> 14) & 0xFFFFFF


def test_ntp_time_is_aiortcs_clock() -> None:
    assert abs(ntp_time() - current_ntp_time()) < (1 << 32) // 20  # 50 ms


async def test_keyframe_requests_are_rate_limited_with_one_trailing_request() -> None:
    forwarded: list[float] = []
    limiter = KeyframeLimiter(lambda: forwarded.append(time.monotonic()), min_interval=0.2)
    results = [limiter.request() for _ in range(20)]
    assert results[0] and not any(results[1:])
    assert len(forwarded) == 1
    await asyncio.sleep(0.5)  # two and a half intervals: time is what the limiter counts
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
    assert all(v.sent >= 30 and v.direct for v in stats.viewers)


@pytest.mark.netns
async def test_a_late_viewer_decodes_quickly_despite_a_long_keyframe_interval(
    calls: list[Call],
) -> None:
    settings = H264Settings(keyframe_interval=10)
    async with EncodedVideoFanout(SyntheticVideoTrack(), settings) as fanout:
        calls.append(await call(fanout, board_offers=True))
        await watch(calls[0], 30)
        await asyncio.sleep(0.5)  # the second viewer joins well after the first keyframes
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
        await until(lambda: fanout.encoder.keyframes_requested > before_encoder, 5)
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
        assert all(v.direct for v in fanout.stats().viewers)
    assert all(isinstance(f, av.AudioFrame) for c in calls for f in c.frames)
    assert fanout.encoders_created == 1
    assert fanout.frames_in - fanout.frames_idle - fanout.frames_encoded <= 1


# -- the direct send path (inside a private network namespace) ------------------------


def received_units(c: Call, source: PreEncodedTrack) -> list[tuple[bytes, ...]]:
    """The access units a passthrough viewer got, checked to be consecutive ones the
    source emitted (by RTP timestamp), as NAL units; fails on any gap or altered byte."""
    pts = [p.pts for p in c.frames]
    steps = [((b - a) & 0xFFFFFFFF) // 3000 for a, b in itertools.pairwise(pts)]
    assert steps == [1] * len(steps), f"frames missing or out of order: {steps}"
    got = [tuple(split_nal_units(bytes(p))) for p in c.frames]
    emitted = [tuple(split_nal_units(bytes(p))) for p in source.emitted]
    starts = [i for i in range(len(emitted)) if emitted[i : i + len(got)] == got]
    assert starts, "the frames differ from what the source emitted"
    return got


@pytest.mark.netns
@pytest.mark.parametrize("direct_send", [True, False])
async def test_every_viewer_gets_every_access_unit_intact_on_either_send_path(
    calls: list[Call], direct_send: bool
) -> None:
    source = PreEncodedTrack(frames=90)
    with passthrough_receivers(kinds=["video"]):
        async with EncodedVideoFanout(source, direct_send=direct_send) as fanout:
            for offers in (True, False, True):
                calls.append(await call(fanout, board_offers=offers))
            await asyncio.gather(*(watch(c, 45) for c in calls))
            stats = fanout.stats()
            senders = [v.direct for v in fanout.viewers if v.direct is not None]
            sends = [(d.packets_sent, d._batch.calls) for d in senders if d._batch is not None]
    for c in calls:
        assert is_keyframe(bytes(c.frames[0]))
        received_units(c, source)
    assert [v.direct for v in stats.viewers] == [direct_send] * 3
    if direct_send:  # packed once per access unit for all three viewers
        assert 0 < stats.frames_packed <= stats.packets_out
        assert len(sends) == 3  # and the packets of an access unit went down in runs
        assert all(0 < calls < packets for packets, calls in sends), sends
    else:
        assert stats.frames_packed == 0


@pytest.mark.netns
async def test_a_packet_lost_on_the_way_to_a_direct_viewer_is_retransmitted(
    calls: list[Call],
) -> None:
    source = PreEncodedTrack(frames=90)
    with passthrough_receivers(kinds=["video"]):
        async with EncodedVideoFanout(source) as fanout:
            c = await call(fanout, board_offers=True)
            calls.append(c)
            dropped = drop_one_media_packet(c.viewer, after=25)
            await watch(c, 60)
            stats = fanout.stats()
    assert dropped, "the loss was simulated"
    (viewer,) = stats.viewers
    assert viewer.direct and viewer.retransmits >= 1
    received_units(c, source)  # no frame lost: the retransmission filled the gap


def drop_one_media_packet(pc: RTCPeerConnection, after: int) -> list[int]:
    """Make the network lose one RTP packet (not a retransmission) on its way to ``pc``;
    returns the sequence number that was lost, once it was."""
    transport = pc.getTransceivers()[0].receiver.transport
    deliver = transport._handle_rtp_data
    seen: list[int] = []  # SSRC of the media stream, then a count
    dropped: list[int] = []

    async def lossy(data: bytes, arrival_time_ms: int) -> None:
        ssrc = int.from_bytes(data[8:12], "big")
        if not seen:
            seen[:] = [ssrc, 0]
        if ssrc == seen[0] and not dropped:
            seen[1] += 1
            if seen[1] == after:
                dropped.append(int.from_bytes(data[2:4], "big"))
                return
        await deliver(data, arrival_time_ms=arrival_time_ms)

    transport._handle_rtp_data = lossy  # type: ignore[method-assign]
    return dropped


@pytest.mark.netns
async def test_sender_reports_and_stats_count_what_a_direct_viewer_received(
    calls: list[Call],
) -> None:
    with passthrough_receivers(kinds=["video"]):
        fanout = EncodedVideoFanout(PreEncodedTrack(frames=60))
        c = await call(fanout, board_offers=True)
        calls.append(c)
        await watch(c, 30)
        assert fanout.stats().viewers[0].direct
        await fanout.close()  # the media stops; RTCP goes on

        async def agreed() -> tuple[Any, Any, Any] | None:
            outbound = stat(await c.board.getStats(), "outbound-rtp")
            inbound = stat(await c.viewer.getStats(), "inbound-rtp", outbound.ssrc)
            report = stat(await c.viewer.getStats(), "remote-outbound-rtp", outbound.ssrc)
            if report is not None and report.packetsSent == outbound.packetsSent:
                return outbound, inbound, report
            return None

        outbound, inbound, report = await until(agreed, 8, interval=0.2)
    assert outbound.packetsSent == inbound.packetsReceived > 30
    assert report.bytesSent == outbound.bytesSent > 0


@pytest.mark.netns
async def test_sender_reports_go_on_past_4_gib_sent_to_one_viewer(calls: list[Call]) -> None:
    wrap_sender_report_counters()  # as the engine does when it starts
    with passthrough_receivers(kinds=["video"]):
        fanout = EncodedVideoFanout(PreEncodedTrack(frames=60))
        c = await call(fanout, board_offers=True)
        calls.append(c)
        await watch(c, 10)
        # what about 4.8 hours at 2 Mbit/s leaves in the sender's running totals
        totals = vars(c.board.getSenders()[0])
        totals["_RTCRtpSender__octet_count"] += 1 << 32
        totals["_RTCRtpSender__packet_count"] += 1 << 32
        await fanout.close()  # the media stops; RTCP goes on

        async def reported() -> tuple[Any, Any] | None:
            outbound = stat(await c.board.getStats(), "outbound-rtp")
            report = stat(await c.viewer.getStats(), "remote-outbound-rtp", outbound.ssrc)
            if report is not None and report.packetsSent == outbound.packetsSent - (1 << 32):
                return outbound, report
            return None

        outbound, report = await until(reported, 8, interval=0.2)
    assert outbound.bytesSent > 1 << 32  # getStats keeps the full total
    assert report.bytesSent == outbound.bytesSent - (1 << 32) > 0  # the wire wraps it


def stat(report: Any, kind: str, ssrc: int | None = None) -> Any:
    return next((s for s in report.values() if s.type == kind and ssrc in (None, s.ssrc)), None)


@pytest.mark.netns
async def test_a_direct_viewer_that_hangs_up_leaves_and_the_others_keep_watching(
    calls: list[Call],
) -> None:
    async with EncodedVideoFanout(SyntheticVideoTrack()) as fanout:
        staying, leaving = await call(fanout, True), await call(fanout, False)
        calls.append(staying)
        await asyncio.gather(watch(staying, 5), watch(leaving, 5))
        assert all(v.direct for v in fanout.stats().viewers)
        await leaving.viewer.close()

        await until(lambda: fanout.viewers == {staying.sent}, 10)
        await watch(staying, 30)
        await leaving.board.close()
