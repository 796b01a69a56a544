"""A recorder: a media sink that writes a played or published stream to a file.

What arrives encoded is written as it is: a published stream's viewer track gives H.264
access units and Opus packets, which are muxed without decoding or re-encoding. A
played stream arrives decoded (aiortc's receiver always decodes), so its frames are
encoded once more here — libx264 ``ultrafast`` for video, AAC (mp4) or Opus (mkv) for
audio. Matroska (``.mkv``) is the safer container: a file cut short by a power loss stays
readable, while an mp4 needs its index, written when the recorder closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import io
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.video.frame import PictureType

from ...errors import EdgedError, ErrorCode
from ...logs import log_event
from ..device import ErrorCallback
from ..frames import audio_resampler
from ..h264 import VIDEO_TIME_BASE, is_keyframe

log = logging.getLogger("edged.media.sinks.recorder")

FORMATS = {".mkv": "matroska", ".mp4": "mp4", ".mov": "mov"}
AUDIO_RATE = 48_000
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)


@dataclass(frozen=True)
class RecorderStats:
    """What a recorder wrote: frames it encoded and packets it copied, per kind."""

    video_frames_encoded: int
    video_packets_copied: int
    audio_frames_encoded: int
    audio_packets_copied: int
    bytes_written: int


class _Segments:
    """Maps each attached track's timestamps to the file's timeline (seconds).

    A track's first item lands at its arrival time since the recording started; later
    items keep the track's own spacing. Output times only increase.
    """

    def __init__(self) -> None:
        self._offset: float | None = None
        self._first: float | None = None
        self._last: float | None = None

    def restart(self) -> None:
        """A new track of this kind: its first item starts a new segment."""
        self._first = None

    def place(self, source_s: float | None, arrival_s: float, step: float) -> float:
        if source_s is None or self._first is None or self._offset is None:
            self._offset, self._first = arrival_s, source_s
            out = arrival_s
        else:
            out = self._offset + source_s - self._first
        if self._last is not None and out <= self._last:
            out = self._last + step
        self._last = out
        return out


class _StreamWriter:
    """One output stream: set up from the first item, then fed items in order."""

    def __init__(self, output: Any, kind: str, first: Any, container_format: str) -> None:
        self.output = output
        self.kind = kind
        self.segments = _Segments()
        self.copy = isinstance(first, av.Packet)
        self.encoded = self.copied = 0
        self._waiting_for_keyframe = True
        self._samples = 0
        self._resync = True
        self._resampler: av.AudioResampler | None = None
        if kind == "video" and self.copy:
            probe = av.open(io.BytesIO(bytes(first)), format="h264")
            self.stream = output.add_stream_from_template(probe.streams.video[0])
            probe.close()
            self.stream.time_base = VIDEO_TIME_BASE
        elif kind == "video":
            self.stream = output.add_stream("libx264", rate=30)
            ctx = self.stream.codec_context
            ctx.width, ctx.height = first.width & ~1, first.height & ~1
            ctx.pix_fmt = "yuv420p"
            ctx.time_base = self.stream.time_base = VIDEO_TIME_BASE
            ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "23"}
        else:
            codec = "libopus" if self.copy or container_format != "mp4" else "aac"
            self.stream = output.add_stream(codec, rate=AUDIO_RATE)
            self.stream.codec_context.layout = "stereo"
            self.stream.codec_context.time_base = self.stream.time_base = AUDIO_TIME_BASE
            if not self.copy:
                self.stream.codec_context.bit_rate = 64_000

    def restart(self) -> None:
        """A new track of this kind: a new segment (video from its next keyframe)."""
        self.segments.restart()
        self._waiting_for_keyframe = self._resync = True

    def write(self, item: Any, arrival_s: float) -> int:
        """Write one item; the bytes handed to the muxer."""
        if isinstance(item, av.Packet) != self.copy:
            return 0  # a track of the other form than the one the stream was set up for
        if self.copy and self.kind == "video":
            if self._waiting_for_keyframe and not is_keyframe(bytes(item)):
                return 0
            self._waiting_for_keyframe = False
        tb = item.time_base
        source = float(item.pts * tb) if item.pts is not None and tb is not None else None
        out_tb = self.stream.time_base
        out_s = self.segments.place(source, arrival_s, float(out_tb))
        if self.copy:
            packet = av.Packet(bytes(item))
            packet.pts = packet.dts = round(out_s / out_tb)
            packet.time_base, packet.stream = out_tb, self.stream
            self.copied += 1
            return self._mux([packet])
        self.encoded += 1
        if self.kind == "video":
            return self._mux(self.stream.encode(self._picture(item, out_s)))
        return self._mux(self._sound(item, out_s))

    def flush(self) -> int:
        return 0 if self.copy else self._mux(self.stream.encode(None))

    def _picture(self, frame: av.VideoFrame, out_s: float) -> av.VideoFrame:
        ctx = self.stream.codec_context
        if (frame.width, frame.height) != (ctx.width, ctx.height) or frame.format.name != (
            "yuv420p"
        ):
            frame = frame.reformat(width=ctx.width, height=ctx.height, format="yuv420p")
        frame.pts = round(out_s * VIDEO_TIME_BASE.denominator)
        frame.time_base = VIDEO_TIME_BASE
        frame.pict_type = PictureType.NONE
        return frame

    def _sound(self, frame: av.AudioFrame, out_s: float) -> list[av.Packet[Any]]:
        ctx = self.stream.codec_context
        if self._resampler is None:
            if not ctx.is_open:
                ctx.open()
            self._resampler = audio_resampler(ctx.format.name, "stereo", AUDIO_RATE, ctx.frame_size)
        if self._resync:  # a segment's first frame: its place on the timeline
            self._samples = max(self._samples, round(out_s * AUDIO_RATE))
            self._resync = False
        packets: list[av.Packet[Any]] = []
        frame.pts = None
        for chunk in self._resampler.resample(frame):
            chunk.pts, chunk.time_base = self._samples, AUDIO_TIME_BASE
            self._samples += chunk.samples
            packets.extend(self.stream.encode(chunk))
        return packets

    def _mux(self, packets: list[av.Packet[Any]]) -> int:
        size = 0
        for packet in packets:
            size += packet.size
            self.output.mux(packet)
        return size


def _undecodable_start(item: Any, pending: list[tuple[str, Any, float]]) -> bool:
    """Whether ``item`` would be the first video packet but is not a keyframe."""
    if not isinstance(item, av.Packet) or any(kind == "video" for kind, _, _ in pending):
        return False
    return not is_keyframe(bytes(item))


class _Output:
    """The file and its streams; used only in the recorder's writer thread.

    Items wait in :attr:`pending` until the file can be started: when every attached
    kind has delivered its first item, or ``start_window`` seconds after the first item.
    """

    def __init__(self, path: str, container_format: str, start_window: float) -> None:
        self.path = path
        self.container_format = container_format
        self.start_window = start_window
        self.expected: set[str] = set()
        self.pending: list[tuple[str, Any, float]] = []
        self.writers: dict[str, _StreamWriter] = {}
        self.container: Any = None
        self.bytes_written = 0

    def write(self, kind: str, item: Any, arrival_s: float) -> None:
        if self.container is None:
            if kind == "video" and _undecodable_start(item, self.pending):
                return
            self.pending.append((kind, item, arrival_s))
            seen = {k for k, _, _ in self.pending}
            if seen >= self.expected or arrival_s - self.pending[0][2] >= self.start_window:
                self.start()
            return
        writer = self.writers.get(kind)
        if writer is not None:
            self.bytes_written += writer.write(item, arrival_s)

    def restart(self, kind: str) -> None:
        writer = self.writers.get(kind)
        if writer is not None:
            writer.restart()

    def start(self) -> None:
        """Open the file with a stream per kind seen so far and write what waited."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        self.container = av.open(self.path, "w", format=self.container_format)
        for kind, item, _ in pending:
            if kind not in self.writers:
                self.writers[kind] = _StreamWriter(
                    self.container, kind, item, self.container_format
                )
        log_event(log, logging.INFO, "recorder_start", path=self.path, kinds=sorted(self.writers))
        for kind, item, arrival_s in pending:
            self.write(kind, item, arrival_s)

    def close(self) -> None:
        try:
            self.start()
            for writer in self.writers.values():
                self.bytes_written += writer.flush()
        finally:
            if self.container is not None:
                self.container.close()


