"""The reader thread of a capture track: open the input, demux, decode or pass through, stamp.

One :class:`CaptureReader` is one run of that thread. It opens the input (retrying with
backoff while it is missing or fails), demuxes it and either passes H.264 through (one
Annex-B access unit per item, SPS/PPS in front of every IDR) or decodes it into frames,
turned as configured and, when the track has an encoder of its own, encoded. Unclocked
inputs are paced from their timestamps on the shared
:class:`~edged.media.sources.timeline.Timeline`. What it finds it tells its
:class:`ReaderEvents` (the track), from its own thread.

A track replaces its reader when the input stalls: the old run is told to stop and,
should its blocked read ever return, closes its input and ends without delivering.
"""

from __future__ import annotations

import contextlib
import errno
import fractions
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import av

from ...backoff import Backoff
from ..device import DeviceCodes, retry_until_stopped
from ..encoders.base import PacketEncoder
from ..h264 import VIDEO_TIME_BASE, ParameterSets
from .capture_input import CaptureInput, Opener, passthrough_refusal
from .orientation import Orientation
from .timeline import Timeline

log = logging.getLogger("edged.media.sources.v4l2")


@dataclass(frozen=True)
class ReaderSetup:
    """What every run of a track's reader reads and how."""

    spec: CaptureInput
    opener: Opener
    codes: DeviceCodes
    orientation: Orientation
    passthrough: bool
    """Whether H.264 input may go to the viewers untouched."""
    new_encoder: Callable[[], PacketEncoder] | None = None
    """The track's own encoder, made by each run on its first frame (None: frames out)."""


class ReaderEvents(Protocol):
    """What a reader tells its track, from the reader's thread."""

    def reader_opened(self, reader: CaptureReader, stream: Any, refusal: str | None) -> None:
        """The input opened; ``refusal`` says why its H.264 does not pass through."""

    def reader_items(self, reader: CaptureReader, items: list[Any]) -> None:
        """Items ready for the viewers (frames or packets, pts in 1/90000)."""

    def reader_failed(self, reader: CaptureReader, code: int, detail: str) -> None:
        """The input failed to open, failed while read, or ended; a retry follows."""


def _packet(data: bytes, pts: int) -> av.Packet[Any]:
    packet = av.Packet(data)
    packet.pts, packet.time_base = pts, VIDEO_TIME_BASE
    return packet


def _seconds(value: int | None, time_base: fractions.Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


class CaptureReader:
    """One run of a capture track's reader thread.

    Owns the thread (which first waits ``delay`` seconds: a restart's backoff), its stop
    event, and the track's own encoder for this run. The :class:`Timeline`, the
    :class:`Backoff` and the lock guarding both are the track's, shared by its runs.
    """

    def __init__(
        self,
        setup: ReaderSetup,
        events: ReaderEvents,
        timeline: Timeline,
        backoff: Backoff,
        lock: threading.Lock,
        delay: float = 0.0,
    ) -> None:
        self.setup = setup
        self.events = events
        self.timeline = timeline
        self.backoff = backoff
        self.lock = lock
        self.delay = delay
        self.encoder: PacketEncoder | None = None
        self.stopping = threading.Event()
        self._encoded = ParameterSets()
        self._segment_items = 0
        name = f"edged-capture-{setup.spec.url}"[:60]
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End this run: at once when it waits, after the read in progress otherwise."""
        self.stopping.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # ---- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self.delay and self.stopping.wait(self.delay):
                return
            retry_until_stopped(self.stopping, self.backoff, self._attempt)
        except Exception as exc:
            log.exception("capture_failed url=%s", self.setup.spec.url)
            self.events.reader_failed(self, self.setup.codes.lost, repr(exc))
        finally:
            if self.encoder is not None:
                self.encoder.close()

    def _attempt(self) -> bool:
        """Open the input and read it to its end; False when it failed (retry later)."""
        codes = self.setup.codes
        try:
            container = self.setup.opener(self.setup.spec)
        except Exception as exc:
            missing = isinstance(exc, FileNotFoundError) or getattr(exc, "errno", None) in (
                errno.ENOENT,
                errno.ENODEV,
            )
            self._failed(codes.not_found if missing else codes.open_failed, exc)
            return False
        try:
            self._read(container)
        except Exception as exc:
            self._failed(codes.open_failed, exc)
            return False
        finally:
            with contextlib.suppress(Exception):
                container.close()
        if self.stopping.is_set():
            return True
        if self.setup.spec.loop and self._segment_items:
            with self.lock:
                self.timeline.next_segment(continuous=True)
            return True
        self._failed(codes.open_failed, EOFError("the input ended"))
        return False

    def _failed(self, code: int, exc: BaseException) -> None:
        if not self.stopping.is_set():
            self.events.reader_failed(self, code, str(exc) or repr(exc))

    def _read(self, container: Any) -> None:
        """Demux one opened input to its end (or until stopped)."""
        self._segment_items = 0
        streams = container.streams.video
        if not streams:
            raise ValueError("the input has no video stream")
        stream = streams[0]
        refusal = passthrough_refusal(stream) if self.setup.passthrough else None
        passing = self.setup.passthrough and refusal is None
        self.events.reader_opened(self, stream, refusal)
        reader = self._access_units if passing else self._frames
        clocked = self.setup.spec.clocked
        rate = float(stream.average_rate or stream.guessed_rate or 30)
        for index, (seconds, item) in enumerate(reader(stream, container)):
            if seconds is None and not clocked:
                seconds = index / rate  # a raw stream without timestamps: its frame rate
            with self.lock:
                if self.stopping.is_set():
                    return
                out = self.timeline.place(seconds)
            if not clocked and self.stopping.wait(self.timeline.wait(out)):
                return
            ready = self._stamp(item, out)
            if ready:
                self._segment_items += len(ready)
                self.events.reader_items(self, ready)

    def _access_units(self, stream: Any, container: Any) -> Iterator[tuple[float | None, Any]]:
        """H.264 access units (Annex-B bytes) with their time in the input."""
        avcc = bytes(stream.codec_context.extradata or b"")[:1] == b"\x01"
        bsf = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", stream) if avcc else None
        keeper = ParameterSets()
        for packet in container.demux(stream):
            if not packet.size:
                continue
            for unit in bsf.filter(packet) if bsf is not None else (packet,):
                data = keeper.complete(bytes(unit))
                if data is not None:
                    yield _seconds(unit.pts, stream.time_base), data

    def _frames(self, stream: Any, container: Any) -> Iterator[tuple[float | None, Any]]:
        """Decoded frames, turned, with their time in the input."""
        for packet in container.demux(stream):
            for frame in packet.decode():
                seconds = _seconds(frame.pts, frame.time_base or stream.time_base)
                yield seconds, self.setup.orientation.apply(frame)

    def _stamp(self, item: Any, out_s: float) -> list[Any]:
        """The item as delivered: pts in 1/90000; frames through the own encoder if any."""
        pts = round(out_s * VIDEO_TIME_BASE.denominator)
        if isinstance(item, bytes):
            return [_packet(item, pts)]
        item.pts, item.time_base = pts, VIDEO_TIME_BASE
        if self.setup.new_encoder is None:
            return [item]
        if self.encoder is None:
            self.encoder = self.setup.new_encoder()
        packets = []
        for packet in self.encoder.encode(item):
            data = self._encoded.complete(bytes(packet))
            if data is not None:
                packets.append(_packet(data, pts if packet.pts is None else packet.pts))
        return packets
