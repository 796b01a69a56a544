"""The audio tone source, and detection of a tone in received samples."""

from __future__ import annotations

import fractions
import math
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..clock import Pacer

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960
"""20 ms at 48 kHz."""
CATCH_UP_FRAMES = 5
"""Overdue 20 ms frames delivered back to back before the track skips ahead."""

Samples = npt.NDArray[np.floating] | npt.NDArray[np.integer]
FloatArray = npt.NDArray[np.float64]


class ToneGenerator:
    """Renders a sine as s16 audio frames; owns the tone's parameters, nothing else.

    The signal is a function of the absolute sample index (``pts``), so consecutive
    frames are phase-continuous and a skipped frame leaves no phase jump. No event loop
    is needed.
    """

    def __init__(
        self,
        frequency: float = 440.0,
        amplitude: float = 0.5,
        *,
        channels: int = 1,
        sample_rate: int = SAMPLE_RATE,
        frame_samples: int = FRAME_SAMPLES,
    ) -> None:
        if not 0 < frequency < sample_rate / 2:
            raise ValueError(f"frequency {frequency} Hz is outside (0, {sample_rate / 2})")
        if not 0 <= amplitude <= 1:
            raise ValueError("amplitude is a fraction of full scale, 0..1")
        if channels not in (1, 2):
            raise ValueError("channels must be 1 (mono) or 2 (stereo)")
        if frame_samples <= 0:
            raise ValueError("frame_samples must be positive")
        self.frequency = frequency
        self.amplitude = amplitude
        self.channels = channels
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        self.time_base = fractions.Fraction(1, sample_rate)
        self._offsets = np.arange(frame_samples, dtype=np.float64)

    def samples(self, start: int) -> npt.NDArray[np.int16]:
        """One frame of mono samples beginning at absolute sample index ``start``."""
        # Reduce the start phase modulo one cycle first, so precision does not decay.
        cycles = math.fmod(self.frequency * start, self.sample_rate) / self.sample_rate
        phase = 2 * np.pi * (cycles + self._offsets * self.frequency / self.sample_rate)
        return np.round(np.sin(phase) * (self.amplitude * 32767)).astype(np.int16)

    def render(self, slot: int) -> av.AudioFrame:
        """Frame number ``slot``: ``pts = slot * frame_samples`` in 1/sample_rate."""
        start = slot * self.frame_samples
        mono = self.samples(start)
        interleaved = np.repeat(mono, self.channels) if self.channels > 1 else mono
        frame = av.AudioFrame.from_ndarray(
            interleaved.reshape(1, -1),
            format="s16",
            layout="stereo" if self.channels == 2 else "mono",
        )
        frame.sample_rate = self.sample_rate
        frame.pts = start
        frame.time_base = self.time_base
        return frame


class ToneTrack(MediaStreamTrack):
    """A live audio track of a sine tone; owns its generator, pacer and counters.

    20 ms s16 frames at 48 kHz (by default), paced on the monotonic clock. After a
    stall, up to ``CATCH_UP_FRAMES`` overdue frames are delivered at once; beyond
    that the track skips ahead (``pts`` jumps, the phase stays continuous in time).
    """

    kind = "audio"

    def __init__(
        self,
        frequency: float = 440.0,
        amplitude: float = 0.5,
        *,
        channels: int = 1,
        sample_rate: int = SAMPLE_RATE,
        frame_samples: int = FRAME_SAMPLES,
    ) -> None:
        super().__init__()
        self.generator = ToneGenerator(
            frequency,
            amplitude,
            channels=channels,
            sample_rate=sample_rate,
            frame_samples=frame_samples,
        )
        self._pacer = Pacer(frame_samples / sample_rate, catch_up=CATCH_UP_FRAMES)
        self.frames_produced = 0
        """Frames returned by ``recv``."""

    @property
    def frames_skipped(self) -> int:
        """Frames skipped because the consumer was late."""
        return self._pacer.slots_skipped

    async def recv(self) -> av.AudioFrame:
        """The next frame, once it is due."""
        if self.readyState != "live":
            raise MediaStreamError
        slot = await self._pacer.next_slot()
        self.frames_produced += 1
        return self.generator.render(slot)


