"""VP8 for the viewers that cannot take H.264, from one more encode per stream.

:class:`Vp8Fanout` is a second fan-out of a published video: it reads what the stream's
H.264 fan-out reads (a :class:`FrameTap` the H.264 fan-out feeds), encodes it once with
libvpx (edged.media.encoders.vp8) and sends it to every VP8 viewer the way the H.264
fan-out sends to its own. A camera's own H.264 is decoded and encoded once for all VP8
viewers. While no VP8 viewer watches, the tap takes nothing and nothing is encoded.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

import av

from ..encoders.vp8 import Vp8Encoder, is_vp8_keyframe
from ..h264 import is_keyframe
from .fanout import EncodedFanout, EncodedVideoFanout

PACKET_BACKLOG = 15
"""H.264 packets the tap holds for the VP8 encoder before it gives up on them (they
depend on each other: it then waits for the camera's next keyframe)."""


class Tapped:
    """An item of the H.264 fan-out's source on its way to the VP8 encoder; never an
    ``av.Packet`` itself, so the fan-out encodes it rather than passing it through."""

    __slots__ = ("item",)

    def __init__(self, item: Any) -> None:
        self.item = item


class FrameTap:
    """The H.264 fan-out's input, kept for the VP8 encoder while ``wanted()``.

    Frames: only the latest waits (a slow encoder skips frames, never falls behind).
    Packets: every one from a keyframe on, in order (``on_start`` asks for that keyframe);
    too many waiting drops them all and waits for the next keyframe.
    """

    def __init__(self, wanted: Callable[[], bool], on_start: Callable[[], object]) -> None:
        self._wanted = wanted
        self._on_start = on_start
        self._items: collections.deque[Any] = collections.deque()
        self._ready = asyncio.Event()
        self._closed = False
        self._synced = False

    def __call__(self, item: Any) -> None:
        if not self._wanted():
            self._items.clear()
            self._synced = False
            return
        if isinstance(item, av.Packet):
            if not self._synced:
                if not is_keyframe(bytes(item)):
                    self._on_start()
                    return
                self._synced = True
            if len(self._items) >= PACKET_BACKLOG:
                self._items.clear()
                self._synced = False
                return
        else:
            self._items.clear()
        self._items.append(item)
        self._ready.set()

    def __aiter__(self) -> FrameTap:
        return self

    async def __anext__(self) -> Tapped:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return Tapped(self._items.popleft())

    def close(self) -> None:
        self._closed = True
        self._ready.set()


class Vp8Fanout(EncodedFanout):
    """One VP8 stream for many viewers, encoded from what ``video`` (the stream's H.264
    fan-out) reads."""

    mime_type = "video/VP8"
    is_keyframe = staticmethod(is_vp8_keyframe)

    def __init__(
        self,
        video: EncodedVideoFanout,
        queue_size: int = 15,
        keyframe_min_interval: float = 0.5,
        direct_send: bool = True,
    ) -> None:
        settings = video.settings
        self.tap = FrameTap(
            wanted=lambda: bool(self.viewers), on_start=lambda: video.request_keyframe("vp8")
        )
        video.taps.append(self.tap)
        self._video = video
        super().__init__(
            self.tap,
            lambda: Vp8Encoder(settings.bitrate, settings.keyframe_interval, settings.framerate),
            queue_size,
            keyframe_min_interval,
            True,
            direct_send,
        )

    async def _encode(self, frame: Any) -> list[av.Packet[Any]]:
        return await super()._encode(frame.item if isinstance(frame, Tapped) else frame)

    async def close(self) -> None:
        if self.tap in self._video.taps:
            self._video.taps.remove(self.tap)
        self.tap.close()
        await super().close()
