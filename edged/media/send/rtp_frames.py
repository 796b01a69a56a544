"""Access units packed into RTP payloads once per stream, shared by every viewer.

Only a few RTP header fields differ between the viewers of one stream (SSRC, sequence
number, timestamp origin, payload type, header extensions); the payloads are the same.
:class:`FramePacker` packs each access unit once and keeps the latest payloads so that a
viewer's retransmission request can be answered from them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import av

NTP_UNIX_OFFSET = 2_208_988_800
"""Seconds from the NTP epoch (1900) to the Unix epoch (1970)."""


def ntp_time() -> int:
    """Now as a 64-bit NTP timestamp, to the microsecond (as aiortc stamps its reports)."""
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    return ((seconds + NTP_UNIX_OFFSET) << 32) | ((micros << 32) // 1_000_000)


class Packer(Protocol):
    """Splits one encoded access unit into RTP payloads (aiortc's ``Encoder.pack``)."""

    def pack(self, packet: av.Packet[Any]) -> tuple[list[bytes], int]: ...


class RtpFrame(NamedTuple):
    """One access unit as RTP payloads, numbered in the stream's packet count."""

    payloads: list[bytes]
    timestamp: int
    """In the codec's clock, before a viewer adds its own random origin."""
    first_index: int
    """The stream's number for ``payloads[0]``; the others follow one by one."""
    end_index: int
    """The stream's number for the payload after the last one."""
    ntp_time: int
    """When it was packed, as a 64-bit NTP time (sender reports)."""
    abs_send_time: int
    """The same instant as the 24-bit abs-send-time header extension (6.18 fixed point)."""


class FramePacker:
    """Owns a stream's one packer, its packet count and a ring of its latest payloads.

    ``history`` payloads are kept (aiortc keeps 128 per sender for retransmissions).
    """

    def __init__(self, packer: Packer, history: int, clock: Callable[[], int] = ntp_time) -> None:
        if history < 1:
            raise ValueError("history must be at least 1")
        self._packer = packer
        self._clock = clock
        self._ring: list[RtpFrame | None] = [None] * history
        self.next_index = 0
        self.frames_packed = 0

    def pack(self, packet: av.Packet[Any]) -> RtpFrame:
        """Pack one access unit (an ``av.Packet`` with pts and time_base)."""
        payloads, timestamp = self._packer.pack(packet)
        first, now = self.next_index, self._clock()
        end = first + len(payloads)
        frame = RtpFrame(payloads, timestamp, first, end, now, (now >> 14) & 0xFFFFFF)
        ring, size = self._ring, len(self._ring)
        for index in range(first, end):
            ring[index % size] = frame
        self.next_index = end
        self.frames_packed += 1
        return frame

    def find(self, index: int) -> tuple[RtpFrame, int] | None:
        """The frame holding payload ``index`` and its position there, while it is kept."""
        frame = self._ring[index % len(self._ring)]
        if frame is None or not frame.first_index <= index < frame.end_index:
            return None
        return frame, index - frame.first_index
