"""ALSA capture and playback: through real alsa-lib on the tests' own PCMs (pcms.conf),
end to end between two engines, and through a stand-in card for xruns and lost devices."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Iterator
from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from alsa.fake import FakeCard
from alsa.pcms import MIC, MISSING, SILENT_MIC, SPEAKER, AlsaPcms, FifoTone, tone_share

from edged.engine.config import AudioConfig, PublishConfig
from edged.engine.events import PlayerRecvAudioFirstFrame, PlayerStateUpdate
from edged.errors import EdgedError, ErrorCode
from edged.media.alsa.capture import AlsaCaptureTrack, alsa_audio_source
from edged.media.alsa.playback import AlsaPlaybackSink
from edged.media.sinks.analysis import audio_frame_samples
from edged.media.sources.tone import ToneGenerator, ToneTrack, tone_present
from edged.model import PlayerState, User
from edged.testing.waiting import until

from conftest import RunningServer
from enginekit import make_engine

RATE = 48_000
FAST_RETRY = (0.05, 0.2)


@pytest.fixture
def mic_tone(pcms: AlsaPcms) -> Iterator[FifoTone]:
    """A 1 kHz tone flowing into the FIFO microphone in real time."""
    feeder = FifoTone(pcms.mic_fifo, 1000.0)
    yield feeder
    feeder.close()


@contextlib.asynccontextmanager
async def capturing(track: AlsaCaptureTrack) -> AsyncIterator[AlsaCaptureTrack]:
    try:
        yield track
    finally:
        track.stop()
        assert await asyncio.to_thread(track.join, 5), "the capture thread did not end"


@contextlib.asynccontextmanager
async def speaker(sink: AlsaPlaybackSink) -> AsyncIterator[AlsaPlaybackSink]:
    try:
        yield sink
    finally:
        await sink.close()
        assert not sink.running, "the playback thread did not end"


async def take(track: MediaStreamTrack, count: int, timeout: float = 10.0) -> list[av.AudioFrame]:
    frames: list[av.AudioFrame] = []
    async with asyncio.timeout(timeout):
        while len(frames) < count:
            frame = await track.recv()
            assert isinstance(frame, av.AudioFrame)
            frames.append(frame)
    return frames


def plays_tone(samples: np.ndarray, rate: int, frequency: float) -> bool:
    """Whether a tone at ``frequency`` carries most of what was played (a gap of silence,
    a stream running dry on a busy machine, must not hide it)."""
    return tone_share(samples, rate, frequency) > 0.6


def samples_of(frames: list[av.AudioFrame]) -> np.ndarray:
    return np.concatenate([audio_frame_samples(f) for f in frames])


class BurstTrack(MediaStreamTrack):
    """Hands out all its frames at once (a stream that arrives in a burst), then ends."""

    kind = "audio"

    def __init__(self, frames: list[av.AudioFrame]) -> None:
        super().__init__()
        self._frames = frames

    async def recv(self) -> av.AudioFrame:
        await asyncio.sleep(0)
        if not self._frames:
            raise MediaStreamError
        return self._frames.pop(0)


# ---- real alsa-lib -------------------------------------------------------------------


async def test_capture_from_a_fifo_pcm_delivers_the_tone_as_timed_frames(
    pcms: AlsaPcms, mic_tone: FifoTone
) -> None:
    track = alsa_audio_source(AudioConfig(sample_rate=RATE, channels=1), MIC)
    assert isinstance(track, AlsaCaptureTrack)
    async with capturing(track):
        frames = await take(track, 50)
    assert [f.pts for f in frames] == [i * 960 for i in range(50)]
    assert {(f.samples, f.sample_rate, f.format.name, f.layout.name) for f in frames} == {
        (960, RATE, "s16", "mono")
    }
    assert {f.time_base for f in frames} == {Fraction(1, RATE)}
    assert tone_present(samples_of(frames[5:]), RATE, 1000.0)
    assert not track.clockless, "the FIFO paces reads like a device clock"
    assert track.error_code == 0 and track.xruns == 0


async def test_capture_from_a_pcm_without_clock_is_paced_in_real_time(pcms: AlsaPcms) -> None:
    async with capturing(AlsaCaptureTrack(SILENT_MIC)) as track:
        started = time.monotonic()
        while time.monotonic() - started < 1.0:
            await take(track, 1)
        elapsed = time.monotonic() - started
    expected = elapsed / 0.020
    assert track.clockless
    # Unpaced, a null PCM yields thousands of periods a second.
    assert expected / 3 <= track.frames_captured <= 2 * expected + 20


async def test_playback_mixes_two_streams_resampled_to_the_device(pcms: AlsaPcms) -> None:
    stereo_44k = ToneTrack(440.0, channels=2, sample_rate=44_100, frame_samples=882)
    mono_48k = ToneTrack(880.0)
    async with speaker(AlsaPlaybackSink(SPEAKER, rate=RATE, channels=2)) as sink:
        started = time.monotonic()
        sink.attach(stereo_44k)
        sink.attach(mono_48k)
        await until(lambda: len(pcms.speaker_samples(2)) >= 1.5 * RATE, 15)
        elapsed = time.monotonic() - started
        written = pcms.speaker_samples(2)
    assert sink.format is not None and (sink.format.rate, sink.format.channels) == (RATE, 2)
    assert sink.clockless
    assert sink.mixer.streams == 0, "closing let go of the streams"
    tail = written[-RATE // 2 :]
    # Both tones, each at its own frequency (a 44.1 kHz stream played unconverted would
    # sound at 479 Hz), and little else.
    share_440, share_880 = tone_share(tail, RATE, 440.0), tone_share(tail, RATE, 880.0)
    assert share_440 > 0.2 and share_880 > 0.2 and share_440 + share_880 > 0.9
    # Paced in real time, not as fast as the file takes it.
    assert len(written) / RATE < 2 * elapsed + 0.5


async def test_missing_devices_are_reported_and_retried(pcms: AlsaPcms) -> None:
    mic_errors: list[int] = []
    speaker_errors: list[int] = []
    mic = AlsaCaptureTrack(MISSING, on_error=mic_errors.append, retry=FAST_RETRY)
    sink = AlsaPlaybackSink(MISSING, on_error=speaker_errors.append, retry=FAST_RETRY)
    async with capturing(mic), speaker(sink):
        sink.attach(ToneTrack())
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(mic.recv(), 0.5)
        await until(lambda: bool(mic_errors and speaker_errors))
        assert mic.lost and sink.lost
    assert mic_errors == [ErrorCode.MICROPHONE_NOT_FOUND]
    assert speaker_errors == [ErrorCode.SPEAKER_NOT_FOUND]


def test_without_pyalsaaudio_the_source_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "alsaaudio", None)
    with pytest.raises(EdgedError) as caught:
        alsa_audio_source(AudioConfig())
    assert caught.value.code == ErrorCode.MICROPHONE_OPEN_FAILED
    assert "pyalsaaudio" in str(caught.value)


@pytest.mark.netns
async def test_tone_captured_on_one_engine_is_heard_on_the_others_speaker(
    srv: RunningServer, pcms: AlsaPcms, mic_tone: FifoTone
) -> None:
    mics: list[AlsaCaptureTrack] = []

    def microphone(config: AudioConfig) -> MediaStreamTrack:
        track = alsa_audio_source(config, MIC)
        assert isinstance(track, AlsaCaptureTrack)
        mics.append(track)
        return track

    publisher, _ = make_engine(srv, audio_source=microphone)
    player, rec = make_engine(srv)
    sink = AlsaPlaybackSink(SPEAKER)

    def heard() -> bool:
        tail = pcms.speaker_samples(2)[-RATE // 2 :]
        return len(tail) == RATE // 2 and tone_present(tail, RATE, 1000.0)

    async with publisher, player:
        await publisher.login_room("r", User("A"))
        await publisher.start_publishing("mic", PublishConfig(video=False))
        await player.login_room("r", User("B"))
        await player.start_playing("mic", sink)
        await until(heard, 30, "the tone from the speaker", interval=0.2)
        assert PlayerStateUpdate("mic", PlayerState.PLAYING, 0, {}) in rec.of(PlayerStateUpdate)
        assert rec.of(PlayerRecvAudioFirstFrame) == [PlayerRecvAudioFirstFrame("mic")]
        assert mics[0].error_code == 0 and sink.error_code == 0
    assert await asyncio.to_thread(mics[0].join, 5), "the microphone was released"
    assert not sink.running, "the speaker was released"


# ---- a stand-in card: xruns, underruns, lost devices -----------------------------------


async def test_capture_overruns_are_counted_and_capture_goes_on() -> None:
    card = FakeCard(tone_hz=1000.0, overrun_every=4)
    async with capturing(AlsaCaptureTrack("usb", alsa=card)) as track:
        frames = await take(track, 40)
    assert track.xruns >= 8
    assert track.error_code == 0 and track.losses == 0 and len(card.opened) == 1
    assert [f.pts for f in frames] == [i * 960 for i in range(40)]
    assert tone_present(samples_of(frames[-20:]), RATE, 1000.0)


async def test_playback_underruns_are_counted_and_playback_goes_on() -> None:
    card = FakeCard(underrun_every=5, underrun_raises_every=7)
    async with speaker(AlsaPlaybackSink("usb", channels=1, alsa=card)) as sink:
        sink.attach(ToneTrack(440.0))
        await until(lambda: len(card.played) >= 60, 15)
    # Writes 5, 10, ... return -EPIPE (pyalsaaudio 0.11), writes 7, 14, ... raise (0.10).
    assert sink.underruns >= 10
    assert sink.error_code == 0 and sink.losses == 0 and len(card.opened) == 1
    assert plays_tone(card.played_since(30), RATE, 440.0)


async def test_lost_microphone_is_reported_then_recovers_when_it_returns() -> None:
    card = FakeCard(tone_hz=1000.0)
    errors: list[int] = []
    track = AlsaCaptureTrack("usb", alsa=card, on_error=errors.append, retry=FAST_RETRY)
    async with capturing(track):
        await take(track, 10)
        card.unplugged.set()
        await until(lambda: bool(errors))
        assert track.lost and track.error_code == ErrorCode.MICROPHONE_LOST
        stale = 0
        with contextlib.suppress(TimeoutError):
            while True:  # what was queued before the loss, then nothing
                await asyncio.wait_for(track.recv(), 0.5)
                stale += 1
                assert stale <= 6, "frames kept coming from a lost device"
        card.unplugged.clear()
        frames = await take(track, 25)
    assert tone_present(samples_of(frames[5:]), RATE, 1000.0)
    assert errors == [ErrorCode.MICROPHONE_LOST, 0]
    assert track.error_code == 0 and not track.lost and track.losses == 1
    assert len(card.opened) >= 2


async def test_lost_speaker_is_reported_then_recovers_when_it_returns() -> None:
    card = FakeCard()
    errors: list[int] = []
    sink = AlsaPlaybackSink("usb", channels=1, alsa=card, on_error=errors.append, retry=FAST_RETRY)
    async with speaker(sink):
        sink.attach(ToneTrack(440.0))
        await until(lambda: len(card.played) >= 10)
        card.unplugged.set()
        await until(lambda: bool(errors))
        assert sink.lost and sink.error_code == ErrorCode.SPEAKER_LOST
        await asyncio.sleep(0.3)  # gone for a few retries
        card.unplugged.clear()
        mark = len(card.played)
        await until(lambda: len(card.played) >= mark + 30, 15)
        assert plays_tone(card.played_since(mark + 5), RATE, 440.0)
    assert errors == [ErrorCode.SPEAKER_LOST, 0]
    assert sink.error_code == 0 and sink.losses == 1 and len(card.opened) >= 2


async def test_a_burst_plays_its_newest_audio_not_all_of_it_late() -> None:
    old = ToneGenerator(440.0)
    new = ToneGenerator(880.0)
    burst = [old.render(i) for i in range(50)] + [new.render(50 + i) for i in range(5)]
    card = FakeCard()
    async with speaker(AlsaPlaybackSink("usb", channels=1, buffer_ms=100, alsa=card)) as sink:
        sink.attach(BurstTrack(burst))
        await until(lambda: sink.mixer.streams == 0, 10)
    heard = np.concatenate([period for period in card.played if np.any(period)])
    assert len(heard) < 0.3 * RATE, "a second of audio arrived at once and was all played"
    assert sink.mixer.dropped_frames >= 0.7 * RATE
    assert tone_present(heard[-int(0.08 * RATE) :], RATE, 880.0)


async def test_players_sharing_the_speaker_leave_it_one_by_one() -> None:
    card = FakeCard()
    async with speaker(AlsaPlaybackSink("usb", channels=1, alsa=card)) as sink:
        first, second = sink.input(), sink.input()
        first.attach(ToneTrack(440.0))
        second.attach(ToneTrack(880.0))
        await until(lambda: len(card.played) >= 30, 10)
        mixed = card.played_since(10)
        await first.close()
        mark = len(card.played)
        await until(lambda: len(card.played) >= mark + 30, 10)
        alone = card.played_since(mark + 5)
        assert sink.mixer.streams == 1
    assert tone_share(mixed, RATE, 440.0) > 0.3 and tone_share(mixed, RATE, 880.0) > 0.3
    assert plays_tone(alone, RATE, 880.0)


async def test_a_closed_speaker_opens_the_device_again_on_attach() -> None:
    card = FakeCard()
    sink = AlsaPlaybackSink("usb", channels=1, alsa=card)
    async with speaker(sink):
        sink.attach(ToneTrack(440.0))
        await until(lambda: len(card.played) >= 5, 10)
    assert card.opened[-1].closed
    async with speaker(sink):
        mark = len(card.played)
        sink.attach(ToneTrack(880.0))
        await until(lambda: len(card.played) >= mark + 30, 10)
        assert plays_tone(card.played_since(mark + 10), RATE, 880.0)
    assert len(card.opened) == 2


async def test_a_card_with_its_own_rate_and_channels_is_used_as_it_is() -> None:
    card = FakeCard(tone_hz=1000.0, rate=44_100, channels=4)
    async with capturing(AlsaCaptureTrack("hw", rate=RATE, channels=1, alsa=card)) as track:
        frames = await take(track, 20)
        dropped = track.frames_dropped
    assert {(f.sample_rate, f.layout.name, f.samples) for f in frames} == {(44_100, "stereo", 882)}
    # pts count samples at the card's own rate: one period apart, but for the periods
    # dropped because this reader was late (a busy machine), which leave their gap.
    periods = [f.pts // 882 for f in frames]
    assert all(f.pts % 882 == 0 for f in frames)
    assert periods == sorted(set(periods))
    assert periods[-1] - periods[0] + 1 - len(frames) <= dropped
    assert tone_present(samples_of(frames[5:]), 44_100, 1000.0)

    async with speaker(AlsaPlaybackSink("hw", rate=RATE, channels=2, alsa=card)) as sink:
        sink.attach(ToneTrack(440.0))
        await until(lambda: len(card.played) >= 40, 10)
    played = card.played_since(15)
    assert played.shape[1] == 4
    assert plays_tone(played[:, :2], 44_100, 440.0)
    assert not np.any(played[:, 2:]), "the extra channels stay silent"
