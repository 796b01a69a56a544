"""What ALSA capture and playback share: the PCM API, device errors, pacing, the PCM thread.

``alsaaudio`` (pyalsaaudio, apt ``python3-alsaaudio``) is imported only when a capture
track or a playback sink is made, so a board without it still runs with the tone. The
subset of its API used here is :class:`AlsaApi` and :class:`Pcm`; pyalsaaudio 0.10 and
0.11 both provide it.
Device errors reach Python as ``alsaaudio.ALSAAudioError`` whose text starts with the C
library's ``strerror``; an xrun is ``-EPIPE`` ("Broken pipe"), returned by ``read()`` on
either version and by ``write()`` on 0.11, raised by ``write()`` on 0.10.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ...backoff import Backoff
from ...errors import EdgedError, ErrorCode
from ...logs import log_event
from ..clock import Pacer
from ..device import (
    DeviceCodes,
    DeviceState,
    ErrorCallback,
    ReportsDeviceState,
    retry_until_stopped,
)

log = logging.getLogger("edged.media.alsa.pcm")

CLOCKLESS_AFTER = 12
"""Consecutive transfers that return at once before a PCM is taken to have no clock."""
RETRY = (0.5, 5.0)
"""First and longest delay between attempts to reopen a device, in seconds."""
CATCH_UP_PERIODS = 3
"""Overdue periods moved back to back on a clockless PCM before the schedule skips ahead."""


class Pcm(Protocol):
    """The methods of ``alsaaudio.PCM`` that edged uses."""

    def read(self) -> tuple[int, bytes]: ...

    def write(self, data: bytes) -> int: ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class AlsaApi(Protocol):
    """The part of the ``alsaaudio`` module that edged uses (the module, or a stand-in)."""

    ALSAAudioError: type[Exception]
    PCM_CAPTURE: int
    PCM_PLAYBACK: int
    PCM_NORMAL: int
    PCM_FORMAT_S16_LE: int

    def PCM(self, **kwargs: Any) -> Pcm: ...


def load_alsaaudio(missing: ErrorCode) -> AlsaApi:
    """The ``alsaaudio`` module; raises ``EdgedError(missing)`` when it is not installed."""
    try:
        module: AlsaApi = importlib.import_module("alsaaudio")
    except ImportError:
        raise EdgedError(
            missing, "pyalsaaudio is not installed (apt install python3-alsaaudio)"
        ) from None
    return module


def alsa_available() -> bool:
    """Whether pyalsaaudio can be imported on this machine."""
    try:
        load_alsaaudio(ErrorCode.MICROPHONE_OPEN_FAILED)
    except EdgedError:
        return False
    return True


def is_xrun(exc: BaseException) -> bool:
    """Whether an ``ALSAAudioError`` reports an xrun (``-EPIPE``) rather than a failure."""
    return str(exc).startswith(os.strerror(errno.EPIPE))


def is_missing(exc: BaseException) -> bool:
    """Whether an ``ALSAAudioError`` says the device does not exist."""
    text = str(exc)
    return any(text.startswith(os.strerror(e)) for e in (errno.ENOENT, errno.ENODEV))


@dataclass(frozen=True, slots=True)
class PcmSettings:
    """What is asked of a PCM: device name, rate, channels, period and buffer size."""

    device: str = "default"
    rate: int = 48_000
    channels: int = 1
    period_ms: float = 20.0
    periods: int = 4

    def __post_init__(self) -> None:
        if not self.device:
            raise ValueError("an ALSA device name is needed")
        if self.rate <= 0:
            raise ValueError("rate must be positive")
        if self.channels not in (1, 2):
            raise ValueError("channels must be 1 (mono) or 2 (stereo)")
        if not 1 <= self.period_ms <= 1000:
            raise ValueError("period_ms must be within 1..1000")
        if self.periods < 2:
            raise ValueError("a PCM buffer needs at least 2 periods")

    @property
    def period_frames(self) -> int:
        return max(1, round(self.rate * self.period_ms / 1000))


@dataclass(frozen=True, slots=True)
class PcmFormat:
    """What the opened PCM actually runs at (the device may round what was asked)."""

    rate: int
    channels: int
    period_frames: int
    buffer_frames: int = 0
    """The device buffer (0: not known)."""

    @property
    def period_s(self) -> float:
        return self.period_frames / self.rate

    @property
    def audio_channels(self) -> int:
        """Channels carried as audio: a device with more than 2 has its first two used."""
        return min(self.channels, 2)


class TransferClock:
    """Paces a PCM's transfers: by the device while its reads or writes block, else by
    the monotonic clock.

    Owns the count of transfers that returned at once and, once a PCM is seen to have no
    clock (ALSA's ``file`` and ``null`` plugins return at once), a :class:`Pacer` at one
    period per transfer. A real device returns at once only while its buffer holds
    periods, a few at most, so ``clockless_after`` quick transfers in a row cannot come
    from one; a transfer that blocks hands pacing back to the device.
    """

    def __init__(self, period_s: float, clockless_after: int = CLOCKLESS_AFTER) -> None:
        self.period_s = period_s
        self.clockless_after = clockless_after
        self._quick = 0
        self._pacer: Pacer | None = None

    @property
    def clockless(self) -> bool:
        return self._pacer is not None

    def after_transfer(self, elapsed: float) -> float:
        """How long to wait before the next transfer, given how long this one took."""
        if elapsed >= self.period_s / 4:
            self._quick = 0
            self._pacer = None
            return 0.0
        self._quick += 1
        if self._pacer is None:
            if self._quick < self.clockless_after:
                return 0.0
            self._pacer = Pacer(self.period_s, catch_up=CATCH_UP_PERIODS)
        return self._pacer.claim()[1]


class PcmWorker(ReportsDeviceState):
    """Owns one ALSA PCM and the thread that drives it.

    The thread opens the device (retrying with backoff while it is missing or busy),
    moves one period per :meth:`transfer`, paces clockless PCMs, and on a device error
    closes it, reports the loss and reopens it with backoff until it works again. It
    also owns the device state: ``error_code`` (0 while audio moves), the loss and open
    counts, and the ``on_error`` reports (on the event loop given to :meth:`start`).
    Subclasses implement :meth:`transfer` and may react to :meth:`opened`.
    """

    stream_type = "capture"

    def __init__(
        self,
        settings: PcmSettings,
        codes: DeviceCodes,
        *,
        alsa: AlsaApi | None = None,
        on_error: ErrorCallback | None = None,
        retry: tuple[float, float] = RETRY,
    ) -> None:
        self.settings = settings
        self.codes = codes
        self.on_error = on_error
        self.device = DeviceState(log, f"alsa_{self.stream_type}", device=settings.device)
        self.opens = 0
        """Times the device was opened."""
        self.format: PcmFormat | None = None
        """What the device runs at, once opened."""
        self.clockless = False
        """Whether the device turned out to have no clock (paced by the monotonic clock)."""
        self.alsa = alsa if alsa is not None else load_alsaaudio(codes.open_failed)
        self._backoff = Backoff(*retry)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the thread (idempotent); reports go to ``loop`` when one is given."""
        if self.running:
            return
        self._loop = loop
        self._stop.clear()
        name = f"edged-alsa-{self.stream_type}-{self.settings.device}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; it closes the device after the transfer in progress."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; whether it has."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return not self.running

    # ---- for subclasses ----------------------------------------------------------------

    def transfer(self, pcm: Pcm, fmt: PcmFormat) -> bool:
        """Move one period; whether audio moved (False after an xrun)."""
        raise NotImplementedError

    def opened(self, fmt: PcmFormat) -> None:
        """The device was (re)opened with ``fmt``."""

    def call_on_loop(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the event loop (in this thread without one)."""
        loop = self._loop
        if loop is None:
            callback(*args)
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            self._stop.set()

    # ---- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._keep_open()
        except Exception as exc:
            log.exception("alsa_%s_failed device=%s", self.stream_type, self.settings.device)
            self._set_error(self.codes.lost, repr(exc))

    def _keep_open(self) -> None:
        retry_until_stopped(self._stop, self._backoff, self._open_and_drive)

    def _open_and_drive(self) -> bool:
        """Open the device and drive it until stopped; False when it failed (retry later)."""
        opened = self._open()
        if opened is None:
            return False
        pcm, fmt = opened
        failure: Exception | None = None
        try:
            self._drive(pcm, fmt)
        except self.alsa.ALSAAudioError as exc:
            failure = exc
        finally:
            with contextlib.suppress(Exception):
                pcm.close()
        if failure is None:
            return True
        self._set_error(self.codes.lost, str(failure), loss=True)
        return False

    def _open(self) -> tuple[Pcm, PcmFormat] | None:
        s = self.settings
        alsa = self.alsa
        kind = alsa.PCM_CAPTURE if self.stream_type == "capture" else alsa.PCM_PLAYBACK
        try:
            pcm = alsa.PCM(
                type=kind,
                mode=alsa.PCM_NORMAL,
                device=s.device,
                rate=s.rate,
                channels=s.channels,
                format=alsa.PCM_FORMAT_S16_LE,
                periodsize=s.period_frames,
                periods=s.periods,
            )
        except alsa.ALSAAudioError as exc:
            if self.opens:
                code = self.codes.lost
            else:
                code = self.codes.not_found if is_missing(exc) else self.codes.open_failed
            self._set_error(code, str(exc))
            return None
        try:
            info = pcm.info()
        except alsa.ALSAAudioError:
            info = {}
        fmt = PcmFormat(
            int(info.get("rate", s.rate)),
            int(info.get("channels", s.channels)),
            int(info.get("period_size", s.period_frames)),
            int(info.get("buffer_size", s.period_frames * s.periods)),
        )
        self.opens += 1
        self.format = fmt
        log_event(
            log,
            logging.INFO,
            f"alsa_{self.stream_type}_open",
            device=s.device,
            rate=fmt.rate,
            channels=fmt.channels,
            period=fmt.period_frames,
        )
        self.opened(fmt)
        return pcm, fmt

    def _drive(self, pcm: Pcm, fmt: PcmFormat) -> None:
        clock = TransferClock(fmt.period_s)
        while not self._stop.is_set():
            started = time.monotonic()
            if self.transfer(pcm, fmt) and self.error_code:
                self._backoff.reset()
                self._set_error(0, "working")
            wait = clock.after_transfer(time.monotonic() - started)
            self.clockless = clock.clockless
            if wait > 0:
                self._stop.wait(wait)

    def _set_error(self, code: int, detail: str, *, loss: bool = False) -> None:
        if self.device.change(code, detail, loss=loss) and self.on_error is not None:
            self.call_on_loop(self.on_error, code)


class PcmStatus:
    """What a device's owner shows of its :class:`PcmWorker` (``self._worker``)."""

    _worker: PcmWorker

    @property
    def settings(self) -> PcmSettings:
        return self._worker.settings

    @property
    def error_code(self) -> int:
        """0 while the device works, else its NOT_FOUND/OPEN_FAILED/LOST code."""
        return self._worker.error_code

    @property
    def lost(self) -> bool:
        """Whether the device is unavailable now."""
        return self._worker.lost

    @property
    def losses(self) -> int:
        """Times the device failed after it had worked."""
        return self._worker.losses

    @property
    def clockless(self) -> bool:
        """Whether the device has no clock and transfers are paced by the monotonic clock."""
        return self._worker.clockless
