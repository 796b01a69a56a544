"""What pixel formats, sizes and rates a V4L2 node offers, and which one to open it with.

From ``v4l2-ctl --list-formats-ext``'s text (:func:`parse_v4l2_formats`) or from the
V4L2 ioctls directly (:func:`query_v4l2_node`); :func:`choose_input_format` picks what a
camera is best opened with for a size and rate. The ioctl is a parameter, so that a test
can stand in for the device. :mod:`edged.media.inventory` lists the nodes;
:mod:`edged.media.sources.v4l2` opens one.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("edged.media.inventory")

CONFIG_FORMATS = {"MJPG": "mjpeg", "JPEG": "mjpeg", "YUYV": "yuyv", "H264": "h264"}
"""V4L2 pixel formats (fourcc) that ``video.input_format`` can name."""


@dataclass(frozen=True)
class FrameSize:
    """One size a format offers, with its frame rates (empty when not enumerable)."""

    width: int
    height: int
    fps: tuple[float, ...] = ()


@dataclass(frozen=True)
class VideoFormat:
    """One pixel format of a V4L2 node; ``size_range`` for stepwise/continuous sizes."""

    fourcc: str
    description: str
    sizes: tuple[FrameSize, ...] = ()
    size_range: str | None = None

    @property
    def input_format(self) -> str | None:
        """The ``video.input_format`` value for this format, if edged can use it."""
        return CONFIG_FORMATS.get(self.fourcc)


# ---- v4l2-ctl ----------------------------------------------------------------------------

_FORMAT = re.compile(r"^\s*(?:\[\d+\]|Pixel Format\s*):\s*'(\S{1,4})\s*'\s*(?:\((.*)\))?")
_NAME = re.compile(r"^\s*Name\s*:\s*(.*)$")
_SIZE = re.compile(r"^\s*Size:\s*(Discrete|Stepwise|Continuous)\s+(\d+)x(\d+)(.*)$")
_INTERVAL = re.compile(r"^\s*Interval:\s*Discrete\s+[\d.]+s\s+\(([\d.]+) fps\)")


def parse_v4l2_formats(text: str) -> tuple[VideoFormat, ...]:
    """The formats in the output of ``v4l2-ctl --list-formats-ext`` (old and new layouts)."""
    formats: list[VideoFormat] = []
    fourcc, description, size_range = "", "", None
    sizes: list[FrameSize] = []

    def close() -> None:
        if fourcc:
            formats.append(VideoFormat(fourcc, description, tuple(sizes), size_range))

    for line in text.splitlines():
        if m := _FORMAT.match(line):
            close()
            fourcc, description, size_range, sizes = m[1], (m[2] or "").strip(), None, []
        elif (m := _NAME.match(line)) and fourcc:
            description = m[1].strip()
        elif (m := _SIZE.match(line)) and fourcc:
            if m[1] == "Discrete":
                sizes.append(FrameSize(int(m[2]), int(m[3])))
            else:
                size_range = f"{m[2]}x{m[3]}{m[4].split(' with ')[0]}".replace(" ", "")
        elif (m := _INTERVAL.match(line)) and sizes:
            last = sizes[-1]
            sizes[-1] = FrameSize(last.width, last.height, (*last.fps, float(m[1])))
    close()
    return tuple(formats)


# ---- V4L2 ioctls -------------------------------------------------------------------------

Ioctl = Callable[[int, int, bytearray], Any]
"""``fcntl.ioctl(fd, request, buffer, True)``: fills the buffer, OSError at the end."""

_CAP_VIDEO_CAPTURE, _CAP_CAPTURE_MPLANE = 0x1, 0x1000
_CAP_M2M, _CAP_M2M_MPLANE, _CAP_DEVICE_CAPS = 0x8000, 0x4000, 0x80000000
_BUF_CAPTURE, _BUF_CAPTURE_MPLANE = 1, 9
_DISCRETE = 1


def _iowr(nr: int, size: int, read_only: bool = False) -> int:
    direction = 2 if read_only else 3
    return (direction << 30) | (size << 16) | (ord("V") << 8) | nr


QUERYCAP = _iowr(0, 104, read_only=True)
ENUM_FMT = _iowr(2, 64)
ENUM_FRAMESIZES = _iowr(74, 44)
ENUM_FRAMEINTERVALS = _iowr(75, 52)


def v4l2_ioctl(fd: int, request: int, buffer: bytearray) -> Any:
    """The real ioctl: fills ``buffer`` in place."""
    return fcntl.ioctl(fd, request, buffer, True)


def _text(raw: bytes | bytearray) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace").strip()


def _enumerate(ioctl: Ioctl, fd: int, request: int, size: int, head: bytes) -> Iterator[bytearray]:
    """Each answer of an enumerating ioctl (index 0, 1, ... until it fails)."""
    for index in range(256):
        buffer = bytearray(size)
        buffer[:4] = struct.pack("=I", index)
        buffer[4 : 4 + len(head)] = head
        try:
            ioctl(fd, request, buffer)
        except OSError:
            return
        yield buffer


def query_v4l2_node(
    path: str, ioctl: Ioctl = v4l2_ioctl
) -> tuple[str, str, tuple[VideoFormat, ...]]:
    """Card name, driver and bus, and capture formats of a node (no formats: not a camera)."""
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        cap = bytearray(104)
        ioctl(fd, QUERYCAP, cap)
        driver, card, bus = _text(cap[0:16]), _text(cap[16:48]), _text(cap[48:80])
        caps, device_caps = struct.unpack_from("=II", cap, 84)
        if caps & _CAP_DEVICE_CAPS:
            caps = device_caps
        if caps & (_CAP_M2M | _CAP_M2M_MPLANE) or not caps & (
            _CAP_VIDEO_CAPTURE | _CAP_CAPTURE_MPLANE
        ):
            return card, f"{driver} {bus}", ()
        buf_type = _BUF_CAPTURE if caps & _CAP_VIDEO_CAPTURE else _BUF_CAPTURE_MPLANE
        formats = []
        for desc in _enumerate(ioctl, fd, ENUM_FMT, 64, struct.pack("=I", buf_type)):
            pixel = struct.unpack_from("=I", desc, 44)[0]
            sizes = tuple(_frame_sizes(ioctl, fd, pixel))
            formats.append(VideoFormat(_fourcc(pixel), _text(desc[12:44]), sizes))
        return card, f"{driver} {bus}", tuple(formats)
    finally:
        os.close(fd)


def _fourcc(pixel: int) -> str:
    return struct.pack("=I", pixel).decode("ascii", errors="replace").strip()


def _frame_sizes(ioctl: Ioctl, fd: int, pixel: int) -> Iterator[FrameSize]:
    for answer in _enumerate(ioctl, fd, ENUM_FRAMESIZES, 44, struct.pack("=I", pixel)):
        kind, width, height = struct.unpack_from("=III", answer, 8)
        if kind != _DISCRETE:
            return
        head = struct.pack("=III", pixel, width, height)
        rates = []
        for ival in _enumerate(ioctl, fd, ENUM_FRAMEINTERVALS, 52, head):
            ival_kind, num, den = struct.unpack_from("=III", ival, 16)
            if ival_kind == _DISCRETE and num:
                rates.append(round(den / num, 3))
        yield FrameSize(width, height, tuple(rates))


def choose_input_format(
    formats: tuple[VideoFormat, ...], width: int, height: int, fps: float
) -> str:
    """The best ``input_format`` of a camera for a size and rate (``auto`` when none fits).

    YUYV when it reaches the rate at that size (nothing to decode), else MJPEG when it
    does (USB cameras send large sizes fast only compressed), else the one with the
    highest rate at that size. H.264 is never picked by itself: name it to pass it through.
    """
    rates: dict[str, float] = {}
    for fmt in formats:
        name = fmt.input_format
        for size in fmt.sizes:
            if name in ("yuyv", "mjpeg") and (size.width, size.height) == (width, height):
                rates[name] = max(size.fps or (fps,))
    for name in ("yuyv", "mjpeg"):
        if rates.get(name, 0) >= fps:
            return name
    return max(rates, key=lambda name: rates[name]) if rates else "auto"


def node_formats(device: str) -> tuple[VideoFormat, ...]:
    """The capture formats of one V4L2 node; none when it cannot be queried."""
    try:
        return query_v4l2_node(device)[2]
    except OSError as exc:
        log.info("cannot list the formats of %s: %s", device, exc)
        return ()
