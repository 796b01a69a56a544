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
import importlib
import json
import logging
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .v4l2_formats import Ioctl, VideoFormat, parse_v4l2_formats, query_v4l2_node, v4l2_ioctl

log = logging.getLogger("edged.media.inventory")


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


# ---- listing -----------------------------------------------------------------------------

Runner = Callable[[list[str]], str]


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True).stdout


def v4l2_cameras(
    dev_root: str = "/dev",
    *,
    use_v4l2_ctl: bool | None = None,
    runner: Runner = _run,
    ioctl: Ioctl = v4l2_ioctl,
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
    """``edged devices [--json]``: print what was found, the board and the defaults it
    gives (:mod:`edged.media.board`); the exit status (0)."""
    from .board import board_defaults, board_json, board_text, detect_board

    devices = list_devices()
    board = board_defaults(detect_board())
    if as_json:
        print(json.dumps({**to_json(devices), "board": board_json(board)}, indent=2))
    else:
        print(f"{format_table(devices)}\n\n{board_text(board)}")
    return 0
