"""A tap between a capture source and the encoder: counts, first frame, mute."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack


class SourceTap(MediaStreamTrack):
    """Reads one source track and passes its frames on.

    Owns the frame counter, the first-frame notification, the observers that see every
    captured frame (preview, snapshots) and the mute switch: while
    muted, video frames become black and audio frames silent, with the same size, format
    and timestamps, so the encoder and the viewers keep running.
    """

    def __init__(
        self, source: MediaStreamTrack, on_first_frame: Callable[[], None] | None = None
    ) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self.frames = 0
        self.first_frame_at: float | None = None
        self.muted = False
        self.width = 0
        self.height = 0
        self._on_first_frame = on_first_frame
        self._blank: Any = None
        self.observers: list[Callable[[Any], None]] = []
        self.last_frame: Any = None  # a reference only: snapshots convert it on demand

    async def recv(self) -> Any:
        frame = await self.source.recv()
        self.frames += 1
        if self.first_frame_at is None:
            self.first_frame_at = time.monotonic()
            if self._on_first_frame is not None:
                self._on_first_frame()
        if isinstance(frame, av.VideoFrame):
            self.width, self.height = frame.width, frame.height
            self.last_frame = frame
        for observe in self.observers:
            observe(frame)
        if self.muted:
            return self._silenced(frame)
        return frame

    def request_keyframe(self) -> None:
        """Forward to a source that encodes by itself (a camera's hardware encoder)."""
        forward = getattr(self.source, "request_keyframe", None)
        if forward is not None:
            forward()

    def set_bitrate(self, bitrate: int) -> int:
        """Forward to a source that encodes by itself; returns the bitrate it took."""
        forward = getattr(self.source, "set_bitrate", None)
        return int(forward(bitrate)) if forward is not None else bitrate

    def _silenced(self, frame: Any) -> Any:
        if isinstance(frame, av.VideoFrame):
            blank = self._blank
            if blank is None or (blank.width, blank.height) != (frame.width, frame.height):
                blank = self._blank = _black_frame(frame.width, frame.height)
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

    def stop(self) -> None:
        self.source.stop()
        super().stop()


def _black_frame(width: int, height: int) -> av.VideoFrame:
    planes = np.zeros((height * 3 // 2, width), dtype=np.uint8)
    planes[height:, :] = 128
    return av.VideoFrame.from_ndarray(planes, format="yuv420p")


class FrameQueueTrack(MediaStreamTrack):
    """A track fed by :meth:`put`: hands received frames to a sink that reads a track.

    Owns a small bounded queue; when the sink falls behind the oldest frame is dropped
    (latency over completeness) and counted.
    """

    def __init__(self, kind: str, maxsize: int = 30) -> None:
        super().__init__()
        self.kind = kind
        self.dropped = 0
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)

    def put(self, frame: Any) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(frame)

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._queue.get()
        if frame is None:
            raise MediaStreamError
        return frame

    def stop(self) -> None:
        if self.readyState == "live":
            self.put(None)
        super().stop()
