"""Encoders. On a Pi 5 real picamera2 aliases ``H264Encoder`` to its software
``LibavH264Encoder``, which edged does not use and the stand-in does not provide."""

from .encoder import Encoder, Quality
from .h264_encoder import H264Encoder
from .v4l2_encoder import V4L2Encoder

__all__ = ["Encoder", "H264Encoder", "Quality", "V4L2Encoder"]
