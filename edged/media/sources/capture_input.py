"""What a capture opens: a PyAV input (V4L2 camera, lavfi source, file) and its options.

:class:`CaptureInput` names the input and the options FFmpeg negotiates with the device
(size, rate, input format); :func:`open_input` opens it; :func:`passthrough_refusal` says
whether its H.264 can go to WebRTC viewers untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import av

from ..h264 import BASELINE_PROFILES, fit_level_31

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
    """Open ``spec`` with PyAV (blocking): the default opener of a capture track."""
    return av.open(spec.url, format=spec.format, options=dict(spec.options))


Opener = Callable[[CaptureInput], Any]
"""Opens an input: returns a PyAV input container (``streams``, ``demux``, ``close``)."""


def passthrough_refusal(stream: Any) -> str | None:
    """Why an H.264 stream cannot go to viewers untouched (None: it can).

    WebRTC viewers negotiate constrained baseline at level 3.1 (``42e01f``): no B-frames, a
    baseline profile, and at most 1280x720 at 30 fps.
    """
    ctx = stream.codec_context
    if ctx.name != "h264":
        return f"the video is {ctx.name}, not H.264"
    if ctx.has_b_frames:
        return f"the H.264 ({ctx.profile}) has B-frames"
    if ctx.profile not in BASELINE_PROFILES:
        # Viewers negotiate constrained baseline: a main or high profile stream sent as
        # such would be a lie in the SDP (a black picture in a baseline-only decoder).
        return f"the H.264 is {ctx.profile} profile, viewers negotiate constrained baseline"
    # PyAV's rates are Fractions up to 18, its own AVRational (no __round__) from 19 on.
    rate = float(stream.average_rate or stream.guessed_rate or 30)
    if fit_level_31(ctx.width, ctx.height, round(rate)) != (ctx.width, ctx.height):
        return f"{ctx.width}x{ctx.height} at {rate:g} fps is above H.264 level 3.1"
    return None
