"""What a muted source sends: black pictures and silence, so that viewers keep a stream.

Raw frames are replaced one for one (:func:`silenced`): same size, format and timestamps,
and the fan-out encodes them as usual. A pass-through H.264 stream (a camera's hardware
encoder, an H.264 camera, a file) cannot be altered without decoding it, so
:class:`PacketMute` sends, instead of its access units, a black IDR picture at the
stream's size — encoded once with libx264 (constrained baseline, level 3.1) and cached —
a few times a second, stamped with the timestamps of the access units it replaces. On
unmute the stream resumes at its next keyframe, asked for at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np

from ..encoders.libx264 import H264Encoder, H264Settings
from ..h264 import NAL_SPS, is_keyframe

MUTED_VIDEO_INTERVAL = 0.25
"""Seconds between two black pictures sent for a muted pass-through stream (4 per second)."""
BLACK_BITRATE = 100_000
NAL_AUD = 9

_black_units: dict[tuple[int, int], tuple[bytes, bytes]] = {}
_black_lock = threading.Lock()


def black_frame(width: int, height: int) -> av.VideoFrame:
    """A black yuv420p frame."""
    planes = np.zeros((height * 3 // 2, width), dtype=np.uint8)
    planes[height:, :] = 128
    return av.VideoFrame.from_ndarray(planes, format="yuv420p")


def silenced(frame: Any, blank: Any = None) -> Any:
    """``frame`` made black (video) or silent (audio), same size, format and timestamps;
    ``blank``, a black frame made earlier, is reused when its size fits."""
    if isinstance(frame, av.VideoFrame):
        if blank is None or (blank.width, blank.height) != (frame.width, frame.height):
            blank = black_frame(frame.width, frame.height)
    elif isinstance(frame, av.AudioFrame):
        blank = av.AudioFrame.from_ndarray(
            np.zeros((1, frame.samples * len(frame.layout.channels)), dtype=np.int16),
            format="s16",
            layout=frame.layout.name,
        )
        blank.sample_rate = frame.sample_rate
    else:
        return frame
    blank.pts = frame.pts
    blank.time_base = frame.time_base
    return blank


def black_access_units(width: int, height: int) -> tuple[bytes, bytes]:
    """Two black IDR access units of ``width`` x ``height``, SPS/PPS in front of each.

    Two, with different ``idr_pic_id``, so that consecutive IDRs differ as H.264 asks.
    Encoded once per size (a few milliseconds: call it off the event loop) and cached.
    """
    with _black_lock:
        cached = _black_units.get((width, height))
        if cached is not None:
            return cached
        encoder = H264Encoder(H264Settings(bitrate=BLACK_BITRATE, keyframe_interval=1.0))
        frame = black_frame(width, height)
        units: list[bytes] = []
        for index in range(2):
            encoder.request_keyframe()
            frame.pts = index
            units += [bytes(p) for p in encoder.encode(frame)]
        encoder.close()
        pair = (units[0], units[1])
        _black_units[(width, height)] = pair
        return pair


def h264_size(access_unit: bytes) -> tuple[int, int] | None:
    """The picture size in the SPS of an H.264 access unit (parsed, not decoded)."""
    codec = av.CodecContext.create("h264", "r")
    try:
        codec.parse(access_unit)
        codec.parse(None)
    except (av.FFmpegError, ValueError):
        return None
    width, height = codec.width, codec.height
    return (width, height) if width and height else None


class PacketMute:
    """Mutes a pass-through H.264 stream: owns the mute switch, a reference to the latest
    access unit that starts with an SPS (the black picture's size is read from it, else
    asked of the source), the black picture's schedule, and the wait for a keyframe
    after unmuting.

    :meth:`filter` takes each access unit of the source and returns what to send: the unit
    itself, a black picture in its place, or None (nothing now).
    """

    def __init__(
        self,
        request_keyframe: Callable[[], None],
        size_hint: Callable[[], tuple[int, int] | None] = lambda: None,
        interval: float = MUTED_VIDEO_INTERVAL,
    ) -> None:
        self.interval = interval
        self.black_sent = 0
        self._request_keyframe = request_keyframe
        self._size_hint = size_hint
        self._muted = False
        self._resuming = False
        self._packets = False
        self._keyframe: bytes | None = None
        self._headed: av.Packet[Any] | None = None
        self._size: tuple[int, int] | None = None
        self._next_black: float | None = None

    @property
    def muted(self) -> bool:
        return self._muted

    @muted.setter
    def muted(self, muted: bool) -> None:
        if muted == self._muted:
            return
        self._muted = muted
        if muted:
            self._size, self._next_black = None, None
            self._keyframe = bytes(self._headed) if self._headed is not None else None
        elif self._packets:
            self._resuming = True  # the source's own pictures, from a keyframe on
            self._request_keyframe()

    @property
    def resuming(self) -> bool:
        """Unmuted, and waiting for the source's next keyframe."""
        return self._resuming

    async def filter(self, packet: av.Packet[Any]) -> av.Packet[Any] | None:
        self._packets = True
        if not self._muted and not self._resuming:
            if _first_nal_type(packet) in (NAL_SPS, NAL_AUD):
                self._headed = packet  # a reference: its SPS gives the size when muting
            return packet
        data = bytes(packet)
        keyframe = is_keyframe(data)
        if keyframe:
            self._keyframe = data
            if not self._muted:
                self._resuming = False
                return packet
        now = time.monotonic()
        if self._next_black is not None and now < self._next_black:
            return None
        size = self._size = self._size or self._black_size()
        if size is None:
            return None  # nothing tells the size yet: wait for a keyframe
        units = _black_units.get(size)
        if units is None:
            units = await asyncio.to_thread(black_access_units, *size)
        black = av.Packet(units[self.black_sent % 2])
        black.pts, black.time_base = packet.pts, packet.time_base
        self.black_sent += 1
        self._next_black = now + self.interval
        return black

    def _black_size(self) -> tuple[int, int] | None:
        size = h264_size(self._keyframe) if self._keyframe is not None else None
        return size or self._size_hint()


def _first_nal_type(packet: av.Packet[Any]) -> int:
    """The type of an Annex-B access unit's first NAL unit (-1: no start code), read
    without copying the unit."""
    head = bytes(memoryview(packet)[:5])
    if head[:3] == b"\x00\x00\x01":
        return head[3] & 0x1F
    if head[:4] == b"\x00\x00\x00\x01":
        return head[4] & 0x1F
    return -1
