"""The intercom: echo cancellation, the echo modes, speaker volume and mute, microphone
gain, through real alsa-lib on the tests' own PCMs, with the room of tests/alsa/room.py
carrying what the speaker plays back into the microphone."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from aiortc.mediastreams import MediaStreamTrack
from alsa.pcms import (
    ECHO_SPEAKER,
    MIC,
    SPEAKER,
    AlsaPcms,
    FifoTone,
    amplitude_db,
    level_db,
    speaker_level,
)
from alsa.room import DelayedEcho, EchoRoom, SamplesTrack

from edged.engine.config import AudioConfig, PublishConfig
from edged.errors import EdgedError, ErrorCode
from edged.media.alsa import speex, webrtc
from edged.media.alsa.capture import AlsaCaptureTrack, alsa_audio_source
from edged.media.alsa.echo import LEAD_MS, EchoMode, EchoSettings, ReferenceLine
from edged.media.alsa.intercom import CANCEL_RATE, AudioControls, Intercom
from edged.media.alsa.playback import AlsaPlaybackSink
from edged.media.sinks.analysis import audio_frame_samples
from edged.media.sources.tone import ToneTrack
from edged.model import User
from edged.testing.waiting import INTERVAL, until

from conftest import RunningServer
from enginekit import AnalysisSink, make_engine

RATE = 48_000
FAR_HZ = 440.0
"""The far end: what the viewer publishes and the device's speaker plays."""
NEAR_HZ = 1000.0
"""The near end: someone talking in front of the device."""
ECHO_DELAY = RATE * 30 // 1000
ECHO_GAIN = 0.5
NEAR_AMPLITUDE = 3277.0
"""0.1 of full scale."""

needs_speexdsp = pytest.mark.skipif(
    not speex.speexdsp_available(), reason="libspeexdsp1 is not installed"
)
CANCELLERS = [
    pytest.param("speexdsp", marks=needs_speexdsp),
    pytest.param(
        "webrtc",
        marks=pytest.mark.skipif(
            not webrtc.aec3_available(),
            reason="WebRTC's AEC3 plugin is Debian 13's (libspa-0.2-modules): the Debian 13"
            " passes run this",
        ),
    ),
]


def near_end(start: int, count: int) -> npt.NDArray[np.float64]:
    return NEAR_AMPLITUDE * np.sin(2 * np.pi * NEAR_HZ * np.arange(start, start + count) / RATE)


@contextlib.contextmanager
def echo_room(pcms: AlsaPcms) -> Iterator[EchoRoom]:
    room = EchoRoom(pcms.speaker_fifo, pcms.mic_fifo, DelayedEcho(ECHO_DELAY, ECHO_GAIN), near_end)
    try:
        yield room
    finally:
        room.close()


@contextlib.asynccontextmanager
async def devices(
    intercom: Intercom, speaker: str = ECHO_SPEAKER
) -> AsyncIterator[tuple[AlsaPlaybackSink, AlsaCaptureTrack]]:
    sink = AlsaPlaybackSink(speaker, intercom=intercom)
    mic = AlsaCaptureTrack(MIC, intercom=intercom)
    try:
        yield sink, mic
    finally:
        mic.stop()
        await sink.close()
        assert await asyncio.to_thread(mic.join, 5)
        intercom.close()


async def listen(track: MediaStreamTrack, seconds: float) -> npt.NDArray[np.float64]:
    """The next ``seconds`` of a track, as mono float."""
    parts: list[npt.NDArray[np.float64]] = []
    async with asyncio.timeout(10 + 2 * seconds):
        while sum(p.size for p in parts) < seconds * RATE:
            parts.append(audio_frame_samples(await track.recv()))
    return np.concatenate(parts)


# ---- echo cancellation, end to end ------------------------------------------------------


def _alignment(intercom: Intercom, room: EchoRoom) -> str:
    """How the reference was lined up with the microphone, for a failure's message."""
    line, delay = intercom.line, intercom.delay
    return (
        f"reference jumps {line.jumps}, steps {line.steps}; delay estimates {delay.estimates},"
        f" last {delay.last_delay_ms} ms, shift {delay.shift} samples;"
        f" microphone periods the room dropped {room.periods_dropped}"
    )


