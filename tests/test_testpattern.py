"""The test pattern source, its pacing, and the sink that reads its codes back."""

from __future__ import annotations

import asyncio
import fractions
import itertools
import time

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from edged.media.clock import Pacer
from edged.media.sinks.analysis import VideoCodeSink, luma_plane
from edged.media.sources.testpattern import TestPatternRenderer, TestPatternTrack
from edged.media.sources.timecode import TimeCode, band_height, decode
from edged.testing.waiting import until


def pts_of(frame: av.VideoFrame) -> int:
    assert frame.pts is not None
    return frame.pts


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ListTrack(MediaStreamTrack):
    """Hands out the given frames, then ends."""

    kind = "video"

    def __init__(self, frames: list[av.VideoFrame]) -> None:
        super().__init__()
        self._frames = list(frames)

    async def recv(self) -> av.VideoFrame:
        await asyncio.sleep(0)
        if not self._frames:
            self.stop()
            raise MediaStreamError
        return self._frames.pop(0)


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (320, 180)])
def test_rendered_frames_are_yuv420p_with_90khz_pts(size: tuple[int, int]) -> None:
    renderer = TestPatternRenderer(*size, fps=30)
    frame = renderer.render(7, 1_700_000_000_000)
    assert (frame.width, frame.height) == size
    assert frame.format.name == "yuv420p"
    assert frame.time_base == fractions.Fraction(1, 90_000)
    assert frame.pts == 7 * 3000


def test_rendered_frame_carries_its_code() -> None:
    renderer = TestPatternRenderer(1280, 720, 30)
    frame = renderer.render(42, 1_700_000_000_123)
    assert decode(luma_plane(frame)) == TimeCode(1_700_000_000_123, 42)


def test_rendered_frame_defaults_to_now() -> None:
    before = int(time.time() * 1000)
    code = decode(luma_plane(TestPatternRenderer().render(0)))
    assert code is not None
    assert before - 1 <= code.capture_ms <= int(time.time() * 1000) + 1


def test_block_moves_and_background_stays() -> None:
    renderer = TestPatternRenderer(640, 480, 30)
    first = luma_plane(renderer.render(0, 0)).copy()
    later = luma_plane(renderer.render(10, 0)).copy()
    below_band = slice(band_height(480), 480)
    changed_rows = np.nonzero((first[below_band] != later[below_band]).any(axis=1))[0]
    assert changed_rows.size > 0
    assert changed_rows.min() + band_height(480) >= 480 * 3 // 4
    assert renderer.block_x(0) != renderer.block_x(10)


def test_frames_do_not_share_buffers() -> None:
    renderer = TestPatternRenderer(320, 240, 30)
    first = renderer.render(1, 1)
    renderer.render(2, 2)
    assert decode(luma_plane(first)) == TimeCode(1, 1)


def test_rendering_needs_no_event_loop() -> None:
    track = TestPatternTrack(320, 240, 15)
    frame = track.render(3, 1_700_000_000_000)
    assert decode(luma_plane(frame)) == TimeCode(1_700_000_000_000, 3)
    assert track.frames_produced == 0


def test_unsupported_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        TestPatternRenderer(641, 480)
    with pytest.raises(ValueError):
        TestPatternRenderer(32, 32)


def test_pacer_schedules_every_slot_from_the_start() -> None:
    clock = FakeClock()
    pacer = Pacer(0.1, clock=clock)
    assert pacer.claim() == (0, 0.0)
    slot, wait = pacer.claim()
    assert slot == 1
    assert wait == pytest.approx(0.1)
    clock.now += 0.15  # woke 0.05 late for slot 1; slot 2 is due in 0.05
    slot, wait = pacer.claim()
    assert slot == 2
    assert wait == pytest.approx(0.05)
    assert pacer.deadline(1000) == pytest.approx(100.0 + 100.0)


def test_pacer_jumps_to_the_newest_due_slot_instead_of_bursting() -> None:
    clock = FakeClock()
    pacer = Pacer(0.1, catch_up=0, clock=clock)
    pacer.claim()
    clock.now += 1.05
    assert pacer.claim() == (10, 0.0)
    assert pacer.slots_skipped == 9
    slot, wait = pacer.claim()
    assert slot == 11
    assert wait == pytest.approx(0.05)


