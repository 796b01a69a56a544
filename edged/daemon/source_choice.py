"""Which camera and microphone are published: the configured source, or the first that works.

:func:`choose_video_source` and :func:`choose_audio_source` read the daemon's ``video``
and ``audio`` sections and return a :class:`SourceChoice` whose ``factory`` is what
``EngineProfile.video_source`` / ``audio_source`` take (``None`` for no source). With
``auto``, video is picamera2 (a libcamera camera and the picamera2 module), else the
first V4L2 capture node that opens, else the test pattern; audio is ALSA capture when
a capture device exists, else none. The choice and its reason are logged.

Daemon policy: it reads the daemon's configuration sections and uses only what media
offers every user (the inventory of devices and each source's own factory); the H.264
encoder of a V4L2 camera is picked by :func:`~edged.media.sources.v4l2.v4l2_video_source`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiortc.mediastreams import MediaStreamTrack

from ..config.sections import AudioSection, VideoSection
from ..engine.config import AudioConfig, VideoConfig
from ..errors import EdgedError, ErrorCode
from ..logs import log_event
from ..media.inventory import Camera, SoundDevice, libcamera_cameras, sound_devices, v4l2_cameras
from ..media.sources.capture_input import CaptureInput, Opener, open_input
from ..media.sources.file import file_video_source
from ..media.sources.orientation import Orientation
from ..media.sources.testpattern import TestPatternTrack
from ..media.sources.tone import ToneTrack
from ..media.sources.v4l2 import v4l2_video_source

if TYPE_CHECKING:
    from ..media.alsa.intercom import Intercom

log = logging.getLogger(__name__)

Factory = Callable[[Any], MediaStreamTrack]
"""``config -> track``: what ``EngineProfile.video_source`` and ``audio_source`` take."""


@dataclass(frozen=True)
class SourceChoice:
    """A chosen source: its kind, device, why, and the factory (None: no source)."""

    kind: str
    device: str
    reason: str
    factory: Factory | None


# ---- choosing ----------------------------------------------------------------------------


def _test_pattern(config: VideoConfig) -> MediaStreamTrack:
    return TestPatternTrack(config.width, config.height, config.fps)


def _picamera2_factory(video: VideoSection) -> Factory | None:
    """picamera2's source factory, when the module and its dependencies import."""
    try:
        from ..media.sources.picamera2 import source as module
    except Exception as exc:
        log.debug("picamera2 source unavailable: %s", exc)
        return None
    source: Factory = functools.partial(
        module.picamera2_video_source,
        rotation=video.rotation,
        hflip=video.hflip,
        vflip=video.vflip,
        stall_timeout=video.stall_timeout_s,
    )
    return source


def _opens(camera: Camera, opener: Opener) -> bool:
    try:
        container = opener(CaptureInput(camera.device, "v4l2", clocked=True))
    except Exception as exc:
        log.info("v4l2 node %s does not open: %s", camera.device, exc)
        return False
    try:
        return bool(container.streams.video)
    finally:
        container.close()


def choose_video_source(
    video: VideoSection,
    *,
    libcamera: Callable[[], tuple[Camera, ...]] = libcamera_cameras,
    v4l2: Callable[[], tuple[Camera, ...]] = v4l2_cameras,
    opener: Opener = open_input,
) -> SourceChoice:
    """The video source ``video`` asks for; for ``auto`` the first that works (blocks
    while V4L2 nodes are tried: call it once at start, in a thread on a running loop)."""
    turn = Orientation(video.rotation, video.hflip, video.vflip)
    orientation = None if turn.identity else turn

    def v4l2_choice(device: str, reason: str) -> SourceChoice:
        factory = functools.partial(
            v4l2_video_source,
            device=device,
            input_format=video.input_format,
            orientation=orientation,
            stall_timeout=video.stall_timeout_s,
        )
        return SourceChoice("v4l2", device, reason, factory)

    kind = video.source
    if kind == "none":
        choice = SourceChoice("none", "", "video.source is none", None)
    elif kind == "testpattern":
        choice = SourceChoice("testpattern", "", "video.source is testpattern", _test_pattern)
    elif kind == "file":
        path = video.device
        factory = functools.partial(_file_source, path=path, orientation=orientation)
        choice = SourceChoice("file", path, "video.source is file", factory)
    elif kind == "picamera2":
        picamera2 = _picamera2_factory(video) or _missing_picamera2
        choice = SourceChoice("picamera2", "0", "video.source is picamera2", picamera2)
    elif kind == "v4l2":
        nodes = [c.device for c in v4l2()]
        device = video.device or (nodes[0] if nodes else "/dev/video0")
        choice = v4l2_choice(device, "video.source is v4l2")
    else:
        choice = _auto_video(video, libcamera, v4l2, opener, v4l2_choice)
    log_event(
        log,
        logging.INFO,
        "video_source",
        kind=choice.kind,
        device=choice.device or None,
        reason=choice.reason,
    )
    return choice