@dataclass(frozen=True, slots=True)
class ToneMeasurement:
    """What a spectrum says about one expected tone."""

    dominant_hz: float
    """Strongest frequency in the signal (0.0 for silence)."""
    level_dbfs: float
    """RMS level relative to full scale (a full-scale sine is -3 dBFS)."""
    snr_db: float
    """Power near the expected frequency over the power elsewhere."""


def to_float_mono(samples: Samples) -> FloatArray:
    """Samples as float64 in -1..1, mixed to mono.

    Integers are scaled by their type's range; floats are taken as already in -1..1.
    A 2-D array is ``(samples, channels)`` when it has more rows than columns, else
    ``(channels, samples)``.
    """
    data: npt.NDArray[Any] = np.asarray(samples)
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        scale = float(-info.min) if info.min < 0 else (info.max + 1) / 2
        values = data.astype(np.float64)
        if info.min == 0:
            values -= scale
        values /= scale
    else:
        values = data.astype(np.float64)
    if values.ndim == 2:
        values = values.mean(axis=1 if values.shape[0] >= values.shape[1] else 0)
    elif values.ndim != 1:
        raise ValueError("samples must be 1-D or 2-D")
    return values


def _spectrum(values: FloatArray) -> FloatArray:
    window = np.hanning(values.size)
    size = 1 << max(values.size - 1, 1).bit_length()
    power: FloatArray = np.abs(np.fft.rfft((values - values.mean()) * window, n=2 * size)) ** 2
    return power


def _peak_hz(power: FloatArray, rate: int) -> float:
    bin_hz = rate / (2 * (power.size - 1))
    peak = int(np.argmax(power[1:])) + 1
    if power[peak] <= 0.0:
        return 0.0
    if peak < power.size - 1:
        # Parabola through the log power of the peak and its neighbours.
        a, b, c = np.log(power[peak - 1 : peak + 2] + 1e-300)
        denominator = a - 2 * b + c
        offset = 0.5 * (a - c) / denominator if denominator != 0 else 0.0
        return float((peak + offset) * bin_hz)
    return float(peak * bin_hz)


def dominant_frequency(samples: Samples, rate: int) -> float:
    """The strongest frequency in ``samples`` (Hann window, interpolated peak); 0.0 if silent.

    Give it at least 100 ms of audio for an answer within a fraction of a hertz; a
    single 20 ms frame is only good to about 10 Hz.
    """
    values = to_float_mono(samples)
    if values.size < 4:
        return 0.0
    return _peak_hz(_spectrum(values), rate)


def measure_tone(
    samples: Samples, rate: int, frequency: float, *, bandwidth_hz: float = 20.0
) -> ToneMeasurement:
    """Dominant frequency, level and the SNR of the tone at ``frequency`` (+/- bandwidth)."""
    values = to_float_mono(samples)
    if values.size < 4:
        return ToneMeasurement(0.0, -math.inf, -math.inf)
    rms = float(np.sqrt(np.mean(np.square(values))))
    level = 20 * math.log10(rms) if rms > 0 else -math.inf
    power = _spectrum(values)
    bin_hz = rate / (2 * (power.size - 1))
    freqs = np.arange(power.size) * bin_hz
    # The window's main lobe is 4 bins of the unpadded length wide.
    half_band = max(bandwidth_hz, 2.0 * rate / values.size)
    in_band = np.abs(freqs - frequency) <= half_band
    out_band = ~in_band & (freqs >= 20.0)
    signal = float(power[in_band].sum())
    noise = float(power[out_band].sum())
    if signal <= 0.0:
        snr = -math.inf
    elif noise <= 0.0:
        snr = math.inf
    else:
        snr = 10 * math.log10(signal / noise)
    return ToneMeasurement(_peak_hz(power, rate), level, snr)


def tone_present(
    samples: Samples,
    rate: int,
    frequency: float,
    *,
    tolerance_hz: float = 2.0,
    min_snr_db: float = 20.0,
    min_level_dbfs: float = -60.0,
) -> bool:
    """Whether a tone at ``frequency`` dominates ``samples``.

    True when the dominant frequency is within ``tolerance_hz`` of ``frequency``, the
    signal is louder than ``min_level_dbfs`` and the tone's SNR is at least
    ``min_snr_db``. Silence and noise are never reported as a tone.
    """
    measured = measure_tone(samples, rate, frequency)
    return (
        abs(measured.dominant_hz - frequency) <= tolerance_hz
        and measured.level_dbfs >= min_level_dbfs
        and measured.snr_db >= min_snr_db
    )
