"""Sample-rate conversion of mono s16 audio to and from the echo canceller's rate.

For whole-number ratios (48 or 32 kHz to 16 kHz, and back) a windowed-sinc FIR kept
warm between calls, in polyphase form, does it in one matrix product per period: a
fraction of the cost of a PyAV resampler call, which matters at a hundred calls a second
on a Zero 2 W.
Other ratios (44.1 kHz cards) go through PyAV's resampler.
"""

from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided

from ..frames import audio_resampler

Samples = npt.NDArray[np.int16]
Floats = npt.NDArray[np.float32]

TAPS_PER_PHASE = 16
"""Filter length per output phase: about 0.5 ms of delay at 48 kHz."""
PASS = 0.45
"""The filter's cut-off, as a fraction of the lower rate: 7.2 kHz at 16 kHz."""


def lowpass(factor: int) -> Floats:
    """A Kaiser-windowed sinc low-pass for a rate change by ``factor``, unit DC gain."""
    taps = TAPS_PER_PHASE * factor
    n = np.arange(taps) - (taps - 1) / 2
    cutoff = PASS / factor
    h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(taps, 8.0)
    filtered: Floats = (h / h.sum()).astype(np.float32)
    return filtered


def _windows(data: Floats, width: int) -> Floats:
    """Every run of ``width`` consecutive samples of ``data``, as rows (a view)."""
    step = data.strides[0]
    rows: Floats = as_strided(
        data, shape=(len(data) - width + 1, width), strides=(step, step), writeable=False
    )
    return rows


def _to_s16(values: Floats) -> Samples:
    out: Samples = np.clip(np.rint(values), -32768, 32767).astype(np.int16)
    return out


class Decimator:
    """Down by a whole ``factor``: the low-pass computed only where a sample is kept
    (one matrix product per call), with the input it still needs kept between calls."""

    def __init__(self, factor: int) -> None:
        self.factor = factor
        self._taps = lowpass(factor)[::-1].copy()
        self._history = np.zeros(len(self._taps) - 1, dtype=np.float32)
        self._phase = 0

    def __call__(self, samples: Samples) -> Samples:
        data = np.concatenate([self._history, samples.astype(np.float32)])
        self._history = data[len(data) - len(self._history) :]
        windows = _windows(data, len(self._taps))[self._phase :: self.factor]
        self._phase = (self._phase - len(samples)) % self.factor
        return _to_s16(windows @ self._taps)


class Interpolator:
    """Up by a whole ``factor``: each output phase is its own short filter over the input
    (polyphase), one matrix product per call."""

    def __init__(self, factor: int) -> None:
        self.factor = factor
        taps = lowpass(factor) * factor
        # phases[j, p]: tap j of phase p, for the input ``j`` samples back.
        self._phases = taps.reshape(-1, factor)[::-1].copy()
        self._history = np.zeros(len(self._phases) - 1, dtype=np.float32)

    def __call__(self, samples: Samples) -> Samples:
        data = np.concatenate([self._history, samples.astype(np.float32)])
        self._history = data[len(data) - len(self._history) :]
        windows = _windows(data, len(self._phases))
        return _to_s16((windows @ self._phases).ravel())


class PyAvConverter:
    """Any other ratio, through PyAV's resampler."""

    def __init__(self, rate: int, target: int) -> None:
        self.rate = rate
        self._resampler = audio_resampler("s16", "mono", target)
        self._pts = 0

    def __call__(self, samples: Samples) -> Samples:
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += len(samples)
        parts = [
            np.asarray(f.to_ndarray(), np.int16).ravel() for f in self._resampler.resample(frame)
        ]
        joined: Samples = np.concatenate(parts) if parts else np.zeros(0, np.int16)
        return joined


class Converter:
    """Mono s16 at one rate into mono s16 at ``target``, the best way for the pair."""

    def __init__(self, rate: int, target: int) -> None:
        self.rate = rate
        self.target = target
        self._convert: Decimator | Interpolator | PyAvConverter | None
        if rate == target:
            self._convert = None
        elif rate % target == 0:
            self._convert = Decimator(rate // target)
        elif target % rate == 0:
            self._convert = Interpolator(target // rate)
        else:
            self._convert = PyAvConverter(rate, target)

    def __call__(self, samples: Samples) -> Samples:
        return samples if self._convert is None else self._convert(samples)
