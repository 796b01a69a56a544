"""The tests' own ALSA PCMs (pcms.conf), a tone fed to the FIFO microphone in real time,
and the analysis of what the file speaker wrote."""

from __future__ import annotations

import array
import contextlib
import fcntl
import math
import os
import termios
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edged.media.clock import Pacer
from edged.media.sources.tone import ToneGenerator

SYSTEM_CONFIG = "/usr/share/alsa/alsa.conf"
TEMPLATE = Path(__file__).with_name("pcms.conf")
SPEAKER = "edged_test_speaker"
MIC = "edged_test_mic"
SILENT_MIC = "edged_test_silent_mic"
ECHO_SPEAKER = "edged_test_echo_speaker"
MISSING = "edged_test_no_such_pcm"


@dataclass(frozen=True)
class AlsaPcms:
    """Where the PCMs of pcms.conf read and write, for one test."""

    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "asoundrc"

    @property
    def speaker_file(self) -> Path:
        return self.directory / "speaker.raw"

    @property
    def mic_fifo(self) -> Path:
        return self.directory / "mic.fifo"

    @property
    def speaker_fifo(self) -> Path:
        return self.directory / "speaker.fifo"

    def speaker_samples(self, channels: int) -> npt.NDArray[np.int16]:
        """What the speaker PCM has written so far, as ``(frames, channels)``."""
        data = self.speaker_file.read_bytes() if self.speaker_file.exists() else b""
        usable = len(data) // (2 * channels) * 2 * channels
        return np.frombuffer(data[:usable], dtype=np.int16).reshape(-1, channels)


def install(directory: Path) -> AlsaPcms:
    """Write pcms.conf for ``directory`` and make the mic FIFO there."""
    pcms = AlsaPcms(directory)
    pcms.config.write_text(TEMPLATE.read_text().replace("@DIR@", str(directory)))
    os.mkfifo(pcms.mic_fifo)
    os.mkfifo(pcms.speaker_fifo)
    return pcms


def config_path(pcms: AlsaPcms) -> str:
    """The value for ALSA_CONFIG_PATH: the system's alsa.conf first, then our PCMs."""
    return f"{SYSTEM_CONFIG}:{pcms.config}"


class FifoTone:
    """Owns a thread that writes a tone into a FIFO in real time, 20 ms at a time.

    The FIFO is opened read-write at once, so the ``file`` plugin's blocking open of its
    ``infile`` (which holds the GIL) finds a writer. Like a microphone nobody reads, the
    feeder skips periods while ``backlog`` of them are still unread, so audio reaches
    the reader at most that late.
    """

    def __init__(self, fifo: Path, frequency: float, rate: int = 48_000, backlog: int = 2) -> None:
        self.generator = ToneGenerator(frequency, 0.5, sample_rate=rate, frame_samples=rate // 50)
        self.frames_written = 0
        self.frames_skipped = 0
        self._chunk_bytes = 2 * self.generator.frame_samples
        self._backlog_bytes = backlog * self._chunk_bytes
        self._fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fifo-tone", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self._fd)

    def _unread(self) -> int:
        return unread(self._fd)

    def _run(self) -> None:
        generator = self.generator
        pacer = Pacer(generator.frame_samples / generator.sample_rate, catch_up=5)
        while not self._stop.is_set():
            slot, wait = pacer.claim()
            if wait:
                self._stop.wait(wait)
            if self._unread() + self._chunk_bytes > self._backlog_bytes:
                self.frames_skipped += 1
                continue
            with contextlib.suppress(BlockingIOError):
                os.write(self._fd, generator.samples(slot * generator.frame_samples).tobytes())
                self.frames_written += 1


def unread(fd: int) -> int:
    """Bytes written into a FIFO and not yet read."""
    pending = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, pending)
    return pending[0]


def tone_share(samples: npt.NDArray[np.int16], rate: int, frequency: float) -> float:
    """The fraction of the signal's power within 10 Hz of ``frequency`` (channels averaged)."""
    values = samples.astype(np.float64)
    if values.ndim == 2:
        values = values.mean(axis=1)
    values -= values.mean()
    power = np.abs(np.fft.rfft(values * np.hanning(values.size))) ** 2
    freqs = np.fft.rfftfreq(values.size, 1 / rate)
    total = float(power.sum())
    if total <= 0:
        return 0.0
    return float(power[np.abs(freqs - frequency) <= 10.0].sum()) / total


def level_db(samples: npt.NDArray[np.float64], frequency: float, rate: int = 48_000) -> float:
    """Power within 15 Hz of ``frequency``, in dB of any fixed reference: compare two."""
    values = np.asarray(samples, dtype=np.float64)
    if values.ndim == 2:
        values = values.mean(axis=1)
    power = np.abs(np.fft.rfft(values * np.hanning(values.size))) ** 2
    band = np.abs(np.fft.rfftfreq(values.size, 1 / rate) - frequency) <= 15.0
    return 10 * math.log10(float(power[band].sum()) + 1e-12)


def amplitude_db(samples: npt.NDArray[np.float64]) -> float:
    """A lone tone's amplitude in dB of any fixed reference: the 90th percentile of the
    magnitudes, which a short gap of silence (a stream running dry on a busy machine)
    or a click does not move."""
    values = np.abs(np.asarray(samples, dtype=np.float64))
    if values.ndim == 2:
        values = values.mean(axis=1)
    return 20 * math.log10(float(np.percentile(values, 90)) + 1e-12)


async def speaker_level(pcms: AlsaPcms, rate: int = 48_000) -> float:
    """:func:`amplitude_db` of the next 0.4 s the file speaker writes (after 0.1 s more
    that the device's and the stream's buffers may still hold from before)."""
    from edged.testing.waiting import until

    mark = len(pcms.speaker_samples(2))
    await until(lambda: len(pcms.speaker_samples(2)) >= mark + rate // 2, 10)
    return amplitude_db(pcms.speaker_samples(2)[mark + rate // 10 : mark + rate // 2])
