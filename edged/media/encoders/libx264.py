"""Software H.264 encoding with libx264 through PyAV.

The encoder produces what aiortc's H.264 packer and browsers expect from a live
source: constrained baseline at level 3.1 (the profile-level-id aiortc offers),
no B-frames, one Annex-B access unit per frame, SPS/PPS repeated in front of every
IDR so that a viewer can start decoding at any keyframe, and timestamps in 1/90000.
"""

from __future__ import annotations

import fractions
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol, cast

import av
from av.video.frame import PictureType

from ..h264 import VIDEO_TIME_BASE, fit_level_31

logger = logging.getLogger(__name__)

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")


class VideoRates(Protocol):
    """The rates a video is encoded at (the engine's ``VideoConfig`` has them)."""

    @property
    def fps(self) -> float: ...
    @property
    def bitrate(self) -> int: ...
    @property
    def min_bitrate(self) -> int: ...
    @property
    def max_bitrate(self) -> int: ...
    @property
    def keyframe_interval_s(self) -> float: ...


@dataclass(frozen=True)
class H264Settings:
    """How the software encoder is configured; ``bitrate`` values are bits per second."""

    bitrate: int = 1_000_000
    max_bitrate: int | None = None
    """Ceiling for :meth:`H264Encoder.set_bitrate` (VBV max rate); ``bitrate`` if None."""
    min_bitrate: int = 150_000
    keyframe_interval: float = 2.0
    """Seconds between natural keyframes; requested keyframes come on top."""
    framerate: int = 30
    preset: str = "ultrafast"
    vbv_seconds: float = 0.5
    """Rate-control buffer, in seconds at the max bitrate: smaller is steadier."""
    threads: int = 0
    """Encoder threads (sliced, so no added latency); 0 lets x264 choose."""

    @classmethod
    def for_video(cls, video: VideoRates) -> H264Settings:
        """The encoder settings of a configured video: its bitrate, kept within its
        bounds, its keyframe interval and its frame rate (at least 1)."""
        return cls(
            bitrate=video.bitrate,
            max_bitrate=max(video.bitrate, video.max_bitrate),
            min_bitrate=min(video.bitrate, video.min_bitrate),
            keyframe_interval=video.keyframe_interval_s,
            framerate=max(1, round(video.fps)),
        )

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, not {self.preset!r}")
        if self.bitrate <= 0 or self.min_bitrate <= 0 or self.framerate <= 0:
            raise ValueError("bitrate, min_bitrate and framerate must be positive")
        if self.keyframe_interval <= 0 or self.vbv_seconds <= 0:
            raise ValueError("keyframe_interval and vbv_seconds must be positive")
        if self.max_bitrate is not None and self.max_bitrate < self.bitrate:
            raise ValueError("max_bitrate must not be below bitrate")

    @property
    def ceiling(self) -> int:
        return self.max_bitrate if self.max_bitrate is not None else self.bitrate


