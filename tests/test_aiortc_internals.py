"""aiortc's private API that edged relies on: present, and behaving as the hooks expect.

If one of these fails after an aiortc upgrade, update edged/media/aiortc_internals.py.
"""

from __future__ import annotations

import fractions
import inspect
from typing import Any, cast

import aiortc
import pytest
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc import rtcrtpreceiver as receiver_module
from aiortc.codecs import CODECS
from aiortc.codecs.h264 import H264Encoder as AiortcH264Encoder
from aiortc.codecs.opus import OpusEncoder as AiortcOpusEncoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtcpPsfbPacket, pack_remb_fci

from edged.media import aiortc_internals as internals
from edged.media.aiortc_internals import (
    AIORTC_VERSION,
    AiortcInternalsError,
    PassthroughCounter,
    PassthroughDecoder,
    codec_capabilities,
    hook_sender,
    passthrough_receivers,
    prefer_codec,
    verify,
)

UPGRADE = f"aiortc {aiortc.__version__} changed private API: update edged/media/aiortc_internals.py"


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
    assert internals.problems() == []
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
    await sender._handle_rtcp_packet(psfb(internals.RTCP_PSFB_PLI, sender._ssrc))
    assert calls == ["kf"]
    await sender._handle_rtcp_packet(psfb(internals.RTCP_PSFB_FIR, sender._ssrc))
    assert calls == ["kf", "kf"], "FIR is a keyframe request on every aiortc version"
    assert hook.keyframe_requests == 2


async def test_remb_for_this_sender_reaches_the_bitrate_callback() -> None:
    sender = make_sender()
    seen: list[int] = []
    hook = hook_sender(sender, on_remb=seen.append)
    remb = pack_remb_fci(750_000, [sender._ssrc])
    await sender._handle_rtcp_packet(psfb(internals.RTCP_PSFB_APP, 0, remb))
    await sender._handle_rtcp_packet(
        psfb(internals.RTCP_PSFB_APP, 0, pack_remb_fci(100_000, [sender._ssrc ^ 1]))
    )
    await sender._handle_rtcp_packet(psfb(internals.RTCP_PSFB_APP, 0, b"junk"))
    assert seen == [750_000]
    assert hook.remb_bitrate == 750_000 and hook.remb_reports == 1


async def test_a_failing_callback_does_not_break_rtcp_handling() -> None:
    sender = make_sender()

    def boom() -> None:
        raise RuntimeError("boom")

    hook = hook_sender(sender, on_keyframe_request=boom)
    await sender._handle_rtcp_packet(psfb(internals.RTCP_PSFB_PLI, sender._ssrc))
    assert hook.keyframe_requests == 1


async def test_removing_a_hook_restores_the_sender() -> None:
    sender = make_sender()
    calls: list[int] = []
    hook = hook_sender(sender, on_keyframe_request=lambda: calls.append(1))
    with pytest.raises(ValueError, match="already"):
        hook_sender(sender)
    hook.remove()
    assert "_send_keyframe" not in vars(sender)
    await sender._handle_rtcp_packet(psfb(internals.RTCP_PSFB_PLI, sender._ssrc))
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
