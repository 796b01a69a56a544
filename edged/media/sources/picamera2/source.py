"""A Raspberry Pi camera through picamera2, its hardware H.264 passed to the fan-out untouched.

The pipeline, from the camera to the fan-out, is described in :mod:`edged.media.sources.picamera2`.
Without a hardware encoder (Pi 5, or no ``/dev/video11``) the track returns raw frames
(:attr:`~Picamera2VideoTrack.hardware_encode` False).

A new bitrate that the running encoder does not take restarts the encoder (rate-limited:
a restart costs a keyframe). A camera that stops delivering without an error is
reported (CAMERA_LOST) and restarted with backoff (:mod:`edged.media.sources.watchdog`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError

from ....backoff import Backoff
from ....errors import EdgedError, ErrorCode
from ....logs import log_event
from ...device import DeviceState, ErrorCallback, ReportsDeviceState
from ...h264 import VIDEO_TIME_BASE, ParameterSets, is_keyframe
from ..base import Capabilities, SourceTrack, VideoSettings
from ..watchdog import STALL_TIMEOUT, StallWatchdog
from .output import CameraClock, callback_output_class, yuv420_frame
from .setup import (
    CameraSetup,
    has_hardware_encoder,
    import_or_unavailable,
    lores_jpeg,
    set_live_bitrate,
)

logger = logging.getLogger(__name__)

RESTART_MIN_INTERVAL = 3.0
"""Seconds between two encoder restarts made to change the bitrate."""
BITRATE_HYSTERESIS = 0.1
"""A bitrate change smaller than this fraction of the current one is ignored."""
RETRY = (0.5, 5.0)
"""First and longest delay before restarting a stalled camera, in seconds."""

_closing: dict[int, Future[None]] = {}
"""The pending close of each camera number, waited for before it is opened again."""


class Picamera2VideoTrack(SourceTrack, ReportsDeviceState):
    """A Raspberry Pi camera as a video track of H.264 ``av.Packet`` (or raw frames, see module).

    Owns the ``Picamera2`` object, its encoder and output, the queue between the camera's
    threads and the event loop, one worker thread for opening, restarting and closing
    the camera (all blocking), the timer of a pending bitrate restart, and the stall
    watchdog with the device state it reports (``error_code``, ``on_error``, ``losses``).
    The camera is opened on the first ``recv()`` and closed by ``stop()``. When the event
    loop falls behind, queued packets are dropped up to the next keyframe, which is
    requested.
    """

    kind = "video"

    def __init__(
        self,
        config: VideoSettings,
        rotation: int = 0,
        hflip: bool = False,
        vflip: bool = False,
        camera_num: int = 0,
        queue_size: int = 30,
        stall_timeout: float | None = STALL_TIMEOUT,
        retry: tuple[float, float] = RETRY,
    ) -> None:
        setup = CameraSetup(config, rotation, hflip, vflip)
        picamera2 = import_or_unavailable("picamera2")
        self._libcamera = import_or_unavailable("libcamera")
        self._outputs = import_or_unavailable("picamera2.outputs")
        self._encoders = import_or_unavailable("picamera2.encoders")
        if len(picamera2.Picamera2.global_camera_info()) <= camera_num:
            raise EdgedError(ErrorCode.CAMERA_NOT_FOUND, f"picamera2 sees no camera {camera_num}")
        super().__init__()
        self._picamera2 = picamera2
        self.setup = setup
        self.camera_num = camera_num
        self.fps = setup.fps
        self._bitrate = setup.clamp(config.bitrate)
        self.hardware_encode = has_hardware_encoder(picamera2)
        """Whether the board's H.264 encoder makes the packets (False: raw frames)."""
        self.on_error: ErrorCallback | None = None
        """Called on the event loop with CAMERA_LOST when the camera stalls, 0 when back."""
        self.device = DeviceState(logger, "camera", camera=camera_num)
        """The camera's error code and its losses (times the working camera stopped)."""
        self.camera_restarts = 0
        self._camera: Any = None
        self._encoder: Any = None
        self._output: Any = None
        self._videodev2: Any = None
        self._raw_layout: tuple[tuple[int, int], int] = ((0, 0), 0)
        self._queue: asyncio.Queue[Any] = asyncio.Queue(queue_size)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Future[None] | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"picamera2-{camera_num}")
        self._restart_timer: asyncio.TimerHandle | None = None
        self._recover_timer: asyncio.TimerHandle | None = None
        self._last_restart = -RESTART_MIN_INTERVAL
        self._watchdog = StallWatchdog(stall_timeout, self._on_stall)
        self._backoff = Backoff(*retry)
        self._awaiting_keyframe = True
        self._units = ParameterSets()
        self._clock = CameraClock(setup.fps)
        self.frames = 0
        self.dropped = 0
        self.keyframe_requests = 0
        self.encoder_restarts = 0

    @property
    def capabilities(self) -> Capabilities:
        """Keyframes and bitrate with the hardware encoder; a snapshot and device errors."""
        hardware = self.hardware_encode
        return Capabilities(hardware, hardware, hardware, snapshot=True, device_errors=True)

    @property
    def frame_size(self) -> tuple[int, int] | None:
        return self.width, self.height

    @property
    def width(self) -> int:
        return self.setup.width

    @property
    def height(self) -> int:
        return self.setup.height

    @property
    def bitrate(self) -> int:
        """The encoder's target bitrate in bits per second."""
        return self._bitrate

    @property
    def stalls(self) -> int:
        """Times the camera stopped delivering without an error."""
        return self._watchdog.stalls

    # ---- the track ---------------------------------------------------------------

    async def recv(self) -> Any:
        """The next access unit (``av.Packet``) or, without a hardware encoder, raw frame."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._opening is None:
            self._loop = asyncio.get_running_loop()
            self._opening = asyncio.wrap_future(self._worker.submit(self._open))
            self._opening.add_done_callback(self._opened)
        await self._opening
        item = await self._queue.get()
        if item is None:
            raise MediaStreamError
        return item

    def stop(self) -> None:
        """Stop the camera and its encoder (in the worker thread) and end ``recv()``."""
        if self.readyState != "live":
            return
        super().stop()
        self._watchdog.close()
        for timer in (self._restart_timer, self._recover_timer):
            if timer is not None:
                timer.cancel()
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)
        _closing[self.camera_num] = self._worker.submit(self._close)
        self._worker.shutdown(wait=False)

    # ---- feedback from the viewers ---------------------------------------------------

    def request_keyframe(self) -> None:
        """Make the encoder's next picture an IDR (``force_key_frame``, else a restart)."""
        self.keyframe_requests += 1
        encoder = self._encoder
        if encoder is None or not self.hardware_encode:
            return
        if hasattr(encoder, "force_key_frame"):
            encoder.force_key_frame()
        else:  # picamera2 before 0.3.32: a restarted encoder starts with an IDR
            self._schedule_restart()

    def set_bitrate(self, bitrate: int) -> int:
        """Retarget the hardware encoder within its bounds; returns the bitrate now aimed at."""
        value = self.setup.clamp(bitrate)
        if abs(value - self._bitrate) < BITRATE_HYSTERESIS * self._bitrate:
            return self._bitrate
        self._bitrate = value
        encoder = self._encoder if self.hardware_encode else None
        if encoder is not None and not set_live_bitrate(encoder, self._videodev2, value):
            self._schedule_restart()
        return value

    def snapshot_jpeg(self, max_width: int = 640) -> bytes:
        """A JPEG of the camera's low-resolution stream; blocks for up to one frame."""
        camera = self._camera
        if camera is None:
            raise EdgedError(ErrorCode.SNAPSHOT_FAILED, "the camera is not running")
        return lores_jpeg(camera, max_width)

    # ---- the worker thread ---------------------------------------------------------

    def _open(self) -> None:
        previous = _closing.pop(self.camera_num, None)
        if previous is not None:
            previous.result(timeout=30)
        self._start_camera()

    def _start_camera(self) -> None:
        try:
            camera = self._picamera2.Picamera2(self.camera_num)
        except Exception as exc:
            raise EdgedError(ErrorCode.CAMERA_OPEN_FAILED, f"picamera2: {exc}") from exc
        self._camera = camera
        main = self.setup.configure(camera, self._libcamera)
        if self.hardware_encode:
            try:
                encoder, self._videodev2 = self.setup.hardware_encoder(self._bitrate)
                self._output = callback_output_class(self._outputs.Output)(self._on_access_unit)
                camera.start_encoder(encoder, self._output)
                self._encoder = encoder
            except OSError as exc:
                logger.warning("%s: %s", ErrorCode.HARDWARE_ENCODER_UNAVAILABLE.name, exc)
                self.hardware_encode = False
        if not self.hardware_encode:
            self._output = callback_output_class(self._outputs.Output)(self._on_raw_buffer)
            self._raw_layout = (tuple(main["size"]), int(main["stride"]))
            camera.start_encoder(self._encoders.Encoder(), self._output)
        camera.start()
        how = "hardware" if self.hardware_encode else "software (fan-out)"
        s = self.setup
        logger.info("picamera2: %dx%d@%g, %s H.264", s.width, s.height, s.fps, how)

    def _restart_camera(self) -> None:
        """Close the camera and open it again (a stall's recovery)."""
        self._close()
        if self.readyState == "live":
            self._start_camera()

    def _restart_encoder(self) -> None:
        camera, encoder = self._camera, self._encoder
        if camera is None or encoder is None or self.readyState != "live":
            return
        camera.stop_encoder(encoder)
        encoder.bitrate = self._bitrate
        camera.start_encoder(encoder, self._output)
        self.encoder_restarts += 1

    def _close(self) -> None:
        camera, self._camera, self._encoder = self._camera, None, None
        if camera is None:
            return
        try:
            camera.stop_encoder()
            camera.stop()
        except Exception:
            logger.exception("stopping picamera2 failed")
        finally:
            camera.close()

    # ---- the encoder's (or camera's) thread --------------------------------------------

    def _on_access_unit(self, buffer: Any, timestamp_us: int | None) -> None:
        data = self._units.complete(bytes(buffer))
        if data is None:
            return  # SPS/PPS alone: they belong to the next picture
        packet = av.Packet(data)
        packet.pts = self._clock.pts(timestamp_us)
        packet.time_base = VIDEO_TIME_BASE
        self._hand_over(packet, is_keyframe(data))

    def _on_raw_buffer(self, buffer: Any, timestamp_us: int | None) -> None:
        size, stride = self._raw_layout
        frame = yuv420_frame(buffer, size, stride)
        frame.pts = self._clock.pts(timestamp_us)
        frame.time_base = VIDEO_TIME_BASE
        self._hand_over(frame, True)

    def _hand_over(self, item: Any, keyframe: bool) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads any more
            loop.call_soon_threadsafe(self._deliver, item, keyframe)

    # ---- the event loop ------------------------------------------------------------

    def _deliver(self, item: Any, keyframe: bool) -> None:
        if self.readyState != "live":
            return
        self.frames += 1
        self._watchdog.feed()
        if self.error_code:
            self._backoff.reset()
            self._set_error(0, "delivering")
        if self._queue.full():
            while not self._queue.empty():
                self._queue.get_nowait()
                self.dropped += 1
            if isinstance(item, av.Packet):
                self._awaiting_keyframe = True
                self.request_keyframe()
        if self._awaiting_keyframe and not keyframe:
            self.dropped += 1
            return
        self._awaiting_keyframe = False
        self._queue.put_nowait(item)

    def _opened(self, future: asyncio.Future[None]) -> None:
        """The camera (re)started, or failed to: watch it, or try again later."""
        if self.readyState != "live" or future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            self._watchdog.arm()
        elif self._opening is not future:  # a restart failed; the first open's error is recv's
            logger.warning("restarting the camera failed: %s", exc)
            self._schedule_recovery()

    def _on_stall(self) -> None:
        if self.readyState != "live":
            return
        timeout = self._watchdog.timeout
        self._set_error(ErrorCode.CAMERA_LOST, f"no frame for {timeout:g} s")
        self._schedule_recovery()

    def _schedule_recovery(self) -> None:
        loop = self._loop
        if loop is None or self._recover_timer is not None or self.readyState != "live":
            return
        delay = self._backoff.next()
        log_event(logger, logging.WARNING, "camera_restart", camera=self.camera_num, delay=delay)
        self._recover_timer = loop.call_later(delay, self._recover_now)

    def _recover_now(self) -> None:
        self._recover_timer = None
        if self.readyState != "live":
            return
        self.camera_restarts += 1
        restarted = asyncio.wrap_future(self._worker.submit(self._restart_camera))
        restarted.add_done_callback(self._opened)

    def _set_error(self, code: int, detail: str) -> None:
        loss = bool(code) and not self.device.error_code
        changed = self.device.change(code, detail, loss=loss)
        if changed and self.on_error is not None and self._loop is not None:
            self._loop.call_soon(self.on_error, code)

    def _schedule_restart(self) -> None:
        loop = self._loop
        if self._restart_timer is not None or loop is None or self.readyState != "live":
            return
        delay = max(0.0, self._last_restart + RESTART_MIN_INTERVAL - loop.time())
        self._restart_timer = loop.call_later(delay, self._restart_now)

    def _restart_now(self) -> None:
        self._restart_timer = None
        if self._loop is not None and self.readyState == "live":
            self._last_restart = self._loop.time()
            self._worker.submit(self._restart_encoder)


def picamera2_video_source(
    config: VideoSettings,
    rotation: int = 0,
    hflip: bool = False,
    vflip: bool = False,
    stall_timeout: float | None = STALL_TIMEOUT,
) -> Picamera2VideoTrack:
    """A camera track for ``config`` (a :class:`~edged.engine.config.VideoConfig`).

    Usable as ``EngineProfile.video_source`` (``functools.partial`` for rotation and
    flips). Raises :class:`~edged.errors.EdgedError`: PICAMERA2_UNAVAILABLE without
    picamera2, CAMERA_NOT_FOUND without a camera, CAMERA_FORMAT_UNSUPPORTED for a
    rotation of 90 or 270 degrees. The size is reduced, if needed, to what H.264 level
    3.1 allows at the frame rate; the bitrate stays within ``min_bitrate..max_bitrate``
    (and 10 Mbit/s). A camera that delivers nothing for ``stall_timeout`` seconds is
    reported (CAMERA_LOST) and restarted.
    """
    return Picamera2VideoTrack(config, rotation, hflip, vflip, stall_timeout=stall_timeout)
