"""A stand-in for the pyalsaaudio module, for what real alsa-lib cannot show here: xruns,
underruns, and a sound card that goes away and comes back.

It mirrors the part of pyalsaaudio that edged uses (0.10 and 0.11): the constants,
``ALSAAudioError`` (the real class), ``PCM(type=, mode=, device=, rate=, channels=,
format=, periodsize=, periods=)`` and its ``read()``, ``write()``, ``info()``,
``close()``. Like a real card, a PCM takes one period of time per transfer. A capture
PCM hands out a tone (on every channel). A card may have a fixed rate and channel count,
which it gives whatever is asked. Failures are those of pyalsaaudio: an overrun makes ``read()``
return ``(-EPIPE, b"")``; an underrun makes ``write()`` return ``-EPIPE`` (0.11) or raise
``ALSAAudioError("Broken pipe [device]")`` (0.10); an unplugged card makes ``PCM()``
raise "No such file or directory" and ``read()``/``write()`` raise "No such device".
"""

from __future__ import annotations

import errno
import os
import threading
import time
from typing import Any

import alsaaudio
import numpy as np
import numpy.typing as npt

from edged.media.sources.tone import ToneGenerator


class FakeCard:
    """The stand-in module: one sound card, its scripted failures and what it played."""

    ALSAAudioError = alsaaudio.ALSAAudioError
    PCM_CAPTURE = alsaaudio.PCM_CAPTURE
    PCM_PLAYBACK = alsaaudio.PCM_PLAYBACK
    PCM_NORMAL = alsaaudio.PCM_NORMAL
    PCM_FORMAT_S16_LE = alsaaudio.PCM_FORMAT_S16_LE

    def __init__(
        self,
        *,
        tone_hz: float = 1000.0,
        overrun_every: int = 0,
        underrun_every: int = 0,
        underrun_raises_every: int = 0,
        rate: int | None = None,
        channels: int | None = None,
    ) -> None:
        self.tone_hz = tone_hz
        self.rate = rate
        self.channels = channels
        self.overrun_every = overrun_every
        self.underrun_every = underrun_every
        self.underrun_raises_every = underrun_raises_every
        self.unplugged = threading.Event()
        self.opened: list[FakePcm] = []
        self.played: list[npt.NDArray[np.int16]] = []
        """Every period written, as ``(frames, channels)``, in order."""
        self.lock = threading.Lock()

    def PCM(self, **kwargs: Any) -> FakePcm:
        device = kwargs.get("device", "default")
        if self.unplugged.is_set():
            raise alsaaudio.ALSAAudioError(f"{os.strerror(errno.ENOENT)} [{device}]")
        pcm = FakePcm(self, **kwargs)
        with self.lock:
            self.opened.append(pcm)
        return pcm

    def played_since(self, index: int) -> npt.NDArray[np.int16]:
        """The periods written from number ``index`` on, concatenated."""
        with self.lock:
            periods = self.played[index:]
        return np.concatenate(periods) if periods else np.zeros((0, 1), dtype=np.int16)


class FakePcm:
    """One opened PCM of a :class:`FakeCard`."""

    def __init__(
        self,
        card: FakeCard,
        *,
        type: int = alsaaudio.PCM_PLAYBACK,
        mode: int = alsaaudio.PCM_NORMAL,
        device: str = "default",
        rate: int = 44100,
        channels: int = 2,
        format: int = alsaaudio.PCM_FORMAT_S16_LE,
        periodsize: int = 32,
        periods: int = 4,
    ) -> None:
        assert format == alsaaudio.PCM_FORMAT_S16_LE
        self.card = card
        self.type = type
        self.device = device
        # A card with fixed hardware gives its own rate and channels (as ALSA's
        # set_rate_near does) and scales the period to the same duration.
        self.rate = card.rate or rate
        self.channels = card.channels or channels
        self.periodsize = periodsize * self.rate // rate
        self.periods = periods
        self.closed = False
        self.transfers = 0
        self.calls = 0
        self._tone = ToneGenerator(
            card.tone_hz, sample_rate=self.rate, frame_samples=self.periodsize
        )
        self._next_due = time.monotonic()

    def info(self) -> dict[str, Any]:
        return {
            "name": self.device,
            "rate": self.rate,
            "channels": self.channels,
            "period_size": self.periodsize,
            "periods": self.periods,
            "format_name": "S16_LE",
        }

    def _call(self, every: int) -> bool:
        """Count a call; whether it is one of every ``every`` that fails (an xrun, which
        takes no time: the buffer already ran over or dry)."""
        if self.closed:
            raise alsaaudio.ALSAAudioError("PCM device is closed")
        if self.card.unplugged.is_set():
            raise alsaaudio.ALSAAudioError(f"{os.strerror(errno.ENODEV)} [{self.device}]")
        self.calls += 1
        return bool(every) and self.calls % every == 0

    def _tick(self) -> None:
        """Take one period of time, like a card's clock."""
        self._next_due += self.periodsize / self.rate
        delay = self._next_due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            self._next_due = time.monotonic()
        if self.card.unplugged.is_set():
            raise alsaaudio.ALSAAudioError(f"{os.strerror(errno.ENODEV)} [{self.device}]")
        self.transfers += 1

    def read(self) -> tuple[int, bytes]:
        if self.type != alsaaudio.PCM_CAPTURE:
            raise alsaaudio.ALSAAudioError(f"Cannot read from playback PCM [{self.device}]")
        if self._call(self.card.overrun_every):
            self.transfers += 1  # the period that ran over is lost
            return -errno.EPIPE, b""
        self._tick()
        mono = self._tone.render(self.transfers).to_ndarray().reshape(-1)
        return self.periodsize, np.repeat(mono, self.channels).tobytes()

    def write(self, data: bytes) -> int:
        if self.type != alsaaudio.PCM_PLAYBACK:
            raise alsaaudio.ALSAAudioError(f"Cannot write to capture PCM [{self.device}]")
        card = self.card
        if self._call(card.underrun_raises_every):
            raise alsaaudio.ALSAAudioError(f"{os.strerror(errno.EPIPE)} [{self.device}]")
        if card.underrun_every and self.calls % card.underrun_every == 0:
            return -errno.EPIPE
        self._tick()
        samples = np.frombuffer(data, dtype=np.int16).reshape(-1, self.channels)
        with card.lock:
            card.played.append(samples.copy())
        return len(samples)

    def close(self) -> None:
        self.closed = True
