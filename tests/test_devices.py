"""`edged devices`: cameras (libcamera, V4L2 nodes with formats) and ALSA sound devices.

This machine has neither, so each source of facts is stood in for: captured
``v4l2-ctl`` output, V4L2 ioctls answered for files in a fake ``/dev``, a fake
``/proc/asound``, and the picamera2 stand-in.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edged.media import inventory as devices
from edged.media.inventory import (
    Devices,
    devices_command,
    format_table,
    libcamera_cameras,
    sound_devices,
    to_json,
    v4l2_cameras,
)
from edged.media.v4l2_formats import (
    ENUM_FMT,
    ENUM_FRAMEINTERVALS,
    ENUM_FRAMESIZES,
    QUERYCAP,
    FrameSize,
    choose_input_format,
    parse_v4l2_formats,
)

pytest_plugins = ["standinkit"]  # the picamera2 stand-in: fixture `board`

LIST_FORMATS_EXT = """\
ioctl: VIDIOC_ENUM_FMT
\tType: Video Capture

\t[0]: 'MJPG' (Motion-JPEG, compressed)
\t\tSize: Discrete 1280x720
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\t\tInterval: Discrete 0.067s (15.000 fps)
\t\tSize: Discrete 640x480
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t[1]: 'YUYV' (YUYV 4:2:2)
\t\tSize: Discrete 640x480
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\tSize: Discrete 1280x720
\t\t\tInterval: Discrete 0.100s (10.000 fps)
\t[2]: 'H264' (H.264, compressed)
\t\tSize: Discrete 1920x1080
\t\t\tInterval: Discrete 0.033s (30.000 fps)
"""

LIST_FORMATS_EXT_OLD = """\
ioctl: VIDIOC_ENUM_FMT
\tIndex       : 0
\tType        : Video Capture
\tPixel Format: 'YUYV'
\tName        : YUYV 4:2:2
\t\tSize: Discrete 640x480
\t\t\tInterval: Discrete 0.033s (30.000 fps)

