"""Decoding a pass-through H.264 stream for a local preview, only while one is watching.

A source that hands out H.264 access units (a camera's hardware encoder, an H.264
camera, a file) is never decoded on the way to the viewers. A local preview wants
pictures, so :class:`PacketDecoder` decodes for it alone: made when a preview sees its
first access unit, closed with the preview.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import av

from ..h264 import is_keyframe

log = logging.getLogger("edged.media.preview")

THREAD_NAME = "edged-preview-decoder"


class PacketDecoder:
    """Decodes access units handed to :meth:`push` and gives the frames to ``on_frame``.

    Owns one H.264 decoder, the thread it runs in, a bounded queue of access units and
    the task feeding the decoder. Decoding starts at a keyframe (``request_keyframe`` is
    called once when the first unit is not one); when it falls behind, the queued units
    are dropped and it waits for the next keyframe, so the preview lags by at most
    ``queue_size`` pictures. Frames reach ``on_frame`` on the event loop.
    """

    def __init__(
        self,
        on_frame: Callable[[av.VideoFrame], None],
        request_keyframe: Callable[[], None] | None = None,
        queue_size: int = 4,
    ) -> None:
        self.decoded = 0
        self.dropped = 0
        self._on_frame = on_frame
        self._request_keyframe = request_keyframe
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(queue_size)
        self._awaiting_keyframe = True
        self._asked = False
        self._codec: Any = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=THREAD_NAME)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=THREAD_NAME)

    def push(self, packet: av.Packet[Any]) -> None:
        """Offer one access unit; never blocks (drops instead)."""
        data = bytes(packet)
        keyframe = is_keyframe(data)
        if self._queue.full():
            while not self._queue.empty():
                self._queue.get_nowait()
                self.dropped += 1
            self._awaiting_keyframe = True
        if self._awaiting_keyframe and not keyframe:
            self.dropped += 1
            if not self._asked and self._request_keyframe is not None:
                self._asked = True
                self._request_keyframe()
            return
        self._awaiting_keyframe = False
        self._queue.put_nowait(data)

    async def close(self) -> None:
        """Stop decoding and release the decoder and its thread."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await self._queue.get()
            frames = await loop.run_in_executor(self._executor, self._decode, data)
            for frame in frames:
                self.decoded += 1
                self._on_frame(frame)

    def _decode(self, data: bytes) -> list[av.VideoFrame]:
        """In the decoder's thread: the frames of one access unit (none on a bad one)."""
        if self._codec is None:
            self._codec = av.CodecContext.create("h264", "r")
            self._codec.thread_count = 1
        try:
            return list(self._codec.decode(av.Packet(data)))
        except (av.FFmpegError, ValueError) as exc:
            log.debug("preview decoding failed: %s", exc)
            self._codec = None
            self._awaiting_keyframe = True
            return []
