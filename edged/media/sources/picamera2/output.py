"""What picamera2's encoders hand out, turned into what the fan-out takes.

A picamera2 ``Output`` subclass (:func:`callback_output_class`) receives, in the encoder's
thread, each Annex-B access unit of the hardware encoder (or, with picamera2's plain
``Encoder``, each raw YUV420 buffer) stamped in microseconds. :class:`CameraClock` turns
those stamps into 90 kHz pts that keep increasing when the encoder or the camera
restarts; :func:`yuv420_frame` copies a raw buffer into a frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np

from ...frames import plane_view

BufferCallback = Callable[[Any, int | None], None]
"""Called in the encoder's thread with a buffer and its timestamp in microseconds."""


def callback_output_class(base: type) -> type:
    """A picamera2 ``Output`` that hands every video buffer to a callback."""

    class CallbackOutput(base):  # type: ignore[misc]
        def __init__(self, on_buffer: BufferCallback) -> None:
            super().__init__()
            self.on_buffer = on_buffer

        def outputframe(
            self, frame: Any, keyframe: bool = True, timestamp: Any = None, packet: Any = None,
            audio: bool = False,
        ) -> None:  # fmt: skip
            if frame is not None and not audio:
                self.on_buffer(frame, timestamp)

    return CallbackOutput


def yuv420_frame(buffer: Any, size: tuple[int, int], stride: int) -> av.VideoFrame:
    """A yuv420p frame copied from a camera's YUV420 buffer (planar, rows ``stride`` wide)."""
    width, height = size
    flat = np.frombuffer(buffer, dtype=np.uint8)
    luma, chroma = stride * height, (stride // 2) * (height // 2)
    planes = (
        flat[:luma].reshape(height, stride)[:, :width],
        flat[luma : luma + chroma].reshape(height // 2, stride // 2)[:, : width // 2],
        flat[luma + chroma : luma + 2 * chroma].reshape(height // 2, stride // 2)[:, : width // 2],
    )
    frame = av.VideoFrame(width, height, "yuv420p")
    for index, plane in enumerate(planes):
        plane_view(frame, index)[...] = plane
    return frame


class CameraClock:
    """90 kHz pts from an encoder's microsecond timestamps.

    An encoder (or camera) that restarts starts its timestamps again at 0: the pts then
    go on from the last one, plus the time that passed since it (at least one frame), so
    they keep increasing and a pause shows. Used from one thread at a time.
    """

    def __init__(self, fps: float) -> None:
        self.step = round(90000 / fps)
        self._base = 0
        self._last: int | None = None
        self._last_at = 0.0

    def pts(self, timestamp_us: int | None) -> int:
        now = time.monotonic()
        if timestamp_us is None:
            timestamp_us = round(now * 1_000_000)
        pts = self._base + timestamp_us * 9 // 100
        if self._last is not None and pts <= self._last:
            gap = max(self.step, round((now - self._last_at) * 90000))
            self._base += self._last + gap - pts
            pts = self._last + gap
        self._last, self._last_at = pts, now
        return pts
