"""V4L2 encoding (picamera2 0.3.38's structure) over a stand-in for the Pi's firmware encoder.

As on the board: ``_start`` opens the device and applies the bitrate and ``_controls``,
``_encode`` queues the camera buffer (forcing a keyframe first when one was requested),
and a polling thread hands each encoded buffer to ``outputframe(bytes, keyframe,
timestamp_us)``. The "firmware" is libx264 through PyAV, set up from those controls.
"""

from __future__ import annotations

import errno
import fractions
import os
import queue
import threading
from typing import Any

import av
import videodev2 as v4l2

from edged.media.frames import plane_view

from .._standin import BOARD
from ..platform import Platform, get_platform
from ..request import _MappedBuffer
from .encoder import Encoder

DEVICE = "/dev/video11"
FIRMWARE_IPERIOD = 60
_LEVELS = {
    v4l2.V4L2_MPEG_VIDEO_H264_LEVEL_3_0: "30",
    v4l2.V4L2_MPEG_VIDEO_H264_LEVEL_3_1: "31",
    v4l2.V4L2_MPEG_VIDEO_H264_LEVEL_4_0: "40",
    v4l2.V4L2_MPEG_VIDEO_H264_LEVEL_4_1: "41",
    v4l2.V4L2_MPEG_VIDEO_H264_LEVEL_4_2: "42",
}
_PROFILES = {
    v4l2.V4L2_MPEG_VIDEO_H264_PROFILE_BASELINE: "Baseline",
    v4l2.V4L2_MPEG_VIDEO_H264_PROFILE_CONSTRAINED_BASELINE: "Constrained Baseline",
    v4l2.V4L2_MPEG_VIDEO_H264_PROFILE_MAIN: "Main",
    v4l2.V4L2_MPEG_VIDEO_H264_PROFILE_HIGH: "High",
}


class _Firmware:
    """The encoder behind the device: libx264 configured as the V4L2 controls say."""

    def __init__(self, width: int, height: int, bitrate: int, controls: dict[int, int]) -> None:
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height = width, height
        codec.pix_fmt = "yuv420p"
        codec.time_base = fractions.Fraction(1, 1_000_000)
        codec.framerate = fractions.Fraction(30, 1)
        codec.bit_rate = bitrate
        codec.gop_size = controls.get(v4l2.V4L2_CID_MPEG_VIDEO_H264_I_PERIOD, FIRMWARE_IPERIOD)
        codec.max_b_frames = 0
        codec.profile = _PROFILES[
            controls.get(
                v4l2.V4L2_CID_MPEG_VIDEO_H264_PROFILE, v4l2.V4L2_MPEG_VIDEO_H264_PROFILE_HIGH
            )
        ]
        level = _LEVELS[
            controls.get(v4l2.V4L2_CID_MPEG_VIDEO_H264_LEVEL, v4l2.V4L2_MPEG_VIDEO_H264_LEVEL_4_0)
        ]
        repeat = controls.get(v4l2.V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER, 0)
        codec.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "level": level,
            "forced-idr": "1",
            "x264-params": f"scenecut=0:bframes=0:annexb=1:repeat-headers={1 if repeat else 0}",
        }
        if not repeat:
            codec.flags |= av.codec.context.Flags.global_header
        codec.open()
        self.codec = codec
        self._headers = b"" if repeat else bytes(codec.extradata or b"")

    def encode(self, frame: av.VideoFrame, force: bool) -> list[tuple[bytes, bool]]:
        frame.pict_type = av.video.frame.PictureType.I if force else av.video.frame.PictureType.NONE
        units = []
        for packet in self.codec.encode(frame):
            data, self._headers = self._headers + bytes(packet), b""
            units.append((data, bool(packet.is_keyframe)))
        return units


class V4L2Encoder(Encoder):
    """V4L2 encoding: ``bitrate``, ``_controls``, ``vd``, keyframe requests, a polling thread."""

    def __init__(self, bitrate: int | None, pixformat: int) -> None:
        super().__init__()
        self.bufs: dict[int, Any] = {}
        self.bitrate = bitrate
        self._pixformat = pixformat
        self._controls: list[tuple[int, int]] = []
        self.vd: Any = None
        self.framerate: float | None = None
        self._enable_framerate = False
        self._key_frames_requested = 0
        self._key_frames_generated = 0

    def _start(self) -> None:
        if get_platform() != Platform.VC4 or not BOARD.hardware_encoder:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), DEVICE)
        self.vd = open(os.devnull, "rb+", buffering=0)  # noqa: SIM115 - closed in _stop
        self.buf_frame: queue.Queue[tuple[av.VideoFrame, int, bool]] = queue.Queue(16)
        controls = dict(self._controls)
        self._firmware = _Firmware(self._width, self._height, self.bitrate or 0, controls)
        with BOARD.lock:
            BOARD.encoder_starts += 1
            BOARD.bitrates.append(self.bitrate or 0)
            BOARD.controls = controls
        self.thread = threading.Thread(target=self.thread_poll, name="v4l2-encoder", daemon=True)
        self.thread.start()

    def _stop(self) -> None:
        self.thread.join()
        self.vd.close()
        with BOARD.lock:
            BOARD.encoder_stops += 1

    def thread_poll(self) -> None:
        """Outputs encoded frames until stopped and drained."""
        while self._running or self.buf_frame.qsize() > 0:
            try:
                frame, timestamp_us, force = self.buf_frame.get(timeout=0.4)
            except queue.Empty:
                continue
            units = self._firmware.encode(frame, force)
            with BOARD.lock:
                BOARD.encodes += 1
                BOARD.keyframes_forced += force
                BOARD.units.extend(data for data, _ in units)
            for data, keyframe in units:
                self.outputframe(data, keyframe, timestamp_us)

    def _encode(self, stream: Any, request: Any) -> None:
        if self._output is None or self.vd is None or self.vd.closed:
            return
        force = False
        if self._key_frames_requested > self._key_frames_generated:
            self._key_frames_generated += 1
            force = True
        timestamp_us = self._timestamp(request)
        frame = av.VideoFrame(self._width, self._height, "yuv420p")
        with _MappedBuffer(request, stream) as buffer:
            _copy_yuv420(buffer, frame, self._stride)
        frame.pts = timestamp_us
        self.buf_frame.put((frame, timestamp_us, force))


def _copy_yuv420(buffer: memoryview, frame: av.VideoFrame, stride: int) -> None:
    import numpy as np

    flat = np.frombuffer(buffer, dtype=np.uint8)
    w, h = frame.width, frame.height
    luma, chroma = stride * h, stride // 2 * (h // 2)
    plane_view(frame, 0)[...] = flat[:luma].reshape(h, stride)[:, :w]
    for i, start in ((1, luma), (2, luma + chroma)):
        rows = flat[start : start + chroma].reshape(h // 2, stride // 2)
        plane_view(frame, i)[...] = rows[:, : w // 2]
