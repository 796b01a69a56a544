"""aiortc's private API that edged relies on: present, and behaving as the hooks expect.

If one of these fails after an aiortc upgrade, update the module of edged/media/aiortc/ that
uses the piece.
"""

from __future__ import annotations

import fractions
import inspect
import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import aioice
import aiortc
import av
import numpy as np
import pytest
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc import rtcrtpreceiver as receiver_module
from aiortc.codecs import CODECS
from aiortc.codecs.h264 import H264Encoder as AiortcH264Encoder
from aiortc.codecs.opus import OpusEncoder as AiortcOpusEncoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import (
    RTCP_RTPFB_NACK,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    pack_remb_fci,
)
from aiortc.stats import RTCStatsReport

from edged.media.aiortc.checks import AIORTC_VERSION, AiortcInternalsError
from edged.media.aiortc.codec_choice import codec_capabilities, prefer_codec
from edged.media.aiortc.direct_sender import (
    RTP_HISTORY_SIZE,
    DirectSender,
    direct_send_problems,
)
from edged.media.aiortc.packers import packer_for
from edged.media.aiortc.receivers import (
    PassthroughCounter,
    PassthroughDecoder,
    passthrough_receivers,
)
from edged.media.aiortc.sender_hook import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    SenderHook,
    hook_sender,
)
from edged.media.aiortc.verify import problems, verify
from edged.media.encoders.libx264 import H264Encoder, H264Settings
from edged.media.send.rtp_frames import FramePacker, RtpFrame

UPGRADE = f"aiortc {aiortc.__version__} changed private API: update edged/media/aiortc/"


class StubTransport:
    """Just enough of an RTCDtlsTransport to construct senders and receivers offline."""

    state = "new"


def make_sender() -> RTCRtpSender:
    return RTCRtpSender("video", cast(RTCDtlsTransport, StubTransport()))


def make_transceiver() -> RTCRtpTransceiver:
    receiver = RTCRtpReceiver("video", cast(RTCDtlsTransport, StubTransport()))
    return RTCRtpTransceiver("video", receiver, make_sender(), direction="sendonly")


def test_verify_passes_on_the_installed_aiortc() -> None:
    verify()
    assert problems() == []
    assert aiortc.__version__ == AIORTC_VERSION


async def test_sender_private_methods_used_by_the_hooks_exist() -> None:
    send_keyframe = inspect.getattr_static(RTCRtpSender, "_send_keyframe", None)
    assert callable(send_keyframe), f"{UPGRADE}: RTCRtpSender._send_keyframe is gone"
    assert list(inspect.signature(send_keyframe).parameters) == ["self"], UPGRADE
    handle = inspect.getattr_static(RTCRtpSender, "_handle_rtcp_packet", None)
    assert inspect.iscoroutinefunction(handle), f"{UPGRADE}: _handle_rtcp_packet changed"
    assert "_send_keyframe" in RTCRtpSender._handle_rtcp_packet.__code__.co_names, (
        f"{UPGRADE}: PLI no longer goes through RTCRtpSender._send_keyframe"
    )
    assert "pack" in RTCRtpSender._next_encoded_frame.__code__.co_names, (
        f"{UPGRADE}: RTCRtpSender no longer packs pre-encoded av.Packet"
    )
    assert hasattr(make_sender(), "_ssrc"), f"{UPGRADE}: RTCRtpSender._ssrc is gone"
    assert "_handle_rtcp_packet" in RTCDtlsTransport._handle_rtcp_data.__code__.co_names, (
        f"{UPGRADE}: RTCP no longer reaches senders through _handle_rtcp_packet"
    )


def test_packers_for_pre_encoded_h264_and_opus_exist() -> None:
    for encoder in (AiortcH264Encoder, AiortcOpusEncoder):
        pack = getattr(encoder, "pack", None)
        assert callable(pack), f"{UPGRADE}: {encoder.__name__}.pack is gone"
        assert list(inspect.signature(pack).parameters) == ["self", "packet"], UPGRADE


