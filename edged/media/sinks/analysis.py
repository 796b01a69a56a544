"""Sinks that consume received tracks and measure them: time codes in video, tones in audio."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..frames import plane_view
from ..sources import tone
from ..sources.timecode import decode, sequence_gap, wall_clock_ms

_LUMA_FIRST_FORMATS = frozenset(
    {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"}
)
_SAMPLE_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "flt": 1.0, "dbl": 1.0}


def luma_plane(frame: av.VideoFrame) -> npt.NDArray[np.uint8]:
    """The frame's luma as a 2-D uint8 array (a view of plane 0 for 8-bit YUV formats)."""
    if frame.format.name in _LUMA_FIRST_FORMATS:
        return plane_view(frame, 0)
    return np.asarray(frame.to_ndarray(format="gray"), dtype=np.uint8)


def audio_frame_samples(frame: av.AudioFrame) -> npt.NDArray[np.float64]:
    """The frame's samples as mono float64 in -1..1 (channels averaged)."""
    data = frame.to_ndarray()
    channels = frame.layout.nb_channels
    base = frame.format.name.rstrip("p")
    values = data.astype(np.float64)
    if base == "u8":
        values -= 128.0
    values /= _SAMPLE_SCALE.get(base, 1.0)
    if frame.format.is_planar:
        mono: npt.NDArray[np.float64] = values.mean(axis=0)
    else:
        mono = values.reshape(-1, channels).mean(axis=1)
    return mono


class _TrackReader:
    """Owns one task that reads ``track`` until it ends or the reader is closed."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.frames_received = 0
        self.ended = asyncio.Event()
        """Set when the track has ended or the reader was closed."""
        self._task: asyncio.Task[None] | None = None
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    def start(self) -> None:
        """Start reading (needs a running event loop); idempotent."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop reading and wait for the task to finish; the track is left alone."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._finish()

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _until(self, condition: Callable[[], bool]) -> bool:
        if not condition() and not self.ended.is_set():
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (condition, future)
            self._waiters.append(entry)
            try:
                await future
            finally:
                self._waiters.remove(entry)
        return condition()

    async def _run(self) -> None:
        try:
            while True:
                try:
                    frame = await self.track.recv()
                except MediaStreamError:
                    break
                self.frames_received += 1
                self._on_frame(frame)
                self._wake(ended=False)
        finally:
            self._finish()

    def _on_frame(self, frame: object) -> None:
        raise NotImplementedError

    def _wake(self, *, ended: bool) -> None:
        for condition, future in list(self._waiters):
            if not future.done() and (ended or condition()):
                future.set_result(None)

    def _finish(self) -> None:
        self.ended.set()
        self._wake(ended=True)


@dataclass(frozen=True, slots=True)
class CodeObservation:
    """One received frame whose time code was read."""

    sequence: int
    capture_ms: int
    arrival_ms: int
    width: int
    height: int

    @property
    def latency_ms(self) -> int:
        """Arrival minus capture, both on the wall clock."""
        return self.arrival_ms - self.capture_ms


@dataclass(frozen=True, slots=True)
class VideoCodeStats:
    """Totals since the sink started, and latency over the retained observations."""

    frames: int
    decoded: int
    undecoded: int
    missing: int
    """Sequence numbers skipped between decoded frames."""
    out_of_order: int
    duplicates: int
    latency_p50_ms: float
    latency_p95_ms: float
    latency_max_ms: float


