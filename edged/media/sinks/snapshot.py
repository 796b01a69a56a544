"""Snapshots: one JPEG from one raw frame, or from one H.264 keyframe decoded on demand.

The continuous media path never decodes: an observer on the capture tap keeps a
reference to the latest frame (:class:`LatestFrame`) or the latest keyframe access unit
of a pass-through source (:class:`LatestKeyframe`), and the conversion to JPEG happens
only when a snapshot is asked for. The conversions block for a few milliseconds: call
them from a worker thread (``asyncio.to_thread``) on a busy event loop.
"""

from __future__ import annotations

import fractions
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from av.video.plane import VideoPlane
from av.video.reformatter import ColorRange

from ...errors import EdgedError, ErrorCode
from ..h264 import ParameterSets, is_keyframe

MAX_WIDTH = 640
"""Default width limit of a snapshot; larger frames are scaled down."""
QUALITY = 4
"""Default JPEG quantizer, 2 (best) .. 31."""


FULL_RANGE_TWINS = {
    "yuvj420p": "yuv420p",
    "yuvj422p": "yuv422p",
    "yuvj444p": "yuv444p",
    "yuvj440p": "yuv440p",
    "yuvj411p": "yuv411p",
}
"""FFmpeg's deprecated full-range ("J") formats and the same layout without the range in
the name. swscale warns ("deprecated pixel format used, make sure you did set range
correctly") whenever one of them is its input or output, so none is ever given to it."""

_LEVELS = np.arange(256)
_LUMA_TO_FULL = np.clip(np.rint((_LEVELS - 16) * 255 / 219), 0, 255).astype(np.uint8)
_CHROMA_TO_FULL = np.clip(np.rint((_LEVELS - 128) * 255 / 224 + 128), 0, 255).astype(np.uint8)


def _rows(plane: VideoPlane) -> npt.NDArray[np.uint8]:
    """A writable ``(height, width)`` numpy view of one 8-bit plane."""
    flat = np.frombuffer(memoryview(plane), np.uint8)
    rows: npt.NDArray[np.uint8] = flat.reshape(-1, plane.line_size)
    return rows[: plane.height, : plane.width]


def _relabelled(frame: av.VideoFrame) -> av.VideoFrame:
    """A copy of a frame in a "J" format, in its twin format marked full range."""
    twin = FULL_RANGE_TWINS.get(frame.format.name)
    if twin is None:
        return frame
    out = av.VideoFrame(frame.width, frame.height, twin)
    for src, dst in zip(frame.planes, out.planes, strict=True):
        _rows(dst)[:] = _rows(src)
    out.color_range = ColorRange.JPEG
    return out


def _to_full_range(picture: av.VideoFrame) -> av.VideoFrame:
    """A new yuv420p frame: the limited-range (16..235, 16..240) picture in full range."""
    out = av.VideoFrame(picture.width, picture.height, "yuv420p")
    for index, (src, dst) in enumerate(zip(picture.planes, out.planes, strict=True)):
        _rows(dst)[:] = (_LUMA_TO_FULL if index == 0 else _CHROMA_TO_FULL)[_rows(src)]
    return out


