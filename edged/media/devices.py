"""What cameras and sound cards a machine has: ``edged devices``.

Cameras come from libcamera (through picamera2, imported only here and only when
present) and from the V4L2 nodes ``/dev/video*`` that capture video (a board's codec
and ISP nodes are left out), with the formats, sizes and rates each offers — from
``v4l2-ctl --list-formats-ext`` when v4l-utils is installed, else from the V4L2 ioctls
directly. Sound cards come from ``/proc/asound``. The root paths, the command runner and
the ioctl are parameters, so that a test can stand in for the machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import logging
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("edged.media.devices")

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


@dataclass(frozen=True)
class Camera:
    """A camera: ``source`` is ``picamera2`` (libcamera) or ``v4l2``; ``device`` is what
    ``video.device`` takes (the V4L2 node, or the libcamera camera number)."""

    source: str
    device: str
    name: str
    detail: str = ""
    formats: tuple[VideoFormat, ...] = ()


@dataclass(frozen=True)
class SoundDevice:
    """One ALSA PCM device of a card; ``alsa_name`` is what ``audio.*_device`` takes."""

    card: int
    device: int
    card_id: str
    card_name: str
    name: str
    capture: bool
    playback: bool

    @property
    def alsa_name(self) -> str:
        return f"plughw:CARD={self.card_id},DEV={self.device}"


@dataclass(frozen=True)
class Devices:
    """Everything found: cameras and sound devices."""

    cameras: tuple[Camera, ...]
    sound: tuple[SoundDevice, ...]


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


def _ioctl(fd: int, request: int, buffer: bytearray) -> Any:
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


def query_v4l2_node(path: str, ioctl: Ioctl = _ioctl) -> tuple[str, str, tuple[VideoFormat, ...]]:
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


# ---- listing -----------------------------------------------------------------------------

Runner = Callable[[list[str]], str]


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True).stdout


def v4l2_cameras(
    dev_root: str = "/dev",
    *,
    use_v4l2_ctl: bool | None = None,
    runner: Runner = _run,
    ioctl: Ioctl = _ioctl,
) -> tuple[Camera, ...]:
    """The V4L2 nodes that capture video, in node order, with their formats.

    Formats come from ``v4l2-ctl`` (``use_v4l2_ctl``; None: when it is installed) and
    from the ioctls otherwise or when it fails. A node that cannot be queried is left out.
    """
    nodes = sorted(Path(dev_root).glob("video[0-9]*"), key=lambda p: int(p.name[5:]))
    if use_v4l2_ctl is None:
        use_v4l2_ctl = shutil.which("v4l2-ctl") is not None
    cameras = []
    for node in nodes:
        try:
            name, detail, formats = query_v4l2_node(str(node), ioctl)
        except OSError as exc:
            log.debug("skipping %s: %s", node, exc)
            continue
        if formats and use_v4l2_ctl:
            try:
                text = runner(["v4l2-ctl", "-d", str(node), "--list-formats-ext"])
                formats = parse_v4l2_formats(text) or formats
            except (OSError, subprocess.SubprocessError) as exc:
                log.debug("v4l2-ctl failed on %s: %s", node, exc)
        if formats:
            cameras.append(Camera("v4l2", str(node), name, detail, formats))
    return tuple(cameras)


def libcamera_cameras() -> tuple[Camera, ...]:
    """The cameras libcamera sees, through picamera2; none when picamera2 is missing."""
    try:
        picamera2 = importlib.import_module("picamera2")
        infos = picamera2.Picamera2.global_camera_info()
    except Exception as exc:  # ImportError, or libcamera failing on a board without it
        log.debug("picamera2 unavailable: %s", exc)
        return ()
    cameras = []
    for number, info in enumerate(infos):
        num = info.get("Num", number)
        detail = f"{info.get('Id', '')} rotation {info.get('Rotation', 0)}".strip()
        cameras.append(Camera("picamera2", str(num), str(info.get("Model", "camera")), detail))
    return tuple(cameras)


_CARD = re.compile(r"^\s*(\d+)\s+\[(\S+)\s*\]:\s*(.*)$")


def sound_devices(proc_root: str = "/proc") -> tuple[SoundDevice, ...]:
    """ALSA PCM devices from ``/proc/asound/cards`` and ``/proc/asound/pcm``."""
    asound = Path(proc_root) / "asound"
    cards: dict[int, tuple[str, str]] = {}
    with contextlib.suppress(OSError):
        for line in (asound / "cards").read_text().splitlines():
            if m := _CARD.match(line):
                driver_name = m[3].split(" - ", 1)
                cards[int(m[1])] = (m[2], driver_name[-1].strip())
    devices = []
    with contextlib.suppress(OSError):
        for line in (asound / "pcm").read_text().splitlines():
            head, sep, rest = line.partition(": ")
            numbers = head.split("-")
            if not sep or len(numbers) != 2 or not all(n.isdigit() for n in numbers):
                continue
            card, device = int(numbers[0]), int(numbers[1])
            parts = [p.strip() for p in rest.split(" : ")]
            card_id, card_name = cards.get(card, (str(card), ""))
            devices.append(
                SoundDevice(
                    card,
                    device,
                    card_id,
                    card_name,
                    parts[1] if len(parts) > 1 else parts[0],
                    capture=any(p.startswith("capture") for p in parts[1:]),
                    playback=any(p.startswith("playback") for p in parts[1:]),
                )
            )
    return tuple(devices)


def list_devices(
    dev_root: str = "/dev", proc_root: str = "/proc", *, picamera2: bool = True
) -> Devices:
    """Every camera (libcamera first, then V4L2) and sound device of this machine."""
    cameras = (libcamera_cameras() if picamera2 else ()) + v4l2_cameras(dev_root)
    return Devices(cameras, sound_devices(proc_root))


# ---- output ------------------------------------------------------------------------------


def _formats_summary(camera: Camera) -> str:
    parts = []
    for fmt in camera.formats:
        sizes = [f"{s.width}x{s.height}" + (f"@{max(s.fps):g}" if s.fps else "") for s in fmt.sizes]
        parts.append(f"{fmt.fourcc} {' '.join(sizes) or fmt.size_range or ''}".strip())
    return "; ".join(parts)


def _aligned(rows: list[tuple[str, str, str, str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def format_table(devices: Devices) -> str:
    """A plain-text table of the cameras and sound devices."""
    none = ("(none)", "", "", "")
    cameras = [
        (c.source, c.device, c.name, _formats_summary(c) or c.detail) for c in devices.cameras
    ]
    sound = [
        (
            "+".join(k for k, on in (("capture", s.capture), ("playback", s.playback)) if on),
            s.alsa_name,
            s.name,
            f"{s.card} {s.card_name}",
        )
        for s in devices.sound
    ]
    camera_rows = _aligned([("CAMERA", "DEVICE", "NAME", "FORMATS"), *(cameras or [none])])
    sound_rows = _aligned([("SOUND", "DEVICE", "NAME", "CARD"), *(sound or [none])])
    return "\n".join([*camera_rows, "", *sound_rows])


def to_json(devices: Devices) -> dict[str, Any]:
    """The devices as JSON-ready data (``edged devices --json``)."""
    sound = [{**asdict(s), "alsa_name": s.alsa_name} for s in devices.sound]
    cameras = [asdict(c) for c in devices.cameras]
    for camera, data in zip(devices.cameras, cameras, strict=True):
        for fmt, fmt_data in zip(camera.formats, data["formats"], strict=True):
            fmt_data["input_format"] = fmt.input_format
    return {"cameras": cameras, "sound": sound}


def devices_command(as_json: bool) -> int:
    """``edged devices [--json]``: print what was found; the exit status (0)."""
    devices = list_devices()
    print(json.dumps(to_json(devices), indent=2) if as_json else format_table(devices))
    return 0
