"""How aiortc packs an encoded ``av.Packet`` into RTP payloads, and the Opus packer edged
gives audio senders instead of aiortc's encoder.

An ``RTCRtpSender`` whose track yields ``av.Packet`` packs it with its codec's encoder
(``Encoder.pack``) without encoding. For Opus, aiortc's encoder opens a libopus context
and a resampler on creation that a pre-encoded stream never uses: :class:`OpusPacker`
packs the same way without them. :func:`packer_for` is the packer a sender would use,
which a fan-out uses to pack each access unit once for every viewer.
"""

from __future__ import annotations

import fractions
from typing import Any

import av
from aiortc import RTCRtpSender
from aiortc import codecs as _codecs
from aiortc.codecs import h264 as _h264_codec
from aiortc.codecs import opus as _opus_codec
from aiortc.mediastreams import convert_timebase
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from ..send.rtp_frames import Packer
from .checks import Checks, check_calls, check_method
from .codec_choice import codec_capabilities

SENDER_ENCODER = "_RTCRtpSender__encoder"
"""aiortc's name-mangled encoder of a sender, made on its first frame only while None."""

GET_ENCODER: Checks = {
    "aiortc.codecs.get_encoder": lambda: check_method(_codecs, "get_encoder", ["codec"]),
}
"""What :func:`packer_for` relies on (also a requirement of the direct send path)."""

REQUIREMENTS: Checks = GET_ENCODER | {
    "RTCRtpSender._next_encoded_frame packs av.Packet[Any]": lambda: check_calls(
        RTCRtpSender._next_encoded_frame, "RTCRtpSender._next_encoded_frame", ["recv", "pack"]
    ),
    "RTCRtpSender.__encoder (made only when None)": lambda: (
        check_calls(
            RTCRtpSender._next_encoded_frame,
            "RTCRtpSender._next_encoded_frame",
            [SENDER_ENCODER],
        )
        or check_calls(RTCRtpSender.__init__, "RTCRtpSender.__init__", [SENDER_ENCODER])
    ),
    "H264Encoder.pack": lambda: check_method(_h264_codec.H264Encoder, "pack", ["self", "packet"]),
    "OpusEncoder.pack": lambda: check_method(_opus_codec.OpusEncoder, "pack", ["self", "packet"]),
}

_OPUS_TIME_BASE = fractions.Fraction(1, 48000)


class OpusPacker:
    """What aiortc's ``OpusEncoder.pack`` does (an Opus packet is one RTP payload), without
    the libopus context and the resampler aiortc's encoder opens on creation: that
    resampler is a filter graph with a thread per core, for every audio viewer."""

    def pack(self, packet: av.Packet[Any]) -> tuple[list[bytes], int]:
        if packet.pts is None or packet.time_base is None:
            raise ValueError("an Opus packet without pts or time base")
        return [bytes(packet)], convert_timebase(packet.pts, packet.time_base, _OPUS_TIME_BASE)


def spare_audio_encoder(sender: RTCRtpSender) -> None:
    """Give an audio sender whose track yields Opus packets our :class:`OpusPacker`, so
    aiortc never opens an encoder it would only use to pack them (it makes one only
    while its own is None)."""
    if sender.kind == "audio" and vars(sender).get(SENDER_ENCODER) is None:
        setattr(sender, SENDER_ENCODER, OpusPacker())


def packer_for(mime_type: str) -> Packer:
    """The packer each ``RTCRtpSender`` would use for a codec: aiortc's own, except for
    Opus (:class:`OpusPacker`, the same packing without an encoder behind it)."""
    if mime_type.lower() == "audio/opus":
        return OpusPacker()
    capability = codec_capabilities(mime_type)[0]
    codec = RTCRtpCodecParameters(
        mimeType=capability.mimeType,
        clockRate=capability.clockRate,
        channels=capability.channels,
        payloadType=0,
    )
    packer: Packer = _codecs.get_encoder(codec)
    return packer