def test_pacer_catches_up_a_bounded_number_of_slots() -> None:
    clock = FakeClock()
    pacer = Pacer(0.02, catch_up=3, clock=clock)
    pacer.claim()
    clock.now += 0.205  # slots 1..10 are due
    claimed = [pacer.claim() for _ in range(4)]
    assert [slot for slot, _ in claimed] == [7, 8, 9, 10]
    assert all(wait == 0.0 for _, wait in claimed)
    assert pacer.slots_skipped == 6
    assert pacer.claim()[0] == 11


async def test_track_paces_at_the_configured_fps() -> None:
    track = TestPatternTrack(320, 240, fps=30)
    frames: list[av.VideoFrame] = []
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        frames.append(await track.recv())
    assert 24 <= len(frames) <= 36
    pts = [pts_of(frame) for frame in frames]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert track.frames_produced == len(frames)
    sequences = [decode(luma_plane(frame)) for frame in frames]
    assert [code.sequence if code else None for code in sequences] == list(range(len(frames)))
    track.stop()


async def test_late_consumer_gets_no_burst() -> None:
    track = TestPatternTrack(320, 240, fps=50)
    first = await track.recv()
    await asyncio.sleep(0.3)
    late = await track.recv()
    started = time.monotonic()
    following = [await track.recv() for _ in range(3)]
    assert time.monotonic() - started >= 0.03
    assert track.frames_skipped >= 5
    assert pts_of(late) - pts_of(first) >= 5 * 1800
    steps = [pts_of(b) - pts_of(a) for a, b in itertools.pairwise([late, *following])]
    assert all(step > 0 and step % 1800 == 0 for step in steps)
    track.stop()


async def test_stopped_track_refuses_to_produce() -> None:
    track = TestPatternTrack(320, 240, fps=30)
    await track.recv()
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_code_sink_records_frames_of_a_live_track() -> None:
    track = TestPatternTrack(320, 240, fps=30)
    async with VideoCodeSink(track) as sink:
        async with asyncio.timeout(10):
            assert await sink.wait_for_codes(10)
    track.stop()
    stats = sink.stats()
    assert stats.decoded >= 10
    assert stats.undecoded == stats.missing == stats.out_of_order == stats.duplicates == 0
    observation = sink.observations[0]
    assert (observation.width, observation.height) == (320, 240)
    assert observation.sequence == 0
    assert 0 <= observation.latency_ms < 1000
    assert 0 <= stats.latency_p50_ms <= stats.latency_p95_ms <= stats.latency_max_ms


async def test_code_sink_counts_gaps_reordering_and_duplicates() -> None:
    renderer = TestPatternRenderer(320, 240, 30)
    blank = av.VideoFrame.from_ndarray(np.zeros((360, 320), dtype=np.uint8), format="yuv420p")
    order = [0, 1, 3, 2, 3, 4]
    frames = [renderer.render(n, 1_000 + n) for n in order]
    sink = VideoCodeSink(ListTrack([*frames, blank]))
    sink.start()
    async with asyncio.timeout(5):
        assert not await sink.wait_for_codes(100)
    await sink.ended.wait()
    await sink.close()
    stats = sink.stats()
    assert stats.frames == 7
    assert (stats.decoded, stats.undecoded) == (6, 1)
    assert (stats.missing, stats.out_of_order, stats.duplicates) == (1, 1, 1)
    assert [o.sequence for o in sink.observations] == order


async def test_closing_the_code_sink_cancels_its_task() -> None:
    track = TestPatternTrack(320, 240, fps=30)
    sink = VideoCodeSink(track)
    sink.start()
    await until(lambda: sink.frames_received > 0)
    await sink.close()
    assert sink.ended.is_set()
    received = sink.frames_received
    for _ in range(3):  # the track goes on: a sink still reading would take these first
        await track.recv()
    assert sink.frames_received == received
    assert track.readyState == "live"
    track.stop()
