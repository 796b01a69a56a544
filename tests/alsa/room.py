"""A room between the tests' speaker and microphone PCMs: what the speaker plays comes
back into the microphone as echo, with a near-end talker on top.

:class:`EchoRoom` owns a thread that reads every period the speaker PCM
(``edged_test_echo_speaker``) writes into its FIFO, passes it through an echo path
(:class:`DelayedEcho` here; the benchmark brings a room impulse response and clock
drift), adds the near-end signal and writes the sum into the microphone's FIFO. The
room is the sound card's clock: it takes one period from the speaker and gives one to
the microphone per period of the monotonic clock, and the speaker's FIFO holds about
one period, so the speaker's writes block like a card's. Like a microphone nobody
reads, the room drops what would wait behind ``backlog`` unread periods.
:class:`SamplesTrack` plays given samples in real time: the far end's voice.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from edged.media.clock import Pacer

from .pcms import unread

F_SETPIPE_SZ = 1031
"""fcntl: set a pipe's capacity (Linux); one page is the least."""

Signal = npt.NDArray[np.float64]


class EchoPath(Protocol):
    """Turns what the speaker played (mono float, s16 scale) into what the microphone
    picks up of it, chunk by chunk (a few samples more or fewer than in, when the
    microphone's clock drifts from the speaker's: the room writes whole periods)."""

    def __call__(self, played: Signal) -> Signal: ...


class DelayedEcho:
    """The speaker heard ``delay`` samples later at ``gain``: the simplest room."""

    def __init__(self, delay: int, gain: float) -> None:
        self.gain = gain
        self._line = np.zeros(delay, dtype=np.float64)

    def __call__(self, played: Signal) -> Signal:
        joined = np.concatenate([self._line, played])
        out, self._line = joined[: len(played)], joined[len(played) :]
        return out * self.gain


NearEnd = Callable[[int, int], Signal]
"""``(first sample, count) -> samples`` of the near-end talker, s16 scale."""


class EchoRoom:
    """Owns the room's thread and what it wrote: ``echo`` and ``near`` (mono float, per
    microphone sample) for the benchmark's measurements, and the periods it dropped."""

    def __init__(
        self,
        speaker_fifo: Path,
        mic_fifo: Path,
        echo: EchoPath,
        near: NearEnd | None = None,
        *,
        channels: int = 2,
        rate: int = 48_000,
        period: int = 960,
        backlog: int = 3,
        keep: bool = False,
    ) -> None:
        self.echo_path = echo
        self.near = near
        self.channels = channels
        self.period = period
        self.rate = rate
        self.samples_written = 0
        self.periods_dropped = 0
        self.keep = keep
        self.echo: list[Signal] = []
        self.near_written: list[Signal] = []
        self._made = 0
        self._echo_due = np.zeros(0)
        self._near_due = np.zeros(0)
        self._backlog = backlog * period * 2
        # Both FIFOs opened read-write first: neither the file plugin's open of its
        # output nor of its input blocks (pyalsaaudio holds the GIL while opening).
        self._speaker = os.open(speaker_fifo, os.O_RDWR)
        fcntl.fcntl(self._speaker, F_SETPIPE_SZ, os.sysconf("SC_PAGE_SIZE"))
        self._mic = os.open(mic_fifo, os.O_RDWR | os.O_NONBLOCK)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="echo-room", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self._speaker)
        os.close(self._mic)

    def _read_period(self) -> bytes | None:
        want = self.period * self.channels * 2
        data = b""
        while len(data) < want:
            if self._stop.is_set():
                return None
            ready, _, _ = select.select([self._speaker], [], [], 0.1)
            if ready:
                data += os.read(self._speaker, want - len(data))
        return data

    def _run(self) -> None:
        pacer = Pacer(self.period / self.rate, catch_up=2)
        while not self._stop.is_set():
            wait = pacer.claim()[1]
            if wait:
                self._stop.wait(wait)
            data = self._read_period()
            if data is None:
                return
            played = np.frombuffer(data, dtype=np.int16).reshape(-1, self.channels)
            echo = self.echo_path(played.astype(np.float64).mean(axis=1))
            near = self.near(self._made, len(echo)) if self.near else 0 * echo
            self._made += len(echo)
            self._echo_due = np.concatenate([self._echo_due, echo])
            self._near_due = np.concatenate([self._near_due, near])
            while len(self._echo_due) >= self.period:  # whole periods, as a card reads
                self._write_period()

    def _write_period(self) -> None:
        echo, self._echo_due = self._echo_due[: self.period], self._echo_due[self.period :]
        near, self._near_due = self._near_due[: self.period], self._near_due[self.period :]
        mic = np.clip(np.round(echo + near), -32768, 32767).astype(np.int16)
        if unread(self._mic) + mic.nbytes > self._backlog:
            self.periods_dropped += 1
            return
        with contextlib.suppress(BlockingIOError):
            os.write(self._mic, mic.tobytes())
            self.samples_written += len(mic)
            if self.keep:
                self.echo.append(echo)
                self.near_written.append(near)


class SamplesTrack(MediaStreamTrack):
    """Plays ``samples`` (mono, s16 scale, at ``rate``) in 20 ms frames in real time, then
    silence: the far end's voice for a speaker in the room."""

    kind = "audio"

    def __init__(self, samples: Signal, rate: int = 48_000) -> None:
        super().__init__()
        self._samples = np.round(samples).astype(np.int16)
        self._rate = rate
        self._size = rate // 50
        self._pacer = Pacer(0.02, catch_up=3)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        slot = await self._pacer.next_slot()
        size = self._size
        chunk = np.zeros(size, dtype=np.int16)
        part = self._samples[slot * size : slot * size + size]
        chunk[: len(part)] = part
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._rate
        frame.pts = slot * size
        return frame