class H264Encoder:
    """One libx264 encoder context, opened on the first frame and reopened on a size change.

    :meth:`encode` is meant to run in one worker thread at a time; :meth:`request_keyframe`
    and :meth:`set_bitrate` may be called from any thread and take effect on the next frame.
    ``encode`` may change the ``pts``, ``time_base`` and ``pict_type`` of the frame it is given.
    """

    def __init__(self, settings: H264Settings | None = None) -> None:
        self.settings = settings or H264Settings()
        self._lock = threading.Lock()
        self._codec: av.VideoCodecContext | None = None
        self._size: tuple[int, int] | None = None
        self._keyframe_requested = False
        self._bitrate = self.settings.bitrate
        self._last_pts: int | None = None
        self.frames_encoded = 0
        self.keyframes = 0
        self.keyframes_requested = 0
        self.bytes_out = 0
        self.encode_seconds = 0.0
        self.opened = 0

    @property
    def bitrate(self) -> int:
        """The target bitrate in bits per second."""
        return self._bitrate

    @property
    def size(self) -> tuple[int, int] | None:
        """The encoded (width, height), once the first frame has been seen."""
        return self._size

    def request_keyframe(self) -> None:
        """Make the next encoded frame an IDR picture (with SPS/PPS in front)."""
        with self._lock:
            self._keyframe_requested = True
            self.keyframes_requested += 1

    def set_bitrate(self, bitrate: int) -> int:
        """Retarget the rate control from the next frame; returns the clamped value."""
        s = self.settings
        with self._lock:
            self._bitrate = max(s.min_bitrate, min(int(bitrate), s.ceiling))
            return self._bitrate

    def encode(self, frame: av.VideoFrame) -> list[av.Packet[Any]]:
        """Encode one frame into zero or more access units (one with zero latency tuning)."""
        started = time.perf_counter()
        with self._lock:
            force = self._keyframe_requested
            self._keyframe_requested = False
            bitrate = self._bitrate
        size = fit_level_31(frame.width, frame.height, self.settings.framerate)
        codec = self._codec
        if codec is None or size != self._size:
            if self._size is not None:
                logger.info("frame size changed to %dx%d: reopening the encoder", *size)
            codec = self._codec = self._open(size, bitrate)
            self._size = size
        if codec.bit_rate != bitrate:
            codec.bit_rate = bitrate
        pts = self._pts_of(frame)
        if (frame.width, frame.height) != size or frame.format.name != "yuv420p":
            frame = frame.reformat(width=size[0], height=size[1], format="yuv420p")
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        frame.pict_type = PictureType.I if force else PictureType.NONE
        packets = [self._stamp(p) for p in codec.encode(frame)]
        self.encode_seconds += time.perf_counter() - started
        self.frames_encoded += 1
        return packets

    def close(self) -> None:
        """Release the codec context; the next frame would open a fresh one."""
        self._codec = None
        self._size = None

    def _pts_of(self, frame: av.VideoFrame) -> int:
        tb = frame.time_base
        if frame.pts is None or tb is None:
            pts = round(time.monotonic() * VIDEO_TIME_BASE.denominator)
        else:
            pts = frame.pts * tb.numerator * VIDEO_TIME_BASE.denominator // tb.denominator
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        return int(pts)

    def _stamp(self, packet: av.Packet[Any]) -> av.Packet[Any]:
        packet.time_base = VIDEO_TIME_BASE
        if packet.pts is None:
            packet.pts = self._last_pts
        self.bytes_out += packet.size
        if packet.is_keyframe:
            self.keyframes += 1
        return packet

    def _context(
        self, codec_name: str, size: tuple[int, int], bitrate: int
    ) -> av.VideoCodecContext:
        """An encoder context with what every H.264 encoder here shares: size, yuv420p,
        frame rate, 90 kHz time base, bitrate, keyframe interval, no B-frames."""
        s = self.settings
        codec = cast(av.VideoCodecContext, av.CodecContext.create(codec_name, "w"))
        codec.width, codec.height = size
        codec.pix_fmt = "yuv420p"
        codec.framerate = fractions.Fraction(s.framerate, 1)
        codec.time_base = VIDEO_TIME_BASE
        codec.bit_rate = bitrate
        codec.gop_size = max(1, round(s.keyframe_interval * s.framerate))
        codec.max_b_frames = 0
        return codec

    def _open(self, size: tuple[int, int], bitrate: int) -> av.VideoCodecContext:
        s = self.settings
        codec = self._context("libx264", size, bitrate)
        codec.thread_count = s.threads
        # A named profile: libx264's own "profile" option stopped accepting
        # "baseline" in the FFmpeg that PyAV 14 bundles.
        codec.profile = "Baseline"
        codec.options = {
            "preset": s.preset,
            "tune": "zerolatency",
            "level": "31",
            "forced-idr": "1",
            # A VBV is what lets x264 retarget the bitrate of an open encoder.
            "maxrate": str(s.ceiling),
            "bufsize": str(int(s.ceiling * s.vbv_seconds)),
            "x264-params": "scenecut=0:repeat-headers=1:annexb=1:bframes=0",
        }
        codec.open()
        self.opened += 1
        self._keyframe_requested = False
        return codec