\tIndex       : 1
\tType        : Video Capture
\tPixel Format: 'pRAA'
\tName        : 10-bit Bayer RGRG/GBGB Packed
\t\tSize: Stepwise 16x16 - 16376x16376 with step 2/2
"""


def test_v4l2_ctl_output_gives_formats_sizes_and_rates() -> None:
    mjpg, yuyv, h264 = parse_v4l2_formats(LIST_FORMATS_EXT)
    assert (mjpg.fourcc, mjpg.description, mjpg.input_format) == (
        "MJPG",
        "Motion-JPEG, compressed",
        "mjpeg",
    )
    assert mjpg.sizes == (FrameSize(1280, 720, (30.0, 15.0)), FrameSize(640, 480, (30.0,)))
    assert yuyv.input_format == "yuyv" and yuyv.sizes[1] == FrameSize(1280, 720, (10.0,))
    assert h264.input_format == "h264" and h264.sizes == (FrameSize(1920, 1080, (30.0,)),)


def test_older_v4l2_ctl_layout_and_stepwise_sizes() -> None:
    yuyv, bayer = parse_v4l2_formats(LIST_FORMATS_EXT_OLD)
    assert (yuyv.fourcc, yuyv.description) == ("YUYV", "YUYV 4:2:2")
    assert yuyv.sizes == (FrameSize(640, 480, (30.0,)),)
    assert (bayer.fourcc, bayer.input_format, bayer.sizes) == ("pRAA", None, ())
    assert bayer.size_range == "16x16-16376x16376"
    assert parse_v4l2_formats("") == ()


# ---- V4L2 ioctls on a fake /dev ------------------------------------------------------------


@dataclass
class FakeNode:
    card: str
    caps: int
    formats: dict[str, dict[tuple[int, int], list[int]]] = field(default_factory=dict)


def fourcc(text: str) -> int:
    value: int = struct.unpack("=I", text.encode())[0]
    return value


class FakeV4l2:
    """Answers the V4L2 ioctls for the files of a fake /dev, laid out as the kernel does."""

    def __init__(self, nodes: dict[str, FakeNode]) -> None:
        self.nodes = nodes

    def __call__(self, fd: int, request: int, buffer: bytearray) -> None:
        node = self.nodes[Path(os.readlink(f"/proc/self/fd/{fd}")).name]
        index = struct.unpack_from("=I", buffer)[0]
        formats = list(node.formats.items())
        if request == QUERYCAP:
            buffer[0:16] = b"uvcvideo".ljust(16, b"\0")
            buffer[16:48] = node.card.encode().ljust(32, b"\0")
            buffer[48:80] = b"usb-0000:01:00.0-1.2".ljust(32, b"\0")
            struct.pack_into("=III", buffer, 80, 0x60000, node.caps | 0x80000000, node.caps)
        elif request == ENUM_FMT:
            if struct.unpack_from("=I", buffer, 4)[0] != 1 or index >= len(formats):
                raise OSError(errno.EINVAL, "Invalid argument")
            name = formats[index][0]
            buffer[12:44] = f"{name} format".encode().ljust(32, b"\0")
            struct.pack_into("=I", buffer, 44, fourcc(name))
        elif request == ENUM_FRAMESIZES:
            sizes = self._sizes(buffer)
            if index >= len(sizes):
                raise OSError(errno.EINVAL, "Invalid argument")
            struct.pack_into("=III", buffer, 8, 1, *list(sizes)[index])
        elif request == ENUM_FRAMEINTERVALS:
            width, height = struct.unpack_from("=II", buffer, 8)
            rates = self._sizes(buffer)[(width, height)]
            if index >= len(rates):
                raise OSError(errno.EINVAL, "Invalid argument")
            struct.pack_into("=III", buffer, 16, 1, 1, rates[index])
        else:
            raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")

    def _sizes(self, buffer: bytearray) -> dict[tuple[int, int], list[int]]:
        pixel = struct.pack("=I", struct.unpack_from("=I", buffer, 4)[0]).decode()
        return self.nodes_formats[pixel]

    @property
    def nodes_formats(self) -> dict[str, dict[tuple[int, int], list[int]]]:
        return {k: v for node in self.nodes.values() for k, v in node.formats.items()}


@pytest.fixture
def fake_dev(tmp_path: Path) -> tuple[Path, FakeV4l2]:
    nodes = {
        "video0": FakeNode(
            "USB2.0 Camera",
            0x04200001,  # video capture, streaming
            {"MJPG": {(1280, 720): [30, 15], (640, 480): [30]}, "YUYV": {(640, 480): [30]}},
        ),
        "video1": FakeNode("USB2.0 Camera", 0x04A00000),  # its metadata node
        "video10": FakeNode("bcm2835-codec-decode", 0x04208000),  # a memory-to-memory codec
        "video2": FakeNode("Broken", 0x04200001),  # a capture node without formats
    }
    for name in nodes:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "vchiq").write_bytes(b"")
    return tmp_path, FakeV4l2(nodes)


def test_capture_nodes_are_listed_with_formats_from_ioctls(
    fake_dev: tuple[Path, FakeV4l2],
) -> None:
    root, ioctl = fake_dev
    (camera,) = v4l2_cameras(str(root), use_v4l2_ctl=False, ioctl=ioctl)
    assert (camera.source, camera.device, camera.name) == (
        "v4l2",
        str(root / "video0"),
        "USB2.0 Camera",
    )
    assert "uvcvideo" in camera.detail
    mjpg, yuyv = camera.formats
    assert (mjpg.fourcc, mjpg.description) == ("MJPG", "MJPG format")
    assert mjpg.sizes == (FrameSize(1280, 720, (30.0, 15.0)), FrameSize(640, 480, (30.0,)))
    assert yuyv.sizes == (FrameSize(640, 480, (30.0,)),)


def test_v4l2_ctl_is_preferred_when_installed(fake_dev: tuple[Path, FakeV4l2]) -> None:
    root, ioctl = fake_dev
    calls: list[list[str]] = []

    def runner(argv: list[str]) -> str:
        calls.append(argv)
        return LIST_FORMATS_EXT

    (camera,) = v4l2_cameras(str(root), use_v4l2_ctl=True, runner=runner, ioctl=ioctl)
    assert calls == [["v4l2-ctl", "-d", str(root / "video0"), "--list-formats-ext"]]
    assert [f.fourcc for f in camera.formats] == ["MJPG", "YUYV", "H264"]

    def broken(argv: list[str]) -> str:
        raise OSError(errno.ENOENT, "v4l2-ctl vanished")

    (camera,) = v4l2_cameras(str(root), use_v4l2_ctl=True, runner=broken, ioctl=ioctl)
    assert [f.fourcc for f in camera.formats] == ["MJPG", "YUYV"]  # the ioctls answered


def test_a_machine_without_video_nodes_has_no_v4l2_camera(tmp_path: Path) -> None:
    assert v4l2_cameras(str(tmp_path)) == ()


# ---- ALSA ----------------------------------------------------------------------------------

CARDS = """\
 0 [Headphones     ]: bcm2835_headpho - bcm2835 Headphones
                      bcm2835 Headphones
 1 [vc4hdmi0       ]: vc4-hdmi - vc4-hdmi-0
                      vc4-hdmi-0
 2 [Device         ]: USB-Audio - USB PnP Sound Device
                      C-Media Electronics Inc. USB PnP Sound Device at usb-0000:01:00.0-1.3, full