async def test_receiver_private_pieces_exist() -> None:
    assert callable(getattr(receiver_module, "get_decoder", None)), (
        f"{UPGRADE}: aiortc.rtcrtpreceiver.get_decoder is gone"
    )
    assert "get_decoder" in receiver_module.decoder_worker.__code__.co_names, (
        f"{UPGRADE}: the decoder thread no longer calls get_decoder"
    )
    pli = inspect.getattr_static(RTCRtpReceiver, "_send_rtcp_pli", None)
    assert inspect.iscoroutinefunction(pli), f"{UPGRADE}: RTCRtpReceiver._send_rtcp_pli"
    assert list(inspect.signature(JitterFrame).parameters) == ["data", "timestamp"], UPGRADE
    assert isinstance(make_transceiver()._codecs, list), f"{UPGRADE}: transceiver._codecs"


def test_verify_names_the_version_and_the_missing_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(RTCRtpSender, "_send_keyframe")
    monkeypatch.delattr(receiver_module, "get_decoder")
    with pytest.raises(AiortcInternalsError) as info:
        verify()
    message = str(info.value)
    assert f"aiortc {aiortc.__version__}" in message
    assert "RTCRtpSender._send_keyframe is missing" in message
    assert "get_decoder is missing" in message


def test_verify_reports_a_changed_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    def send_keyframe(self: RTCRtpSender, reason: str) -> None: ...

    monkeypatch.setattr(RTCRtpSender, "_send_keyframe", send_keyframe)
    with pytest.raises(AiortcInternalsError, match=r"_send_keyframe takes \['self', 'reason'\]"):
        verify()


def psfb(fmt: int, media_ssrc: int, fci: bytes = b"") -> RtcpPsfbPacket:
    return RtcpPsfbPacket(fmt=fmt, ssrc=1234, media_ssrc=media_ssrc, fci=fci)


async def test_pli_and_fir_reach_the_keyframe_callback_once_each() -> None:
    sender = make_sender()
    calls: list[str] = []
    hook = hook_sender(sender, on_keyframe_request=lambda: calls.append("kf"))
    await sender._handle_rtcp_packet(psfb(RTCP_PSFB_PLI, sender._ssrc))
    assert calls == ["kf"]
    await sender._handle_rtcp_packet(psfb(RTCP_PSFB_FIR, sender._ssrc))
    assert calls == ["kf", "kf"], "FIR is a keyframe request on every aiortc version"
    assert hook.keyframe_requests == 2


async def test_remb_for_this_sender_reaches_the_bitrate_callback() -> None:
    sender = make_sender()
    seen: list[int] = []
    hook = hook_sender(sender, on_remb=seen.append)
    remb = pack_remb_fci(750_000, [sender._ssrc])
    await sender._handle_rtcp_packet(psfb(RTCP_PSFB_APP, 0, remb))
    await sender._handle_rtcp_packet(
        psfb(RTCP_PSFB_APP, 0, pack_remb_fci(100_000, [sender._ssrc ^ 1]))
    )
    await sender._handle_rtcp_packet(psfb(RTCP_PSFB_APP, 0, b"junk"))
    assert seen == [750_000]
    assert hook.remb_bitrate == 750_000 and hook.remb_reports == 1


async def test_a_failing_callback_does_not_break_rtcp_handling() -> None:
    sender = make_sender()

    def boom() -> None:
        raise RuntimeError("boom")

    hook = hook_sender(sender, on_keyframe_request=boom)
    await sender._handle_rtcp_packet(psfb(RTCP_PSFB_PLI, sender._ssrc))
    assert hook.keyframe_requests == 1


async def test_removing_a_hook_restores_the_sender() -> None:
    sender = make_sender()
    calls: list[int] = []
    hook = hook_sender(sender, on_keyframe_request=lambda: calls.append(1))
    with pytest.raises(ValueError, match="already"):
        hook_sender(sender)
    hook.remove()
    assert "_send_keyframe" not in vars(sender)
    await sender._handle_rtcp_packet(psfb(RTCP_PSFB_PLI, sender._ssrc))
    assert calls == []
    hook_sender(sender).remove()


def test_codec_capabilities_pick_one_codec_and_its_rtx() -> None:
    h264 = codec_capabilities("video/H264")
    assert {c.mimeType for c in h264} == {"video/H264", "video/rtx"}
    assert {c.parameters.get("profile-level-id") for c in h264 if c.name == "H264"} == {
        "42001f",
        "42e01f",
    }
    assert [c.mimeType for c in codec_capabilities("audio/opus")] == ["audio/opus"]
    with pytest.raises(AiortcInternalsError, match="AV1"):
        codec_capabilities("video/AV1")


