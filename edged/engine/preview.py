"""Local preview: the camera's frames handed to a local sink, publishing or not."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiortc.mediastreams import MediaStreamError

from ..media.tap import FrameQueueTrack, SourceTap
from .config import EngineProfile, VideoConfig
from .player import MediaSink


class Preview:
    """Owns the preview sink's track and, when nothing publishes, a capture of its own.

    While a stream is published the preview watches that stream's capture (one camera,
    opened once); otherwise it opens the source itself and releases it when a publisher
    takes over or the preview stops.
    """

    def __init__(self, sink: MediaSink, profile: EngineProfile, video: VideoConfig) -> None:
        self.sink = sink
        self.profile = profile
        self.video = video
        self.track = FrameQueueTrack("video", maxsize=2)
        self.frames = 0
        self._tap: SourceTap | None = None
        self._own: SourceTap | None = None
        self._reader: asyncio.Task[None] | None = None
        sink.attach(self.track)

    def _observe(self, frame: Any) -> None:
        self.frames += 1
        self.track.put(frame)

    def follow(self, tap: SourceTap | None) -> None:
        """Watch ``tap`` (a publisher's capture), or capture alone when None."""
        if self._tap is not None and self._observe in self._tap.observers:
            self._tap.observers.remove(self._observe)
        self._tap = tap
        if tap is not None:
            self._stop_own()
            tap.observers.append(self._observe)
        elif self._own is None:
            self._own = SourceTap(self.profile.video_source(self.video))
            self._own.observers.append(self._observe)
            self._reader = asyncio.create_task(self._read(self._own))

    async def _read(self, tap: SourceTap) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await tap.recv()

    def _stop_own(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if self._own is not None:
            self._own.stop()
            self._own = None

    async def close(self) -> None:
        if self._tap is not None and self._observe in self._tap.observers:
            self._tap.observers.remove(self._observe)
        self._tap = None
        self._stop_own()
        self.track.stop()
        await self.sink.close()
