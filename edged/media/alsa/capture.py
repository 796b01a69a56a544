"""The microphone: an ALSA capture device as a live audio track."""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import Callable
from typing import Protocol

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ...errors import ErrorCode
from ..device import DeviceCodes, ErrorCallback
from .intercom import Intercom, queued_s
from .pcm import RETRY, AlsaApi, Pcm, PcmFormat, PcmSettings, PcmStatus, PcmWorker

MICROPHONE_CODES = DeviceCodes(
    ErrorCode.MICROPHONE_NOT_FOUND, ErrorCode.MICROPHONE_OPEN_FAILED, ErrorCode.MICROPHONE_LOST
)
QUEUE_PERIODS = 5
"""Captured periods waiting for the consumer before the oldest is dropped."""


class AudioFormat(Protocol):
    """What a capture source is asked for (the engine's ``AudioConfig`` has these)."""

    @property
    def sample_rate(self) -> int: ...

    @property
    def channels(self) -> int: ...


class _CaptureWorker(PcmWorker):
    """Reads periods from the capture PCM and turns them into s16 audio frames."""

    stream_type = "capture"

    def __init__(
        self,
        deliver: Callable[[av.AudioFrame], None],
        settings: PcmSettings,
        alsa: AlsaApi | None,
        on_error: ErrorCallback | None,
        retry: tuple[float, float],
        intercom: Intercom | None,
    ) -> None:
        super().__init__(settings, MICROPHONE_CODES, alsa=alsa, on_error=on_error, retry=retry)
        self._deliver = deliver
        self.intercom = intercom
        self.xruns = 0
        self.pts = 0
        self._rate = settings.rate

    def opened(self, fmt: PcmFormat) -> None:
        if fmt.rate != self._rate:  # keep the timeline when a reopened device changes rate
            self.pts = self.pts * fmt.rate // self._rate
            self._rate = fmt.rate

    def transfer(self, pcm: Pcm, fmt: PcmFormat) -> bool:
        length, data = pcm.read()
        if length < 0:
            self.xruns += 1
            return False
        samples = np.frombuffer(data, dtype=np.int16)[: length * fmt.channels]
        if samples.size < fmt.channels:
            return False
        channels = fmt.audio_channels
        if channels != fmt.channels:
            samples = samples.reshape(-1, fmt.channels)[:, :channels]
        if self.intercom is not None:
            age = queued_s(pcm, fmt, playback=False)
            samples = self.intercom.microphone(samples.reshape(-1, channels), fmt.rate, age)
        frame = av.AudioFrame.from_ndarray(
            samples.reshape(1, -1), format="s16", layout="stereo" if channels == 2 else "mono"
        )
        frame.sample_rate = fmt.rate
        frame.time_base = fractions.Fraction(1, fmt.rate)
        frame.pts = self.pts
        self.pts += frame.samples
        self.call_on_loop(self._deliver, frame)
        return True


class AlsaCaptureTrack(PcmStatus, MediaStreamTrack):
    """A live audio track read from an ALSA capture device.

    Owns the device's reader (a :class:`PcmWorker` thread doing blocking reads, started
    by the first :meth:`recv`) and a small bounded queue of s16 frames: one frame per
    period, ``pts`` counting samples in ``1/rate``. When the consumer falls behind, the
    oldest frame is dropped (``frames_dropped``). With an :class:`Intercom`, every period
    goes through it (echo cancellation, microphone gain) before it is queued.
    An xrun is counted (``xruns``) and reading goes on. A failing device is reported (``error_code``
    MICROPHONE_LOST, ``lost``, ``on_error``) and reopened with backoff; no frames come
    while it is gone, and they flow again when it returns.
    """

    _worker: _CaptureWorker

    kind = "audio"

    def __init__(
        self,
        device: str = "default",
        *,
        rate: int = 48_000,
        channels: int = 1,
        period_ms: float = 20.0,
        periods: int = 4,
        on_error: ErrorCallback | None = None,
        alsa: AlsaApi | None = None,
        retry: tuple[float, float] = RETRY,
        intercom: Intercom | None = None,
    ) -> None:
        super().__init__()
        settings = PcmSettings(device, rate, channels, period_ms, periods)
        self._worker = _CaptureWorker(self.deliver, settings, alsa, on_error, retry, intercom)
        self._queue: asyncio.Queue[av.AudioFrame | None] = asyncio.Queue(QUEUE_PERIODS)
        self.frames_captured = 0
        """Frames read from the device."""
        self.frames_dropped = 0
        """Frames dropped because the consumer was late."""

    @property
    def xruns(self) -> int:
        """Overruns: the device had more than its buffer before it was read."""
        return self._worker.xruns

    @property
    def format(self) -> PcmFormat | None:
        """What the device runs at, once opened."""
        return self._worker.format

    def deliver(self, frame: av.AudioFrame) -> None:
        """Queue a captured frame (on the event loop), dropping the oldest when full."""
        if self.readyState != "live":
            return
        if self._queue.full():
            self._queue.get_nowait()
            self.frames_dropped += 1
        self._queue.put_nowait(frame)
        self.frames_captured += 1

    async def recv(self) -> av.AudioFrame:
        """The next captured period."""
        if self.readyState != "live":
            raise MediaStreamError
        self._worker.start(asyncio.get_running_loop())
        frame = await self._queue.get()
        if frame is None:
            raise MediaStreamError
        return frame

    def stop(self) -> None:
        """End the track; the reader closes the device after the read in progress."""
        if self.readyState == "live":
            self._worker.stop()
            if self._queue.full():
                self._queue.get_nowait()
            self._queue.put_nowait(None)
        super().stop()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the reader thread to end after :meth:`stop`; whether it has."""
        return self._worker.join(timeout)


def alsa_audio_source(
    config: AudioFormat,
    device: str = "default",
    *,
    period_ms: float = 20.0,
    intercom: Intercom | None = None,
) -> MediaStreamTrack:
    """An :class:`AlsaCaptureTrack` for an ``EngineProfile.audio_source``.

    ``config`` is the engine's ``AudioConfig`` (its ``sample_rate`` and ``channels``);
    ``intercom`` is the speaker's, for echo cancellation and the microphone's gain.
    Raises ``EdgedError(MICROPHONE_OPEN_FAILED)`` when pyalsaaudio is not installed.
    """
    return AlsaCaptureTrack(
        device,
        rate=config.sample_rate,
        channels=config.channels,
        period_ms=period_ms,
        intercom=intercom,
    )
