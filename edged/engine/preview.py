"""Local preview: the camera's frames handed to a local sink, publishing or not."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError

from ..media.sinks.frame_queue import FrameQueueTrack
from ..media.sinks.preview_decoder import PacketDecoder
from ..media.sources.tap import SourceTap
from .config import EngineProfile, VideoConfig
from .player import MediaSink


class Preview:
    """Owns the preview sink's track, the decoder of a pass-through source while it is
    watched, and, when nothing publishes, a capture of its own.

    While a stream is published the preview watches that stream's capture (one camera,
    opened once); otherwise it opens the source itself and releases it when a publisher
    takes over or the preview stops. A source that hands out H.264 access units is
    decoded for the preview alone; the publishing path never decodes.
    """

    def __init__(self, sink: MediaSink, profile: EngineProfile, video: VideoConfig) -> None:
        self.sink = sink
        self.profile = profile
        self.video = video
        self.track = FrameQueueTrack("video", maxsize=2)
        self.frames = 0
        self.decoder: PacketDecoder | None = None
        self._tap: SourceTap | None = None
        self._own: SourceTap | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        sink.attach(self.track)

    def _observe(self, item: Any) -> None:
        if not isinstance(item, av.Packet):
            self._show(item)
            return
        if self.decoder is None:
            tap = self._tap or self._own
            self.decoder = PacketDecoder(self._show, tap.request_keyframe if tap else None)
        self.decoder.push(item)

    def _show(self, frame: Any) -> None:
        self.frames += 1
        self.track.put(frame)

    def follow(self, tap: SourceTap | None) -> None:
        """Watch ``tap`` (a publisher's capture), or capture alone when None."""
        if tap is self._tap and (tap is not None or self._own is not None):
            return  # already watching it
        if self._tap is not None and self._observe in self._tap.observers:
            self._tap.observers.remove(self._observe)
        self._drop_decoder()  # another stream: start again at its keyframe
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

    def _drop_decoder(self) -> None:
        decoder, self.decoder = self.decoder, None
        if decoder is not None:
            task = asyncio.get_running_loop().create_task(decoder.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

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
        decoder, self.decoder = self.decoder, None
        if decoder is not None:
            await decoder.close()
        if self._closing:
            await asyncio.gather(*self._closing)
        self.track.stop()
        await self.sink.close()
