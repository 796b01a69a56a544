"""Source selection from the daemon's configuration: explicit sources and ``auto``."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from edged.config.sections import AudioSection, VideoSection
from edged.daemon.source_choice import choose_audio_source, choose_video_source
from edged.engine.config import AudioConfig, VideoConfig
from edged.errors import EdgedError, ErrorCode
from edged.media.inventory import Camera, SoundDevice
from edged.media.sources.capture_input import CaptureInput, open_input
from edged.media.sources.file import FileVideoTrack
from edged.media.sources.testpattern import TestPatternTrack
from edged.media.sources.tone import ToneTrack
from edged.media.sources.v4l2 import CaptureTrack, v4l2_video_source
from edged.media.v4l2_formats import FrameSize, VideoFormat

pytest_plugins = ["standinkit"]  # the picamera2 stand-in: fixture `board`
CONFIG = VideoConfig(320, 240, 15.0, 300_000)
MJPG = VideoFormat("MJPG", "Motion-JPEG")
BAYER = VideoFormat("pRAA", "10-bit Bayer")


def camera(device: str, *formats: VideoFormat) -> Camera:
    return Camera("v4l2", device, f"camera at {device}", "uvcvideo", formats)


def lavfi_for(working: set[str]) -> Any:
    """Opens the "cameras" in ``working`` (as lavfi test sources); the others fail."""
    opened: list[str] = []

    def opener(spec: CaptureInput) -> Any:
        opened.append(spec.url)
        if spec.url not in working:
            raise OSError(16, "Device or resource busy")
        return open_input(CaptureInput.lavfi("testsrc2=size=64x48:rate=5"))

    opener.opened = opened  # type: ignore[attr-defined]
    return opener


def no_libcamera() -> tuple[Camera, ...]:
    return ()


def test_explicit_sources(tmp_path: Path) -> None:
    assert choose_video_source(VideoSection(source="none")).factory is None
    pattern = choose_video_source(VideoSection(source="testpattern"))
    assert pattern.factory is not None
    track = pattern.factory(CONFIG)
    assert isinstance(track, TestPatternTrack)
    assert (track.renderer.width, track.renderer.height) == (320, 240)
    clip = tmp_path / "clip.mkv"
    clip.write_bytes(b"")
    played = choose_video_source(VideoSection(source="file", device=str(clip), rotation=180))
    assert (played.kind, played.device) == ("file", str(clip))
    assert played.factory is not None
    file_track = played.factory(CONFIG)
    assert isinstance(file_track, FileVideoTrack) and file_track.orientation.rotation == 180
    missing = choose_video_source(VideoSection(source="file", device=str(tmp_path / "no.mp4")))
    assert missing.factory is not None
    with pytest.raises(EdgedError) as error:
        missing.factory(CONFIG)
    assert error.value.code == ErrorCode.MEDIA_FILE_NOT_FOUND


def test_explicit_v4l2_uses_the_device_size_rate_and_format() -> None:
    section = VideoSection(source="v4l2", device="/dev/video4", input_format="mjpeg", hflip=True)
    choice = choose_video_source(section, v4l2=lambda: (camera("/dev/video0", MJPG),))
    assert (choice.kind, choice.device) == ("v4l2", "/dev/video4")
    assert choice.factory is not None
    track = choice.factory(CONFIG)
    assert isinstance(track, CaptureTrack)
    assert (track.spec.url, track.spec.format) == ("/dev/video4", "v4l2")
    assert dict(track.spec.options) == {
        "video_size": "320x240",
        "framerate": "15",
        "input_format": "mjpeg",
    }
    assert track.orientation.hflip and track.hardware_encode is False
    first_node = choose_video_source(
        VideoSection(source="v4l2"), v4l2=lambda: (camera("/dev/video2", MJPG),)
    )
    assert first_node.device == "/dev/video2"


def test_auto_prefers_the_libcamera_camera(board: Any) -> None:
    choice = choose_video_source(VideoSection(), v4l2=lambda: (camera("/dev/video0", MJPG),))
    assert choice.kind == "picamera2" and "imx708" in choice.reason
    assert choice.factory is not None
    track = choice.factory(CONFIG)
    try:
        assert type(track).__name__ == "Picamera2VideoTrack"
    finally:
        track.stop()


def test_explicit_picamera2_without_it_fails_with_its_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    choice = choose_video_source(VideoSection(source="picamera2"))
    assert choice.factory is not None
    with pytest.raises(EdgedError) as error:
        choice.factory(CONFIG)
    assert error.value.code == ErrorCode.PICAMERA2_UNAVAILABLE


def test_auto_takes_the_first_v4l2_camera_that_opens(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "edged.daemon.source_choice")
    nodes = (
        camera("/dev/video0", BAYER),  # a sensor's raw node: nothing edged can use
        camera("/dev/video2", MJPG),  # busy
        camera("/dev/video4", MJPG),
        camera("/dev/video6", MJPG),
    )
    opener = lavfi_for({"/dev/video4", "/dev/video6"})
    choice = choose_video_source(
        VideoSection(input_format="mjpeg"),
        libcamera=no_libcamera,
        v4l2=lambda: nodes,
        opener=opener,
    )
    assert (choice.kind, choice.device) == ("v4l2", "/dev/video4")
    assert opener.opened == ["/dev/video2", "/dev/video4"]
    assert "camera at /dev/video4 opens" in choice.reason
    assert any("video_source kind=v4l2" in r.getMessage() for r in caplog.records)


def test_auto_without_a_camera_is_the_test_pattern(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "edged.daemon.source_choice")
    nodes = (camera("/dev/video0", BAYER), camera("/dev/video2", MJPG))
    choice = choose_video_source(
        VideoSection(), libcamera=no_libcamera, v4l2=lambda: nodes, opener=lavfi_for(set())
    )
    assert choice.kind == "testpattern"
    assert "/dev/video0 (no MJPG, YUYV or H264)" in choice.reason
    assert "/dev/video2 (does not open)" in choice.reason
    nothing = choose_video_source(VideoSection(), libcamera=no_libcamera, v4l2=lambda: ())
    assert nothing.reason == "auto: no libcamera or V4L2 camera"
    assert any("reason=" in r.getMessage() for r in caplog.records)


async def test_the_chosen_factory_makes_frames_at_the_configured_size() -> None:
    choice = choose_video_source(VideoSection(), libcamera=no_libcamera, v4l2=lambda: ())
    assert choice.factory is not None
    track = choice.factory(CONFIG)
    frame = await asyncio.wait_for(track.recv(), 5)
    assert (frame.width, frame.height) == (320, 240)


USB_MIC = SoundDevice(2, 0, "Device", "USB PnP Sound Device", "USB Audio", True, True)
HEADPHONES = SoundDevice(0, 0, "Headphones", "bcm2835", "bcm2835 Headphones", False, True)


def test_audio_sources() -> None:
    assert choose_audio_source(AudioSection(source="none")).factory is None
    tone = choose_audio_source(AudioSection(source="tone"))
    assert tone.factory is not None
    assert isinstance(tone.factory(AudioConfig(channels=2)), ToneTrack)
    alsa = choose_audio_source(AudioSection(source="alsa", capture_device="plughw:CARD=Device"))
    assert (alsa.kind, alsa.device) == ("alsa", "plughw:CARD=Device")


def test_auto_audio_is_alsa_capture_when_there_is_one() -> None:
    section = AudioSection(capture_device="plughw:CARD=Device,DEV=0")
    mic = choose_audio_source(
        section, sound=lambda: (HEADPHONES, USB_MIC), alsa_usable=lambda: True
    )
    assert (mic.kind, mic.device) == ("alsa", "plughw:CARD=Device,DEV=0")
    assert "USB PnP Sound Device" in mic.reason and mic.factory is not None
    silent = choose_audio_source(section, sound=lambda: (HEADPHONES,), alsa_usable=lambda: True)
    assert (silent.kind, silent.factory) == ("none", None)
    assert silent.reason == "auto: no ALSA capture device"
    no_module = choose_audio_source(section, sound=lambda: (USB_MIC,), alsa_usable=lambda: False)
    assert (no_module.kind, no_module.factory) == ("none", None)


def test_v4l2_factory_for_an_h264_camera_passes_through() -> None:
    track = v4l2_video_source(CONFIG, "/dev/video0", "h264")
    assert dict(track.spec.options)["input_format"] == "h264"
    assert track.passthrough and not track.hardware_encode


def test_auto_input_format_is_what_the_camera_does_best_at_the_size() -> None:
    offered = (
        VideoFormat(
            "YUYV", "YUYV 4:2:2", (FrameSize(640, 480, (30.0,)), FrameSize(1280, 720, (10.0,)))
        ),
        VideoFormat("MJPG", "Motion-JPEG", (FrameSize(1280, 720, (30.0,)),)),
    )
    hd = v4l2_video_source(VideoConfig(1280, 720, 30.0), "/dev/video0", formats=lambda _: offered)
    assert dict(hd.spec.options)["input_format"] == "mjpeg"
    vga = v4l2_video_source(VideoConfig(640, 480, 30.0), "/dev/video0", formats=lambda _: offered)
    assert dict(vga.spec.options)["input_format"] == "yuyv422"
    unknown = v4l2_video_source(VideoConfig(320, 240, 30.0), "/dev/video0", formats=lambda _: ())
    assert "input_format" not in unknown.spec.options  # the driver's choice