"""

PCM = """\
00-00: bcm2835 Headphones : bcm2835 Headphones : playback 8
01-00: MAI PCM i2s-hifi-0 : MAI PCM i2s-hifi-0 : playback 1
02-00: USB Audio : USB Audio : playback 1 : capture 1
"""


@pytest.fixture
def fake_proc(tmp_path: Path) -> Path:
    (tmp_path / "asound").mkdir()
    (tmp_path / "asound" / "cards").write_text(CARDS)
    (tmp_path / "asound" / "pcm").write_text(PCM)
    return tmp_path


def test_sound_devices_from_proc_asound(fake_proc: Path) -> None:
    headphones, hdmi, usb = sound_devices(str(fake_proc))
    assert (headphones.card_id, headphones.card_name, headphones.name) == (
        "Headphones",
        "bcm2835 Headphones",
        "bcm2835 Headphones",
    )
    assert headphones.playback and not headphones.capture
    assert hdmi.alsa_name == "plughw:CARD=vc4hdmi0,DEV=0"
    assert (usb.card, usb.device, usb.capture, usb.playback) == (2, 0, True, True)
    assert usb.alsa_name == "plughw:CARD=Device,DEV=0"
    assert sound_devices(str(fake_proc / "nothing")) == ()


# ---- libcamera -----------------------------------------------------------------------------


def test_libcamera_cameras_come_from_picamera2(board: Any) -> None:
    (camera,) = libcamera_cameras()
    assert (camera.source, camera.device, camera.name) == ("picamera2", "0", "imx708")
    assert "imx708@1a" in camera.detail and "rotation 180" in camera.detail


def test_no_picamera2_means_no_libcamera_camera(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails, as without it
    assert libcamera_cameras() == ()


# ---- output --------------------------------------------------------------------------------


def test_table_and_json_name_every_device(
    fake_dev: tuple[Path, FakeV4l2], fake_proc: Path, board: Any
) -> None:
    root, ioctl = fake_dev
    found = Devices(
        libcamera_cameras() + v4l2_cameras(str(root), use_v4l2_ctl=False, ioctl=ioctl),
        sound_devices(str(fake_proc)),
    )
    table = format_table(found)
    lines = table.splitlines()
    assert any(line.startswith("picamera2") and "imx708" in line for line in lines)
    v4l2_line = next(line for line in lines if line.startswith("v4l2"))
    assert str(root / "video0") in v4l2_line and "MJPG 1280x720@30 640x480@30" in v4l2_line
    assert any("plughw:CARD=Device,DEV=0" in line and "capture+playback" in line for line in lines)
    data = json.loads(json.dumps(to_json(found)))
    assert [c["source"] for c in data["cameras"]] == ["picamera2", "v4l2"]
    assert data["cameras"][1]["formats"][0]["input_format"] == "mjpeg"
    assert data["cameras"][1]["formats"][0]["sizes"][0] == {
        "width": 1280,
        "height": 720,
        "fps": [30.0, 15.0],
    }
    assert data["sound"][2]["alsa_name"] == "plughw:CARD=Device,DEV=0"


def test_the_command_prints_what_this_machine_has(capsys: pytest.CaptureFixture[str]) -> None:
    assert devices_command(as_json=True) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"cameras", "sound", "board"}
    assert devices_command(as_json=False) == 0
    table = capsys.readouterr().out
    assert "CAMERA" in table and "SOUND" in table and "BOARD" in table
    if not data["cameras"]:
        assert "(none)" in table
    assert devices.list_devices(picamera2=False).cameras == tuple(
        c for c in devices.list_devices().cameras if c.source == "v4l2"
    )


def test_the_best_input_format_for_a_size_and_rate() -> None:
    formats = parse_v4l2_formats(LIST_FORMATS_EXT)
    assert choose_input_format(formats, 640, 480, 30) == "yuyv"  # raw: nothing to decode
    assert choose_input_format(formats, 1280, 720, 30) == "mjpeg"  # YUYV gives only 10 fps
    assert choose_input_format(formats, 1280, 720, 10) == "yuyv"
    assert choose_input_format(formats, 1920, 1080, 30) == "auto"  # H.264 only: not by itself
    assert choose_input_format((), 640, 480, 30) == "auto"
