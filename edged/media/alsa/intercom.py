"""The intercom: what lies between the speaker and the microphone of one board.

:class:`Intercom` owns the audio controls (speaker volume and mute, microphone gain, the
echo mode), the :class:`~.echo.ReferenceLine` and the echo canceller. The speaker's
writer thread hands it every mixed period before writing it (:meth:`Intercom.speaker`:
volume and mute applied, the result kept as the reference) and the microphone's reader
thread every captured period (:meth:`Intercom.microphone`: echo removed or ducked, gain
applied). The canceller runs at 16 kHz mono, 10 ms frames (speech needs no more, and it
costs a third of 48 kHz); the microphone is resampled down to it and back
(:mod:`.rates`).
"""

from __future__ import annotations

import collections.abc
import logging
import math
from dataclasses import dataclass

import numpy as np

from ...errors import EdgedError
from .delay import DelayEstimator
from .echo import FRAME_MS, EchoCanceller, EchoMode, EchoSettings, ReferenceLine, Samples
from .pcm import Pcm, PcmFormat
from .rates import Converter

log = logging.getLogger("edged.media.alsa.intercom")

CANCEL_RATE = 16_000
"""The canceller's sample rate."""
DUCK_THRESHOLD = 100.0
"""Reference RMS (s16) above which the speaker counts as playing sound (about -50 dBFS)."""
DUCK_HOLD_FRAMES = 30
"""Frames the microphone stays ducked after the speaker falls quiet (the room's echo tail)."""

CancellerFactory = collections.abc.Callable[[int, EchoSettings], EchoCanceller]


@dataclass(slots=True)
class AudioControls:
    """The intercom's settings that commands change while it runs."""

    speaker_volume: int = 100
    """Percent of full scale (amplitude): 50 is -6 dB."""
    speaker_muted: bool = False
    mic_gain_db: float = 0.0
    echo_mode: EchoMode = EchoMode.CANCEL

    @property
    def speaker_gain(self) -> float:
        return 0.0 if self.speaker_muted else self.speaker_volume / 100


def _speex(rate: int, settings: EchoSettings) -> EchoCanceller:
    from .speex import SpeexCanceller

    return SpeexCanceller(rate, settings)


def _webrtc(rate: int, settings: EchoSettings) -> EchoCanceller:
    from .webrtc import WebrtcCanceller

    return WebrtcCanceller(rate, settings)


CANCELLERS: dict[str, CancellerFactory] = {"speexdsp": _speex, "webrtc": _webrtc}
"""The echo cancellers by name (``audio.echo_canceller``)."""


def chosen_canceller(library: str) -> str | None:
    """The canceller ``library`` names (``auto``: WebRTC's AEC3 where its plugin is installed,
    else speexdsp); None when that library is not installed."""
    from .speex import speexdsp_available
    from .webrtc import aec3_available, webrtc_available

    if library == "webrtc":
        return "webrtc" if webrtc_available() else None
    if library == "auto" and aec3_available():
        return "webrtc"
    return "speexdsp" if speexdsp_available() else None


def _chosen(rate: int, settings: EchoSettings) -> EchoCanceller:
    name = chosen_canceller(settings.library)
    if name is None:
        return CANCELLERS[settings.library if settings.library in CANCELLERS else "speexdsp"](
            rate, settings
        )  # raises the missing library's error
    return CANCELLERS[name](rate, settings)