class VideoCodeSink(_TrackReader):
    """Reads a video track and records each frame's time code; owns the reading task.

    Keeps the newest ``max_records`` observations and running totals of decoded,
    undecoded, missing, reordered and duplicated frames.
    """

    def __init__(
        self,
        track: MediaStreamTrack,
        *,
        max_records: int = 100_000,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        super().__init__(track)
        self.observations: collections.deque[CodeObservation] = collections.deque(
            maxlen=max_records
        )
        self._clock = clock
        self.decoded = 0
        self.undecoded = 0
        self.missing = 0
        self.out_of_order = 0
        self.duplicates = 0
        self._last_sequence: int | None = None

    async def wait_for_codes(self, count: int) -> bool:
        """Wait until ``count`` codes were decoded; False if the track ended first.

        Bound the wait with ``asyncio.timeout``.
        """
        return await self._until(lambda: self.decoded >= count)

    def _on_frame(self, frame: object) -> None:
        arrival = self._clock()
        if not isinstance(frame, av.VideoFrame):
            return
        code = decode(luma_plane(frame))
        if code is None:
            self.undecoded += 1
            return
        self.decoded += 1
        gap = 0 if self._last_sequence is None else sequence_gap(self._last_sequence, code.sequence)
        if gap >= 0:
            self.missing += gap
            self._last_sequence = code.sequence
        elif gap == -1:
            self.duplicates += 1
        else:
            self.out_of_order += 1
        self.observations.append(
            CodeObservation(code.sequence, code.capture_ms, arrival, frame.width, frame.height)
        )

    def stats(self) -> VideoCodeStats:
        """Current totals and latency percentiles."""
        latencies = np.array([o.latency_ms for o in self.observations], dtype=np.float64)
        if latencies.size:
            p50, p95 = np.percentile(latencies, [50, 95])
            worst = float(latencies.max())
        else:
            p50 = p95 = worst = math.nan
        return VideoCodeStats(
            frames=self.frames_received,
            decoded=self.decoded,
            undecoded=self.undecoded,
            missing=self.missing,
            out_of_order=self.out_of_order,
            duplicates=self.duplicates,
            latency_p50_ms=float(p50),
            latency_p95_ms=float(p95),
            latency_max_ms=worst,
        )


class AudioToneSink(_TrackReader):
    """Reads an audio track and keeps its newest samples as mono float; owns the reading task.

    At most ``keep_seconds`` of audio is retained. The sample rate is taken from the
    frames; if it changes, older samples are dropped.
    """

    def __init__(self, track: MediaStreamTrack, *, keep_seconds: float = 10.0) -> None:
        super().__init__(track)
        self.keep_seconds = keep_seconds
        self.sample_rate: int | None = None
        self.samples_received = 0
        self._chunks: collections.deque[npt.NDArray[np.float64]] = collections.deque()
        self._kept = 0

    @property
    def seconds_received(self) -> float:
        """Audio received so far, in seconds."""
        return self.samples_received / self.sample_rate if self.sample_rate else 0.0

    async def wait_for_seconds(self, seconds: float) -> bool:
        """Wait until ``seconds`` of audio arrived; False if the track ended first.

        Bound the wait with ``asyncio.timeout``.
        """
        return await self._until(lambda: self.seconds_received >= seconds)

    def samples(self, seconds: float | None = None) -> npt.NDArray[np.float64]:
        """The newest ``seconds`` of retained audio (all of it by default)."""
        if not self._chunks:
            return np.zeros(0, dtype=np.float64)
        joined = np.concatenate(list(self._chunks))
        if seconds is not None and self.sample_rate:
            joined = joined[-max(1, round(seconds * self.sample_rate)) :]
        return joined

    def dominant_frequency(self, seconds: float = 1.0) -> float:
        """Strongest frequency in the newest ``seconds``; 0.0 before any audio."""
        return tone.dominant_frequency(self.samples(seconds), self.sample_rate or 1)

    def measure(self, frequency: float, seconds: float = 1.0) -> tone.ToneMeasurement:
        """Level, dominant frequency and SNR of ``frequency`` in the newest ``seconds``."""
        return tone.measure_tone(self.samples(seconds), self.sample_rate or 1, frequency)

    def tone_present(
        self, frequency: float, seconds: float = 1.0, *, min_snr_db: float = 20.0
    ) -> bool:
        """Whether ``frequency`` dominates the newest ``seconds`` (see ``tone.tone_present``)."""
        if not self.sample_rate:
            return False
        return tone.tone_present(
            self.samples(seconds), self.sample_rate, frequency, min_snr_db=min_snr_db
        )

    def _on_frame(self, frame: object) -> None:
        if not isinstance(frame, av.AudioFrame):
            return
        if frame.sample_rate != self.sample_rate:
            self.sample_rate = frame.sample_rate
            self._chunks.clear()
            self._kept = 0
        mono = audio_frame_samples(frame)
        self.samples_received += mono.size
        self._chunks.append(mono)
        self._kept += mono.size
        limit = max(1, round(self.keep_seconds * frame.sample_rate))
        while self._kept - self._chunks[0].size >= limit:
            self._kept -= self._chunks.popleft().size


class AnalysisSink:
    """A player sink (attach/close) that reads time codes from video and the tone from audio.

    Owns one :class:`VideoCodeSink` and one :class:`AudioToneSink`, made as the tracks
    arrive; used by tests, examples and benchmarks to check what a player received.
    """

    def __init__(self) -> None:
        self.video: VideoCodeSink | None = None
        self.audio: AudioToneSink | None = None

    def attach(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self.video = VideoCodeSink(track)
            self.video.start()
        else:
            self.audio = AudioToneSink(track)
            self.audio.start()

    async def close(self) -> None:
        for sink in (self.video, self.audio):
            if sink is not None:
                await sink.close()
