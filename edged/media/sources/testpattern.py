"""The video test pattern: colour bars, a moving block and a time code in every frame."""

from __future__ import annotations

import fractions

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..clock import Pacer
from ..frames import Plane, plane_view
from .timecode import SEQUENCE_MODULO, TimeCode, band_height, encode_into, wall_clock_ms

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)

# 75 % colour bars (white, yellow, cyan, green, magenta, red, blue) as BT.601 video range YUV.
_BARS_RGB = [
    (191, 191, 191),
    (191, 191, 0),
    (0, 191, 191),
    (0, 191, 0),
    (191, 0, 191),
    (191, 0, 0),
    (0, 0, 191),
]
_LANE_LUMA = 40
_BLOCK_LUMA = 235
_NEUTRAL = 128


def _rgb_to_yuv(r: int, g: int, b: int) -> tuple[int, int, int]:
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return round(y), round(u), round(v)


class TestPatternRenderer:
    """Renders test pattern frames; owns the precomputed background planes.

    The background (a neutral code band on top, 75 % colour bars, a dark lane at the
    bottom) is built once. Each frame costs one copy of the background, the code band
    and a small block that moves along the lane. No event loop is needed.
    """

    __test__ = False

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0) -> None:
        if width % 2 or height % 2 or width < 64 or height < 60:
            raise ValueError(f"unsupported size {width}x{height}: need even sizes, >= 64x60")
        if not fps > 0:
            raise ValueError("fps must be positive")
        self.width = width
        self.height = height
        self.fps = fps
        self._background = self._build_background()
        lane_top = height * 3 // 4
        lane_height = height - lane_top
        self._block_size = max(2, (lane_height * 3 // 5) & ~1)
        self._block_top = lane_top + (lane_height - self._block_size) // 2
        # One pass across the lane every two seconds.
        self._block_step = (width - self._block_size) / (2.0 * fps)

    def _build_background(self) -> tuple[Plane, Plane, Plane]:
        w, h = self.width, self.height
        y = np.full((h, w), _LANE_LUMA, dtype=np.uint8)
        u = np.full((h // 2, w // 2), _NEUTRAL, dtype=np.uint8)
        v = np.full((h // 2, w // 2), _NEUTRAL, dtype=np.uint8)
        bars_top = band_height(h)
        bars_bottom = h * 3 // 4
        edges = [i * w // len(_BARS_RGB) for i in range(len(_BARS_RGB) + 1)]
        for i, rgb in enumerate(_BARS_RGB):
            by, bu, bv = _rgb_to_yuv(*rgb)
            x0, x1 = edges[i], edges[i + 1]
            y[bars_top:bars_bottom, x0:x1] = by
            u[bars_top // 2 : bars_bottom // 2, x0 // 2 : x1 // 2] = bu
            v[bars_top // 2 : bars_bottom // 2, x0 // 2 : x1 // 2] = bv
        return y, u, v

    def pts(self, slot: int) -> int:
        """The 90 kHz presentation timestamp of schedule slot ``slot``."""
        return round(slot * VIDEO_CLOCK_RATE / self.fps)

    def block_x(self, sequence: int) -> int:
        """Left edge of the moving block in frame ``sequence``."""
        travel = self.width - self._block_size
        return int(sequence * self._block_step) % (travel + 1) & ~1

    def render(
        self, sequence: int, capture_ms: int | None = None, pts: int | None = None
    ) -> av.VideoFrame:
        """Frame ``sequence`` (yuv420p) stamped with ``capture_ms`` (default: now).

        ``pts`` defaults to the 90 kHz time of ``sequence`` at the configured rate.
        """
        code = TimeCode(
            capture_ms=wall_clock_ms() if capture_ms is None else capture_ms,
            sequence=sequence % SEQUENCE_MODULO,
        )
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        luma = plane_view(frame, 0)
        for index, background in enumerate(self._background):
            target = luma if index == 0 else plane_view(frame, index)
            target[...] = background
        encode_into(luma, code)
        x = self.block_x(sequence)
        size = self._block_size
        luma[self._block_top : self._block_top + size, x : x + size] = _BLOCK_LUMA
        frame.pts = self.pts(sequence) if pts is None else pts
        frame.time_base = VIDEO_TIME_BASE
        return frame


class TestPatternTrack(MediaStreamTrack):
    """A live video track of test pattern frames; owns its renderer, pacer and counters.

    Frames are paced on the monotonic clock (frame ``n`` due at ``start + n / fps``);
    when the consumer is late, the track jumps to the newest due frame instead of
    bursting. ``pts`` follows the schedule (90 kHz), the time code's sequence counts
    produced frames, and its capture time is ``time.time()`` when the frame is made.
    """

    __test__ = False
    kind = "video"

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0) -> None:
        super().__init__()
        self.renderer = TestPatternRenderer(width, height, fps)
        self._pacer = Pacer(1.0 / fps, catch_up=0)
        self.frames_produced = 0
        """Frames returned by ``recv``."""

    @property
    def frames_skipped(self) -> int:
        """Schedule slots skipped because the consumer was late."""
        return self._pacer.slots_skipped

    def render(self, sequence: int, capture_ms: int | None = None) -> av.VideoFrame:
        """A frame without pacing (for pre-rendering); does not touch the counters."""
        return self.renderer.render(sequence, capture_ms)

    async def recv(self) -> av.VideoFrame:
        """The next frame, once it is due."""
        if self.readyState != "live":
            raise MediaStreamError
        slot = await self._pacer.next_slot()
        frame = self.renderer.render(self.frames_produced, pts=self.renderer.pts(slot))
        self.frames_produced += 1
        return frame
