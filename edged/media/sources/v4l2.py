"""Video capture through PyAV's demuxers: a V4L2 camera on a board, a lavfi source in tests.

One class, :class:`CaptureTrack`, reads any PyAV input described by a
:class:`~edged.media.sources.capture_input.CaptureInput` (``format="v4l2"`` on a board,
``format="lavfi"`` in the tests, a media file for :mod:`edged.media.sources.file`). Its
reader thread (:mod:`edged.media.sources.capture_reader`) opens the input, demuxes it and either
passes H.264 through or decodes it into frames, turned as configured
(:mod:`edged.media.sources.orientation`). Frames go to the fan-out, which encodes them once — or,
on a board with a hardware encoder, to an encoder the track owns (``h264_v4l2m2m``,
chosen by :func:`v4l2_video_source` with
:mod:`edged.media.encoders.v4l2m2m`), so that the fan-out receives packets. Timestamps
stay on one increasing clock (:mod:`edged.media.sources.timeline`).

A device that vanishes or fails is reported (``error_code`` CAMERA_LOST, ``on_error``)
and reopened with backoff until it works again; so is one that stops delivering without
an error (:mod:`edged.media.sources.watchdog`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError

from ...backoff import Backoff
from ...errors import ErrorCode
from ...logs import log_event
from ..device import DeviceCodes, DeviceState, ErrorCallback, ReportsDeviceState
from ..encoders.base import PacketEncoder
from ..encoders.libx264 import H264Settings
from ..encoders.v4l2m2m import V4l2m2mEncoder, pick_h264_encoder
from ..h264 import is_keyframe
from ..v4l2_formats import VideoFormat, choose_input_format, node_formats
from .base import Capabilities, SourceTrack, VideoSettings
from .capture_input import CaptureInput, Opener, open_input
from .capture_reader import CaptureReader, ReaderSetup
from .orientation import Orientation
from .timeline import Timeline
from .watchdog import STALL_TIMEOUT, StallWatchdog

log = logging.getLogger("edged.media.sources.v4l2")

CAMERA_CODES = DeviceCodes(
    ErrorCode.CAMERA_NOT_FOUND, ErrorCode.CAMERA_OPEN_FAILED, ErrorCode.CAMERA_LOST
)
RETRY = (0.5, 5.0)
"""First and longest delay between attempts to reopen an input, in seconds."""


class CaptureTrack(SourceTrack, ReportsDeviceState):
    """A video track read from a PyAV input: a camera, a lavfi source or a file.

    Owns the current :class:`~edged.media.sources.capture_reader.CaptureReader` (started by the
    first :meth:`recv`, ended by :meth:`stop`, replaced when the input stalls) and the
    :class:`Timeline` and :class:`Backoff` its runs share; the bounded queue to the event
    loop (frames: the oldest is dropped when the consumer is late; packets: dropped up to
    the next keyframe, which is asked for); the stall watchdog; and the device state
    (``error_code``, ``on_error``, ``losses``, ``stalls``).
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
        stall_timeout: float | None = STALL_TIMEOUT,
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
        self.device = DeviceState(log, "capture", url=spec.url)
        """The input's error code and its losses (times a working input failed, stalls
        included)."""
        self.opens = 0
        self.restarts = 0
        """Times the reader was replaced because the input stalled."""
        self.width = 0
        self.height = 0
        """The open input's picture size (0 until opened)."""
        self.frames_delivered = 0
        self.frames_dropped = 0
        self.keyframe_requests = 0
        self._setup = ReaderSetup(spec, opener, codes, self.orientation, self.passthrough, encoder)
        self._backoff = Backoff(*retry)
        self._timeline = Timeline()
        self._lock = threading.Lock()
        self._watchdog = StallWatchdog(stall_timeout, self._on_stall)
        self._queue: asyncio.Queue[Any] = asyncio.Queue(queue_size)
        self._awaiting_keyframe = False
        self._worked = False
        self._reader: CaptureReader | None = None
        self._readers: list[CaptureReader] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def stall_timeout(self) -> float:
        """Seconds without a frame after which an open input counts as stalled (0: never)."""
        return self._watchdog.timeout

    @property
    def stalls(self) -> int:
        """Times the open input stopped delivering without an error."""
        return self._watchdog.stalls

    # ---- the track -----------------------------------------------------------------

    async def recv(self) -> Any:
        """The next frame (``av.VideoFrame``) or access unit (``av.Packet``, 1/90000)."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._reader is None:
            self._loop = asyncio.get_running_loop()
            self._start_reader(0.0)
        item = await self._queue.get()
        if item is None:
            raise MediaStreamError
        return item

    def stop(self) -> None:
        """End the track; the reader closes the input after the read in progress."""
        if self.readyState == "live":
            if self._reader is not None:
                self._reader.stop()
            self._watchdog.close()
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)
        super().stop()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the reader threads to end after :meth:`stop`; whether they have."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in self._readers:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            reader.join(left)
        return not any(reader.alive for reader in self._readers)

    @property
    def capabilities(self) -> Capabilities:
        """Keyframes and bitrate with an encoder of its own; device errors always."""
        own = self._setup.new_encoder is not None
        return Capabilities(
            keyframe_on_request=own,
            bitrate_control=own,
            hardware_encode=self.hardware_encode,
            device_errors=True,
        )

    @property
    def frame_size(self) -> tuple[int, int] | None:
        return (self.width, self.height) if self.width and self.height else None

    def request_keyframe(self) -> None:
        """Make the next packet a keyframe — possible only with the track's own encoder;
        H.264 passed through from a camera or file has its keyframes where they are."""
        self.keyframe_requests += 1
        encoder = self._reader.encoder if self._reader is not None else None
        if encoder is not None:
            encoder.request_keyframe()

    def set_bitrate(self, bitrate: int) -> int:
        """Retarget the track's own encoder; 0 when there is none (nothing to change)."""
        encoder = self._reader.encoder if self._reader is not None else None
        return encoder.set_bitrate(bitrate) if encoder is not None else 0

    # ---- what the reader thread tells -----------------------------------------------

    def reader_opened(self, reader: CaptureReader, stream: Any, refusal: str | None) -> None:
        ctx = stream.codec_context
        with self._lock:
            if reader is not self._reader:
                return
            self.opens += 1
            self.passing_through = self.passthrough and refusal is None
            self.width, self.height = ctx.width, ctx.height
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
        self._call_on_loop(self._watch, reader)

    def reader_items(self, reader: CaptureReader, items: list[Any]) -> None:
        for item in items:
            self._call_on_loop(self._deliver, reader, item)
        with self._lock:
            if reader is not self._reader:
                return
            self._worked = True
            if self.error_code:
                self._backoff.reset()
                self._set_error(0, "delivering")

    def reader_failed(self, reader: CaptureReader, code: int, detail: str) -> None:
        with self._lock:
            if reader is not self._reader:
                return
            self._set_error(self.codes.lost if self._worked else code, detail)
            self._timeline.next_segment(continuous=False)
        self._call_on_loop(self._unwatch, reader)

    # ---- on the event loop ----------------------------------------------------------

    def _start_reader(self, delay: float) -> None:
        old = self._reader
        if old is not None:
            old.stop()  # a read blocked in the driver ends it whenever it returns
            self.restarts += 1
        self._readers = [r for r in self._readers if r.alive]
        reader = CaptureReader(
            self._setup, self, self._timeline, self._backoff, self._lock, delay=delay
        )
        with self._lock:
            self._reader = reader
        self._readers.append(reader)
        reader.start()

    def _watch(self, reader: CaptureReader) -> None:
        if reader is self._reader and self.readyState == "live":
            self._watchdog.arm()

    def _unwatch(self, reader: CaptureReader) -> None:
        if reader is self._reader:
            self._watchdog.disarm()

    def _on_stall(self) -> None:
        """The open input delivered nothing for ``stall_timeout``: report it, start over."""
        if self.readyState != "live":
            return
        timeout = self._watchdog.timeout
        with self._lock:
            self._set_error(self.codes.lost, f"no frame for {timeout:g} s")
            self._timeline.next_segment(continuous=False)
            delay = self._backoff.next()
        log_event(
            log, logging.WARNING, "capture_stalled", url=self.spec.url, timeout=timeout, retry=delay
        )
        self._start_reader(delay)

    def _deliver(self, reader: CaptureReader, item: Any) -> None:
        if self.readyState != "live" or reader is not self._reader:
            return
        self._watchdog.feed()
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
            for reader in self._readers:
                reader.stop()

    def _set_error(self, code: int, detail: str) -> None:
        """Change the device state (the caller holds the lock) and tell ``on_error``."""
        loss = bool(code) and self._worked and not self.device.error_code
        if self.device.change(code, detail, loss=loss) and self.on_error is not None:
            self._call_on_loop(self.on_error, code)