def _auto_video(
    video: VideoSection,
    libcamera: Callable[[], tuple[Camera, ...]],
    v4l2: Callable[[], tuple[Camera, ...]],
    opener: Opener,
    v4l2_choice: Callable[[str, str], SourceChoice],
) -> SourceChoice:
    cameras = libcamera()
    if cameras:
        factory = _picamera2_factory(video)
        if factory is not None:
            name = f"libcamera camera {cameras[0].name}"
            return SourceChoice("picamera2", cameras[0].device, f"auto: {name}", factory)
        log.info("libcamera sees %s but picamera2 cannot be used", cameras[0].name)
    tried = []
    for camera in v4l2():
        if video.device and camera.device != video.device:
            continue
        usable = [f.fourcc for f in camera.formats if f.input_format]
        if not usable:
            tried.append(f"{camera.device} (no MJPG, YUYV or H264)")
        elif _opens(camera, opener):
            return v4l2_choice(camera.device, f"auto: {camera.name} opens ({', '.join(usable)})")
        else:
            tried.append(f"{camera.device} (does not open)")
    why = f"tried {', '.join(tried)}" if tried else "no libcamera or V4L2 camera"
    return SourceChoice("testpattern", "", f"auto: {why}", _test_pattern)


def _file_source(config: VideoConfig, path: str, orientation: Orientation | None) -> Any:
    return file_video_source(path, orientation)


def _missing_picamera2(config: VideoConfig) -> MediaStreamTrack:
    raise EdgedError(ErrorCode.PICAMERA2_UNAVAILABLE, "edged's picamera2 source cannot be loaded")


def choose_audio_source(
    audio: AudioSection,
    *,
    sound: Callable[[], tuple[SoundDevice, ...]] = sound_devices,
    alsa_usable: Callable[[], bool] | None = None,
    intercom: Intercom | None = None,
) -> SourceChoice:
    """The audio source ``audio`` asks for; for ``auto`` ALSA capture if there is any (through
    ``intercom``, when given)."""
    kind, device = audio.source, audio.capture_device
    if kind == "none":
        choice = SourceChoice("none", "", "audio.source is none", None)
    elif kind == "tone":
        choice = SourceChoice("tone", "", "audio.source is tone", _tone)
    elif kind == "alsa":
        choice = SourceChoice(
            "alsa", device, "audio.source is alsa", _alsa_factory(audio, intercom)
        )
    else:
        capture = [d for d in sound() if d.capture]
        usable = alsa_usable if alsa_usable is not None else _alsa_importable
        if not capture:
            choice = SourceChoice("none", "", "auto: no ALSA capture device", None)
        elif not usable():
            choice = SourceChoice("none", "", "auto: pyalsaaudio is not installed", None)
        else:
            reason = f"auto: capture device {capture[0].alsa_name} ({capture[0].card_name})"
            choice = SourceChoice("alsa", device, reason, _alsa_factory(audio, intercom))
    log_event(
        log,
        logging.INFO,
        "audio_source",
        kind=choice.kind,
        device=choice.device or None,
        reason=choice.reason,
    )
    return choice


def _tone(config: Any) -> MediaStreamTrack:

    return ToneTrack(channels=config.channels, sample_rate=config.sample_rate)


def _alsa_importable() -> bool:
    try:
        from ..media.alsa.pcm import alsa_available
    except Exception:
        return False
    return alsa_available()


def _alsa_factory(audio: AudioSection, intercom: Intercom | None) -> Factory:
    def make(config: AudioConfig) -> MediaStreamTrack:
        from ..media.alsa.capture import alsa_audio_source

        track: MediaStreamTrack = alsa_audio_source(
            config, audio.capture_device, period_ms=audio.period_ms, intercom=intercom
        )
        return track

    return make