async def test_prefer_codec_narrows_both_an_offer_and_an_already_negotiated_answer() -> None:
    transceiver = make_transceiver()
    prefer_codec(transceiver, "video/H264")
    assert {c.name for c in transceiver._preferred_codecs} == {"H264", "rtx"}

    answering = make_transceiver()
    answering._codecs = list(CODECS["video"])  # as left by setRemoteDescription
    prefer_codec(answering, "video/H264")
    names = [c.name for c in answering._codecs]
    assert set(names) == {"H264", "rtx"} and names.count("rtx") == names.count("H264")
    h264_types = {c.payloadType for c in answering._codecs if c.name == "H264"}
    assert {c.parameters["apt"] for c in answering._codecs if c.name == "rtx"} == h264_types

    vp8_only = make_transceiver()
    vp8_only._codecs = [c for c in CODECS["video"] if c.name == "VP8"]
    with pytest.raises(ValueError, match="does not offer"):
        prefer_codec(vp8_only, "video/H264")


def test_passthrough_decoder_returns_the_encoded_frame_as_a_packet() -> None:
    codec = next(c for c in CODECS["video"] if c.name == "H264")
    counter = PassthroughCounter()
    (packet,) = PassthroughDecoder(codec, counter).decode(JitterFrame(b"\x00\x00\x01\x65", 9000))
    assert bytes(packet) == b"\x00\x00\x01\x65"
    assert packet.pts == 9000 and packet.time_base == fractions.Fraction(1, 90000)
    assert counter.frames == {"video": 1} and counter.bytes == 4


def test_passthrough_receivers_patch_only_their_kinds_and_restore() -> None:
    original = receiver_module.get_decoder  # type: ignore[attr-defined]
    video = next(c for c in CODECS["video"] if c.name == "H264")
    audio = next(c for c in CODECS["audio"] if c.name == "opus")
    with passthrough_receivers(kinds=["video"]):
        patched: Any = receiver_module.get_decoder  # type: ignore[attr-defined]
        assert isinstance(patched(video), PassthroughDecoder)
        assert not isinstance(patched(audio), PassthroughDecoder)
        with pytest.raises(RuntimeError, match="already active"), passthrough_receivers():
            pass
    assert receiver_module.get_decoder is original  # type: ignore[attr-defined]


# -- the direct send path, offline: a sender on a stub of a connected transport -------


