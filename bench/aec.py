"""Echo cancellation through edged's real audio path, with an echo built honestly.

No sound card here, so the room is simulated between the tests' own ALSA PCMs
(tests/alsa/pcms.conf): the far end's speech (espeak-ng) is played by edged's speaker
(``AlsaPlaybackSink`` on the FIFO speaker PCM); the room (tests/alsa/room.py) reads what
the speaker wrote, one period per period, clips it a little (a small loudspeaker),
convolves it with a room impulse response (decaying noise, RT60 0.3 s, and the direct
sound), delays it (100 ms, or 200 ms), scales it (echo-path gain), runs the microphone's
clock 100 ppm fast in the drift run, adds background noise (-55 dBFS) and the near-end
talker (a second espeak-ng voice), and writes it into the FIFO microphone PCM. edged's
microphone (``AlsaCaptureTrack``) reads it through the intercom (the canceller under
test) and its frames go through the Opus encoder (``OpusEncoder``, 32 kbit/s, as
published) and an Opus decoder: the measurements are on what a viewer would decode.

Timeline (mic samples): far end only (ERLE after 3 s, convergence), then near end only
(near-end attenuation), then both (double talk: the near end's SNR against everything
else, residual echo and codec error included).

    python bench/aec.py [--quick] [--candidates webrtc,speexdsp,off]

``off`` is the same path with the canceller off: the echo as it is.

Keys of the last line: erle_db, erle_db_delay200, erle_db_drift,
nearend_attenuation_db, doubletalk_nearend_snr_db, aec_cpu_share (CPU-s of the
intercom, both threads, per s of audio; aec_cpu_share_back_to_back: the same code fed
back to back in one thread), converge_s (far-end time until 500 ms of
ERLE >= 20 dB), for the canceller ``audio.echo_canceller: auto`` picks here (``shipped``);
and the same under each candidate's name. ``webrtc`` needs PipeWire's plugin
(libspa-0.2-modules, AEC3 on Debian 13).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the tests' own PCMs and room

import av  # noqa: E402
from alsa import pcms as alsa_pcms  # noqa: E402
from alsa.room import EchoRoom, SamplesTrack  # noqa: E402

from edged.media.alsa.capture import AlsaCaptureTrack  # noqa: E402
from edged.media.alsa.echo import EchoMode, EchoSettings  # noqa: E402
from edged.media.alsa.intercom import CANCELLERS, AudioControls, Intercom, chosen_canceller  # noqa: E402
from edged.media.alsa.playback import AlsaPlaybackSink  # noqa: E402
from edged.media.encoders.opus import OpusEncoder  # noqa: E402
from edged.media.sinks.analysis import audio_frame_samples  # noqa: E402

RATE = 48_000
Signal = npt.NDArray[np.float64]

FAR_TEXT = (
    "Hello, this is the front door. There is a parcel for you, shall I leave it by the gate? "
    "The courier says it needs a signature, so please come down when you can. "
    "It is raining a little, I will wait under the porch."
)
NEAR_TEXT = (
    "Yes, I can hear you. Please leave it by the gate, I am coming down in a minute. "
    "Who is it from? I was not expecting anything today."
)
RT60_S = 0.3
ECHO_GAIN = 0.6
NOISE_DBFS = -55.0


def speech(text: str, voice: str, peak: float) -> Signal:
    """``text`` spoken by espeak-ng, at 48 kHz, scaled to ``peak`` of full scale."""
    if shutil.which("espeak-ng") is None:
        sys.exit("bench/aec.py needs espeak-ng: apt-get install --no-install-recommends espeak-ng")
    with tempfile.NamedTemporaryFile(suffix=".wav") as out:
        subprocess.run(["espeak-ng", "-v", voice, "-w", out.name, text], check=True)
        with wave.open(out.name) as w:
            raw = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
            rate = w.getframerate()
    frame = av.AudioFrame.from_ndarray(raw.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    parts = [
        f.to_ndarray().ravel() for f in [*resampler.resample(frame), *resampler.resample(None)]
    ]
    voice_samples = np.concatenate(parts).astype(np.float64)
    return voice_samples * (peak * 32767 / np.abs(voice_samples).max())


def room_response(rng: np.random.Generator) -> Signal:
    """Direct sound, then a tail of decaying noise (RT60), unit energy."""
    n = int(1.3 * RT60_S * RATE)
    t = np.arange(n) / RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / RT60_S) * 0.3
    tail[: RATE // 1000] = 0  # the first reflection after 1 ms
    tail[0] = 1.0
    return tail / np.sqrt(np.sum(tail**2))


class RoomEcho:
    """The echo path: clipping, room response (overlap-add), delay, gain, clock drift,
    background noise. Called by the room's thread with each played period."""

    def __init__(self, delay_ms: float, drift_ppm: float, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self._rng = rng
        self._rir = room_response(rng)
        self._size = 1 << int(np.ceil(np.log2(960 + len(self._rir))))
        self._spectrum = np.fft.rfft(self._rir, self._size)
        self._tail = np.zeros(self._size)
        self._pending = np.zeros(round(delay_ms * RATE / 1000))
        self._ratio = 1 + drift_ppm / 1e6
        self._in = self._out = self._base = 0
        self._noise = 32767 * 10 ** (NOISE_DBFS / 20)
        self._clip = 0.35 * 32767  # the loudest syllables of a 0.45 peak voice clip

    def __call__(self, played: Signal) -> Signal:
        n = len(played)
        x = np.clip(played, -self._clip, self._clip)
        y = np.fft.irfft(np.fft.rfft(x, self._size) * self._spectrum, self._size)
        self._tail[: len(y)] += y
        out, self._tail = self._tail[:n].copy(), np.concatenate([self._tail[n:], np.zeros(n)])
        stream = np.concatenate([self._pending, out * ECHO_GAIN])
        # The microphone's clock: ``ratio`` of its samples per sample of the speaker's,
        # read from the delay line by linear interpolation.
        self._in += n
        count = int(self._in * self._ratio) - self._out
        where = (self._out + np.arange(count)) / self._ratio - self._base
        echo = np.interp(where, np.arange(len(stream)), stream)
        self._out += count
        drop = int(where[-1]) if count else 0
        self._pending, self._base = stream[drop:], self._base + drop
        return echo + self._rng.standard_normal(count) * self._noise


class CpuMeter:
    """CPU time the intercom spends in the microphone's and the speaker's threads."""

    def __init__(self, intercom: Intercom) -> None:
        self.seconds = 0.0
        for name in ("microphone", "played"):
            original = getattr(intercom, name)
            setattr(intercom, name, self._timed(original))

    def _timed(self, function: Any) -> Any:
        def timed(*args: Any) -> Any:
            started = time.thread_time()
            try:
                return function(*args)
            finally:
                self.seconds += time.thread_time() - started

        return timed


def placed(frames: list[av.AudioFrame]) -> Signal:
    """The captured frames at their ``pts`` (mic samples): a frame dropped for a late
    reader leaves its silence, so that what follows stays in line with the room."""
    end = max(f.pts + f.samples for f in frames)
    out = np.zeros(end)
    for f in frames:
        out[f.pts : f.pts + f.samples] = audio_frame_samples(f) * 32768
    return out


def opus_round_trip(samples: Signal) -> Signal:
    """edged's Opus encoder (32 kbit/s, as published), then a decoder: mono float."""
    encoder = OpusEncoder(32_000)
    decoder = av.CodecContext.create("opus", "r")
    out: list[Signal] = []
    pcm = np.round(samples).astype(np.int16)
    for start in range(0, len(pcm) - 959, 960):
        frame = av.AudioFrame.from_ndarray(
            pcm[start : start + 960].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = RATE
        frame.pts = start
        for packet in encoder.encode(frame):
            out.extend(audio_frame_samples(f) * 32768 for f in decoder.decode(packet))
    encoder.close()
    return np.concatenate(out)


# ---- one run -----------------------------------------------------------------------


class Timeline:
    """The far end's track and the near end's voice, in mic samples, and the windows."""

    def __init__(self, quick: bool) -> None:
        self.far_only, self.near_only, self.both = (6.0, 2.5, 3.0) if quick else (10.0, 3.0, 5.0)
        far = speech(FAR_TEXT, "en", 0.45)
        near = speech(NEAR_TEXT, "en-us+f3", 0.3)
        a, b, c = (round(s * RATE) for s in (self.far_only, self.near_only, self.both))
        looped = np.tile(far, 1 + (a + c) // len(far))
        self.far = np.concatenate([looped[:a], np.zeros(b), looped[a : a + c]])
        self.near = np.concatenate([np.zeros(a), np.tile(near, 2)[: b + c]])
        self.total = a + b + c

    def near_end(self, start: int, count: int) -> Signal:
        part = self.near[start : start + count]
        return np.concatenate([part, np.zeros(count - len(part))])

    def window(self, name: str) -> slice:
        a, b = round(self.far_only * RATE), round((self.far_only + self.near_only) * RATE)
        return {
            "far": slice(3 * RATE, a),
            "near": slice(a + RATE // 2, b),  # after the room's echo tail
            "both": slice(b, self.total),
        }[name]


async def run_once(
    candidate: str, timeline: Timeline, delay_ms: float, drift_ppm: float
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        pcms = alsa_pcms.install(Path(tmp))
        os.environ["ALSA_CONFIG_PATH"] = alsa_pcms.config_path(pcms)
        room = EchoRoom(
            pcms.speaker_fifo,
            pcms.mic_fifo,
            RoomEcho(delay_ms, drift_ppm),
            timeline.near_end,
            keep=True,
        )
        mode = EchoMode.OFF if candidate == "off" else EchoMode.CANCEL
        factory = CANCELLERS.get(candidate, CANCELLERS["speexdsp"])
        intercom = Intercom(AudioControls(echo_mode=mode), EchoSettings(), canceller=factory)
        meter = CpuMeter(intercom)
        sink = AlsaPlaybackSink(alsa_pcms.ECHO_SPEAKER, intercom=intercom)
        mic = AlsaCaptureTrack(alsa_pcms.MIC, intercom=intercom)
        first = asyncio.ensure_future(mic.recv())  # reading before the room writes
        await asyncio.sleep(0.2)
        sink.attach(SamplesTrack(timeline.far))
        frames = [await first]
        while sum(f.samples for f in frames) < timeline.total + RATE // 2:
            frames.append(await mic.recv())
        mic.stop()
        await sink.close()
        await asyncio.to_thread(mic.join, 5)
        room.close()
        intercom.close()
    heard = np.concatenate(room.echo)
    near = np.concatenate(room.near_written)
    before = placed(frames)
    decoded = opus_round_trip(before)
    seconds = sum(f.samples for f in frames) / RATE
    after, sent = measure(decoded, heard, near, timeline), measure(before, heard, near, timeline)
    result = {
        "erle_db": after["erle_db"],
        "converge_s": after["converge_s"],
        "nearend_attenuation_db": sent["nearend_attenuation_db"],
        "doubletalk_nearend_snr_db": sent["doubletalk_nearend_snr_db"],
        "nearend_attenuation_db_after_opus": after["nearend_attenuation_db"],
        "doubletalk_nearend_snr_db_after_opus": after["doubletalk_nearend_snr_db"],
    }
    result["aec_cpu_share"] = round(meter.seconds / seconds, 4)
    result["dropped"] = room.periods_dropped + mic.frames_dropped
    result["delay_found_ms"] = intercom.delay.last_delay_ms
    return result


def db(signal: Signal, residual: Signal) -> float:
    return 10 * math.log10((float(np.sum(signal**2)) + 1e-9) / (float(np.sum(residual**2)) + 1e-9))


def lag_of(out: Signal, near: Signal, window: slice) -> int:
    """How many samples ``out`` runs behind the microphone (near-end correlation)."""
    ref = near[window]
    seg = out[window.start : window.stop + RATE // 10]
    size = 1 << int(np.ceil(np.log2(len(seg) + len(ref))))
    corr = np.fft.irfft(np.fft.rfft(seg, size) * np.conj(np.fft.rfft(ref, size)), size)
    return int(np.argmax(corr[: RATE // 10]))


def measure(out: Signal, heard: Signal, near: Signal, timeline: Timeline) -> dict[str, Any]:
    n = min(len(heard), len(near))
    lag = lag_of(out, near, timeline.window("near"))
    y = out[lag : lag + n]
    y = np.concatenate([y, np.zeros(n - len(y))])
    far_w, near_w, both_w = (timeline.window(k) for k in ("far", "near", "both"))
    active = np.repeat(
        np.add.reduceat(near[near_w] ** 2, np.arange(0, near_w.stop - near_w.start, 960))
        > 960 * (0.01 * 32767) ** 2,
        960,
    )[: near_w.stop - near_w.start]
    target, got = near[both_w], y[both_w]
    gain = float(np.dot(got, target) / (np.dot(target, target) + 1e-9))
    return {
        "erle_db": round(db(heard[far_w], y[far_w]), 1),
        "converge_s": converge_s(heard, y),
        "nearend_attenuation_db": round(db(near[near_w][active], y[near_w][active]), 2),
        "doubletalk_nearend_snr_db": round(db(gain * target, got - gain * target), 1),
        "lag_ms": round(1000 * lag / RATE, 1),
    }


def converge_s(heard: Signal, out: Signal) -> float | None:
    """Far-end time until the ERLE over the next 500 ms first reaches 20 dB."""
    step, span = RATE // 10, RATE // 2
    for start in range(0, len(heard) - span, step):
        if db(heard[start : start + span], out[start : start + span]) >= 20:
            return round(start / RATE, 1)
    return None


def back_to_back_cpu(timeline: Timeline) -> float:
    """CPU-s per s of audio of the same intercom fed in one thread as fast as it goes (no
    devices, no waits): the code's own cost, without what a thread that wakes 50 times a
    second pays on this virtual machine (cold caches, wake-ups)."""
    intercom = Intercom(AudioControls(echo_mode=EchoMode.CANCEL), EchoSettings())
    echo = RoomEcho(100.0, 0.0)
    far = np.round(timeline.far).astype(np.int16)
    periods = []
    for start in range(0, len(far) - 959, 960):
        played = far[start : start + 960]
        heard = np.clip(echo(played.astype(np.float64)), -32768, 32767).astype(np.int16)
        periods.append((np.repeat(played.reshape(-1, 1), 2, axis=1), heard.reshape(-1, 1)))
    started = time.process_time()
    for played_period, heard_period in periods:
        intercom.played(played_period, RATE, 0.0)
        intercom.microphone(heard_period, RATE, 0.0)
    intercom.close()
    return round((time.process_time() - started) / (len(far) / RATE), 4)


def codec_alone(timeline: Timeline) -> dict[str, Any]:
    """The near end through the Opus encoder and decoder alone: what no canceller beats."""
    r = measure(opus_round_trip(timeline.near), np.zeros(timeline.total), timeline.near, timeline)
    return {k: r[k] for k in ("nearend_attenuation_db", "doubletalk_nearend_snr_db")}


# ---- the runs ----------------------------------------------------------------------

SCENARIOS = {"": (100.0, 0.0), "_delay200": (200.0, 0.0), "_drift": (100.0, 100.0)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--candidates", default="webrtc,speexdsp,off")
    args = parser.parse_args()
    timeline = Timeline(args.quick)
    results: dict[str, dict[str, Any]] = {}
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        "ERLE and convergence on what a viewer decodes (Opus 32 kbit/s); near-end attenuation\n"
        "and double-talk SNR on what the encoder gets, then (after /) on what it decodes"
    )
    ceiling = codec_alone(timeline)
    att, snr = ceiling["nearend_attenuation_db"], ceiling["doubletalk_nearend_snr_db"]
    print(f"{'codec':<10} {'alone':<10} {'':>8} {'':>7} {'/':>7} {att:<6} {'/':>7} {snr:<6}")
    print(
        f"{'candidate':<10} {'scenario':<10} {'ERLE dB':>8} {'conv s':>7} {'near att dB':>14}"
        f" {'DT SNR dB':>14} {'CPU s/s':>8} {'drops':>5}"
    )
    for candidate in args.candidates.split(","):
        if candidate != "off" and chosen_canceller(candidate) != candidate:
            print(f"{candidate:<10} not installed here: skipped")
            continue
        flat: dict[str, Any] = {}
        scenarios = {"": SCENARIOS[""]} if candidate == "off" else SCENARIOS
        for suffix, (delay_ms, drift_ppm) in scenarios.items():
            r = await run_once(candidate, timeline, delay_ms, drift_ppm)
            att = f"{r['nearend_attenuation_db']} / {r['nearend_attenuation_db_after_opus']}"
            snr = f"{r['doubletalk_nearend_snr_db']} / {r['doubletalk_nearend_snr_db_after_opus']}"
            print(
                f"{candidate:<10} {suffix.strip('_') or 'base':<10} {r['erle_db']:>8} "
                f"{r['converge_s']!s:>7} {att:>14} {snr:>14} "
                f"{r['aec_cpu_share']:>8} {r['dropped']:>5}",
                flush=True,
            )
            if suffix:
                flat[f"erle_db{suffix}"] = r["erle_db"]
            else:
                flat.update({k: r[k] for k in r if k != "dropped"})
        results[candidate] = flat
    default = chosen_canceller("auto") or "speexdsp"
    shipped = results.get(default, {})
    keys = (
        "erle_db",
        "erle_db_delay200",
        "erle_db_drift",
        "nearend_attenuation_db",
        "doubletalk_nearend_snr_db",
        "aec_cpu_share",
        "converge_s",
    )
    summary = {k: shipped.get(k) for k in keys}
    cpu = back_to_back_cpu(timeline)
    print(f"intercom with the canceller, back to back in one thread: {cpu} CPU-s/s")
    summary["aec_cpu_share_back_to_back"] = cpu
    print(json.dumps({**summary, "shipped": default, "codec_alone": ceiling, **results}))


if __name__ == "__main__":
    asyncio.run(main())
