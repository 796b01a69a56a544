"""A padding-only RTP packet must not stop a receiver's picture for good.

aiortc turns a padding-only packet into an empty frame; handed to libavcodec, an empty
packet drains the decoder, which then refuses every later packet ("End of file"). The
guard the engine installs (edged.media.aiortc.receivers.guard_empty_frames) skips it.
"""

from __future__ import annotations

import contextlib

import av
from aiortc import codecs, rtcrtpreceiver
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from edged.media.aiortc.receivers import NonEmptyDecoder, guard_empty_frames
from edged.media.encoders.libx264 import H264Encoder, H264Settings

H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=96)


def access_units(count: int) -> list[bytes]:
    encoder = H264Encoder(H264Settings(bitrate=300_000, keyframe_interval=1.0, framerate=30))
    units = []
    for i in range(count):
        frame = av.VideoFrame(320, 240, "yuv420p")
        frame.pts = i
        units.append(b"".join(bytes(p) for p in encoder.encode(frame)))
    return [u for u in units if u]


def decode_all(decoder: object, units: list[bytes]) -> int:
    """Pictures decoded from ``units``; a refused one counts none (aiortc 1.16 raises
    libavcodec's error, 1.11 logs it and returns nothing)."""
    decoded = 0
    for i, unit in enumerate(units):
        with contextlib.suppress(av.error.EOFError):
            decoded += len(decoder.decode(JitterFrame(unit, i * 3000)))  # type: ignore[attr-defined]
    return decoded


def test_an_empty_frame_in_the_middle_stops_aiortcs_own_decoder_for_good() -> None:
    units = access_units(10)
    plain = codecs.get_decoder(H264)  # aiortc's own, whatever the receivers use now
    assert decode_all(plain, units[:5]) >= 1
    assert decode_all(plain, [b"", *units[5:]]) == 0, "no picture after the empty frame"


def test_the_guarded_decoder_skips_it_and_goes_on_decoding() -> None:
    units = access_units(10)
    guard_empty_frames()
    guarded = rtcrtpreceiver.get_decoder(H264)
    assert isinstance(guarded, NonEmptyDecoder)
    before = decode_all(guarded, units[:5])
    after = decode_all(guarded, [b"", *units[5:]])
    assert before >= 1 and after >= 4
