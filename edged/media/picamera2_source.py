"""A Raspberry Pi camera through picamera2, its hardware H.264 passed to the fan-out untouched.

picamera2's own parts make the pipeline: ``Picamera2`` (size, rate, flips) -> its
``H264Encoder`` (the V4L2 encoder, ``/dev/video11``) -> an ``Output`` subclass, whose
``outputframe()`` gets each Annex-B access unit in the encoder's thread, stamped in
microseconds -> an asyncio queue -> :meth:`Picamera2VideoTrack.recv` -> ``av.Packet``
(pts in 1/90000) that :class:`~edged.media.fanout.EncodedVideoFanout` sends to every
viewer: no decode, no re-encode. Without a hardware encoder (Pi 5, or no
``/dev/video11``) picamera2's plain ``Encoder`` hands out raw YUV420 buffers instead, the
track returns ``av.VideoFrame`` and the fan-out's libx264 encodes them once
(:attr:`~Picamera2VideoTrack.hardware_encode` False).

picamera2 0.3.x can neither set the H.264 level (the firmware's default is 4.0, aiortc
negotiates 3.1) nor change a running encoder's bitrate: the level joins the encoder's
V4L2 controls (``_controls``, applied by ``V4L2Encoder._start``); a new bitrate is set
with the V4L2 control picamera2 uses at start, else by restarting the encoder
(rate-limited: a restart costs a keyframe).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from edged.errors import EdgedError, ErrorCode
from edged.media.h264 import VIDEO_TIME_BASE, fit_level_31, is_keyframe, nal_types
from edged.media.snapshot import jpeg_from_frame
from edged.media.testpattern import plane_view

logger = logging.getLogger(__name__)

MAX_HARDWARE_BITRATE = 10_000_000
"""Above 10 Mbit/s picamera2 raises the level to 4.1, past what aiortc negotiates."""
RESTART_MIN_INTERVAL = 3.0
"""Seconds between two encoder restarts made to change the bitrate."""
BITRATE_HYSTERESIS = 0.1
"""A bitrate change smaller than this fraction of the current one is ignored."""
H264_DEVICE = "/dev/video11"
"""The V4L2 memory-to-memory encoder picamera2's hardware H264Encoder opens."""
_PICTURE_NAL_TYPES = frozenset({1, 5})

_closing: dict[int, Future[None]] = {}
"""The pending close of each camera number, waited for before it is opened again."""


class VideoSettings(Protocol):
    """What the source reads from a :class:`~edged.engine.config.VideoConfig`."""

    width: int
    height: int
    fps: float
    bitrate: int
    min_bitrate: int
    max_bitrate: int
    keyframe_interval_s: float


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise EdgedError(ErrorCode.PICAMERA2_UNAVAILABLE, f"cannot import {name}: {exc}") from exc


def _has_hardware_encoder(picamera2: Any) -> bool:
    """What picamera2 itself decides: VC4 boards (Pi 4 and older) encode H.264 in hardware."""
    try:
        return bool(picamera2.get_platform() == picamera2.Platform.VC4)
    except AttributeError:  # a picamera2 without its platform module
        return os.path.exists(H264_DEVICE)


