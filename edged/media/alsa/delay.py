"""The echo's delay that no device reports: found by correlating the microphone with the
reference, so that the canceller's filter only has to cover the room, not the delay.

ALSA's reported delays line the reference up with the microphone to within the
buffering it knows of; a USB card's own buffers, a Bluetooth speaker or a long cable
add delay it does not know. :class:`DelayEstimator` correlates the last second of both
every quarter second (generalised cross-correlation with a partial phase transform, at
4 kHz) and, once two in a row agree on a clear peak, says how far the reference must
move (to the earlier of the two: an echo must never come before its reference).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .echo import LEAD_MS, Samples

WINDOW_S = 1.0
"""Audio correlated at a time (at most)..."""
HOP_S = 0.25
"""... every this often."""
DECIMATE = 4
"""The correlation runs at a quarter of the canceller's rate."""
MAX_LAG_S = 0.5
"""Longest echo delay looked for beyond what the devices report."""
EARLY_S = 0.05
"""Longest lag looked for the other way: a reference that comes after its echo."""
MIN_PEAK = 10.0
"""A correlation peak counts when it is this many times the mean of the others."""
MIN_LEVEL = 200.0
"""Reference RMS (s16) below which a window says nothing (the speaker was quiet)."""
MIN_FLATNESS = 0.01
"""Spectral flatness the reference needs (speech has about 0.05 to 0.3, a tone 1e-6)."""
EARLIEST = 0.5
"""The delay is the earliest lag whose peak is at least this share of the strongest."""
REFLECTIONS_S = 0.03
"""How much earlier than the strongest peak the direct sound may be."""
WEIGHTING = 0.7
"""How far the cross-spectrum is whitened (1 is PHAT): a little less is steadier in noise."""
AGREE_MS = 6.0
"""Two windows agree when their delays are this close."""
EARLY_MOVE_MS = 2.0
"""An echo that comes this much before its reference (the filter cannot model it)
moves the reference."""


class DelayEstimator:
    """Owns one window of microphone and reference samples and the last delay found.

    :meth:`observe` takes each frame pair as the canceller gets it; :attr:`shift` is the
    total move (in samples, at ``rate``) that the reference line should apply, and
    :attr:`estimates` counts the windows that gave a clear delay. The reference moves only
    when the echo comes before it or late in the filter's reach; a delay within it is the
    filter's to model (moving it would cost a new convergence).
    """

    def __init__(self, rate: int, move_after_s: float = 0.1) -> None:
        self.rate = rate
        self.move_after = round(move_after_s * rate)
        """A delay beyond this (half the filter's tail, as the intercom sets it) moves the
        reference: the filter would spend its taps on silence."""
        self.shift = 0
        self.estimates = 0
        self.last_delay_ms: float | None = None
        self.last_peak = 0.0
        """The last window's strongest correlation over the mean of all lags."""
        self._window = round(WINDOW_S * rate)
        self._mic: list[Samples] = []
        self._ref: list[Samples] = []
        self._size = 0
        self._since = 0
        self._hop = round(HOP_S * rate)
        self._previous: int | None = None

    def observe(self, captured: Samples, reference: Samples) -> None:
        self._mic.append(captured)
        self._ref.append(reference)
        self._size += len(captured)
        self._since += len(captured)
        if self._since < self._hop:
            return
        self._since = 0
        mic, ref = np.concatenate(self._mic), np.concatenate(self._ref)
        while self._size - len(self._mic[0]) >= self._window:  # keep the newest window
            self._size -= len(self._mic.pop(0))
            self._ref.pop(0)
        lag = self._lag(mic[-self._window :], ref[-self._window :])
        if lag is None:
            self._previous = None
            return
        self.estimates += 1
        previous, self._previous = self._previous, lag
        agreed = previous is not None and abs(lag - previous) <= AGREE_MS * self.rate / 1000
        self.last_delay_ms = 1000 * lag / self.rate
        if agreed and previous is not None:
            lag = min(lag, previous)
        off = lag - round(LEAD_MS * self.rate / 1000)
        early = lag < -EARLY_MOVE_MS * self.rate / 1000
        if agreed and (early or lag > self.move_after):
            self.shift = max(-self._window // 10, min(self._window, self.shift + off))
            self._previous = None
            self._mic, self._ref, self._size = [], [], 0  # of the reference before the move

    def _lag(self, mic: Samples, ref: Samples) -> int | None:
        """The echo's delay behind ``ref`` in ``mic``, in samples, or None if unclear."""
        if float(np.sqrt(np.mean(ref.astype(np.float64) ** 2))) < MIN_LEVEL:
            return None
        x, y = _decimated(ref), _decimated(mic)
        size = 1 << int(np.ceil(np.log2(2 * len(x))))
        spectrum = np.fft.rfft(x, size)
        power = np.abs(spectrum[size // 40 :]) ** 2 + 1e-9
        if np.exp(np.mean(np.log(power))) / np.mean(power) < MIN_FLATNESS:
            return None  # a tone or a hum: its correlation cannot tell delays apart
        cross = np.fft.rfft(y, size) * np.conj(spectrum)
        cross /= np.maximum(np.abs(cross), 1e-9) ** WEIGHTING
        corr = np.abs(np.fft.irfft(cross, size))
        longest = round(MAX_LAG_S * self.rate / DECIMATE)
        early = round(EARLY_S * self.rate / DECIMATE)
        # From "the reference comes too late" (negative lags, at the end) to MAX_LAG_S.
        lags = np.concatenate([corr[size - early :], corr[: longest + 1]])
        start = -early
        best = int(np.argmax(lags))
        self.last_peak = float(lags[best]) / (float(np.mean(lags)) or 1e-9)
        if self.last_peak < MIN_PEAK:
            return None
        # The direct sound, not the room's strongest reflection: the earliest peak near
        # the strongest, within the reflections' reach before it.
        low = max(0, best - round(REFLECTIONS_S * self.rate / DECIMATE))
        first = low + int(np.argmax(lags[low : best + 1] >= EARLIEST * lags[best]))
        return (first + start) * DECIMATE


def _decimated(samples: Samples) -> npt.NDArray[np.float64]:
    usable = len(samples) // DECIMATE * DECIMATE
    means: npt.NDArray[np.float64] = (
        samples[:usable].astype(np.float64).reshape(-1, DECIMATE).mean(axis=1)
    )
    return means
