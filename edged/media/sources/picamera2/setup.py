"""How edged sets up a Raspberry Pi camera through picamera2: size, rate, flips, encoder.

:class:`CameraSetup` turns a video configuration into what picamera2 is given: the main
stream (fitted to H.264 level 3.1), a half-size low-resolution stream for snapshots, the
frame rate and the sensor's transform, and the hardware encoder's settings (baseline,
level 3.1, I-period, bitrate within bounds). picamera2 0.3.x can neither set the H.264
level (the firmware's default is 4.0, aiortc negotiates 3.1) nor change a running
encoder's bitrate: the level joins the encoder's V4L2 controls (``_controls``, applied by
``V4L2Encoder._start``, see :func:`level_31_encoder_class`); a new bitrate is set with
the V4L2 control picamera2 uses at start (:func:`set_live_bitrate`).
"""

from __future__ import annotations

import fcntl
import importlib
import logging
import os
from typing import Any

from ....errors import EdgedError, ErrorCode
from ...h264 import fit_level_31
from ...sinks.snapshot import jpeg_from_frame
from ..base import VideoSettings
from .output import yuv420_frame

logger = logging.getLogger("edged.media.sources.picamera2.source")

MAX_HARDWARE_BITRATE = 10_000_000
"""Above 10 Mbit/s picamera2 raises the level to 4.1, past what aiortc negotiates."""
H264_DEVICE = "/dev/video11"
"""The V4L2 memory-to-memory encoder picamera2's hardware H264Encoder opens."""


def import_or_unavailable(name: str) -> Any:
    """Import a module of picamera2 (or libcamera); PICAMERA2_UNAVAILABLE when it is missing."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise EdgedError(ErrorCode.PICAMERA2_UNAVAILABLE, f"cannot import {name}: {exc}") from exc


def has_hardware_encoder(picamera2: Any) -> bool:
    """What picamera2 itself decides: VC4 boards (Pi 4 and older) encode H.264 in hardware."""
    try:
        return bool(picamera2.get_platform() == picamera2.Platform.VC4)
    except AttributeError:  # a picamera2 without its platform module
        return os.path.exists(H264_DEVICE)


class CameraSetup:
    """The camera's configuration for one video configuration and orientation.

    Owns the size (fitted to level 3.1, then what the camera granted), rate, flips,
    I-period and the bitrate bounds; makes picamera2's video configuration.
    """

    def __init__(
        self, config: VideoSettings, rotation: int = 0, hflip: bool = False, vflip: bool = False
    ) -> None:
        if rotation % 360 not in (0, 180):
            raise EdgedError(
                ErrorCode.CAMERA_FORMAT_UNSUPPORTED,
                f"rotation {rotation}: the camera flips but cannot transpose; use 0 or 180",
            )
        self.hflip = hflip != (rotation % 360 == 180)
        self.vflip = vflip != (rotation % 360 == 180)
        self.fps = fps = config.fps
        self.width, self.height = fit_level_31(config.width, config.height, round(fps))
        self.iperiod = max(1, round(config.keyframe_interval_s * fps))
        self.min_bitrate = max(1, min(config.min_bitrate, config.bitrate))
        self.max_bitrate = min(MAX_HARDWARE_BITRATE, max(config.max_bitrate, config.bitrate))

    def clamp(self, bitrate: int) -> int:
        """``bitrate`` within ``min_bitrate..max_bitrate``."""
        return max(self.min_bitrate, min(int(bitrate), self.max_bitrate))

    def configure(self, camera: Any, libcamera: Any) -> dict[str, Any]:
        """Configure ``camera`` (main YUV420 stream, half-size lores, rate, flips); returns
        the main stream's configuration as granted (size and stride)."""
        lores = (max(64, self.width // 2) & ~1, max(48, self.height // 2) & ~1)
        try:
            config = camera.create_video_configuration(
                main={"size": (self.width, self.height), "format": "YUV420"},
                lores={"size": lores, "format": "YUV420"},
                controls={"FrameRate": self.fps},
                transform=libcamera.Transform(hflip=int(self.hflip), vflip=int(self.vflip)),
            )
            camera.configure(config)
        except Exception as exc:
            raise EdgedError(ErrorCode.CAMERA_FORMAT_UNSUPPORTED, f"picamera2: {exc}") from exc
        main: dict[str, Any] = camera.stream_configuration("main")
        self.width, self.height = main["size"]
        return main

    def hardware_encoder(self, bitrate: int) -> tuple[Any, Any]:
        """picamera2's H.264 encoder at level 3.1 (the firmware's level when that cannot be
        set), and the ``videodev2`` module (None without it)."""
        h264 = importlib.import_module("picamera2.encoders.h264_encoder")
        videodev2: Any = None
        try:
            videodev2 = importlib.import_module("videodev2")
            v4l2 = importlib.import_module("picamera2.encoders.v4l2_encoder")
            encoder_class: Any = level_31_encoder_class(h264, v4l2, videodev2)
        except (ImportError, AttributeError) as exc:
            logger.warning("cannot set the H.264 level to 3.1 (%s): the firmware's is used", exc)
            encoder_class = h264.H264Encoder
        encoder = encoder_class(
            bitrate=bitrate, repeat=True, iperiod=self.iperiod, profile="baseline"
        )
        return encoder, videodev2


def level_31_encoder_class(h264_module: Any, v4l2_module: Any, videodev2: Any) -> type:
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


def set_live_bitrate(encoder: Any, videodev2: Any, bitrate: int) -> bool:
    """Set the V4L2 bitrate control picamera2 sets at start on the running ``encoder``;
    whether the device took it."""
    device = getattr(encoder, "vd", None)
    if videodev2 is None or device is None or getattr(device, "closed", True):
        return False
    control = videodev2.v4l2_control()
    control.id = videodev2.V4L2_CID_MPEG_VIDEO_BITRATE
    control.value = bitrate
    try:
        fcntl.ioctl(device, videodev2.VIDIOC_S_CTRL, control)
    except (OSError, ValueError):
        return False
    encoder.bitrate = bitrate
    return True


def lores_jpeg(camera: Any, max_width: int) -> bytes:
    """A JPEG of a running camera's low-resolution stream; blocks for up to one frame."""
    config = camera.stream_configuration("lores")
    array = camera.capture_array("lores")
    return jpeg_from_frame(yuv420_frame(array, config["size"], config["stride"]), max_width)