def yuv420_frame(buffer: Any, size: tuple[int, int], stride: int) -> av.VideoFrame:
    """A yuv420p frame copied from a camera's YUV420 buffer (planar, rows ``stride`` wide)."""
    width, height = size
    flat = np.frombuffer(buffer, dtype=np.uint8)
    luma, chroma = stride * height, (stride // 2) * (height // 2)
    planes = (
        flat[:luma].reshape(height, stride)[:, :width],
        flat[luma : luma + chroma].reshape(height // 2, stride // 2)[:, : width // 2],
        flat[luma + chroma : luma + 2 * chroma].reshape(height // 2, stride // 2)[:, : width // 2],
    )
    frame = av.VideoFrame(width, height, "yuv420p")
    for index, plane in enumerate(planes):
        plane_view(frame, index)[...] = plane
    return frame


def _output_class(base: type) -> type:
    """A picamera2 ``Output`` that hands every buffer to a callback (in the encoder's thread)."""

    class CallbackOutput(base):  # type: ignore[misc]
        def __init__(self, on_buffer: Any) -> None:
            super().__init__()
            self.on_buffer = on_buffer

        def outputframe(
            self, frame: Any, keyframe: bool = True, timestamp: Any = None, packet: Any = None,
            audio: bool = False,
        ) -> None:  # fmt: skip
            if frame is not None and not audio:
                self.on_buffer(frame, timestamp)

    return CallbackOutput


def _level_31_encoder_class(h264_module: Any, v4l2_module: Any, videodev2: Any) -> type:
    """picamera2's hardware ``H264Encoder`` with the H.264 level control set to 3.1.

    ``H264Encoder._start`` rebuilds ``_controls`` and then calls ``V4L2Encoder._start``,
    which applies them; the class placed between the two in the MRO adds the level.
    """

    class Level31(v4l2_module.V4L2Encoder):  # type: ignore[misc]
        def _start(self) -> None:
            self._controls.append(
                (videodev2.V4L2_CID_MPEG_VIDEO_H264_LEVEL, videodev2.V4L2_MPEG_VIDEO_H264_LEVEL_3_1)
            )
            super()._start()

    class H264EncoderLevel31(h264_module.H264Encoder, Level31):  # type: ignore[misc]
        """The board's H.264 encoder at level 3.1 (what aiortc's 42e01f covers)."""

    return H264EncoderLevel31


class Picamera2VideoTrack(MediaStreamTrack):
    """A Raspberry Pi camera as a video track of H.264 ``av.Packet`` (or raw frames, see module).

    Owns the ``Picamera2`` object, its encoder and output, the queue between the camera's
    threads and the event loop, one worker thread for opening, restarting and closing
    the camera (all blocking), and the timer of a pending bitrate restart. The camera is
    opened on the first ``recv()`` and closed by ``stop()``. When the event loop falls
    behind, queued packets are dropped up to the next keyframe, which is requested.
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
    ) -> None:
        if rotation % 360 not in (0, 180):
            raise EdgedError(
                ErrorCode.CAMERA_FORMAT_UNSUPPORTED,
                f"rotation {rotation}: the camera flips but cannot transpose; use 0 or 180",
            )
        picamera2 = _import("picamera2")
        self._libcamera = _import("libcamera")
        self._outputs = _import("picamera2.outputs")
        self._encoders = _import("picamera2.encoders")
        if len(picamera2.Picamera2.global_camera_info()) <= camera_num:
            raise EdgedError(ErrorCode.CAMERA_NOT_FOUND, f"picamera2 sees no camera {camera_num}")
        super().__init__()
        self._picamera2 = picamera2
        self.camera_num = camera_num
        self.hflip = hflip != (rotation % 360 == 180)
        self.vflip = vflip != (rotation % 360 == 180)
        self.fps = fps = config.fps
        self.width, self.height = fit_level_31(config.width, config.height, round(fps))
        self.iperiod = max(1, round(config.keyframe_interval_s * fps))
        self.min_bitrate = max(1, min(config.min_bitrate, config.bitrate))
        self.max_bitrate = min(MAX_HARDWARE_BITRATE, max(config.max_bitrate, config.bitrate))
        self._bitrate = self._clamp(config.bitrate)
        self.hardware_encode = _has_hardware_encoder(picamera2)
        """Whether the board's H.264 encoder makes the packets (False: raw frames)."""
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
        self._last_restart = -RESTART_MIN_INTERVAL
        self._awaiting_keyframe = True
        self._headers = b""
        self._pts_base = 0
        self._last_pts: int | None = None
        self.frames = 0
        self.dropped = 0
        self.keyframe_requests = 0
        self.encoder_restarts = 0

    @property
    def bitrate(self) -> int:
        """The encoder's target bitrate in bits per second."""
        return self._bitrate

    # ---- the track ---------------------------------------------------------------

    async def recv(self) -> Any:
        """The next access unit (``av.Packet``) or, without a hardware encoder, raw frame."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._opening is None:
            self._loop = asyncio.get_running_loop()
            self._opening = asyncio.wrap_future(self._worker.submit(self._open))
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
        if self._restart_timer is not None:
            self._restart_timer.cancel()
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
        value = self._clamp(bitrate)
        if abs(value - self._bitrate) < BITRATE_HYSTERESIS * self._bitrate:
            return self._bitrate
        self._bitrate = value
        if self._encoder is not None and self.hardware_encode and not self._set_live(value):
            self._schedule_restart()
        return value

    def snapshot_jpeg(self, max_width: int = 640) -> bytes:
        """A JPEG of the camera's low-resolution stream; blocks for up to one frame."""
        camera = self._camera
        if camera is None:
            raise EdgedError(ErrorCode.SNAPSHOT_FAILED, "the camera is not running")
        config = camera.stream_configuration("lores")
        array = camera.capture_array("lores")
        return jpeg_from_frame(yuv420_frame(array, config["size"], config["stride"]), max_width)

    # ---- the worker thread ---------------------------------------------------------

    def _open(self) -> None:
        previous = _closing.pop(self.camera_num, None)
        if previous is not None:
            previous.result(timeout=30)
        try:
            camera = self._picamera2.Picamera2(self.camera_num)
        except Exception as exc:
            raise EdgedError(ErrorCode.CAMERA_OPEN_FAILED, f"picamera2: {exc}") from exc
        self._camera = camera
        lores = (max(64, self.width // 2) & ~1, max(48, self.height // 2) & ~1)
        try:
            config = camera.create_video_configuration(
                main={"size": (self.width, self.height), "format": "YUV420"},
                lores={"size": lores, "format": "YUV420"},
                controls={"FrameRate": self.fps},
                transform=self._libcamera.Transform(hflip=int(self.hflip), vflip=int(self.vflip)),
            )
            camera.configure(config)
        except Exception as exc:
            raise EdgedError(ErrorCode.CAMERA_FORMAT_UNSUPPORTED, f"picamera2: {exc}") from exc
        main = camera.stream_configuration("main")
        self.width, self.height = main["size"]
        if self.hardware_encode:
            try:
                self._start_hardware_encoder(camera)
            except OSError as exc:
                logger.warning("%s: %s", ErrorCode.HARDWARE_ENCODER_UNAVAILABLE.name, exc)
                self.hardware_encode = False
        if not self.hardware_encode:
            self._output = _output_class(self._outputs.Output)(self._on_raw_buffer)
            self._raw_layout = (tuple(main["size"]), int(main["stride"]))
            camera.start_encoder(self._encoders.Encoder(), self._output)
        camera.start()
        how = "hardware" if self.hardware_encode else "software (fan-out)"
        logger.info("picamera2: %dx%d@%g, %s H.264", self.width, self.height, self.fps, how)

    def _start_hardware_encoder(self, camera: Any) -> None:
        h264 = importlib.import_module("picamera2.encoders.h264_encoder")
        try:
            self._videodev2 = importlib.import_module("videodev2")
            v4l2 = importlib.import_module("picamera2.encoders.v4l2_encoder")
            encoder_class: Any = _level_31_encoder_class(h264, v4l2, self._videodev2)
        except (ImportError, AttributeError) as exc:
            logger.warning("cannot set the H.264 level to 3.1 (%s): the firmware's is used", exc)
            encoder_class = h264.H264Encoder
        encoder = encoder_class(
            bitrate=self._bitrate, repeat=True, iperiod=self.iperiod, profile="baseline"
        )
        self._output = _output_class(self._outputs.Output)(self._on_access_unit)
        camera.start_encoder(encoder, self._output)
        self._encoder = encoder

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
        data = bytes(buffer)
        if not _PICTURE_NAL_TYPES.intersection(nal_types(data)):
            self._headers += data  # SPS/PPS alone: they belong to the next picture
            return
        data, self._headers = self._headers + data, b""
        packet = av.Packet(data)
        packet.pts = self._pts(timestamp_us)
        packet.time_base = VIDEO_TIME_BASE
        self._hand_over(packet, is_keyframe(data))

    def _on_raw_buffer(self, buffer: Any, timestamp_us: int | None) -> None:
        size, stride = self._raw_layout
        frame = yuv420_frame(buffer, size, stride)
        frame.pts = self._pts(timestamp_us)
        frame.time_base = VIDEO_TIME_BASE
        self._hand_over(frame, True)

    def _pts(self, timestamp_us: int | None) -> int:
        """90 kHz pts from the encoder's microseconds, kept increasing across restarts."""
        if timestamp_us is None:
            timestamp_us = round(time.monotonic() * 1_000_000)
        pts = self._pts_base + timestamp_us * 9 // 100
        if self._last_pts is not None and pts <= self._last_pts:
            step = round(90000 / self.fps)
            self._pts_base += self._last_pts + step - pts
            pts = self._last_pts + step
        self._last_pts = pts
        return pts

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

    def _clamp(self, bitrate: int) -> int:
        return max(self.min_bitrate, min(int(bitrate), self.max_bitrate))

    def _set_live(self, bitrate: int) -> bool:
        """The V4L2 bitrate control picamera2 sets at start, set on the running encoder."""
        encoder, v4l2 = self._encoder, self._videodev2
        device = getattr(encoder, "vd", None)
        if v4l2 is None or device is None or getattr(device, "closed", True):
            return False
        control = v4l2.v4l2_control()
        control.id = v4l2.V4L2_CID_MPEG_VIDEO_BITRATE
        control.value = bitrate
        try:
            fcntl.ioctl(device, v4l2.VIDIOC_S_CTRL, control)
        except (OSError, ValueError):
            return False
        encoder.bitrate = bitrate
        return True

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
    config: VideoSettings, rotation: int = 0, hflip: bool = False, vflip: bool = False
) -> Picamera2VideoTrack:
    """A camera track for ``config`` (a :class:`~edged.engine.config.VideoConfig`).

    Usable as ``EngineProfile.video_source`` (``functools.partial`` for rotation and
    flips). Raises :class:`~edged.errors.EdgedError`: PICAMERA2_UNAVAILABLE without
    picamera2, CAMERA_NOT_FOUND without a camera, CAMERA_FORMAT_UNSUPPORTED for a
    rotation of 90 or 270 degrees. The size is reduced, if needed, to what H.264 level
    3.1 allows at the frame rate; the bitrate stays within ``min_bitrate..max_bitrate``
    (and 10 Mbit/s).
    """
    return Picamera2VideoTrack(config, rotation, hflip, vflip)