class Recorder:
    """A media sink (``attach(track)``, ``close()``) writing what it is given to one file.

    Owns one reader task per attached track, the writer thread (muxing and encoding
    block) and the output file. Tracks may give frames (encoded here) or ``av.Packet``
    (H.264 Annex-B access units, Opus: written as they are). A track attached after
    another of its kind ended (a player's rebuilt link) continues the same stream; a kind
    first seen after the file was started is not recorded. A failure sets
    ``error_code`` RECORDER_FAILED, calls ``on_error`` and stops the recording.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        container_format: str | None = None,
        video: bool = True,
        audio: bool = True,
        start_window: float = 2.0,
        on_error: ErrorCallback | None = None,
    ) -> None:
        self.path = os.fspath(path)
        fmt = container_format or FORMATS.get(os.path.splitext(self.path)[1].lower())
        if fmt is None:
            raise EdgedError(ErrorCode.INVALID_PARAMETER, f"{self.path}: name a .mkv or .mp4 file")
        self.kinds = {k for k, wanted in (("video", video), ("audio", audio)) if wanted}
        self.on_error = on_error
        self.error_code = 0
        self._output = _Output(self.path, fmt, start_window)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="edged-recorder")
        self._readers: set[asyncio.Task[None]] = set()
        self._started = time.monotonic()
        self._closed = False

    def attach(self, track: MediaStreamTrack) -> None:
        """Record ``track`` (video or audio) from now until it ends or the recorder closes."""
        if self._closed or self.error_code or track.kind not in self.kinds:
            return
        self._output.expected.add(track.kind)
        self._executor.submit(self._output.restart, track.kind)
        task = asyncio.get_running_loop().create_task(self._read(track))
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)

    def stats(self) -> RecorderStats:
        w = self._output.writers
        video, audio = w.get("video"), w.get("audio")
        return RecorderStats(
            video_frames_encoded=video.encoded if video else 0,
            video_packets_copied=video.copied if video else 0,
            audio_frames_encoded=audio.encoded if audio else 0,
            audio_packets_copied=audio.copied if audio else 0,
            bytes_written=self._output.bytes_written,
        )

    async def close(self) -> None:
        """Stop reading, finish the file (encoders flushed, index written) and release it."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._readers):
            task.cancel()
        for task in list(self._readers):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._output.close)
        except Exception as exc:
            self._fail(exc)
        finally:
            self._executor.shutdown(wait=False)
        log_event(log, logging.INFO, "recorder_closed", path=self.path, stats=self.stats())

    async def _read(self, track: MediaStreamTrack) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self.error_code:
                item = await track.recv()
                arrival = time.monotonic() - self._started
                await loop.run_in_executor(
                    self._executor, self._output.write, track.kind, item, arrival
                )
        except MediaStreamError:
            pass
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self.error_code:
            return
        self.error_code = ErrorCode.RECORDER_FAILED
        log_event(log, logging.ERROR, "recorder_failed", path=self.path, detail=str(exc))
        if self.on_error is not None:
            self.on_error(self.error_code)