async def until_echo_down(
    intercom: Intercom,
    room: EchoRoom,
    check: Callable[[], object],
    timeout: float,
    interval: float = INTERVAL,
) -> None:
    """:func:`until` the echo is 20 dB down, saying on failure how the reference was lined up."""
    try:
        await until(check, timeout, "the echo 20 dB down", interval=interval)
    except AssertionError as exc:
        raise AssertionError(f"{exc} ({_alignment(intercom, room)})") from None


@pytest.mark.parametrize("library", CANCELLERS)
@pytest.mark.netns
@pytest.mark.timeout(240)
async def test_the_viewer_hears_the_near_end_and_not_its_own_echo(
    srv: RunningServer, pcms: AlsaPcms, library: str
) -> None:
    # Noise suppression would take the near end's steady tone for noise: it is for
    # speech, and this test is about the echo.
    controls = AudioControls(echo_mode=EchoMode.OFF)
    intercom = Intercom(controls, EchoSettings(library=library, noise_suppression=False))

    def microphone(config: AudioConfig) -> MediaStreamTrack:
        return alsa_audio_source(config, MIC, intercom=intercom)

    device, _ = make_engine(srv, audio_source=microphone)
    viewer, _ = make_engine(srv)  # publishes a 440 Hz tone: the far end's voice
    speaker = AlsaPlaybackSink(ECHO_SPEAKER, intercom=intercom)
    heard = AnalysisSink()

    def decoded(seconds: float = 1.0) -> npt.NDArray[np.float64]:
        audio = heard.audio
        return audio.samples(seconds) if audio is not None else np.zeros(0)

    with echo_room(pcms) as room:
        async with device, viewer:
            await device.login_room("r", User("door"))
            await viewer.login_room("r", User("guest"))
            await device.start_publishing("door", PublishConfig(video=False))
            await viewer.start_publishing("guest", PublishConfig(video=False))
            await device.start_playing("guest", speaker)
            await viewer.start_playing("door", heard)

            def echo_heard() -> bool:
                samples = decoded()
                return samples.size == RATE and level_db(samples, FAR_HZ) > level_db(
                    samples, NEAR_HZ
                )

            await until(echo_heard, 30, "the device's echo of the viewer's tone", interval=0.2)
            echo_off, near_off = level_db(decoded(), FAR_HZ), level_db(decoded(), NEAR_HZ)

            controls.echo_mode = EchoMode.CANCEL

            # An adaptive filter converges slowly on a pure tone, and more slowly still on
            # a loaded machine (speech converges in about 3 s: bench/aec.py): wait long.
            def echo_down() -> bool:
                return level_db(decoded(), FAR_HZ) <= echo_off - 20

            await until_echo_down(intercom, room, echo_down, 90, interval=0.2)
            # The near end over a second of audio all captured with the echo cancelled
            # (a canceller may hold the whole signal down while it first converges).
            audio = heard.audio
            assert audio is not None
            async with asyncio.timeout(10):
                assert await audio.wait_for_seconds(audio.seconds_received + 1.0)
            near_on = level_db(decoded(), NEAR_HZ)
        await speaker.close()
    assert abs(near_on - near_off) <= 1.0, (near_off, near_on)
    assert intercom.unavailable is None
    canceller = intercom.canceller()
    assert canceller is not None and canceller.name == library


def babble(seconds: float, rms: float = 3000.0) -> npt.NDArray[np.float64]:
    """Broadband bursts four times a second: speech-like enough for a delay estimate."""
    rng = np.random.default_rng(5)
    t = np.arange(round(seconds * RATE)) / RATE
    envelope = np.maximum(np.sin(2 * np.pi * 4 * t), 0) ** 2
    return rms * 2 * envelope * rng.standard_normal(len(t))


