"""The speaker's and the microphone's clocks drift apart: measured on the echo itself, so
that the reference can be read at the microphone's rate.

Two devices with their own crystals differ by up to ±100 ppm: the echo then slides
against the reference by 1.6 samples a second at 16 kHz, and speexdsp's adaptive filter
cannot follow a path that never stops moving (ERLE falls from about 27 dB to 10). The
fix is the one WebRTC's AEC made: resample the reference by the clocks' ratio before the
canceller (:class:`~.echo.ReferenceLine` reads it at a fractional rate).

Where the ratio comes from: the devices' timestamps and frame counts would give it on
a card whose periods come steadily, but only over tens of seconds (a thread's wake-up
jitter of a millisecond is 100 ppm over 10 s), and not at all where a period comes late
or in a burst. The echo gives it in about a second and a half, whatever the devices say:
:class:`DriftEstimator` takes half a second of microphone and reference every quarter
second (at 4 kHz), and compares their cross-spectrum with a template (the average of
the earlier ones, each aligned to it): the phase of one against the other is a straight
line in frequency whose slope is how far the echo moved, to a few hundredths of a sample
(the room's own phase cancels out, being in both). Where the reference was read from
at each window (the line's read position) minus that move is where the speaker's
sample the microphone heard then really is; a straight line fitted through the last
10 s of those points has the ratio as its slope. A window without reference sound, or
whose phase does not line up (the near end talking, noise) says nothing; a read
position that jumps (a step, a jump of the line, a moved delay) starts a new template,
and the fit keeps the points from before it, with an intercept of their own.
"""

from __future__ import annotations

import collections

import numpy as np
import numpy.typing as npt

from .echo import Samples

Floats = npt.NDArray[np.float64]
Spectrum = npt.NDArray[np.complex128]

WINDOW_S = 0.5
"""Audio compared at a time..."""
HOP_S = 0.25
"""... every this often."""
DECIMATE = 4
"""The comparison runs at a quarter of the canceller's rate (sums of four samples)."""
BAND_HZ = (150.0, 1800.0)
"""Frequencies whose phase is fitted: where speech has its energy, below the decimated
rate's Nyquist frequency."""
MIN_LEVEL = 200.0
"""Reference RMS (s16) below which a window says nothing."""
MIN_COHERENCE = 0.5
"""How well a window's phase must line up with the template's, once moved (0 to 1)."""
TEMPLATE_WEIGHT = 0.1
"""Weight of each new window in the template."""
SPAN_S = 10.0
"""Points kept for the fit."""
MIN_SPAN_S = 1.0
"""The fit says nothing until its points cover this much time..."""
MIN_POINTS = 4
"""... and are this many."""
MAX_PPM = 500.0
"""A fitted drift beyond this is not a clock (a moving speaker, a bad fit): ignored."""
BREAK = 0.5
"""A read position this far (samples) from where the previous frame's reading ended
starts a new template."""


