"""The tone source, tone detection (also through Opus) and the sink that listens."""

from __future__ import annotations

import asyncio
import fractions
import itertools
import time

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.media.sinks.analysis import AudioToneSink, audio_frame_samples
from edged.media.sources.tone import (
    ToneGenerator,
    ToneTrack,
    dominant_frequency,
    measure_tone,
    tone_present,
)

RATE = 48_000


class ListTrack(MediaStreamTrack):
    """Hands out the given frames, then ends."""

    kind = "audio"

    def __init__(self, frames: list[av.AudioFrame]) -> None:
        super().__init__()
        self._frames = list(frames)

    async def recv(self) -> av.AudioFrame:
        await asyncio.sleep(0)
        if not self._frames:
            self.stop()
            raise MediaStreamError
        return self._frames.pop(0)


def opus_round_trip(frames: list[av.AudioFrame], layout: str) -> np.ndarray:
    """Encode with libopus at 32 kbit/s, decode, and return mono float samples."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = RATE
    encoder.layout = layout
    encoder.format = "s16"
    encoder.bit_rate = 32_000
    encoder.time_base = fractions.Fraction(1, RATE)
    decoder = av.CodecContext.create("opus", "r")
    decoder.sample_rate = RATE
    decoder.layout = layout
    decoded: list[np.ndarray] = []
    for frame in [*frames, None]:
        for packet in encoder.encode(frame):
            decoded.extend(audio_frame_samples(out) for out in decoder.decode(packet))
    return np.concatenate(decoded)


def generated(generator: ToneGenerator, count: int) -> list[av.AudioFrame]:
    return [generator.render(n) for n in range(count)]


@pytest.mark.parametrize(("channels", "layout"), [(1, "mono"), (2, "stereo")])
def test_frames_are_20ms_of_s16_at_48khz(channels: int, layout: str) -> None:
    frame = ToneGenerator(channels=channels).render(3)
    assert frame.format.name == "s16"
    assert frame.layout.name == layout
    assert frame.samples == 960
    assert frame.sample_rate == RATE
    assert frame.time_base == fractions.Fraction(1, RATE)
    assert frame.pts == 3 * 960


def test_tone_is_phase_continuous_across_frames() -> None:
    generator = ToneGenerator(441.7, 0.5)
    joined = np.concatenate([f.to_ndarray()[0] for f in generated(generator, 50)])
    expected = np.round(0.5 * 32767 * np.sin(2 * np.pi * 441.7 * np.arange(joined.size) / RATE))
    assert np.abs(joined - expected).max() <= 1


def test_tone_stays_precise_after_a_day() -> None:
    generator = ToneGenerator(440.0, 0.5)
    day_slot = 24 * 3600 * 50
    samples = np.concatenate([generator.samples((day_slot + n) * 960) for n in range(50)])
    assert dominant_frequency(samples, RATE) == pytest.approx(440.0, abs=0.05)


def test_stereo_carries_the_tone_on_both_channels() -> None:
    interleaved = ToneGenerator(1000.0, channels=2).render(0).to_ndarray()[0]
    assert np.array_equal(interleaved[0::2], interleaved[1::2])


def test_invalid_tones_are_refused() -> None:
    with pytest.raises(ValueError):
        ToneGenerator(30_000.0)
    with pytest.raises(ValueError):
        ToneGenerator(440.0, amplitude=1.5)
    with pytest.raises(ValueError):
        ToneGenerator(440.0, channels=6)


@settings(max_examples=40, deadline=None)
@given(frequency=st.floats(60.0, 16_000.0))
def test_dominant_frequency_of_a_clean_tone(frequency: float) -> None:
    generator = ToneGenerator(frequency, 0.3)
    samples = np.concatenate([generator.samples(n * 960) for n in range(5)])  # 100 ms
    assert dominant_frequency(samples, RATE) == pytest.approx(frequency, abs=2.0)


@pytest.mark.parametrize(
    ("frequency", "channels", "layout"), [(440.0, 1, "mono"), (1000.0, 2, "stereo")]
)
def test_tone_is_detected_within_2hz_after_opus(
    frequency: float, channels: int, layout: str
) -> None:
    frames = generated(ToneGenerator(frequency, 0.5, channels=channels), 75)
    received = opus_round_trip(frames, layout)[4800:]
    assert dominant_frequency(received, RATE) == pytest.approx(frequency, abs=2.0)
    assert tone_present(received, RATE, frequency)
    assert not tone_present(received, RATE, frequency * 1.5)


def test_quiet_tone_is_still_found_after_opus() -> None:
    received = opus_round_trip(generated(ToneGenerator(440.0, 0.02), 75), "mono")[4800:]
    measured = measure_tone(received, RATE, 440.0)
    assert measured.dominant_hz == pytest.approx(440.0, abs=2.0)
    assert measured.level_dbfs == pytest.approx(20 * np.log10(0.02 / np.sqrt(2)), abs=2.0)
    assert measured.snr_db > 20


def test_silence_is_not_reported_as_a_tone() -> None:
    zeros = np.zeros(RATE, dtype=np.int16)
    assert dominant_frequency(zeros, RATE) == 0.0
    assert not tone_present(zeros, RATE, 440.0)
    silent_frames = [
        av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
        for _ in range(50)
    ]
    for n, frame in enumerate(silent_frames):
        frame.sample_rate = RATE
        frame.pts = n * 960
    assert not tone_present(opus_round_trip(silent_frames, "mono"), RATE, 440.0)


def test_noise_is_not_reported_as_a_tone() -> None:
    noise = np.random.default_rng(3).normal(0.0, 0.2, RATE)
    assert not tone_present(noise, RATE, 440.0)
    assert not tone_present(noise, RATE, dominant_frequency(noise, RATE))


def test_integer_and_multichannel_samples_are_accepted() -> None:
    mono = ToneGenerator(750.0, 0.4).samples(0)
    stereo = np.stack([mono, mono], axis=1)
    assert dominant_frequency(stereo, RATE) == pytest.approx(750.0, abs=2.0)
    assert dominant_frequency(mono.astype(np.float32) / 32768, RATE) == pytest.approx(
        750.0, abs=2.0
    )


async def test_track_paces_20ms_frames() -> None:
    track = ToneTrack(440.0)
    frames: list[av.AudioFrame] = []
    started = time.monotonic()
    while time.monotonic() - started < 0.6:
        frames.append(await track.recv())
    assert 20 <= len(frames) <= 40
    pts = [frame.pts or 0 for frame in frames]
    assert pts[0] == 0
    assert all(b > a and (b - a) % 960 == 0 for a, b in itertools.pairwise(pts))
    assert track.frames_produced == len(frames)
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_tone_sink_hears_a_live_track() -> None:
    track = ToneTrack(523.25, 0.3, channels=2)
    async with AudioToneSink(track) as sink:
        async with asyncio.timeout(10):
            assert await sink.wait_for_seconds(0.5)
        assert sink.sample_rate == RATE
        assert sink.dominant_frequency(0.5) == pytest.approx(523.25, abs=2.0)
        assert sink.tone_present(523.25, 0.5)
        assert not sink.tone_present(440.0, 0.5)
    assert sink.ended.is_set()
    track.stop()


async def test_tone_sink_keeps_only_recent_audio() -> None:
    frames = generated(ToneGenerator(440.0), 100)  # 2 s
    sink = AudioToneSink(ListTrack(frames), keep_seconds=0.5)
    sink.start()
    async with asyncio.timeout(5):
        assert not await sink.wait_for_seconds(10.0)
    await sink.close()
    assert sink.seconds_received == pytest.approx(2.0)
    assert 0.5 * RATE <= sink.samples().size < 0.5 * RATE + 960
    assert sink.samples(0.1).size == 4800
    assert sink.tone_present(440.0, 0.5)


def test_tone_sink_before_audio_hears_nothing() -> None:
    sink = AudioToneSink(ToneTrack())
    assert sink.samples().size == 0
    assert sink.dominant_frequency() == 0.0
    assert not sink.tone_present(440.0)