class _Resampled:
    """A mono s16 stream converted to ``rate`` into a sample queue."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._convert: Converter | None = None
        self._queue = np.zeros(0, dtype=np.int16)

    def push(self, samples: Samples, rate: int) -> None:
        convert = self._convert
        if convert is None or convert.rate != rate:
            convert = self._convert = Converter(rate, self.rate)
        self._queue = np.concatenate([self._queue, convert(samples)])

    def __len__(self) -> int:
        return len(self._queue)

    def pop(self, count: int) -> Samples:
        out, self._queue = self._queue[:count], self._queue[count:]
        return out

    def prime(self, count: int) -> None:
        self._queue = np.concatenate([np.zeros(count, dtype=np.int16), self._queue])


def queued_s(pcm: Pcm, fmt: PcmFormat, *, playback: bool) -> float:
    """How long the device holds what was moved: for playback, until the last frame
    written sounds; for capture, since the last frame read came in.

    From ``snd_pcm_avail`` (pyalsaaudio 0.11 ``avail()``, else the third value of
    ``htimestamp()``); without either, a full buffer for playback (a blocking write just
    returned) and nothing for capture.
    """
    avail: int | None = None
    counter = getattr(pcm, "avail", None)
    stamp = getattr(pcm, "htimestamp", None)
    try:
        if counter is not None:
            avail = int(counter())
        elif stamp is not None:
            avail = int(stamp()[2])
    except Exception:  # an ALSA error here is the next transfer's to report
        avail = None
    if avail is None or avail < 0:
        return fmt.buffer_frames / fmt.rate if playback else 0.0
    if playback:
        return max(0, fmt.buffer_frames - avail) / fmt.rate
    return avail / fmt.rate


def _mono(samples: Samples) -> Samples:
    if samples.ndim == 2 and samples.shape[1] > 1:
        mono: Samples = samples.mean(axis=1).astype(np.int16)
        return mono
    return samples.reshape(-1)


def _gain(samples: Samples, factor: float) -> Samples:
    if factor == 1.0:
        return samples
    scaled: Samples = np.clip(samples.astype(np.float32) * factor, -32768, 32767).astype(np.int16)
    return scaled


class Intercom:
    """Owns the speaker's and microphone's controls and the echo canceller between them.

    Thread-safe where it must be: the reference line is shared by the two device threads;
    the controls are plain values set on the event loop and read by them.
    """

    def __init__(
        self,
        controls: AudioControls | None = None,
        settings: EchoSettings | None = None,
        *,
        canceller: CancellerFactory = _chosen,
    ) -> None:
        self.controls = controls if controls is not None else AudioControls()
        self.settings = settings if settings is not None else EchoSettings()
        self.line = ReferenceLine(CANCEL_RATE)
        # An echo later than half the filter's tail leaves the room too few taps: it moves.
        self.delay = DelayEstimator(CANCEL_RATE, self.settings.tail_ms / 2000)
        self._factory = canceller
        self._canceller: EchoCanceller | None = None
        self.unavailable: str | None = None
        """Why the canceller could not be made (the microphone then goes through as is)."""
        self._stale = False
        self._ref_in: _Resampled | None = None
        self._mic: _MicPath | None = None

    # ---- the speaker's thread -----------------------------------------------------------

    def speaker(self, samples: Samples) -> Samples:
        """A mixed ``(frames, channels)`` period with volume and mute applied."""
        return _gain(samples, self.controls.speaker_gain)

    def played(self, samples: Samples, rate: int, delay_s: float) -> None:
        """``samples`` (as written) start to sound ``delay_s`` from now: keep them as the
        reference."""
        ref = self._ref_in
        if ref is None:
            ref = self._ref_in = _Resampled(CANCEL_RATE)
        ref.push(_mono(samples), rate)
        ready = ref.pop(len(ref))
        if len(ready):
            # The resampled chunk ends where the written one ends.
            tail = len(samples) / rate - len(ready) / CANCEL_RATE
            self.line.played(ready, delay_s + tail)

    # ---- the microphone's thread ---------------------------------------------------------

    def microphone(self, samples: Samples, rate: int, delay_s: float) -> Samples:
        """A captured ``(frames, channels)`` period, echo removed (or ducked) and gain
        applied; ``delay_s`` is how long ago its last sample was captured."""
        mic = self._mic
        if mic is None or mic.rate != rate:
            mic = self._mic = _MicPath(self, rate)
        mono = mic.process(_mono(samples), delay_s)
        out = _gain(mono, 10 ** (self.controls.mic_gain_db / 20))
        if samples.ndim == 2 and samples.shape[1] > 1:
            return np.repeat(out.reshape(-1, 1), samples.shape[1], axis=1)
        return out.reshape(samples.shape)

    def shift(self) -> int:
        """How many samples earlier the reference is read for a delay no device reported:
        the delay estimate's, unless the canceller finds the delay itself."""
        canceller = self._canceller
        if canceller is not None and canceller.finds_delay:
            return 0
        return self.delay.shift

    def configure(self, settings: EchoSettings) -> None:
        """Use ``settings`` from now on: the canceller is made again on the next frame."""
        if settings != self.settings:
            self.settings = settings
            self._stale = True

    def canceller(self) -> EchoCanceller | None:
        """The canceller, made on first use; None when its library is missing."""
        if self._stale:
            self._stale = False
            self.close()
        if self._canceller is None and self.unavailable is None:
            try:
                self._canceller = self._factory(CANCEL_RATE, self.settings)
            except EdgedError as exc:
                self.unavailable = exc.message
                log.warning("echo cancellation unavailable: %s", exc.message)
        return self._canceller

    def close(self) -> None:
        canceller, self._canceller = self._canceller, None
        if canceller is not None:
            canceller.close()


class _MicPath:
    """The microphone's way through the intercom at one capture rate: down to the
    canceller's rate, 10 ms frames through the echo mode, back up."""

    def __init__(self, intercom: Intercom, rate: int) -> None:
        self.rate = rate
        self._intercom = intercom
        self._down = _Resampled(CANCEL_RATE)
        self._up = _Resampled(rate)
        self._up.prime(2 * rate * FRAME_MS // 1000)
        self._index = 0
        self._duck = 0

    def process(self, samples: Samples, delay_s: float) -> Samples:
        frame = CANCEL_RATE * FRAME_MS // 1000
        self._down.push(samples, self.rate)
        intercom = self._intercom
        treated: list[Samples] = []
        while len(self._down) >= frame:
            age = delay_s + len(self._down) / CANCEL_RATE
            captured = self._down.pop(frame)
            reference = intercom.line.take(frame, self._index, age, intercom.shift())
            self._index += frame
            treated.append(self._treat(captured, reference))
        if treated:
            self._up.push(np.concatenate(treated), CANCEL_RATE)
        if len(self._up) < len(samples):
            self._up.prime(len(samples) - len(self._up))
        return self._up.pop(len(samples))

    def _treat(self, captured: Samples, reference: Samples) -> Samples:
        intercom = self._intercom
        mode = intercom.controls.echo_mode
        if mode is EchoMode.HALF_DUPLEX:
            return self._ducked(captured, reference)
        if mode is EchoMode.OFF:
            return captured
        canceller = intercom.canceller()
        if canceller is None:
            return captured
        if canceller.finds_delay:
            return canceller.process(captured, reference)
        shift = intercom.delay.shift
        intercom.delay.observe(captured, reference)
        if intercom.delay.shift != shift:  # the echo path moved: learn it afresh
            canceller.reset()
        return canceller.process(captured, reference)

    def _ducked(self, captured: Samples, reference: Samples) -> Samples:
        loud = math.sqrt(float(np.mean(reference.astype(np.float32) ** 2))) > DUCK_THRESHOLD
        self._duck = DUCK_HOLD_FRAMES if loud else max(0, self._duck - 1)
        if not self._duck:
            return captured
        return _gain(captured, 10 ** (-self._intercom.settings.duck_db / 20))
