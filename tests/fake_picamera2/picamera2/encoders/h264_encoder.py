"""H264 encoder functionality (picamera2 0.3.38): V4L2 controls for the Pi's encoder."""

from __future__ import annotations

from typing import Any

from videodev2 import (
    V4L2_CID_MPEG_VIDEO_H264_I_PERIOD,
    V4L2_CID_MPEG_VIDEO_H264_LEVEL,
    V4L2_CID_MPEG_VIDEO_H264_MAX_QP,
    V4L2_CID_MPEG_VIDEO_H264_MIN_QP,
    V4L2_CID_MPEG_VIDEO_H264_PROFILE,
    V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER,
    V4L2_MPEG_VIDEO_H264_LEVEL_4_1,
    V4L2_MPEG_VIDEO_H264_LEVEL_4_2,
    V4L2_MPEG_VIDEO_H264_PROFILE_BASELINE,
    V4L2_MPEG_VIDEO_H264_PROFILE_CONSTRAINED_BASELINE,
    V4L2_MPEG_VIDEO_H264_PROFILE_HIGH,
    V4L2_MPEG_VIDEO_H264_PROFILE_MAIN,
    V4L2_PIX_FMT_H264,
)

from .encoder import Quality
from .v4l2_encoder import V4L2Encoder


class H264Encoder(V4L2Encoder):
    """The hardware H.264 encoder: builds its V4L2 controls, then V4L2Encoder applies them."""

    def __init__(
        self,
        bitrate: int | None = None,
        repeat: bool = True,
        iperiod: int | None = None,
        framerate: float | None = None,
        enable_sps_framerate: bool = False,
        qp: int | None = None,
        profile: str | None = None,
    ) -> None:
        super().__init__(bitrate, V4L2_PIX_FMT_H264)
        self.iperiod = iperiod
        self.repeat = repeat
        self.qp = qp
        self.profile = profile
        self.framerate = framerate
        self._enable_framerate = enable_sps_framerate

    def _send_streams(self, output: Any) -> None:
        output._add_stream("video", "h264", width=self._width, height=self._height)

    def _start(self) -> None:
        self._controls = []
        profiles = {
            "baseline": V4L2_MPEG_VIDEO_H264_PROFILE_BASELINE,
            "constrained baseline": V4L2_MPEG_VIDEO_H264_PROFILE_CONSTRAINED_BASELINE,
            "main": V4L2_MPEG_VIDEO_H264_PROFILE_MAIN,
            "high": V4L2_MPEG_VIDEO_H264_PROFILE_HIGH,
        }
        if self.profile:
            if not isinstance(self.profile, str):
                raise RuntimeError("Profile should be a string value")
            if self.profile.lower() not in profiles:
                raise RuntimeError("Profile " + self.profile + " not recognised")
            self._controls += [(V4L2_CID_MPEG_VIDEO_H264_PROFILE, profiles[self.profile.lower()])]
        if self.iperiod is not None:
            self._controls += [(V4L2_CID_MPEG_VIDEO_H264_I_PERIOD, self.iperiod)]
        if self.repeat:
            self._controls += [(V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER, 1)]
        level = 40
        if self.framerate is not None:
            mbs_per_sec = ((self._width + 15) // 16) * ((self._height + 15) // 16) * self.framerate
            if mbs_per_sec > 245760:
                self._controls += [(V4L2_CID_MPEG_VIDEO_H264_LEVEL, V4L2_MPEG_VIDEO_H264_LEVEL_4_2)]
                level = 42
        if self.bitrate is not None and self.bitrate > 10000000 and level == 40:
            self._controls += [(V4L2_CID_MPEG_VIDEO_H264_LEVEL, V4L2_MPEG_VIDEO_H264_LEVEL_4_1)]
        if self.qp is not None:
            self._controls += [(V4L2_CID_MPEG_VIDEO_H264_MIN_QP, self.qp)]
            self._controls += [(V4L2_CID_MPEG_VIDEO_H264_MAX_QP, self.qp)]
        for out in self._output:
            self._send_streams(out)
        super()._start()

    def _setup(self, quality: Quality | None) -> None:
        if quality is not None or (self.bitrate is None and self.qp is None):
            quality = Quality.MEDIUM if quality is None else quality
            mbps = {Quality.VERY_LOW: 2, Quality.LOW: 4, Quality.MEDIUM: 6}.get(quality, 9)
            complexity = self.width * self.height * (self.framerate or 30) / (1920 * 1080 * 30)
            self.bitrate = int(mbps * 1000000 * complexity)

    def force_key_frame(self) -> None:
        """Force a key frame to be encoded in the video stream as soon as possible."""
        self._key_frames_requested += 1
