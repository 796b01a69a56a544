"""A track fed frame by frame: received frames handed to a sink that reads a track."""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack


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
