"""Echo cancellation's shared parts: the canceller interface, its settings, and the
reference line that lines up what the speaker plays with what the microphone hears.

An :class:`EchoCanceller` takes one 10 ms mono frame of the microphone and the 10 ms of
the speaker's output that was playing while it was captured, and returns the microphone
with that output's echo removed. speexdsp's (:mod:`.speex`) is the one shipped; another
library only has to take the same frames.

The :class:`ReferenceLine` is fed by the speaker's writer thread with every period it
writes (the mix of every played stream, after volume and mute: exactly what the speaker
plays) and the delay ALSA reports for it, and read by the microphone's reader thread
with the capture delay. It keeps one continuous reference stream and a read position in
it; the position follows where the two devices' timestamps say it should be, stepping
one sample at a time when the clocks drift apart, and jumping only when it is far off
(at start, after an underrun or a reopened device).
"""

from __future__ import annotations

import collections
import enum
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]

FRAME_MS = 10
"""The canceller's frame: 10 ms, whatever the library."""
WINDOW_S = 2.0
"""A device's clock is the earliest of its timestamps over this long (see :class:`_Clock`)."""
OUTLIERS = 25
"""Timestamps in a row later than the estimate by over ``JUMP_AFTER_MS`` that make it
start over at once (the device was reopened, ran dry or lost a period); fewer are a late
thread."""
STEP_AFTER_MS = 3.0
"""Alignment error beyond which the read position moves one sample per frame..."""
STEP_UNTIL_MS = 0.5
"""... until the error is this small: clock estimates that wobble around one threshold
would otherwise move the reference back and forth, and the filter would never settle."""
JUMP_AFTER_MS = 8.0
"""Alignment error beyond which the read position jumps to where it should be: drift
never gets this far between steps, so it is a device that lost or skipped audio."""
LEAD_MS = 5.0
"""How much later the reference is read than the timestamps say: echo never comes before
its sound, so a little lead is safe, while a reference read late is useless."""
HISTORY_S = 2.0
"""Reference audio kept for the microphone to read."""


class EchoMode(enum.StrEnum):
    """What is done to the microphone about the speaker's echo."""

    OFF = "off"
    """Nothing: the microphone is sent as it is."""
    CANCEL = "cancel"
    """Adaptive echo cancellation, residual echo and noise suppression."""
    HALF_DUPLEX = "half_duplex"
    """Ducking: the microphone is attenuated while the speaker plays sound (for hardware
    where cancellation cannot converge: a distorting speaker, a changing echo path)."""


@dataclass(frozen=True, slots=True)
class EchoSettings:
    """How the canceller is set up (``audio.echo_*`` in the configuration)."""

    library: str = "auto"
    """The canceller: ``webrtc`` (AEC3), ``speexdsp``, or ``auto`` (AEC3 where installed,
    else speexdsp)."""
    tail_ms: float = 200.0
    """Echo path the adaptive filter covers: room reverberation plus unreported delay."""
    noise_suppression: bool = True
    noise_suppress_db: int = 15
    echo_suppress_db: int = 40
    """Residual echo suppression after the filter, in dB."""
    auto_gain: bool = False
    auto_gain_level: float = 8000.0
    duck_db: float = 30.0
    """Attenuation of the microphone while the speaker plays, in half-duplex mode."""


class EchoCanceller(Protocol):
    """Removes the speaker's echo from the microphone, 10 ms at a time (mono s16)."""

    name: str
    frame_size: int
    finds_delay: bool
    """Whether it finds the echo's delay within the reference itself (AEC3): the intercom
    then never moves the reference for a delay no device reported."""

    def process(self, captured: Samples, reference: Samples) -> Samples: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


