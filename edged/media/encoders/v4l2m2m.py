"""Which H.264 encoder a frame source gets: the board's V4L2 memory-to-memory encoder when
it has a working one (Raspberry Pi 4 and older), else libx264 in the fan-out."""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, NamedTuple

import av

from .libx264 import H264Encoder, H264Settings

log = logging.getLogger(__name__)

HARDWARE_ENCODER = "h264_v4l2m2m"
HARDWARE_REOPEN_INTERVAL = 2.0
"""Seconds between bitrate changes of the hardware encoder (each costs a reopen and an IDR)."""
BITRATE_HYSTERESIS = 0.1
PROBE_FRAMES = 10


class EncoderChoice(NamedTuple):
    """Which H.264 encoder a frame source gets, and whether it is the board's hardware."""

    name: str
    hardware: bool


@functools.cache
def pick_h264_encoder() -> EncoderChoice:
    """``h264_v4l2m2m`` when the board has a working one (a test encode succeeds), else
    libx264 (tuned for latency by :class:`~edged.media.encoders.libx264.H264Encoder`). Cached."""
    try:
        encoder = V4l2m2mEncoder(H264Settings(bitrate=500_000))
        probe = av.VideoFrame(640, 480, "yuv420p")
        for plane in probe.planes:
            plane.update(bytes(plane.buffer_size))
        # The encoder holds a few frames before its first packet comes out.
        works = any(encoder.encode(probe) for _ in range(PROBE_FRAMES))
        encoder.close()
        if works:
            return EncoderChoice(HARDWARE_ENCODER, True)
    except Exception as exc:
        log.debug("no hardware H.264 encoder: %s", exc)
    return EncoderChoice("libx264", False)


class V4l2m2mEncoder(H264Encoder):
    """The board's V4L2 memory-to-memory H.264 encoder (Raspberry Pi 4 and older).

    Same interface and timestamps as the libx264 :class:`H264Encoder`; a keyframe request
    becomes FFmpeg's forced-key-frame control. The encoder cannot change its bitrate while
    open, so a new bitrate (at least 10 % off) reopens it, at most every 2 s; the reopened
    encoder starts with an IDR.
    """

    codec_name = HARDWARE_ENCODER
    codec_options: dict[str, str] = {}
    reopen_interval = HARDWARE_REOPEN_INTERVAL

    def __init__(self, settings: H264Settings | None = None) -> None:
        super().__init__(settings)
        self._open_bitrate: int | None = None
        self._opened_at = 0.0

    def encode(self, frame: av.VideoFrame) -> list[av.Packet[Any]]:
        target, opened = self.bitrate, self._open_bitrate
        if (
            opened is not None
            and abs(target - opened) > BITRATE_HYSTERESIS * opened
            and time.monotonic() - self._opened_at >= self.reopen_interval
        ):
            self.close()  # the next line reopens it at the new bitrate
        return super().encode(frame)

    def _open(self, size: tuple[int, int], bitrate: int) -> av.VideoCodecContext:
        codec = self._context(self.codec_name, size, bitrate)
        codec.profile = "Constrained Baseline"  # the level is the driver's
        codec.options = dict(self.codec_options)
        codec.open()
        self.opened += 1
        self._open_bitrate, self._opened_at = bitrate, time.monotonic()
        return codec