@pytest.mark.parametrize("library", CANCELLERS)
@pytest.mark.timeout(120)
async def test_an_echo_later_than_the_devices_report_is_cancelled(
    pcms: AlsaPcms, library: str
) -> None:
    # 200 ms that no device reports (a USB card's buffers, a Bluetooth speaker): past
    # speexdsp's reach, so the reference moves for it; AEC3 finds it by itself, and a
    # reference moved under it would cost it much of what it had learned.
    late = RATE * 200 // 1000
    intercom = Intercom(
        AudioControls(echo_mode=EchoMode.CANCEL),
        EchoSettings(library=library, noise_suppression=False),
    )
    room = EchoRoom(pcms.speaker_fifo, pcms.mic_fifo, DelayedEcho(late, ECHO_GAIN), keep=True)
    try:
        async with devices(intercom) as (sink, mic):
            sink.attach(SamplesTrack(babble(60)))

            async def echo_reduction() -> float:
                """The microphone's echo (the room's last second) over what went out."""
                heard = await listen(mic, 1.0)
                echo = np.concatenate(room.echo[-len(heard) // room.period :])
                return 10 * math.log10(float(np.mean(echo**2)) / (float(np.mean(heard**2)) + 1e-9))

            async def cancelled() -> bool:
                return await echo_reduction() >= 20

            await until_echo_down(intercom, room, cancelled, 40)
            reductions = [await echo_reduction() for _ in range(3)]
    finally:
        room.close()
    assert min(reductions) >= 20, reductions  # and it stays down
    moved_ms = 1000 * intercom.shift() / CANCEL_RATE
    if library == "webrtc":  # AEC3 found it: the estimate never ran (bench/aec.py: why)
        estimate = (intercom.delay.estimates, intercom.delay.shift)
        assert estimate == (0, 0), _alignment(intercom, room)
    else:  # the echo then comes LEAD_MS after the reference, give or take a window's agreement
        assert abs(moved_ms - (200 - LEAD_MS)) <= 15, _alignment(intercom, room)


# ---- the echo modes and the controls, at the devices ------------------------------------


@needs_speexdsp
async def test_half_duplex_ducks_the_microphone_while_the_speaker_plays(pcms: AlsaPcms) -> None:
    intercom = Intercom(AudioControls(echo_mode=EchoMode.HALF_DUPLEX))
    with echo_room(pcms):
        async with devices(intercom) as (sink, mic):
            playing = sink.input()
            playing.attach(ToneTrack(FAR_HZ))
            await listen(mic, 0.5)
            while_playing = await listen(mic, 1.0)
            await playing.close()
            await until(lambda: sink.mixer.streams == 0, 5)
            await listen(mic, 1.0)  # the ducking's hold and the buffers empty
            while_quiet = await listen(mic, 1.0)
    # 30 dB of ducking (EchoSettings.duck_db) on the near end, echo included.
    assert level_db(while_quiet, NEAR_HZ) - level_db(while_playing, NEAR_HZ) >= 25


async def test_speaker_volume_and_mute_scale_what_the_speaker_pcm_receives(
    pcms: AlsaPcms,
) -> None:
    controls = AudioControls()
    intercom = Intercom(controls)
    sink = AlsaPlaybackSink(SPEAKER, intercom=intercom)

    try:
        sink.attach(ToneTrack(FAR_HZ))
        await until(lambda: len(pcms.speaker_samples(2)) > RATE // 5, 10)
        full = await speaker_level(pcms)
        controls.speaker_volume = 50
        half = await speaker_level(pcms)
        controls.speaker_muted = True
        muted = await speaker_level(pcms)
        controls.speaker_muted = False
        again = await speaker_level(pcms)
    finally:
        await sink.close()
    assert abs(full - half - 20 * math.log10(2)) <= 0.3, (full, half)
    assert full - muted >= 80
    assert abs(again - half) <= 0.3


async def test_microphone_gain_scales_what_is_captured(pcms: AlsaPcms) -> None:
    controls = AudioControls(echo_mode=EchoMode.OFF)
    intercom = Intercom(controls)
    feeder = FifoTone(pcms.mic_fifo, NEAR_HZ)
    track = AlsaCaptureTrack(MIC, intercom=intercom)
    try:
        await listen(track, 0.3)
        plain = amplitude_db(await listen(track, 0.5))
        controls.mic_gain_db = -12.0
        await listen(track, 0.1)
        quieter = amplitude_db(await listen(track, 0.5))
    finally:
        track.stop()
        await asyncio.to_thread(track.join, 5)
        feeder.close()
    assert abs(plain - quieter - 12.0) <= 0.5, (plain, quieter)


@pytest.mark.parametrize(
    ("library", "hint"), [("auto", "libspeexdsp1"), ("webrtc", "libspa-0.2-modules")]
)
def test_without_its_library_the_microphone_goes_through_uncancelled(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, library: str, hint: str
) -> None:
    monkeypatch.setattr(speex, "_library", None)
    monkeypatch.setattr(speex, "LIBRARY", "libspeexdsp-not-here.so.1")
    monkeypatch.setattr(speex.ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(webrtc, "_factory", None)
    monkeypatch.setattr(webrtc, "plugin_paths", lambda: [tmp_path / webrtc.PLUGIN])
    with pytest.raises(EdgedError) as caught:
        speex.load_speexdsp()
    assert caught.value.code == ErrorCode.ECHO_CANCELLER_UNAVAILABLE
    assert not webrtc.webrtc_available()
    intercom = Intercom(settings=EchoSettings(library=library))
    tone = (NEAR_AMPLITUDE * np.sin(2 * np.pi * NEAR_HZ * np.arange(RATE) / RATE)).astype(np.int16)
    out = np.concatenate(
        [intercom.microphone(tone[i : i + 960], RATE, 0.0) for i in range(0, RATE, 960)]
    )
    assert intercom.unavailable is not None and hint in intercom.unavailable
    # The same tone (resampled to the canceller's rate and back: a 40 ms lag).
    assert abs(level_db(out[RATE // 10 :], NEAR_HZ) - level_db(tone[RATE // 10 :], NEAR_HZ)) < 1


# ---- the reference line -----------------------------------------------------------------


def line_errors(
    line: ReferenceLine,
    drift_ppm: float,
    late: Callable[[int, str], float] | None = None,
    lost: int | None = None,
) -> dict[int, int]:
    """Feeds ``line`` a minute of a speaker and a microphone whose clock runs ``drift_ppm``
    faster, each timestamp ``late(step, "speaker" | "mic")`` seconds late (a thread woken
    late), the microphone's 10 ms at step ``lost`` lost (an overrun); returns how far
    (in samples) each reference read after the first three seconds is from the one that
    was playing, by step."""
    rate, frame = line.rate, 160
    ramp = np.arange(rate * 200, dtype=np.int64)  # each sample says where it was played
    played = taken = 0
    errors: dict[int, int] = {}
    for step in range(6000):  # one minute, 10 ms at a time
        now = step * 0.01
        at = now + (late(step, "speaker") if late else 0.0)
        line.played((ramp[played : played + frame] % 30_000).astype(np.int16), 0.03, at)
        played += frame
        # The microphone's clock runs drift_ppm faster: more samples per second.
        count = (
            frame
            + round((step + 1) * frame * drift_ppm / 1e6)
            - round(step * frame * drift_ppm / 1e6)
        )
        if step == lost:
            continue
        at = now + (late(step, "mic") if late else 0.0)
        ref = line.take(count, taken, 0.0, now=at)
        taken += count
        if step > 300 and ref.any():
            heard_at = int(ref[0])  # played index of the reference's first sample
            expected = (played - frame) - round(0.03 * rate) + round(0.005 * rate)
            error = (heard_at - expected) % 30_000
            errors[step] = error if error < 15_000 else error - 30_000
    return errors


@pytest.mark.parametrize("drift_ppm", [-100.0, 0.0, 100.0])
def test_the_reference_line_follows_drifting_clocks(drift_ppm: float) -> None:
    line = ReferenceLine(16_000)
    errors = line_errors(line, drift_ppm)
    assert max(abs(e) for e in errors.values()) <= 0.004 * line.rate


def test_the_reference_line_holds_still_while_a_loaded_machine_wakes_its_threads_late() -> None:
    # Every timestamp a little late (a thread waits for the CPU), and for five seconds in
    # every ten the microphone's thread up to 15 ms late (it waits for the GIL), as on a
    # busy machine: the devices' clocks have not moved, so neither must the reference.
    rng = np.random.default_rng(7)

    def late(step: int, device: str) -> float:
        busy = device == "mic" and (step // 500) % 2 == 1
        return float(rng.exponential(0.002) + (rng.uniform(0, 0.015) if busy else 0.0))

    line = ReferenceLine(16_000)
    errors = line_errors(line, 0.0, late)
    assert max(abs(e) for e in errors.values()) <= 0.002 * line.rate
    assert (line.jumps, line.steps) == (1, 0)


def test_the_reference_line_jumps_once_when_the_microphone_loses_a_frame() -> None:
    # Everything after the lost 10 ms is heard 10 ms earlier than its index says: the
    # reference must follow in one move, not in a second of one-sample steps while the
    # canceller chases it.
    line = ReferenceLine(16_000)
    errors = line_errors(line, 0.0, lost=3000)
    settled = [abs(e) for step, e in errors.items() if not 3000 <= step < 3030]
    assert max(settled) <= 0.002 * line.rate
    assert (line.jumps, line.steps) == (2, 0)