class CapturedDatagrams:
    """Stands in for the nominated pair's datagram transport: a real UDP socket on
    127.0.0.1 (what the direct sender writes to) and a second one receiving for the
    peer; ``sent`` is every datagram that arrived, in order."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.peer.bind(("127.0.0.1", 0))
        self.peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.address: tuple[str, int] = self.peer.getsockname()
        self._arrived: list[bytes] = []
        self._markers = 0

    def get_extra_info(self, name: str) -> Any:
        return self.sock if name == "socket" else None

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        assert address == self.address
        self.sock.sendto(data, address)

    @property
    def sent(self) -> list[bytes]:
        """Every datagram sent so far: a marker sent now from the same socket arrives
        after all of them (one loopback path, in order), so read until it is here."""
        self._markers += 1
        marker = b"test marker %d" % self._markers
        self.sock.sendto(marker, self.address)
        while True:
            assert select.select([self.peer], [], [], 5)[0], "the marker did not arrive"
            data, source = self.peer.recvfrom(2048)
            assert source == self.sock.getsockname()
            if data == marker:
                return self._arrived
            self._arrived.append(data)

    def receive(self, quiet: float) -> list[bytes]:
        """Every datagram so far, read until ``quiet`` seconds bring nothing more."""
        while select.select([self.peer], [], [], quiet)[0]:
            data, source = self.peer.recvfrom(2048)
            assert source == self.sock.getsockname()
            self._arrived.append(data)
        return self._arrived

    def close(self) -> None:
        self.sock.close()
        self.peer.close()


def nominated_pair(datagrams: CapturedDatagrams) -> SimpleNamespace:
    """An ICE candidate pair as aioice nominates it: a STUN protocol over ``datagrams``."""
    protocol = aioice.ice.StunProtocol(cast(Any, None))
    protocol.transport = cast(Any, datagrams)
    return SimpleNamespace(protocol=protocol, remote_addr=datagrams.address)


class ConnectedStubTransport:
    """A connected RTCDtlsTransport as far as a sender uses it; SRTP leaves packets clear."""

    def __init__(self, datagrams: CapturedDatagrams) -> None:
        pair = nominated_pair(datagrams)
        self._state = DtlsState.CONNECTED
        self._tx_srtp = SimpleNamespace(protect=lambda data: data)
        self.transport = SimpleNamespace(_connection=SimpleNamespace(_nominated={1: pair}))
        self._stats_id = "transport"
        self.rtp: list[bytes] = []  # what went through aiortc's own path
        setattr(self, "_RTCDtlsTransport__tx_bytes", 0)  # noqa: B010
        setattr(self, "_RTCDtlsTransport__tx_packets", 0)  # noqa: B010

    @property
    def state(self) -> str:
        return "connected" if self._state is DtlsState.CONNECTED else "closed"

    async def _send_rtp(self, data: bytes) -> None:
        self.rtp.append(data)

    def _get_stats(self) -> RTCStatsReport:
        return RTCStatsReport()


MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def send_parameters(*uris: str) -> RTCRtpSendParameters:
    return RTCRtpSendParameters(
        codecs=[RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)],
        headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=i + 1, uri=uri) for i, uri in enumerate(uris)
        ],
        muxId="0",
    )


def encoded_pictures(count: int) -> list[av.Packet[Any]]:
    """A keyframe big enough for several RTP packets, then P-frames, pts in 1/90000."""
    encoder = H264Encoder(H264Settings(bitrate=2_000_000, keyframe_interval=10))
    packets = []
    for i in range(count):
        noise = np.random.default_rng(i).integers(0, 255, (360, 320), dtype=np.uint8)
        noise[:, 80:] = 128  # a noisy strip: a keyframe of a few packets, not a hundred
        frame = av.VideoFrame.from_ndarray(noise, format="gray").reformat(format="yuv420p")
        frame.pts, frame.time_base = i * 3000, fractions.Fraction(1, 90000)
        packets += encoder.encode(frame)
    return packets


@dataclass
class Rig:
    """A started sender on a stub transport, sent to by a DirectSender."""

    direct: DirectSender
    sender: RTCRtpSender
    hook: SenderHook
    transport: ConnectedStubTransport
    datagrams: CapturedDatagrams
    packer: FramePacker

    def close(self) -> None:
        self.direct.close()
        self.datagrams.close()

    def send(self, packets: list[av.Packet[Any]]) -> list[RtpFrame]:
        frames = [self.packer.pack(packet) for packet in packets]
        assert all(self.direct.send(frame) for frame in frames)
        return frames


def direct_sender(*uris: str) -> Rig:
    datagrams = CapturedDatagrams()
    transport = ConnectedStubTransport(datagrams)
    sender = RTCRtpSender("video", cast(RTCDtlsTransport, transport))
    hook = hook_sender(sender)
    hook.parameters = send_parameters(*uris)  # as the hooked send() records it
    packer = FramePacker(packer_for("video/H264"), RTP_HISTORY_SIZE)
    direct = DirectSender.open(hook, "video/H264", packer.find)
    assert direct is not None
    rig = Rig(direct, sender, hook, transport, datagrams, packer)
    _rigs.append(rig)
    return rig


_rigs: list[Rig] = []


@pytest.fixture(autouse=True)
def _close_rigs() -> Iterator[None]:
    yield
    while _rigs:
        _rigs.pop().close()


@pytest.mark.parametrize("uris", [(MID, ABS_SEND_TIME), (ABS_SEND_TIME, MID), ()])
async def test_direct_packets_are_byte_for_byte_what_aiortc_would_send(
    uris: tuple[str, ...],
) -> None:
    rig = direct_sender(*uris)
    extensions = HeaderExtensionsMap()
    extensions.configure(send_parameters(*uris))
    frames = rig.send(encoded_pictures(4))
    assert 2 < len(frames[0].payloads) < 40, "the keyframe needs several packets"
    payloads = [(frame, i) for frame in frames for i in range(len(frame.payloads))]
    assert len(rig.datagrams.sent) == len(payloads)
    first = RtpPacket.parse(rig.datagrams.sent[0], extensions)
    origin = first.timestamp - frames[0].timestamp
    for n, (data, (frame, i)) in enumerate(zip(rig.datagrams.sent, payloads, strict=True)):
        expected = RtpPacket(
            payload_type=102,
            marker=int(i == len(frame.payloads) - 1),
            sequence_number=(first.sequence_number + n) & 0xFFFF,
            timestamp=(origin + frame.timestamp) & 0xFFFFFFFF,
            ssrc=rig.sender._ssrc,
            payload=frame.payloads[i],
        )
        expected.extensions.mid = "0"
        expected.extensions.abs_send_time = frame.abs_send_time
        assert data == expected.serialize(extensions)


async def test_direct_sends_are_counted_where_sender_reports_and_stats_read_them() -> None:
    rig = direct_sender(MID, ABS_SEND_TIME)
    frames = rig.send(encoded_pictures(3))
    sent = rig.datagrams.sent
    stats = await rig.sender.getStats()
    outbound = next(s for s in stats.values() if s.type == "outbound-rtp")
    assert outbound.packetsSent == len(sent) == rig.direct.packets_sent
    assert outbound.bytesSent == sum(len(p) for f in frames for p in f.payloads)
    transport = vars(rig.transport)
    assert transport["_RTCDtlsTransport__tx_packets"] == len(sent)
    assert transport["_RTCDtlsTransport__tx_bytes"] == sum(map(len, sent))
    report = vars(rig.sender)  # what the next RTCP sender report carries
    assert report["_RTCRtpSender__rtp_timestamp"] == RtpPacket.parse(sent[-1]).timestamp
    assert report["_RTCRtpSender__ntp_timestamp"] == frames[-1].ntp_time


async def test_a_nack_for_a_direct_packet_resends_it_through_aiortc() -> None:
    rig = direct_sender(MID, ABS_SEND_TIME)
    rig.send(encoded_pictures(3))
    sent = rig.datagrams.sent
    lost = RtpPacket.parse(sent[2]).sequence_number
    never_sent = (RtpPacket.parse(sent[-1]).sequence_number + 5) & 0xFFFF
    nack = RtcpRtpfbPacket(
        fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=rig.sender._ssrc, lost=[lost, never_sent]
    )
    await rig.sender._handle_rtcp_packet(nack)
    (resent,) = rig.transport.rtp  # not wrapped in RTX: none negotiated on this stub
    fields = ("sequence_number", "timestamp", "marker", "payload_type", "ssrc", "payload")
    again, original = RtpPacket.parse(resent), RtpPacket.parse(sent[2])
    assert [getattr(again, f) for f in fields] == [getattr(original, f) for f in fields]
    assert rig.hook.retransmits == 1


async def test_nacks_are_answered_across_a_sequence_number_wraparound() -> None:
    frames = [RtpFrame([i.to_bytes(4, "big")], i * 3000, i, i + 1, 0, 0) for i in range(70_000)]
    rig = direct_sender(MID)
    direct = DirectSender.open(rig.hook, "video/H264", lambda i: (frames[i], 0))
    assert direct is not None
    rig.direct.close()
    rig.direct = direct  # closed with the rig
    for frame in frames:
        assert direct.send(frame)
        if frame.first_index % 100 == 0:
            rig.datagrams.receive(0)  # before the receiving socket's buffer fills
    last = RtpPacket.parse(rig.datagrams.sent[-1])
    for back in (0, 1, 100):  # recent packets, their numbers wrapped around at least once
        packet = direct.retransmission((last.sequence_number - back) & 0xFFFF)
        assert packet is not None and packet.payload == (69_999 - back).to_bytes(4, "big")
    assert direct.retransmission((last.sequence_number + 1) & 0xFFFF) is None, "not sent yet"
    assert direct.retransmission((last.sequence_number - 500) & 0xFFFF) is None, "too old"


async def test_a_direct_sender_gives_way_when_the_connection_closes() -> None:
    rig = direct_sender(MID)
    first, second = (rig.packer.pack(packet) for packet in encoded_pictures(2))
    assert rig.direct.send(first)
    rig.transport._state = DtlsState.CLOSED
    assert not rig.direct.send(second), "aiortc's path takes over (and ends the track)"


class RelayedProtocol:
    """A pair's protocol that is not aioice's plain datagram one (a TURN relay's)."""

    def send_data(self, data: bytes, addr: tuple[str, int]) -> None:
        raise AssertionError("the direct sender must not send through a relay")


async def test_a_direct_sender_follows_a_newly_nominated_pair_or_gives_way() -> None:
    rig = direct_sender(MID)
    first, second, third = (rig.packer.pack(packet) for packet in encoded_pictures(3))
    assert rig.direct.send(first)
    before = RtpPacket.parse(rig.datagrams.sent[-1]).sequence_number
    moved = CapturedDatagrams()
    try:
        nominated = rig.transport.transport._connection._nominated
        nominated[1] = nominated_pair(moved)
        assert rig.direct.send(second)
        arrived = [RtpPacket.parse(data) for data in moved.sent]
        assert len(arrived) == len(second.payloads)
        assert arrived[0].sequence_number == (before + 1) & 0xFFFF, "numbers carry on"
        assert len(rig.datagrams.sent) == len(first.payloads), "nothing more on the old pair"
        nominated[1] = SimpleNamespace(protocol=RelayedProtocol(), remote_addr=moved.address)
        assert not rig.direct.send(third), "aiortc's path takes over"
    finally:
        moved.close()


async def test_no_direct_sender_before_the_sender_has_started() -> None:
    sender = RTCRtpSender(
        "video", cast(RTCDtlsTransport, ConnectedStubTransport(CapturedDatagrams()))
    )
    hook = hook_sender(sender)
    packer = FramePacker(packer_for("video/H264"), RTP_HISTORY_SIZE)
    assert DirectSender.open(hook, "video/H264", packer.find) is None  # send() not called yet
    hook.parameters = send_parameters(MID)
    assert DirectSender.open(hook, "audio/opus", packer.find) is None  # another codec


def test_a_missing_piece_of_the_direct_path_fails_verify_and_turns_the_path_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(RTCRtpSender, "_retransmit")
    direct_send_problems.cache_clear()
    try:
        with pytest.raises(AiortcInternalsError, match=r"RTCRtpSender\._retransmit is missing"):
            verify()
        assert direct_send_problems(), "at run time the fan-out then uses aiortc's own path"
    finally:
        monkeypatch.undo()
        direct_send_problems.cache_clear()
    assert direct_send_problems() == ()


def test_the_direct_path_mirrors_how_aiortc_sends_and_counts() -> None:
    names = RTCRtpSender._run_rtp.__code__.co_names
    assert {"abs_send_time", "mid", "serialize", "_send_rtp"} <= set(names), UPGRADE
    init = RTCRtpSender.__init__.__code__.co_names
    for counter in ("packet_count", "octet_count", "ntp_timestamp", "rtp_timestamp", "rtp_history"):
        assert f"_RTCRtpSender__{counter}" in init, f"{UPGRADE}: RTCRtpSender.__{counter}"
    assert "_retransmit" in RTCRtpSender._handle_rtcp_packet.__code__.co_names, UPGRADE
    assert "_nominated" in aioice.Connection.sendto.__code__.co_names, (
        "aioice changed Connection.sendto: update edged/media/aiortc/direct_sender.py"
    )


async def test_opus_packer_packs_exactly_as_aiortc_without_an_encoder() -> None:
    from edged.media.aiortc.packers import OpusPacker, spare_audio_encoder
    from edged.media.encoders.opus import OPUS_TIME_BASE

    packet = av.Packet(b"\x78" + bytes(range(60)))
    packet.pts, packet.time_base = 960 * 7, OPUS_TIME_BASE
    assert OpusPacker().pack(packet) == AiortcOpusEncoder().pack(packet)
    pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
    try:
        sender = pc.addTransceiver("audio", direction="sendonly").sender
        spare_audio_encoder(sender)
        assert isinstance(vars(sender)["_RTCRtpSender__encoder"], OpusPacker)
    finally:
        await pc.close()


def test_sender_reports_wrap_their_counts_at_32_bits_once_installed() -> None:
    from aiortc.rtp import RtcpSenderInfo

    from edged.media.aiortc.sender_reports import wrap_sender_report_counters

    wrap_sender_report_counters()
    wrap_sender_report_counters()  # idempotent
    big = RtcpSenderInfo(
        ntp_timestamp=1, rtp_timestamp=2, packet_count=(1 << 32) + 5, octet_count=(1 << 32) + 7
    )
    small = RtcpSenderInfo(ntp_timestamp=1, rtp_timestamp=2, packet_count=5, octet_count=7)
    assert bytes(big) == bytes(small)
