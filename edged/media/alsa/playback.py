"""The speaker: played streams' audio mixed onto one ALSA playback device."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import threading

import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ...errors import ErrorCode
from ..device import DeviceCodes, ErrorCallback
from ..frames import audio_resampler
from .intercom import Intercom, queued_s
from .pcm import (
    RETRY,
    AlsaApi,
    Pcm,
    PcmFormat,
    PcmSettings,
    PcmStatus,
    PcmWorker,
    is_xrun,
)

SPEAKER_CODES = DeviceCodes(
    ErrorCode.SPEAKER_NOT_FOUND, ErrorCode.SPEAKER_OPEN_FAILED, ErrorCode.SPEAKER_LOST
)
JOIN_TIMEOUT = 2.0
"""How long :meth:`AlsaPlaybackSink.close` waits for the writer to release the device."""

Samples = npt.NDArray[np.int16]


class StreamBuffer:
    """One played stream's samples on their way to the speaker, shared with the writer.

    Owns a bounded queue of interleaved s16 samples at the mixer's format. Beyond
    ``capacity`` frames the oldest are dropped (latency over completeness). The stream
    joins the mix once it holds ``prebuffer`` frames, and after running dry waits until
    it holds them again, so a late packet costs one gap instead of a stutter.
    """

    def __init__(self, mixer: Mixer) -> None:
        self._mixer = mixer
        self._chunks: collections.deque[Samples] = collections.deque()
        self._size = 0
        self._primed = False
        self.ended = False

    def push(self, samples: Samples) -> None:
        """Queue ``(frames, channels)`` samples; samples of another channel count are stale."""
        mixer = self._mixer
        with mixer.lock:
            if samples.ndim != 2 or samples.shape[1] != mixer.channels:
                return
            self._chunks.append(samples)
            self._size += len(samples)
            excess = self._size - mixer.capacity
            while excess > 0:
                head = self._chunks[0]
                cut = min(excess, len(head))
                if cut == len(head):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = head[cut:]
                self._size -= cut
                excess -= cut
                mixer.dropped_frames += cut

    def pull(self, frames: int) -> Samples | None:
        """The next ``frames`` frames (zero-padded), or None while (re)filling. Caller locks."""
        mixer = self._mixer
        if not self._primed:
            if self._size < mixer.prebuffer and not (self.ended and self._size):
                return None
            self._primed = True
        out = np.zeros((frames, mixer.channels), dtype=np.int16)
        filled = 0
        while filled < frames and self._chunks:
            head = self._chunks[0]
            take = min(frames - filled, len(head))
            out[filled : filled + take] = head[:take]
            if take == len(head):
                self._chunks.popleft()
            else:
                self._chunks[0] = head[take:]
            filled += take
            self._size -= take
        if filled < frames:
            self._primed = False
            if not self.ended:
                mixer.starved += 1
        return out

    def clear(self) -> None:
        """Forget the queued samples. Caller locks."""
        self._chunks.clear()
        self._size = 0
        self._primed = False

    def end(self) -> None:
        """The stream ended: play what is queued, then leave the mix."""
        with self._mixer.lock:
            self.ended = True

    @property
    def finished(self) -> bool:
        return self.ended and self._size == 0


class Mixer:
    """Owns the played streams' buffers and sums them into the speaker's periods.

    Counts ``dropped_frames`` (queued audio dropped because a stream ran ahead of the
    speaker) and ``starved`` (times a playing stream ran dry: a gap of silence).
    """

    def __init__(
        self,
        rate: int,
        channels: int,
        period_frames: int,
        buffer_ms: float,
        prebuffer_ms: float | None = None,
    ) -> None:
        if buffer_ms <= 0:
            raise ValueError("buffer_ms must be positive")
        self.lock = threading.Lock()
        self.buffer_ms = buffer_ms
        self.prebuffer_ms = prebuffer_ms
        self.rate = rate
        self.channels = channels
        self.capacity = 0
        self.prebuffer = 0
        self.dropped_frames = 0
        self.starved = 0
        self._streams: list[StreamBuffer] = []
        self._size(period_frames)

    def _size(self, period_frames: int) -> None:
        self.capacity = max(1, round(self.rate * self.buffer_ms / 1000))
        if self.prebuffer_ms is None:
            self.prebuffer = min(self.capacity // 2, 2 * period_frames)
        else:
            self.prebuffer = min(self.capacity, round(self.rate * self.prebuffer_ms / 1000))

    def set_format(self, fmt: PcmFormat) -> None:
        """The device runs at ``fmt``: size the buffers for it (dropping queued audio if
        its rate or channels changed)."""
        with self.lock:
            changed = (fmt.rate, fmt.audio_channels) != (self.rate, self.channels)
            self.rate, self.channels = fmt.rate, fmt.audio_channels
            self._size(fmt.period_frames)
            if changed:
                for stream in self._streams:
                    stream.clear()

    def add_stream(self) -> StreamBuffer:
        stream = StreamBuffer(self)
        with self.lock:
            self._streams.append(stream)
        return stream

    @property
    def streams(self) -> int:
        """Streams in the mix (playing or filling)."""
        with self.lock:
            return len(self._streams)

    def mix(self, frames: int) -> bytes:
        """The next ``frames`` frames of all streams summed (clipped), silence if none."""
        total: npt.NDArray[np.int32] | None = None
        with self.lock:
            for stream in list(self._streams):
                part = stream.pull(frames)
                if stream.finished:
                    self._streams.remove(stream)
                if part is None:
                    continue
                total = part.astype(np.int32) if total is None else total + part
            channels = self.channels
        if total is None:
            return bytes(frames * channels * 2)
        return np.clip(total, -32768, 32767).astype(np.int16).tobytes()

    def clear(self) -> None:
        with self.lock:
            self._streams.clear()


class _PlaybackWorker(PcmWorker):
    """Writes mixed periods to the playback PCM; an underrun is counted and the period
    written again."""

    stream_type = "playback"

    def __init__(
        self,
        mixer: Mixer,
        settings: PcmSettings,
        alsa: AlsaApi | None,
        on_error: ErrorCallback | None,
        retry: tuple[float, float],
        intercom: Intercom | None,
    ) -> None:
        super().__init__(settings, SPEAKER_CODES, alsa=alsa, on_error=on_error, retry=retry)
        self.mixer = mixer
        self.intercom = intercom
        self.underruns = 0
        self.periods_written = 0

    def opened(self, fmt: PcmFormat) -> None:
        self.mixer.set_format(fmt)

    def transfer(self, pcm: Pcm, fmt: PcmFormat) -> bool:
        data = self.mixer.mix(fmt.period_frames)
        intercom = self.intercom
        if intercom is not None:
            mixed = np.frombuffer(data, dtype=np.int16).reshape(-1, fmt.audio_channels)
            mixed = intercom.speaker(mixed)
            data = mixed.tobytes()
        if fmt.channels != fmt.audio_channels:  # silence on the device's extra channels
            wide = np.zeros((fmt.period_frames, fmt.channels), dtype=np.int16)
            wide[:, : fmt.audio_channels] = np.frombuffer(data, dtype=np.int16).reshape(
                fmt.period_frames, fmt.audio_channels
            )
            data = wide.tobytes()
        for _ in range(2):
            try:
                written = pcm.write(data)
            except self.alsa.ALSAAudioError as exc:  # pyalsaaudio 0.10 raises on underrun
                if not is_xrun(exc):
                    raise
                written = -errno.EPIPE
            if written >= 0:
                self.periods_written += 1
                if intercom is not None:
                    ahead = queued_s(pcm, fmt, playback=True) - fmt.period_s
                    intercom.played(mixed, fmt.rate, ahead)
                return True
            self.underruns += 1
        return False


class AlsaPlaybackSink(PcmStatus):
    """The speaker: every attached audio track, mixed, on one ALSA playback device.

    Owns the device writer (a :class:`PcmWorker` thread writing one mixed period at a
    time, started by the first :meth:`attach`), the :class:`Mixer` with one small bounded
    buffer per played stream, and one reader task per attached track that resamples its
    frames to the device's rate and channels. Video tracks are ignored. It is a player
    sink (``attach``, ``close``); several players share it through :meth:`input`, whose
    ``close`` leaves the others playing. With an :class:`Intercom`, each mixed period gets
    its volume and mute, and what is written becomes the echo canceller's reference.
    A failing device is reported (``error_code``
    SPEAKER_LOST, ``lost``, ``on_error``) and reopened with backoff.
    """

    _worker: _PlaybackWorker

    def __init__(
        self,
        device: str = "default",
        *,
        rate: int = 48_000,
        channels: int = 2,
        period_ms: float = 20.0,
        periods: int = 3,
        buffer_ms: float = 100.0,
        prebuffer_ms: float | None = None,
        on_error: ErrorCallback | None = None,
        alsa: AlsaApi | None = None,
        retry: tuple[float, float] = RETRY,
        intercom: Intercom | None = None,
    ) -> None:
        settings = PcmSettings(device, rate, channels, period_ms, periods)
        self.mixer = Mixer(rate, channels, settings.period_frames, buffer_ms, prebuffer_ms)
        self._worker = _PlaybackWorker(self.mixer, settings, alsa, on_error, retry, intercom)
        self._readers: set[asyncio.Task[None]] = set()

    @property
    def underruns(self) -> int:
        """Times the device ran out of audio before the next period was written."""
        return self._worker.underruns

    @property
    def periods_written(self) -> int:
        return self._worker.periods_written

    @property
    def running(self) -> bool:
        """Whether the writer thread runs (from the first attach until close)."""
        return self._worker.running

    @property
    def format(self) -> PcmFormat | None:
        """What the device runs at, once opened."""
        return self._worker.format

    def attach(self, track: MediaStreamTrack) -> None:
        """Play ``track`` (audio; video is ignored) mixed with the others."""
        self.play(track)

    def play(self, track: MediaStreamTrack) -> asyncio.Task[None] | None:
        """Play ``track`` and return its reader task (None for video)."""
        if track.kind != "audio":
            return None
        loop = asyncio.get_running_loop()
        self._worker.start(loop)
        task = loop.create_task(self._read(track, self.mixer.add_stream()))
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)
        return task

    def input(self) -> PlaybackInput:
        """A sink for one more player of this speaker."""
        return PlaybackInput(self)

    async def _read(self, track: MediaStreamTrack, stream: StreamBuffer) -> None:
        resampler: av.AudioResampler | None = None
        target = (0, 0)
        try:
            while True:
                frame = await track.recv()
                if not isinstance(frame, av.AudioFrame):
                    continue
                mixer = self.mixer
                if resampler is None or target != (mixer.rate, mixer.channels):
                    target = (mixer.rate, mixer.channels)
                    resampler = _resampler(*target)
                try:
                    converted = resampler.resample(frame)
                except ValueError:  # the stream changed its rate or layout
                    resampler = _resampler(*target)
                    converted = resampler.resample(frame)
                for out in converted:
                    samples = np.asarray(out.to_ndarray(), dtype=np.int16)
                    stream.push(samples.reshape(-1, target[1]))
        except MediaStreamError:
            pass
        finally:
            stream.end()

    async def close(self) -> None:
        """Stop every reader, then the writer, and release the device."""
        await _cancel(self._readers)
        self._worker.stop()
        await asyncio.get_running_loop().run_in_executor(None, self._worker.join, JOIN_TIMEOUT)
        self.mixer.clear()


class PlaybackInput:
    """One player's way into a shared :class:`AlsaPlaybackSink`.

    Owns the reader tasks of the tracks it attached; :meth:`close` takes them out of the
    mix and leaves the speaker (and the other players) playing.
    """

    def __init__(self, sink: AlsaPlaybackSink) -> None:
        self.sink = sink
        self._readers: set[asyncio.Task[None]] = set()

    def attach(self, track: MediaStreamTrack) -> None:
        task = self.sink.play(track)
        if task is not None:
            self._readers.add(task)
            task.add_done_callback(self._readers.discard)

    async def close(self) -> None:
        await _cancel(self._readers)


def _resampler(rate: int, channels: int) -> av.AudioResampler:
    return audio_resampler("s16", "stereo" if channels == 2 else "mono", rate)


async def _cancel(tasks: set[asyncio.Task[None]]) -> None:
    pending = list(tasks)
    for task in pending:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*pending, return_exceptions=True)