class _Clock:
    """An estimate of where sample 0 of a stream was (or will be) heard, in monotonic
    seconds: the earliest ``time - index / rate`` over the last ``WINDOW_S``.

    A timestamp is taken by a thread after its read or write returns, so it is late by
    however long the thread waited for the CPU (or the GIL), never early: the lower
    envelope is the device's clock, where a mean would wander with the machine's load.
    Over two seconds, a clock drifting 100 ppm moves 0.2 ms, which the envelope follows.
    """

    def __init__(self) -> None:
        self.origin: float | None = None
        self._window: collections.deque[tuple[float, float]] = collections.deque()
        """(time, origin) of the timestamps that may yet be the earliest in the window:
        origins in increasing order, so the first is the estimate."""
        self._outliers = 0

    def note(self, index: int, at: float, rate: int) -> None:
        origin = at - index / rate
        window = self._window
        if self.origin is not None and origin - self.origin > JUMP_AFTER_MS / 1000:
            self._outliers += 1
            if self._outliers >= OUTLIERS:
                window.clear()
        else:
            self._outliers = 0
        while window and window[-1][1] >= origin:
            window.pop()
        window.append((at, origin))
        while window[0][0] < at - WINDOW_S:
            window.popleft()
        self.origin = window[0][1]


class ReferenceLine:
    """What the speaker plays, for the microphone's echo canceller (thread-safe).

    The speaker's writer calls :meth:`played`; the microphone's reader calls :meth:`take`
    for the reference of each captured frame. Owns the reference history (mono, at the
    microphone's rate), the two devices' clock estimates and the read position.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._history = np.zeros(round(HISTORY_S * rate), dtype=np.int16)
        self._written = 0
        """Reference samples written since the start (the index after the newest)."""
        self._played = _Clock()
        self._captured = _Clock()
        self._cursor: int | None = None
        self._shift = 0
        self._stepping = False
        self.steps = 0
        """One-sample moves of the read position (clock drift)."""
        self.jumps = 0
        """Jumps of the read position (start, underrun, reopened device, a new shift)."""

    def played(self, samples: Samples, delay_s: float, now: float | None = None) -> None:
        """The speaker took ``samples`` (mono, at this line's rate), and ALSA said the
        first of them is heard ``delay_s`` from now."""
        at = time.monotonic() if now is None else now
        size = len(self._history)
        with self._lock:
            count = min(len(samples), size)
            start = self._written % size
            first = min(count, size - start)
            self._history[start : start + first] = samples[:first]
            self._history[: count - first] = samples[first:count]
            self._played.note(self._written, at + delay_s, self.rate)
            self._written += count

    def take(
        self, frames: int, index: int, delay_s: float, shift: int = 0, now: float | None = None
    ) -> Samples:
        """The reference for the microphone's samples ``index .. index + frames``, the
        first of which was captured ``delay_s`` before now (zeros where there is none);
        ``shift`` samples earlier still for an echo delay that no device reported (a new
        shift moves the read position at once: the canceller starts over for it anyway)."""
        at = time.monotonic() if now is None else now
        with self._lock:
            self._captured.note(index, at - delay_s, self.rate)
            wanted = self._wanted(index)
            if wanted is not None:
                wanted -= shift
            if shift != self._shift and wanted is not None:
                self._shift, self._cursor = shift, None
            cursor = self._follow(wanted)
            self._cursor = cursor + frames
            return self._read(cursor, frames)

    def _wanted(self, index: int) -> int | None:
        played, captured = self._played.origin, self._captured.origin
        if played is None or captured is None:
            return None
        return index + round((captured - played + LEAD_MS / 1000) * self.rate)

    def _follow(self, wanted: int | None) -> int:
        cursor = self._cursor
        if wanted is None:
            return cursor if cursor is not None else self._written
        if cursor is None:
            self.jumps += 1
            return wanted
        error = wanted - cursor
        if abs(error) > JUMP_AFTER_MS * self.rate / 1000:
            self.jumps += 1
            return wanted
        if abs(error) > STEP_AFTER_MS * self.rate / 1000:
            self._stepping = True
        elif abs(error) <= STEP_UNTIL_MS * self.rate / 1000:
            self._stepping = False
        if not self._stepping or not error:
            return cursor
        self.steps += 1
        return cursor + (1 if error > 0 else -1)

    def _read(self, start: int, frames: int) -> Samples:
        out = np.zeros(frames, dtype=np.int16)
        size = len(self._history)
        low = max(start, self._written - size)
        high = min(start + frames, self._written)
        while low < high:  # at most two runs: the ring may wrap once
            ring = low % size
            end = min(high, low + size - ring)
            out[low - start : end - start] = self._history[ring : ring + end - low]
            low = end
        return out
