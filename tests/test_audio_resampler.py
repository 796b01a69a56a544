"""Audio resamplers leave no thread behind: PyAV 19's filter graphs sit in a reference
cycle, so a resampler's worker threads outlived it until the garbage collector came."""

from __future__ import annotations

import fractions
import gc
import os
from collections.abc import Iterator

import av
import numpy as np
import pytest

from edged.media.encoders.opus import OpusEncoder
from edged.media.frames import audio_resampler


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def silence() -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(
        np.zeros((1, 1920), dtype=np.int16), format="s16", layout="stereo"
    )
    frame.sample_rate, frame.pts, frame.time_base = 48000, 0, fractions.Fraction(1, 48000)
    return frame


@pytest.fixture
def no_collector() -> Iterator[None]:
    """What a daemon between two collections sees: nothing frees a cycle."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_opus_encoders_opened_and_closed_leave_the_thread_count_as_it_was(
    no_collector: None,
) -> None:
    before = threads()
    for _ in range(3):
        encoder = OpusEncoder()
        for _ in range(5):
            assert encoder.encode(silence()) is not None
        encoder.close()
        del encoder
    assert threads() == before


def test_a_resampler_converts_reframes_and_takes_its_threads_with_it(no_collector: None) -> None:
    before = threads()
    resampler = audio_resampler("s16", "mono", 16000, 320)
    chunks = [c for _ in range(5) for c in resampler.resample(silence())]
    assert chunks and all(c.samples == 320 and c.sample_rate == 16000 for c in chunks)
    assert all(c.layout.name == "mono" for c in chunks)
    del resampler, chunks
    assert threads() == before
