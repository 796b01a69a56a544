"""H.264 as edged sends it: Annex-B access units, NAL types, level 3.1, the 90 kHz clock.

What every role that touches H.264 shares (encoders, pass-through sources, the fan-out,
snapshots, recorders): splitting Annex-B buffers into NAL units, telling a keyframe,
the level 3.1 size limit aiortc negotiates (:func:`fit_level_31`), the video time base,
and :class:`ParameterSets`, which puts the latest SPS/PPS in front of an IDR that lacks
them so that a viewer can start decoding there.
"""

from __future__ import annotations

import fractions
import math
from collections.abc import Iterator

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
"""RTP clock of every video codec: encoder output packets use this time base."""

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8

START_CODE = b"\x00\x00\x00\x01"

LEVEL_31_MAX_FRAME_MBS = 3600
"""Level 3.1 MaxFS in 16x16 macroblocks: 1280x720."""
LEVEL_31_MAX_MBS_PER_SECOND = 108000
"""Level 3.1 MaxMBPS: 1280x720 at 30 frames per second."""


def iter_nal_units(data: bytes) -> Iterator[bytes]:
    """Yield the NAL units of an Annex-B buffer, without their start codes."""
    start = data.find(b"\x00\x00\x01")
    while start != -1:
        begin = start + 3
        nxt = data.find(b"\x00\x00\x01", begin)
        if nxt == -1:
            yield data[begin:]
            return
        end = nxt
        # A zero in front of the next start code belongs to a 4-byte start code
        # (trailing zeros are not allowed at the end of a NAL unit).
        while end > begin and data[end - 1] == 0:
            end -= 1
        yield data[begin:end]
        start = nxt


def split_nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B buffer, without their start codes."""
    return list(iter_nal_units(data))


def nal_types(data: bytes) -> list[int]:
    """The nal_unit_type of each NAL unit in an Annex-B buffer."""
    return [nal[0] & 0x1F for nal in iter_nal_units(data) if nal]


def is_keyframe(data: bytes) -> bool:
    """Whether a viewer can start decoding at this Annex-B access unit.

    True when it carries an IDR slice (type 5) or a sequence parameter set (type 7):
    some hardware encoders send SPS/PPS as their own buffer right before the IDR,
    and a viewer that starts there gets both. Scanning stops at the first slice.
    """
    for nal in iter_nal_units(data):
        if not nal:
            continue
        nal_type = nal[0] & 0x1F
        if nal_type in (NAL_SPS, NAL_IDR):
            return True
        if NAL_SLICE <= nal_type < NAL_IDR:
            return False
    return False


def sps_profile_level(data: bytes) -> str | None:
    """The profile-level-id (6 hex digits, as in SDP) of the first SPS, if any."""
    for nal in iter_nal_units(data):
        if len(nal) >= 4 and nal[0] & 0x1F == NAL_SPS:
            return nal[1:4].hex()
    return None


NEGOTIATED_PROFILE_LEVEL = "42e01f"
"""What edged's publishers offer: constrained baseline, level 3.1 (aiortc's H.264)."""
BASELINE_PROFILES = ("Baseline", "Constrained Baseline")
"""FFmpeg's names of the profiles a constrained-baseline decoder takes (with no B-frames)."""


_DECODES = {
    "constrained baseline": {"constrained baseline"},
    "baseline": {"constrained baseline", "baseline"},
    "main": {"constrained baseline", "main"},
    "high": {"constrained baseline", "main", "high"},
}
"""Which streams (by profile) a decoder of each profile takes (RFC 6184, 8.1)."""


def profile_of(profile_level_id: str) -> tuple[str, int] | None:
    """The profile (as :data:`_DECODES` names them) and level_idc of a profile-level-id,
    constrained baseline as RFC 6184 defines it (profile 66 with constraint_set1, 77 with
    constraint_set0, 88 with both); None for what edged's viewers never take."""
    try:
        profile, constraints, level = bytes.fromhex(profile_level_id)
    except ValueError:
        return None
    if (
        (profile == 66 and constraints & 0x40)
        or (profile == 77 and constraints & 0x80)
        or (profile == 88 and constraints & 0xC0 == 0xC0)
    ):
        return "constrained baseline", level
    names = {66: "baseline", 77: "main", 100: "high"}
    return (names[profile], level) if profile in names else None


def covers(negotiated: str, sent: str) -> bool:
    """Whether a viewer that negotiated ``negotiated`` decodes a stream whose SPS says
    ``sent``: a profile its decoder takes, at its level or below."""
    decoder, stream = profile_of(negotiated), profile_of(sent)
    if decoder is None or stream is None:
        return False
    return stream[0] in _DECODES[decoder[0]] and stream[1] <= decoder[1]


def covered_by_negotiated(profile_level_id: str) -> bool:
    """Whether every viewer takes a stream whose SPS says ``profile_level_id``: what edged
    offers, constrained baseline at level 3.1 (``42e01f``), covers it."""
    return covers(NEGOTIATED_PROFILE_LEVEL, profile_level_id)


def fit_level_31(width: int, height: int, framerate: int = 30) -> tuple[int, int]:
    """The largest even size with the same aspect ratio that level 3.1 allows.

    Level 3.1 (what aiortc negotiates) allows 3600 macroblocks per frame and
    108000 per second: 1280x720 at 30 fps, fewer pixels at higher frame rates.
    """
    max_mbs = min(LEVEL_31_MAX_FRAME_MBS, LEVEL_31_MAX_MBS_PER_SECOND // max(framerate, 1))

    def mbs(w: int, h: int) -> int:
        return math.ceil(w / 16) * math.ceil(h / 16)

    if mbs(width, height) <= max_mbs:
        return width, height
    scale = math.sqrt(max_mbs * 256 / (width * height))
    w, h = int(width * scale) & ~1, int(height * scale) & ~1
    while mbs(w, h) > max_mbs:
        w, h = (w - 2) & ~1, int((w - 2) * height / width) & ~1
    return max(w, 2), max(h, 2)


class ParameterSets:
    """Makes each H.264 access unit self-sufficient for a viewer starting there.

    Owns the latest SPS and PPS seen. :meth:`complete` puts them in front of an IDR that
    lacks them (encoders and cameras that send them once, or as a buffer of their own)
    and holds back a buffer of parameter sets only, to join it to the next picture.
    """

    def __init__(self) -> None:
        self._sps = b""
        self._pps = b""
        self._pending = b""

    @property
    def headers(self) -> bytes:
        """The latest SPS and PPS, Annex-B; empty until both were seen."""
        return START_CODE + self._sps + START_CODE + self._pps if self._sps and self._pps else b""

    def complete(self, access_unit: bytes) -> bytes | None:
        """The access unit ready to send, or None when it held parameter sets only."""
        has_sps = has_idr = has_slice = False
        for nal in iter_nal_units(access_unit):
            if not nal:
                continue
            nal_type = nal[0] & 0x1F
            if nal_type == NAL_SPS:
                self._sps, has_sps = nal, True
            elif nal_type == NAL_PPS:
                self._pps = nal
            elif NAL_SLICE <= nal_type <= NAL_IDR:
                has_slice = True
                has_idr = has_idr or nal_type == NAL_IDR
        if not has_slice:
            self._pending += access_unit
            return None
        pending, self._pending = self._pending, b""
        if has_idr and not has_sps and not pending:
            pending = self.headers
        return pending + access_unit
