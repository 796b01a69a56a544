"""The recorder: a played (decoded) or published (encoded) stream written to a file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from edged.errors import EdgedError, ErrorCode
from edged.media.encoders.libx264 import H264Settings
from edged.media.send.fanout import EncodedAudioFanout, EncodedVideoFanout
from edged.media.sinks.analysis import audio_frame_samples, luma_plane
from edged.media.sinks.recorder import Recorder
from edged.media.sources.testpattern import TestPatternTrack
from edged.media.sources.timecode import decode
from edged.media.sources.tone import ToneTrack, dominant_frequency
from edged.model import User
from edged.testing.waiting import until

from conftest import RunningServer
from enginekit import make_engine


class Limited(MediaStreamTrack):
    """Passes on ``count`` items of another track, then ends (a player's link closing)."""

    def __init__(self, source: MediaStreamTrack, count: int) -> None:
        super().__init__()
        self.kind = source.kind
        self.source, self.left = source, count

    async def recv(self) -> Any:
        if self.left <= 0:
            self.stop()
            raise MediaStreamError
        self.left -= 1
        return await self.source.recv()


def read_back(path: Path) -> tuple[list[int], list[float], list[Any]]:
    """The time-code sequences and times of the video, and the audio frames, of a file."""
    sequences, times, audio = [], [], []
    with av.open(str(path)) as container:
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                code = decode(luma_plane(frame.reformat(format="yuv420p")))
                assert code is not None, "a recorded frame lost its time code"
                sequences.append(code.sequence)
                times.append(float(frame.time))
            else:
                audio.append(frame)
    return sequences, times, audio


async def wait_ended(*tracks: MediaStreamTrack) -> None:
    await until(lambda: all(t.readyState != "live" for t in tracks))


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
async def test_a_played_stream_is_encoded_into_the_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"played{suffix}"
    recorder = Recorder(path)
    video = Limited(TestPatternTrack(320, 240, 30), 75)
    audio = Limited(ToneTrack(channels=2), 125)
    recorder.attach(video)
    recorder.attach(audio)
    await wait_ended(video, audio)
    await recorder.close()
    stats = recorder.stats()
    assert stats.video_frames_encoded == 75 and stats.video_packets_copied == 0
    assert stats.audio_frames_encoded == 125
    sequences, times, audio_frames = read_back(path)
    assert sequences == list(range(75))  # every frame, in order
    assert 2.0 < times[-1] - times[0] < 3.0  # two and a half seconds of video
    samples = np.concatenate([audio_frame_samples(f) for f in audio_frames])
    rate = audio_frames[0].sample_rate
    assert len(samples) / rate > 2.0
    assert abs(dominant_frequency(samples, rate) - 440) < 5


async def test_a_published_stream_is_written_without_reencoding(tmp_path: Path) -> None:
    path = tmp_path / "published.mkv"
    video = EncodedVideoFanout(TestPatternTrack(320, 240, 30), H264Settings(bitrate=300_000))
    audio = EncodedAudioFanout(ToneTrack())
    recorder = Recorder(path)
    tracks = [Limited(video.subscribe("recorder"), 60), Limited(audio.subscribe("recorder"), 100)]
    for track in tracks:
        recorder.attach(track)
    await wait_ended(*tracks)
    await recorder.close()
    await video.close()
    await audio.close()
    stats = recorder.stats()
    assert stats.video_frames_encoded == 0 and stats.audio_frames_encoded == 0
    assert stats.video_packets_copied == 60 and stats.audio_packets_copied == 100
    assert video.stats().encoders_created == 1  # the publisher's one encoder, nothing more
    sequences, _, audio_frames = read_back(path)
    assert len(sequences) == 60 and np.all(np.diff(sequences) > 0)
    samples = np.concatenate([audio_frame_samples(f) for f in audio_frames])
    assert abs(dominant_frequency(samples, audio_frames[0].sample_rate) - 440) < 5


async def test_a_rebuilt_link_continues_the_same_recording(tmp_path: Path) -> None:
    path = tmp_path / "rebuilt.mkv"
    source = TestPatternTrack(320, 240, 30)
    recorder = Recorder(path, audio=False)
    first = Limited(source, 20)
    recorder.attach(first)
    await wait_ended(first)
    await asyncio.sleep(0.3)  # the link is down for a moment
    second = Limited(source, 20)
    recorder.attach(second)
    await wait_ended(second)
    await recorder.close()
    sequences, times, _ = read_back(path)
    assert len(sequences) == 40 and np.all(np.diff(sequences) > 0)
    assert np.all(np.diff(times) > 0)
    assert max(np.diff(times)) > 0.2  # the pause is in the file's timeline


async def test_a_recording_that_cannot_be_written_reports_its_code(tmp_path: Path) -> None:
    reports: list[int] = []
    recorder = Recorder(tmp_path / "missing" / "x.mkv", on_error=reports.append)
    track = Limited(TestPatternTrack(320, 240, 30), 10)
    recorder.attach(track)
    await until(lambda: reports)  # when the file is to be started
    await recorder.close()
    assert recorder.error_code == ErrorCode.RECORDER_FAILED
    assert reports == [ErrorCode.RECORDER_FAILED]


def test_the_container_comes_from_the_file_name(tmp_path: Path) -> None:
    with pytest.raises(EdgedError) as error:
        Recorder(tmp_path / "x.avi")
    assert error.value.code == ErrorCode.INVALID_PARAMETER
    Recorder(tmp_path / "x.avi", container_format="matroska")


@pytest.mark.netns
async def test_a_played_stream_is_recorded_through_the_engine(
    srv: RunningServer, tmp_path: Path
) -> None:
    path = tmp_path / "call.mkv"
    publisher, _ = make_engine(srv)
    player, _ = make_engine(srv)
    recorder = Recorder(path)
    async with publisher, player:
        await publisher.login_room("r", User("door"))
        await publisher.start_publishing("door-cam")
        await player.login_room("r", User("phone"))
        await player.start_playing("door-cam", recorder)
        await until(lambda: recorder.stats().video_frames_encoded >= 60, 20)
        await player.stop_playing("door-cam")  # closes the recorder
    sequences, times, audio_frames = read_back(path)
    assert len(sequences) >= 60 and np.all(np.diff(sequences) > 0)
    assert times[-1] - times[0] > 1.5
    samples = np.concatenate([audio_frame_samples(f) for f in audio_frames])
    assert abs(dominant_frequency(samples, audio_frames[0].sample_rate) - 440) < 5
