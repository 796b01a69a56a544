"""VP8 encoding with libvpx through PyAV, for viewers that cannot take H.264 (stock
Firefox on Debian: no OpenH264).

One :class:`Vp8Encoder` serves every VP8 viewer of a stream (edged.media.send.vp8). It
takes what the stream's H.264 fan-out reads: frames, or — from a camera that encodes
H.264 itself — the camera's packets, which it decodes first, so a pass-through source is
transcoded once for all VP8 viewers and never for H.264 ones. Settings follow aiortc's
own VP8 encoder (realtime deadline, no lag, CBR within the bitrate), the timestamps are
in 1/90000 as aiortc's VP8 packer expects.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import av
from av.video.frame import PictureType

from ..h264 import VIDEO_TIME_BASE

logger = logging.getLogger(__name__)

MIN_BITRATE = 100_000
MAX_BITRATE = 4_000_000
RECONFIGURE_RATIO = 0.1
"""A bitrate change of more than this share reopens the encoder (libvpx through PyAV
cannot retarget an open context), on the next frame, which is then a keyframe."""


def is_vp8_keyframe(data: bytes) -> bool:
    """Whether a VP8 frame is a key frame (bit 0 of its frame tag is 0, RFC 6386 9.1)."""
    return bool(data) and not data[0] & 0x01


class Vp8Encoder:
    """libvpx for one stream: frames (or H.264 packets, decoded here) in, VP8 packets out."""

    def __init__(self, bitrate: int, keyframe_interval_s: float = 10.0, fps: float = 30.0) -> None:
        self.bitrate = max(MIN_BITRATE, min(bitrate, MAX_BITRATE))
        self.gop = max(1, round(keyframe_interval_s * fps))
        self.frames_encoded = 0
        self.encode_seconds = 0.0
        self._codec: Any = None
        self._decoder: Any = None
        self._keyframe = threading.Event()
        self._keyframe.set()
        self._pts = 0

    def encode(self, item: Any) -> list[av.Packet[Any]]:
        """Encode a frame, or each frame an H.264 packet decodes to."""
        if isinstance(item, av.Packet):
            if self._decoder is None:
                self._decoder = av.CodecContext.create("h264", "r")
            try:
                frames = list(self._decoder.decode(item))
            except av.error.FFmpegError as exc:  # a damaged access unit: wait for the next
                logger.debug("vp8: H.264 packet not decoded: %s", exc)
                return []
            packets: list[av.Packet[Any]] = []
            for frame in frames:
                packets.extend(self._encode_frame(frame))
            return packets
        return self._encode_frame(item)

    def _encode_frame(self, frame: av.VideoFrame) -> list[av.Packet[Any]]:
        started = time.perf_counter()
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        codec = self._codec
        if codec is None or (frame.width, frame.height) != (codec.width, codec.height):
            codec = self._codec = self._open(frame.width, frame.height)
            self._keyframe.set()
        if self._keyframe.is_set():
            self._keyframe.clear()
            frame.pict_type = PictureType.I
        else:
            frame.pict_type = PictureType.NONE
        frame.pts, frame.time_base = self._pts, VIDEO_TIME_BASE
        self._pts += 3000
        packets = list(codec.encode(frame))
        for packet in packets:
            packet.pts, packet.time_base = frame.pts, VIDEO_TIME_BASE
        self.frames_encoded += 1
        self.encode_seconds += time.perf_counter() - started
        return packets

    def _open(self, width: int, height: int) -> Any:
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = width, height
        codec.pix_fmt = "yuv420p"
        codec.bit_rate = self.bitrate
        codec.time_base = VIDEO_TIME_BASE
        codec.gop_size = self.gop
        codec.qmin, codec.qmax = 2, 56
        codec.thread_count = 1
        codec.options = {
            "bufsize": str(self.bitrate),
            "cpu-used": "8",
            "deadline": "realtime",
            "lag-in-frames": "0",
            "minrate": str(self.bitrate),
            "maxrate": str(self.bitrate),
            "static-thresh": "1",
            "undershoot-pct": "100",
            "overshoot-pct": "15",
            "error-resilient": "1",
        }
        return codec

    def request_keyframe(self) -> None:
        self._keyframe.set()

    def set_bitrate(self, bitrate: int) -> int:
        target = max(MIN_BITRATE, min(bitrate, MAX_BITRATE))
        if abs(target - self.bitrate) > RECONFIGURE_RATIO * self.bitrate:
            self.bitrate = target
            self._codec = None  # reopened at the next frame
        return self.bitrate

    def close(self) -> None:
        self._codec = self._decoder = None
