"""A tap between a capture source and the encoder: counts, first frame, mute."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import av
from aiortc.mediastreams import MediaStreamTrack

from ..device import ErrorCallback
from .base import Capabilities, SourceTrack, capabilities_of
from .mute import PacketMute, silenced


class SourceTap(SourceTrack):
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

    @property
    def capabilities(self) -> Capabilities:
        """What its source can do."""
        return capabilities_of(self.source)

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """The size of the frames seen, else what the source says."""
        if self.width and self.height:
            return self.width, self.height
        return self._source_size()

    def request_keyframe(self) -> None:
        """Forward to the source (one that encodes by itself makes an IDR)."""
        if isinstance(self.source, SourceTrack):
            self.source.request_keyframe()

    def set_bitrate(self, bitrate: int) -> int:
        """Forward to the source (one that encodes by itself retargets its encoder);
        returns the bitrate it took."""
        if isinstance(self.source, SourceTrack):
            return self.source.set_bitrate(bitrate)
        return bitrate

    def snapshot_jpeg(self, max_width: int = 640) -> bytes:
        """The source's own snapshot (with ``capabilities.snapshot``)."""
        if not isinstance(self.source, SourceTrack):
            return super().snapshot_jpeg(max_width)
        return self.source.snapshot_jpeg(max_width)

    def report_device_errors(self, on_error: ErrorCallback) -> None:
        """Have a source with ``device_errors`` report them to ``on_error``."""
        if isinstance(self.source, SourceTrack) and self.source.capabilities.device_errors:
            self.source.on_error = on_error

    def _source_size(self) -> tuple[int, int] | None:
        return self.source.frame_size if isinstance(self.source, SourceTrack) else None

    def stop(self) -> None:
        self.source.stop()
        super().stop()