def full_range_yuv420p(frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """The frame at ``width`` x ``height`` in yuv420p, full range (what JPEG holds).

    The range is expanded here rather than by swscale: FFmpeg 7 (Debian 13) ignores a
    range change set on a context that only copies (same size, same format), and its
    other way, a "J" format, logs the deprecation warning. The frame is never modified.
    """
    source = _relabelled(frame)
    full = source.color_range == ColorRange.JPEG
    keep = ColorRange.JPEG if full else ColorRange.MPEG
    picture = source.reformat(
        width=width, height=height, format="yuv420p", src_color_range=keep, dst_color_range=keep
    )
    if not full:
        picture = _to_full_range(picture)
    picture.color_range = ColorRange.JPEG
    return picture


def jpeg_from_frame(
    frame: av.VideoFrame, max_width: int = MAX_WIDTH, quality: int = QUALITY
) -> bytes:
    """One JPEG (yuv420p, full range, PyAV's mjpeg encoder) of a video frame.

    Frames wider than ``max_width`` are scaled down, aspect kept, to even sizes. Limited
    range pictures (the usual YUV of cameras and H.264, and RGB converted to YUV) are
    expanded to the full range of JPEG; full-range ones (MJPEG cameras) are kept. Raises
    ``EdgedError(SNAPSHOT_FAILED)`` when the frame cannot be converted.
    """
    if not 2 <= quality <= 31:
        raise ValueError("quality must be between 2 and 31")
    width, height = frame.width, frame.height
    if width > max_width:
        width, height = max_width, round(height * max_width / width)
    width, height = max(2, width & ~1), max(2, height & ~1)
    try:
        picture = full_range_yuv420p(frame, width, height)
        codec = av.CodecContext.create("mjpeg", "w")
        codec.width, codec.height = width, height
        codec.pix_fmt = "yuv420p"
        codec.color_range = ColorRange.JPEG
        codec.time_base = fractions.Fraction(1, 1)
        codec.qmin = codec.qmax = quality
        picture.pts = None
        packets = list(codec.encode(picture)) + list(codec.encode(None))
    except (av.FFmpegError, ValueError) as exc:
        raise EdgedError(ErrorCode.SNAPSHOT_FAILED, f"JPEG encoding failed: {exc}") from exc
    if not packets:
        raise EdgedError(ErrorCode.SNAPSHOT_FAILED, "the JPEG encoder produced nothing")
    return b"".join(bytes(p) for p in packets)


def decode_h264_keyframe(access_unit: bytes) -> av.VideoFrame:
    """The picture of one Annex-B keyframe access unit (SPS, PPS and IDR slices)."""
    if not is_keyframe(access_unit):
        raise EdgedError(ErrorCode.SNAPSHOT_FAILED, "not an H.264 keyframe")
    try:
        codec = av.CodecContext.create("h264", "r")
        frames = list(codec.decode(av.Packet(access_unit))) + list(codec.decode(None))
    except (av.FFmpegError, ValueError) as exc:
        raise EdgedError(ErrorCode.SNAPSHOT_FAILED, f"H.264 decoding failed: {exc}") from exc
    if not frames:
        raise EdgedError(ErrorCode.SNAPSHOT_FAILED, "the keyframe decoded to no picture")
    frame: av.VideoFrame = frames[-1]
    return frame


def jpeg_from_h264_keyframe(
    packet_bytes: bytes, max_width: int = MAX_WIDTH, quality: int = QUALITY
) -> bytes:
    """One JPEG of an H.264 keyframe access unit, decoded on demand (pass-through sources)."""
    return jpeg_from_frame(decode_h264_keyframe(packet_bytes), max_width, quality)


class LatestFrame:
    """A capture-tap observer that keeps a reference to the latest video frame.

    Owns only that reference: nothing is copied or converted until :meth:`jpeg`.
    Plugs into ``SourceTap.observers``; anything but a video frame is ignored.
    """

    def __init__(self) -> None:
        self.frame: av.VideoFrame | None = None

    def __call__(self, item: Any) -> None:
        if isinstance(item, av.VideoFrame):
            self.frame = item

    def jpeg(self, max_width: int = MAX_WIDTH, quality: int = QUALITY) -> bytes:
        """A JPEG of the latest frame; SNAPSHOT_FAILED before the first one."""
        frame = self.frame
        if frame is None:
            raise EdgedError(ErrorCode.SNAPSHOT_FAILED, "no video frame yet")
        return jpeg_from_frame(frame, max_width, quality)


class LatestKeyframe:
    """An observer of an H.264 packet source that keeps its latest keyframe access unit.

    Owns that access unit (with the latest SPS/PPS in front when it came without them);
    it is decoded only by :meth:`jpeg`. Anything but an ``av.Packet`` is ignored.
    """

    def __init__(self) -> None:
        self.keyframe: bytes | None = None
        self.pts: int | None = None
        self._sets = ParameterSets()

    def __call__(self, item: Any) -> None:
        if not isinstance(item, av.Packet):
            return
        data = bytes(item)
        if not is_keyframe(data):
            return  # the usual case: one scan up to the first slice, nothing kept
        completed = self._sets.complete(data)
        if completed is not None and self._sets.headers:
            self.keyframe, self.pts = completed, item.pts

    def jpeg(self, max_width: int = MAX_WIDTH, quality: int = QUALITY) -> bytes:
        """A JPEG of the latest keyframe, decoded now; SNAPSHOT_FAILED before the first."""
        if self.keyframe is None:
            raise EdgedError(ErrorCode.SNAPSHOT_FAILED, "no H.264 keyframe yet")
        return jpeg_from_h264_keyframe(self.keyframe, max_width, quality)


class LatestPicture:
    """One observer for a source of either kind: frames or H.264 pass-through packets.

    Owns a :class:`LatestFrame` and a :class:`LatestKeyframe`; :meth:`jpeg` uses whichever
    saw something last.
    """

    def __init__(self) -> None:
        self.frames = LatestFrame()
        self.keyframes = LatestKeyframe()
        self._last: LatestFrame | LatestKeyframe | None = None

    def __call__(self, item: Any) -> None:
        if isinstance(item, av.VideoFrame):
            self.frames(item)
            self._last = self.frames
        elif isinstance(item, av.Packet):
            self.keyframes(item)
            if self.keyframes.keyframe is not None:
                self._last = self.keyframes

    @property
    def available(self) -> bool:
        return self._last is not None

    def jpeg(self, max_width: int = MAX_WIDTH, quality: int = QUALITY) -> bytes:
        """A JPEG of the latest picture of either kind; SNAPSHOT_FAILED before the first."""
        if self._last is None:
            raise EdgedError(ErrorCode.SNAPSHOT_FAILED, "no picture yet")
        return self._last.jpeg(max_width, quality)
