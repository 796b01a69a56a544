"""The software H.264 encoder and the Annex-B helpers."""

from __future__ import annotations

import fractions
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.media.encoders.libx264 import H264Encoder, H264Settings
from edged.media.h264 import (
    NAL_IDR,
    NAL_PPS,
    NAL_SLICE,
    NAL_SPS,
    VIDEO_TIME_BASE,
    fit_level_31,
    is_keyframe,
    nal_types,
    split_nal_units,
    sps_profile_level,
)

TB = fractions.Fraction(1, 90000)


def frame(i: int, width: int = 320, height: int = 240, pts: bool = True) -> av.VideoFrame:
    """A moving, slightly noisy picture so that the encoder has real work to do."""
    rng = np.random.default_rng(i)
    y = (np.add.outer(np.arange(height), np.arange(width)) + 7 * i) % 220 + 16
    y = (y + rng.integers(0, 12, y.shape)).astype(np.uint8)
    uv = np.full((height // 2, width), 128, np.uint8)
    f = av.VideoFrame.from_ndarray(np.vstack([y, uv]), format="yuv420p")
    if pts:
        f.pts = i * 3000
        f.time_base = TB
    return f


def encode_all(enc: H264Encoder, frames: range, **kw: Any) -> list[list[av.Packet[Any]]]:
    return [enc.encode(frame(i, **kw)) for i in frames]


def decode(packets: list[av.Packet[Any]]) -> list[av.VideoFrame]:
    dec = av.CodecContext.create("h264", "r")
    out: list[av.VideoFrame] = []
    for p in packets:
        out.extend(dec.decode(av.Packet(bytes(p))))  # type: ignore[arg-type]
    return out


def test_first_packet_is_a_baseline_level_31_idr_with_parameter_sets() -> None:
    enc = H264Encoder()
    (first,) = enc.encode(frame(0))
    types = nal_types(bytes(first))
    assert types[:2] == [NAL_SPS, NAL_PPS] and NAL_IDR in types
    assert is_keyframe(bytes(first)) and first.is_keyframe
    profile_level = sps_profile_level(bytes(first))
    assert profile_level is not None
    # profile_idc 66 (baseline), level_idc 31: what aiortc offers (42001f / 42e01f).
    assert profile_level[:2] == "42" and profile_level[4:] == "1f"
    assert decode([first])[0].width == 320


def test_each_frame_gives_one_annexb_access_unit_with_90khz_pts_and_no_reordering() -> None:
    enc = H264Encoder()
    out = encode_all(enc, range(30))
    assert all(len(packets) == 1 for packets in out), "zero-latency: one packet per frame"
    packets = [p[0] for p in out]
    assert all(bytes(p).startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")) for p in packets)
    assert all(p.time_base == VIDEO_TIME_BASE for p in packets)
    assert [p.pts for p in packets] == [i * 3000 for i in range(30)]
    assert all(p.dts == p.pts for p in packets), "no B-frames"
    assert len(decode(packets)) == 30
    assert enc.frames_encoded == 30 and enc.opened == 1


def test_request_keyframe_makes_the_next_frame_an_idr_a_late_decoder_can_start_at() -> None:
    enc = H264Encoder(H264Settings(keyframe_interval=10))
    early = encode_all(enc, range(10))
    assert not any(is_keyframe(bytes(p[0])) for p in early[1:])
    enc.request_keyframe()
    late = [p[0] for p in encode_all(enc, range(10, 20))]
    assert is_keyframe(bytes(late[0])) and nal_types(bytes(late[0]))[:2] == [NAL_SPS, NAL_PPS]
    assert not any(is_keyframe(bytes(p)) for p in late[1:])
    assert len(decode(late)) == 10, "a decoder that joins at the forced IDR decodes everything"
    assert enc.keyframes == 2 and enc.keyframes_requested == 1


def test_natural_keyframes_follow_the_interval() -> None:
    enc = H264Encoder(H264Settings(keyframe_interval=0.5, framerate=30))
    keys = [i for i, p in enumerate(encode_all(enc, range(46))) if is_keyframe(bytes(p[0]))]
    assert keys == [0, 15, 30, 45]


def test_set_bitrate_retargets_the_open_encoder_and_is_clamped() -> None:
    settings = H264Settings(bitrate=2_000_000, min_bitrate=200_000, keyframe_interval=10)
    enc = H264Encoder(settings)
    high = sum(len(bytes(p[0])) for p in encode_all(enc, range(1, 61), width=640, height=480))
    assert enc.set_bitrate(250_000) == 250_000
    encode_all(enc, range(61, 91), width=640, height=480)  # let the VBV drain
    low = sum(len(bytes(p[0])) for p in encode_all(enc, range(91, 151), width=640, height=480))
    assert low < high / 2
    assert enc.opened == 1, "no reopen (and so no extra keyframe) for a bitrate change"
    assert enc.set_bitrate(10) == 200_000
    assert enc.set_bitrate(50_000_000) == 2_000_000


def test_frames_beyond_level_31_are_scaled_down_and_still_decode() -> None:
    enc = H264Encoder()
    (packet,) = enc.encode(frame(0, width=1920, height=1080))
    assert enc.size == (1280, 720)
    assert decode([packet])[0].width == 1280
    assert fit_level_31(1280, 720) == (1280, 720)
    assert fit_level_31(640, 480) == (640, 480)
    w, h = fit_level_31(1280, 720, framerate=60)
    assert (w // 16 + (w % 16 > 0)) * (h // 16 + (h % 16 > 0)) <= 1800


def test_a_size_change_reopens_the_encoder_with_a_keyframe() -> None:
    enc = H264Encoder()
    enc.encode(frame(0))
    enc.encode(frame(1))
    (packet,) = enc.encode(frame(2, width=640, height=480))
    assert enc.opened == 2 and enc.size == (640, 480)
    assert is_keyframe(bytes(packet)) and decode([packet])[0].width == 640


def test_frames_without_timestamps_get_increasing_pts() -> None:
    enc = H264Encoder()
    pts = [enc.encode(frame(i, pts=False))[0].pts or 0 for i in range(5)]
    assert pts == sorted(set(pts))


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="preset"):
        H264Settings(preset="placebo")
    with pytest.raises(ValueError):
        H264Settings(bitrate=1_000_000, max_bitrate=500_000)
    with pytest.raises(ValueError):
        H264Settings(keyframe_interval=0)


def test_split_nal_units_handles_three_and_four_byte_start_codes() -> None:
    data = b"\x00\x00\x00\x01\x67\x42\x00\x1f\x00\x00\x01\x68\xce\x00\x00\x00\x01\x65\x88\x80"
    assert split_nal_units(data) == [b"\x67\x42\x00\x1f", b"\x68\xce", b"\x65\x88\x80"]
    assert nal_types(data) == [NAL_SPS, NAL_PPS, NAL_IDR]
    assert split_nal_units(b"no start code") == []


@pytest.mark.parametrize(
    ("types", "key"),
    [
        ([NAL_SPS, NAL_PPS, NAL_IDR], True),
        ([NAL_IDR], True),
        ([NAL_SPS, NAL_PPS], True),  # headers sent on their own right before the IDR
        ([NAL_SLICE], False),
        ([6, NAL_SLICE, NAL_IDR], False),  # scanning stops at the first slice
        ([], False),
    ],
)
def test_is_keyframe_by_nal_type(types: list[int], key: bool) -> None:
    data = b"".join(b"\x00\x00\x00\x01" + bytes([0x60 | t, 0x80]) for t in types)
    assert is_keyframe(data) is key


@given(
    st.lists(
        st.binary(min_size=1, max_size=40).map(lambda b: b"\x41" + b.replace(b"\x00", b"\x01")),
        max_size=8,
    ),
    st.sampled_from([b"\x00\x00\x01", b"\x00\x00\x00\x01"]),
)
def test_split_nal_units_round_trips(nals: list[bytes], start_code: bytes) -> None:
    assert split_nal_units(b"".join(start_code + n for n in nals)) == nals