def v4l2_video_source(
    config: VideoSettings,
    device: str = "/dev/video0",
    input_format: str = "auto",
    orientation: Orientation | None = None,
    *,
    formats: Callable[[str], tuple[VideoFormat, ...]] = node_formats,
    stall_timeout: float | None = STALL_TIMEOUT,
) -> CaptureTrack:
    """A V4L2 camera track for ``config`` (a :class:`~edged.engine.config.VideoConfig`).

    ``auto`` asks the camera for its formats and takes :func:`choose_input_format`'s.
    H.264 from the camera (``input_format="h264"``) passes through; other formats are
    decoded, then encoded by the board's hardware encoder when it has one (the track then
    yields packets and ``hardware_encode`` is True), else once by the fan-out's libx264.
    A camera that delivers nothing for ``stall_timeout`` seconds is reported and reopened.
    """
    if input_format == "auto":
        input_format = choose_input_format(formats(device), config.width, config.height, config.fps)
    spec = CaptureInput.v4l2(device, config.width, config.height, config.fps, input_format)
    encoder: Callable[[], PacketEncoder] | None = None
    if pick_h264_encoder().hardware and (input_format != "h264" or orientation):
        encoder = functools.partial(V4l2m2mEncoder, H264Settings.for_video(config))
    return CaptureTrack(
        spec,
        orientation=orientation,
        encoder=encoder,
        hardware_encode=encoder is not None,
        stall_timeout=stall_timeout,
    )
