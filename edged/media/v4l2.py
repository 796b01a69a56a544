"""Video capture through PyAV's demuxers: a V4L2 camera on a board, a lavfi source in tests.

One class, :class:`CaptureTrack`, reads any PyAV input described by a
:class:`CaptureInput` (``format="v4l2"`` on a board, ``format="lavfi"`` in the tests, a
media file for :mod:`edged.media.filesource`): a thread it owns opens the input, demuxes
it and either passes H.264 through (one Annex-B access unit per ``av.Packet``, SPS/PPS in
front of every IDR) or decodes it (MJPEG, YUYV, anything) into frames, turned as
configured. Frames go to the fan-out, which encodes them once — or, on a board with a
hardware encoder, to an encoder the track owns (``h264_v4l2m2m``, chosen in
:mod:`edged.media.sources`), so that the fan-out receives packets. Inputs with a clock
of their own (cameras) pace themselves; the others are paced from their timestamps on
the monotonic clock, like ``ffmpeg -re``.

A device that vanishes or fails is reported (``error_code`` CAMERA_LOST, ``on_error``)
and reopened with backoff until it works again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fractions
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..errors import ErrorCode
from ..logs import log_event
from .alsa import Backoff, DeviceCodes, ErrorCallback
from .fanout import PacketEncoder
from .h264 import VIDEO_TIME_BASE, fit_level_31, is_keyframe
from .snapshot import ParameterSets
from .testpattern import plane_view

log = logging.getLogger("edged.media.v4l2")

CAMERA_CODES = DeviceCodes(
    ErrorCode.CAMERA_NOT_FOUND, ErrorCode.CAMERA_OPEN_FAILED, ErrorCode.CAMERA_LOST
)
RETRY = (0.5, 5.0)
"""First and longest delay between attempts to reopen an input, in seconds."""
INPUT_FORMATS = {"mjpeg": "mjpeg", "yuyv": "yuyv422", "yuyv422": "yuyv422", "h264": "h264"}
"""Configured input formats and FFmpeg's V4L2 names for them ("auto": the driver's)."""


@dataclass(frozen=True)
class CaptureInput:
    """What to open with PyAV: a URL, its container format and options.

    ``clocked`` inputs deliver in real time by themselves (cameras); the others are
    paced from their timestamps. ``loop`` inputs (files) start again at their end; for
    the others the end is a lost device.
    """

    url: str
    format: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    clocked: bool = False
    loop: bool = False

    @classmethod
    def v4l2(
        cls, device: str, width: int, height: int, fps: float, input_format: str = "auto"
    ) -> CaptureInput:
        """A V4L2 camera at a size, rate and input format (``auto``: the driver's choice)."""
        options = {"video_size": f"{width}x{height}", "framerate": f"{fps:g}"}
        if input_format != "auto":
            if input_format not in INPUT_FORMATS:
                raise ValueError(f"input_format must be auto or one of {', '.join(INPUT_FORMATS)}")
            options["input_format"] = INPUT_FORMATS[input_format]
        return cls(device, "v4l2", options, clocked=True)

    @classmethod
    def lavfi(cls, graph: str) -> CaptureInput:
        """An FFmpeg filter-graph source, e.g. ``testsrc2=size=640x480:rate=30``."""
        return cls(graph, "lavfi")


def open_input(spec: CaptureInput) -> Any:
    """Open ``spec`` with PyAV (blocking): the default opener of :class:`CaptureTrack`."""
    return av.open(spec.url, format=spec.format, options=dict(spec.options))


Opener = Callable[[CaptureInput], Any]
"""Opens an input: returns a PyAV input container (``streams``, ``demux``, ``close``)."""


@dataclass(frozen=True)
class Orientation:
    """How captured frames are turned: mirrored (``hflip``), upside down (``vflip``), then
    rotated clockwise by ``rotation`` degrees. Owns nothing; :meth:`apply` copies planes."""

    rotation: int = 0
    hflip: bool = False
    vflip: bool = False

    def __post_init__(self) -> None:
        if self.rotation not in (0, 90, 180, 270):
            raise ValueError(f"rotation must be 0, 90, 180 or 270, not {self.rotation}")

    @property
    def identity(self) -> bool:
        return self.rotation == 0 and not self.hflip and not self.vflip

    def apply(self, frame: av.VideoFrame) -> av.VideoFrame:
        """The frame turned (yuv420p, even sizes), same timestamps; itself when unturned."""
        if self.identity:
            return frame
        width, height = frame.width & ~1, frame.height & ~1
        if frame.format.name != "yuv420p" or (width, height) != (frame.width, frame.height):
            frame = frame.reformat(width=width, height=height, format="yuv420p")
        # 180 degrees is both flips; 270 is both flips and a quarter turn.
        half = self.rotation >= 180
        hflip, vflip, quarter = self.hflip != half, self.vflip != half, self.rotation % 180
        out = (
            av.VideoFrame(height, width, "yuv420p")
            if quarter
            else av.VideoFrame(width, height, "yuv420p")
        )
        for index in range(3):
            plane = plane_view(frame, index)
            if hflip:
                plane = plane[:, ::-1]
            if vflip:
                plane = plane[::-1]
            plane_view(out, index)[...] = np.rot90(plane, -1) if quarter else plane
        out.pts, out.time_base = frame.pts, frame.time_base
        return out


class Timeline:
    """Places the timestamps of an input's successive segments (the device reopened, the
    file looped) on one increasing clock, and says when an unclocked input's item is due.

    A segment starts now, or right after the previous one (a seamless loop); within a
    segment the input's own timestamps keep their spacing.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._origin: float | None = None
        self._anchor = 0.0
        self._first: float | None = None
        self._continuous = False
        self._last: float | None = None
        self._step = 1 / 30

    def next_segment(self, continuous: bool) -> None:
        """The next item starts a segment: right after the last one, or at the current time."""
        self._first = None
        self._continuous = continuous

    def place(self, source_s: float | None) -> float:
        """Seconds on the output timeline of an item at ``source_s`` in its segment."""
        now = self._clock()
        if self._origin is None:
            self._origin = now
        if source_s is None:
            out = now - self._origin
        else:
            if self._first is None:
                self._first = source_s
                if self._continuous and self._last is not None:
                    self._anchor = self._last + self._step
                else:
                    self._anchor = now - self._origin
            out = self._anchor + source_s - self._first
        if self._last is not None:
            if out <= self._last:
                out = self._last + 1 / VIDEO_TIME_BASE.denominator
            elif out - self._last < 1.0:
                self._step = out - self._last
        self._last = out
        return out

    def wait(self, out_s: float) -> float:
        """Seconds until the item at ``out_s`` is due (0 when it is late)."""
        origin = self._origin if self._origin is not None else self._clock()
        return max(0.0, origin + out_s - self._clock())


def passthrough_refusal(stream: Any) -> str | None:
    """Why an H.264 stream cannot go to viewers untouched (None: it can).

    WebRTC viewers expect no B-frames (aiortc negotiates constrained baseline) and, at
    level 3.1, at most 1280x720 at 30 fps.
    """
    ctx = stream.codec_context
    if ctx.name != "h264":
        return f"the video is {ctx.name}, not H.264"
    if ctx.has_b_frames:
        return f"the H.264 ({ctx.profile}) has B-frames"
    rate = stream.average_rate or stream.guessed_rate or 30
    if fit_level_31(ctx.width, ctx.height, round(rate)) != (ctx.width, ctx.height):
        return f"{ctx.width}x{ctx.height} at {float(rate):g} fps is above H.264 level 3.1"
    return None


def _packet(data: bytes, pts: int) -> av.Packet[Any]:
    packet = av.Packet(data)
    packet.pts, packet.time_base = pts, VIDEO_TIME_BASE
    return packet


def _seconds(value: int | None, time_base: fractions.Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


class CaptureTrack(MediaStreamTrack):
    """A video track read from a PyAV input: a camera, a lavfi source or a file.

    Owns the reader thread (started by the first :meth:`recv`, ended by :meth:`stop`),
    which opens the input, demuxes, passes H.264 through or decodes and turns frames, runs
    the track's own encoder when it has one, paces unclocked inputs and reopens failed
    ones with backoff; the :class:`Timeline` of the output timestamps (90 kHz); the
    bounded queue to the event loop (frames: the oldest is dropped when the consumer is
    late; packets: dropped up to the next keyframe, which is asked for); and the device
    state (``error_code``, ``on_error``, ``losses``).
    """

    kind = "video"

    def __init__(
        self,
        spec: CaptureInput,
        *,
        orientation: Orientation | None = None,
        encoder: Callable[[], PacketEncoder] | None = None,
        hardware_encode: bool = False,
        passthrough: bool = True,
        codes: DeviceCodes = CAMERA_CODES,
        on_error: ErrorCallback | None = None,
        opener: Opener = open_input,
        retry: tuple[float, float] = RETRY,
        queue_size: int = 4,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.orientation = orientation or Orientation()
        self.hardware_encode = hardware_encode
        """Whether the track's own encoder is the board's hardware encoder."""
        self.passthrough = passthrough and self.orientation.identity
        """Whether H.264 input may go to the viewers untouched (never when turning it)."""
        self.passing_through: bool | None = None
        """Whether the open input's H.264 passes through (None until opened)."""
        self.codes = codes
        self.on_error = on_error
        """Called on the event loop with the error code when the input fails, 0 when back."""
        self.error_code = 0
        self.losses = 0
        """Times a working input failed."""
        self.opens = 0
        self.frames_delivered = 0
        self.frames_dropped = 0
        self.keyframe_requests = 0
        self._new_encoder = encoder
        self._encoder: PacketEncoder | None = None
        self._opener = opener
        self._backoff = Backoff(*retry)
        self._timeline = Timeline()
        self._queue: asyncio.Queue[Any] = asyncio.Queue(queue_size)
        self._awaiting_keyframe = False
        self._encoded = ParameterSets()
        self._worked = False
        self._segment_items = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def lost(self) -> bool:
        """Whether the input is unavailable now."""
        return self.error_code != 0

    # ---- the track -----------------------------------------------------------------

    async def recv(self) -> Any:
        """The next frame (``av.VideoFrame``) or access unit (``av.Packet``, 1/90000)."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            name = f"edged-capture-{self.spec.url}"[:60]
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()
        item = await self._queue.get()
        if item is None:
            raise MediaStreamError
        return item

    def stop(self) -> None:
        """End the track; the reader closes the input after the read in progress."""
        if self.readyState == "live":
            self._stop.set()
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)
        super().stop()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the reader thread to end after :meth:`stop`; whether it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    def request_keyframe(self) -> None:
        """Make the next packet a keyframe — possible only with the track's own encoder;
        H.264 passed through from a camera or file has its keyframes where they are."""
        self.keyframe_requests += 1
        if self._encoder is not None:
            self._encoder.request_keyframe()

    def set_bitrate(self, bitrate: int) -> int:
        """Retarget the track's own encoder; 0 when there is none (nothing to change)."""
        return self._encoder.set_bitrate(bitrate) if self._encoder is not None else 0

    # ---- on the event loop ----------------------------------------------------------

    def _deliver(self, item: Any) -> None:
        if self.readyState != "live":
            return
        if isinstance(item, av.Packet):
            keyframe = is_keyframe(bytes(item))
            if self._awaiting_keyframe and not keyframe:
                self.frames_dropped += 1
                return
            if self._queue.full():
                while not self._queue.empty():
                    self._queue.get_nowait()
                    self.frames_dropped += 1
                if not keyframe:
                    self.frames_dropped += 1
                    self._awaiting_keyframe = True
                    self.request_keyframe()
                    return
            self._awaiting_keyframe = False
        elif self._queue.full():
            self._queue.get_nowait()
            self.frames_dropped += 1
        self._queue.put_nowait(item)
        self.frames_delivered += 1

    def _call_on_loop(self, callback: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is left to read
            self._stop.set()

    # ---- the reader thread -----------------------------------------------------------

    def _run(self) -> None:
        try:
            self._keep_open()
        except Exception as exc:
            log.exception("capture_failed url=%s", self.spec.url)
            self._set_error(self.codes.lost, repr(exc))
        finally:
            if self._encoder is not None:
                self._encoder.close()

    def _keep_open(self) -> None:
        while not self._stop.is_set():
            try:
                container = self._opener(self.spec)
            except Exception as exc:
                missing = isinstance(exc, FileNotFoundError) or getattr(exc, "errno", None) in (
                    errno.ENOENT,
                    errno.ENODEV,
                )
                self._fail(self.codes.not_found if missing else self.codes.open_failed, exc)
                continue
            self.opens += 1
            try:
                self._read(container)
            except Exception as exc:
                self._fail(self.codes.open_failed, exc)
                continue
            finally:
                with contextlib.suppress(Exception):
                    container.close()
            if self._stop.is_set():
                return
            if self.spec.loop and self._segment_items:
                self._timeline.next_segment(continuous=True)
            else:
                self._fail(self.codes.open_failed, EOFError("the input ended"))

    def _fail(self, code: int, exc: BaseException) -> None:
        """The input failed: report it (a loss once it has worked) and wait to retry."""
        self._set_error(self.codes.lost if self._worked else code, str(exc) or repr(exc))
        self._timeline.next_segment(continuous=False)
        self._stop.wait(self._backoff.next())

    def _read(self, container: Any) -> None:
        """Demux one opened input to its end (or to :meth:`stop`)."""
        self._segment_items = 0
        streams = container.streams.video
        if not streams:
            raise ValueError("the input has no video stream")
        stream = streams[0]
        refusal = passthrough_refusal(stream) if self.passthrough else None
        self.passing_through = self.passthrough and refusal is None
        ctx = stream.codec_context
        log_event(
            log,
            logging.INFO,
            "capture_open",
            url=self.spec.url,
            codec=ctx.name,
            size=f"{ctx.width}x{ctx.height}",
            passthrough=self.passing_through,
            reason=refusal,
        )
        reader = self._access_units if self.passing_through else self._frames
        rate = float(stream.average_rate or stream.guessed_rate or 30)
        for index, (seconds, item) in enumerate(reader(stream, container)):
            if self._stop.is_set():
                return
            if seconds is None and not self.spec.clocked:
                seconds = index / rate  # a raw stream without timestamps: its frame rate
            out = self._timeline.place(seconds)
            if not self.spec.clocked and self._stop.wait(self._timeline.wait(out)):
                return
            for ready in self._stamp(item, out):
                self._call_on_loop(self._deliver, ready)
                self._segment_items += 1
            if self._segment_items and self.error_code:
                self._backoff.reset()
                self._set_error(0, "delivering")
            self._worked = self._worked or self._segment_items > 0

    def _access_units(self, stream: Any, container: Any) -> Iterator[tuple[float | None, Any]]:
        """H.264 access units (Annex-B bytes) with their time in the input."""
        avcc = bytes(stream.codec_context.extradata or b"")[:1] == b"\x01"
        bsf = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", stream) if avcc else None
        keeper = ParameterSets()
        for packet in container.demux(stream):
            if not packet.size:
                continue
            for unit in bsf.filter(packet) if bsf is not None else (packet,):
                data = keeper.complete(bytes(unit))
                if data is not None:
                    yield _seconds(unit.pts, stream.time_base), data

    def _frames(self, stream: Any, container: Any) -> Iterator[tuple[float | None, Any]]:
        """Decoded frames, turned, with their time in the input."""
        for packet in container.demux(stream):
            for frame in packet.decode():
                seconds = _seconds(frame.pts, frame.time_base or stream.time_base)
                yield seconds, self.orientation.apply(frame)

    def _stamp(self, item: Any, out_s: float) -> list[Any]:
        """The item as delivered: pts in 1/90000; frames through the own encoder if any."""
        pts = round(out_s * VIDEO_TIME_BASE.denominator)
        if isinstance(item, bytes):
            return [_packet(item, pts)]
        item.pts, item.time_base = pts, VIDEO_TIME_BASE
        if self._new_encoder is None:
            return [item]
        if self._encoder is None:
            self._encoder = self._new_encoder()
        packets = []
        for packet in self._encoder.encode(item):
            data = self._encoded.complete(bytes(packet))
            if data is not None:
                packets.append(_packet(data, pts if packet.pts is None else packet.pts))
        return packets

    def _set_error(self, code: int, detail: str) -> None:
        if code == self.error_code:
            return
        if code and self._worked and not self.error_code:
            self.losses += 1
        self.error_code = code
        level = logging.WARNING if code else logging.INFO
        event = "capture_error" if code else "capture_recovered"
        log_event(log, level, event, url=self.spec.url, code=code, detail=detail)
        if self.on_error is not None:
            self._call_on_loop(self.on_error, code)
