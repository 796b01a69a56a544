"""A tap between a capture source and the encoder: counts, first frame, mute."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import av
from aiortc.mediastreams import MediaStreamTrack

from .mute import PacketMute, silenced


class SourceTap(MediaStreamTrack):
    """Reads one source track and passes its frames on.

    Owns the frame counter, the first-frame notification, the observers that see every
    captured frame or access unit (preview, snapshots) and the mute switch: while muted,
    video frames become black and audio frames silent, with the same size, format and
    timestamps, so the encoder and the viewers keep running; a pass-through H.264 source
    is replaced by a black picture a few times a second and, on unmute, resumes at a
    keyframe asked of the source (:class:`~edged.media.sources.mute.PacketMute`).
    """

    def __init__(
        self, source: MediaStreamTrack, on_first_frame: Callable[[], None] | None = None
    ) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self.frames = 0
        self.first_frame_at: float | None = None
        self.width = 0
        self.height = 0
        self._muted = False
        self._on_first_frame = on_first_frame
        self._blank: Any = None
        self.packet_mute = PacketMute(self.request_keyframe, self._source_size)
        self.observers: list[Callable[[Any], None]] = []
        self.last_frame: Any = None  # a reference only: snapshots convert it on demand

    @property
    def muted(self) -> bool:
        return self._muted

    @muted.setter
    def muted(self, muted: bool) -> None:
        self._muted = muted
        if self.kind == "video":
            self.packet_mute.muted = muted

    async def recv(self) -> Any:
        while True:
            item = await self.source.recv()
            self.frames += 1
            if self.first_frame_at is None:
                self.first_frame_at = time.monotonic()
                if self._on_first_frame is not None:
                    self._on_first_frame()
            if isinstance(item, av.VideoFrame):
                self.width, self.height = item.width, item.height
                self.last_frame = item
            for observe in self.observers:
                observe(item)
            if isinstance(item, av.Packet):
                if self.kind != "video":
                    return item
                out = await self.packet_mute.filter(item)
                if out is not None:
                    return out
            elif self._muted:
                self._blank = silenced(item, self._blank)
                return self._blank
            else:
                return item

    def request_keyframe(self) -> None:
        """Forward to a source that encodes by itself (a camera's hardware encoder)."""
        forward = getattr(self.source, "request_keyframe", None)
        if forward is not None:
            forward()

    def set_bitrate(self, bitrate: int) -> int:
        """Forward to a source that encodes by itself; returns the bitrate it took."""
        forward = getattr(self.source, "set_bitrate", None)
        return int(forward(bitrate)) if forward is not None else bitrate

    def _source_size(self) -> tuple[int, int] | None:
        width, height = getattr(self.source, "width", 0), getattr(self.source, "height", 0)
        return (int(width), int(height)) if width and height else None

    def stop(self) -> None:
        self.source.stop()
        super().stop()