class DriftEstimator:
    """Owns the last window of microphone and reference (decimated), the template and the
    points of the fit; :attr:`ratio` is the reference's samples per microphone sample
    (1 until the fit has enough points).

    :meth:`observe` takes each frame as the canceller gets it, with ``position``: where
    in the reference stream the line read its first sample.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.ratio = 1.0
        self.fits = 0
        """Windows that moved the ratio."""
        self._window = round(WINDOW_S * rate / DECIMATE)
        self._hop = round(HOP_S * rate)
        self._mic = np.zeros(self._window)
        self._ref = np.zeros(self._window)
        self._filled = 0
        self._since = 0
        self._index = 0
        """Microphone samples seen."""
        self._next: float | None = None
        """Where the next frame's reading should start, if nothing jumps."""
        self._centres: collections.deque[float] = collections.deque()
        """The read position of each frame in the window (for the window's centre)."""
        freqs = np.fft.rfftfreq(self._window, DECIMATE / rate)
        self._band = (freqs >= BAND_HZ[0]) & (freqs <= BAND_HZ[1])
        self._omega = 2 * np.pi * freqs[self._band] / rate  # radians per sample at ``rate``
        self._taper = np.hanning(self._window)
        self._template: Spectrum | None = None
        self._segment = 0
        self._points: collections.deque[tuple[int, float, float]] = collections.deque()

    def observe(self, captured: Samples, reference: Samples, position: float) -> None:
        count = len(captured)
        if self._next is not None and abs(position - self._next) > BREAK:
            self._restart()
        self._next = position + count * self.ratio
        step = count // DECIMATE
        self._mic[:-step] = self._mic[step:]
        self._ref[:-step] = self._ref[step:]
        self._mic[-step:] = captured.reshape(-1, DECIMATE).sum(axis=1)
        self._ref[-step:] = reference.reshape(-1, DECIMATE).sum(axis=1)
        self._centres.append(position)
        self._filled += step
        self._index += count
        self._since += count
        if len(self._centres) > self._window // step:
            self._centres.popleft()
        if self._filled >= self._window and self._since >= self._hop:
            self._since = 0
            self._measure(self._index - count * (len(self._centres) // 2))

    def _restart(self) -> None:
        self._filled = 0
        self._since = 0
        self._template = None
        self._centres.clear()
        self._segment += 1

    def _measure(self, centre: int) -> None:
        level = float(np.sqrt(np.mean(self._ref**2))) / DECIMATE
        if level < MIN_LEVEL:
            return
        spectrum: Spectrum = (
            np.fft.rfft(self._mic * self._taper) * np.conj(np.fft.rfft(self._ref * self._taper))
        )[self._band]
        position = self._centres[len(self._centres) // 2]
        if self._template is None:
            self._template = spectrum
            self._fit(centre, position)
            return
        moved = _moved(spectrum, self._template, self._omega)
        if moved is None:
            return
        self._template = (1 - TEMPLATE_WEIGHT) * self._template + TEMPLATE_WEIGHT * (
            spectrum * np.exp(1j * self._omega * moved)
        )
        self._fit(centre, position - moved)

    def _fit(self, index: int, heard: float) -> None:
        """A point: the microphone's sample ``index`` heard the reference's ``heard``."""
        points = self._points
        points.append((self._segment, float(index), heard))
        while index - points[0][1] > SPAN_S * self.rate:
            points.popleft()
        if len(points) < MIN_POINTS or index - points[0][1] < MIN_SPAN_S * self.rate:
            return
        data = np.array(points)
        x, y = data[:, 1], data[:, 2]
        for segment in np.unique(data[:, 0]):  # each template its own intercept
            mine = data[:, 0] == segment
            x[mine] -= x[mine].mean()
            y[mine] -= y[mine].mean()
        spread = float(np.dot(x, x))
        if spread <= 0:
            return
        ratio = float(np.dot(x, y)) / spread
        if abs(ratio - 1) <= MAX_PPM / 1e6:
            self.ratio = ratio
            self.fits += 1

    @property
    def ppm(self) -> float:
        """The microphone's clock against the speaker's, in ppm (positive: faster)."""
        return (1 / self.ratio - 1) * 1e6


def _moved(spectrum: Spectrum, template: Spectrum, omega: Floats) -> float | None:
    """How many samples later the echo is in ``spectrum`` than in ``template``: the
    weighted least-squares slope of their phase difference (twice, the second time on
    what the first left), or None when the phases do not line up."""
    cross = spectrum * np.conj(template)
    weight = np.abs(cross)
    total = float(np.sum(weight))
    if total <= 0:
        return None
    norm = float(np.sum(weight * omega**2))
    moved = 0.0
    for _ in range(2):
        phase = np.angle(cross * np.exp(1j * omega * moved))
        moved -= float(np.sum(weight * omega * phase)) / norm
    coherence = abs(complex(np.sum(cross * np.exp(1j * omega * moved)))) / total
    return moved if coherence >= MIN_COHERENCE else None
