"""One viewer's end of a fan-out: its bounded queue, or the direct send path once established."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..aiortc.direct_sender import DirectSender
from ..aiortc.sender_hook import SenderHook
from .rtp_frames import RtpFrame

Entry: TypeAlias = "tuple[av.Packet[Any], RtpFrame | None]"
"""A queued access unit, with its shared RTP payloads when the fan-out packed it."""


@dataclass(frozen=True)
class ViewerStats:
    """One viewer's counters (``keyframe_requests``: PLI/FIR from its receiver).

    ``direct`` is True while the fan-out sends this viewer's RTP itself
    (:class:`~edged.media.aiortc.direct_sender.DirectSender`) rather than through the
    queue read by aiortc's sender task; ``retransmits`` counts the packets NACKed by
    the viewer and resent from the fan-out's shared payloads.
    """

    name: str
    sent: int
    dropped: int
    queued: int
    waiting_for_keyframe: bool
    keyframe_requests: int
    remb_bitrate: int | None
    direct: bool = False
    retransmits: int = 0


class ViewerTrack(MediaStreamTrack):
    """One viewer's end of a fan-out: owns a bounded queue of shared encoded packets.

    Its ``recv()`` is read by the viewer's ``RTCRtpSender``, which packs the packets
    without re-encoding them. When ``gated`` (video) the viewer starts at a keyframe;
    on overflow it drops everything queued, skips packets until the next keyframe and
    calls ``on_overflow`` to get one soon. Otherwise overflow drops the queued packets.

    The first ``recv()`` (the sender has started: DTLS is up) asks ``open_direct`` for
    a :class:`DirectSender`. With one, the queued packets and all later ones are sent
    by it at once, from the fan-out's shared RTP payloads, and ``recv()`` just waits for
    the end; should the connection stop being usable, packets go to the queue again and
    aiortc's own path takes over.
    """

    gated = False

    def __init__(
        self,
        name: str,
        maxsize: int,
        on_overflow: Callable[[], object] | None = None,
        on_stop: Callable[[ViewerTrack], None] | None = None,
        open_direct: Callable[[ViewerTrack], DirectSender | None] | None = None,
    ) -> None:
        super().__init__()
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.name = name
        self._queue: asyncio.Queue[Entry | None] = asyncio.Queue(maxsize)
        self._awaiting_keyframe = self.gated
        self._on_overflow = on_overflow
        self._on_stop = on_stop
        self._open_direct = open_direct
        self._reading = False
        self.sender_hook: SenderHook | None = None
        self.direct: DirectSender | None = None
        self.sent = 0
        self.dropped = 0

    def push(self, packet: av.Packet[Any], keyframe: bool, frame: RtpFrame | None = None) -> None:
        """Offer one packet (and its shared RTP payloads); never blocks (drops instead)."""
        if self.readyState != "live":
            return
        if self._awaiting_keyframe and not keyframe:
            self.dropped += 1
            return
        direct = self.direct
        if direct is not None and frame is not None:
            if direct.send(frame):
                self._awaiting_keyframe = False
                self.sent += 1
                return
            self._leave_direct()
        if self._queue.full():
            self.dropped += self._flush()
            if self.gated and not keyframe:
                self.dropped += 1
                self._awaiting_keyframe = True
                if self._on_overflow is not None:
                    self._on_overflow()
                return
        self._awaiting_keyframe = False
        self._queue.put_nowait((packet, frame))

    def end(self) -> None:
        """The source has ended: ``recv()`` raises once the queue is read."""
        if self._queue.full():
            self.dropped += self._flush()
        self._queue.put_nowait(None)

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        if not self._reading:
            self._reading = True
            self._try_direct()
        entry = await self._queue.get()
        if entry is None:
            self.stop()
            raise MediaStreamError
        self.sent += 1
        return entry[0]

    def stop(self) -> None:
        if self.readyState != "live":
            return
        super().stop()
        self._leave_direct()
        self.end()
        if self.sender_hook is not None:
            self.sender_hook.remove()
        if self._on_stop is not None:
            self._on_stop(self)

    def stats(self) -> ViewerStats:
        hook = self.sender_hook
        return ViewerStats(
            name=self.name,
            sent=self.sent,
            dropped=self.dropped,
            queued=self._queue.qsize(),
            waiting_for_keyframe=self._awaiting_keyframe,
            keyframe_requests=hook.keyframe_requests if hook else 0,
            remb_bitrate=hook.remb_bitrate if hook else None,
            direct=self.direct is not None,
            retransmits=hook.retransmits if hook else 0,
        )

    def _try_direct(self) -> None:
        """Hand the sending to a direct sender, if the fan-out can make one now."""
        if self._open_direct is None:
            return
        entries = self._drain()
        if all(entry is not None and entry[1] is not None for entry in entries):
            self.direct = self._open_direct(self)
        for entry in entries:  # in order, through the direct sender when there is one
            if entry is None:
                self._queue.put_nowait(None)
            else:
                self.push(entry[0], True, entry[1])

    def _drain(self) -> list[Entry | None]:
        drained: list[Entry | None] = []
        while not self._queue.empty():
            drained.append(self._queue.get_nowait())
        return drained

    def _leave_direct(self) -> None:
        if self.direct is not None:
            self.direct.close()
            self.direct = None

    def _flush(self) -> int:
        return len(self._drain())


class ViewerVideoTrack(ViewerTrack):
    """A viewer's H.264 track: starts, and resumes after an overflow, at a keyframe."""

    kind = "video"
    gated = True


class ViewerAudioTrack(ViewerTrack):
    """A viewer's Opus track: every packet stands alone, so nothing waits for a keyframe."""

    kind = "audio"
