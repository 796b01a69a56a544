"""The echo's delay that no device reports: found by correlating the microphone with the
reference, so that the canceller's filter only has to cover the room, not the delay.

ALSA's reported delays line the reference up with the microphone to within the
buffering it knows of; a USB card's own buffers, a Bluetooth speaker or a long cable
add delay it does not know. :class:`DelayEstimator` correlates one second of both
(generalised cross-correlation with phase transform, GCC-PHAT, at 4 kHz) and, once two
windows in a row agree on a clear peak, says how far the reference must move.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .echo import LEAD_MS, Samples

WINDOW_S = 1.0
"""Audio correlated at a time."""
DECIMATE = 4
"""The correlation runs at a quarter of the canceller's rate."""
MAX_LAG_S = 0.5
"""Longest echo delay looked for beyond what the devices report."""
EARLY_S = 0.05
"""Longest lag looked for the other way: a reference that comes after its echo."""
MIN_PEAK = 12.0
"""A correlation peak counts when it is this many times the mean of the others."""
MIN_LEVEL = 200.0
"""Reference RMS (s16) below which a window says nothing (the speaker was quiet)."""
MIN_FLATNESS = 0.01
"""Spectral flatness the reference needs (speech has about 0.05 to 0.3, a tone 1e-6)."""
UNIQUE = 2.0
"""... and this many times any other peak: a tone's correlation repeats every period."""
UNIQUE_WITHIN = 3
"""Lags (at 4 kHz) around the peak that are part of it."""
AGREE_MS = 2.0
"""Two windows agree when their delays are this close."""
MOVE_AFTER_MS = 4.0
"""A delay this far from the wanted one moves the reference."""


class DelayEstimator:
    """Owns one window of microphone and reference samples and the last delay found.

    :meth:`observe` takes each frame pair as the canceller gets it; :attr:`shift` is the
    total move (in samples, at ``rate``) that the reference line should apply, and
    :attr:`estimates` counts the windows that gave a clear delay.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.shift = 0
        self.estimates = 0
        self.last_delay_ms: float | None = None
        self._window = round(WINDOW_S * rate)
        self._mic: list[Samples] = []
        self._ref: list[Samples] = []
        self._size = 0
        self._previous: int | None = None

    def observe(self, captured: Samples, reference: Samples) -> None:
        self._mic.append(captured)
        self._ref.append(reference)
        self._size += len(captured)
        if self._size < self._window:
            return
        mic, ref = np.concatenate(self._mic), np.concatenate(self._ref)
        self._mic, self._ref, self._size = [], [], 0
        lag = self._lag(mic, ref)
        if lag is None:
            self._previous = None
            return
        self.estimates += 1
        agreed = self._previous is not None and abs(lag - self._previous) <= (
            AGREE_MS * self.rate / 1000
        )
        self._previous = lag
        self.last_delay_ms = 1000 * lag / self.rate
        off = lag - round(LEAD_MS * self.rate / 1000)
        if agreed and abs(off) > MOVE_AFTER_MS * self.rate / 1000:
            self.shift = max(-self._window // 10, min(self._window, self.shift + off))
            self._previous = None

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
        cross /= np.maximum(np.abs(cross), 1e-9)
        corr = np.abs(np.fft.irfft(cross, size))
        longest = round(MAX_LAG_S * self.rate / DECIMATE)
        early = round(EARLY_S * self.rate / DECIMATE)
        # From "the reference comes too late" (negative lags, at the end) to MAX_LAG_S.
        lags = np.concatenate([corr[size - early :], corr[: longest + 1]])
        start = -early
        best = int(np.argmax(lags))
        others = float(np.mean(lags)) or 1e-9
        rivals = lags.copy()
        rivals[max(0, best - UNIQUE_WITHIN) : best + UNIQUE_WITHIN + 1] = 0
        if lags[best] / others < MIN_PEAK or lags[best] < UNIQUE * float(rivals.max()):
            return None
        return (best + start) * DECIMATE


def _decimated(samples: Samples) -> npt.NDArray[np.float64]:
    usable = len(samples) // DECIMATE * DECIMATE
    means: npt.NDArray[np.float64] = (
        samples[:usable].astype(np.float64).reshape(-1, DECIMATE).mean(axis=1)
    )
    return means
