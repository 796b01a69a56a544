"""Which camera and microphone are published: the configured source, or the first that works.

:func:`choose_video_source` and :func:`choose_audio_source` read the daemon's ``video``
and ``audio`` sections and return a :class:`SourceChoice` whose ``factory`` is what
``EngineProfile.video_source`` / ``audio_source`` take (``None`` for no source). With
``auto``, video is picamera2 (a libcamera camera and the picamera2 module), else the
first V4L2 capture node that opens, else the test pattern; audio is ALSA capture when
a capture device exists, else none. The choice and its reason are logged.

The H.264 encoder of frame sources is picked in :mod:`edged.media.encoder_choice`.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiortc.mediastreams import MediaStreamTrack

from ..logs import log_event
from .devices import (
    Camera,
    SoundDevice,
    VideoFormat,
    choose_input_format,
    libcamera_cameras,
    node_formats,
    sound_devices,
    v4l2_cameras,
)
from .encoder_choice import EncoderChoice as EncoderChoice
from .encoder_choice import V4l2m2mEncoder as V4l2m2mEncoder
from .encoder_choice import pick_h264_encoder as pick_h264_encoder
from .fanout import PacketEncoder
from .filesource import file_video_source
from .h264 import H264Settings
from .v4l2 import CaptureInput, CaptureTrack, Opener, Orientation, open_input
from .watchdog import STALL_TIMEOUT

log = logging.getLogger("edged.media.sources")

Factory = Callable[[Any], MediaStreamTrack]
"""``config -> track``: what ``EngineProfile.video_source`` and ``audio_source`` take."""


class VideoSettings(Protocol):
    """The video settings a source is made for (the engine's ``VideoConfig``)."""

    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def fps(self) -> float: ...
    @property
    def bitrate(self) -> int: ...
    @property
    def min_bitrate(self) -> int: ...
    @property
    def max_bitrate(self) -> int: ...
    @property
    def keyframe_interval_s(self) -> float: ...


class VideoSelection(Protocol):
    """The keys of the daemon's ``video`` section that choose the source."""

    @property
    def source(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def rotation(self) -> int: ...
    @property
    def hflip(self) -> bool: ...
    @property
    def vflip(self) -> bool: ...
    @property
    def input_format(self) -> str: ...
    @property
    def stall_timeout_s(self) -> float: ...


class AudioSelection(Protocol):
    """The keys of the daemon's ``audio`` section that choose the source."""

    @property
    def source(self) -> str: ...
    @property
    def capture_device(self) -> str: ...
    @property
    def period_ms(self) -> int: ...


@dataclass(frozen=True)
class SourceChoice:
    """A chosen source: its kind, device, why, and the factory (None: no source)."""

    kind: str
    device: str
    reason: str
    factory: Factory | None


def v4l2_video_source(
    config: VideoSettings,
    device: str = "/dev/video0",
    input_format: str = "auto",
    orientation: Orientation | None = None,
    *,
    formats: Callable[[str], tuple[VideoFormat, ...]] = node_formats,
    stall_timeout: float | None = STALL_TIMEOUT,
) -> CaptureTrack:
    """A V4L2 camera track for ``config`` (a :class:`~edged.engine.config.VideoConfig`).

    ``auto`` asks the camera for its formats and takes :func:`choose_input_format`'s.
    H.264 from the camera (``input_format="h264"``) passes through; other formats are
    decoded, then encoded by the board's hardware encoder when it has one (the track then
    yields packets and ``hardware_encode`` is True), else once by the fan-out's libx264.
    A camera that delivers nothing for ``stall_timeout`` seconds is reported and reopened.
    """
    if input_format == "auto":
        input_format = choose_input_format(formats(device), config.width, config.height, config.fps)
    spec = CaptureInput.v4l2(device, config.width, config.height, config.fps, input_format)
    encoder: Callable[[], PacketEncoder] | None = None
    if pick_h264_encoder().hardware and (input_format != "h264" or orientation):
        encoder = functools.partial(V4l2m2mEncoder, H264Settings.for_video(config))
    return CaptureTrack(
        spec,
        orientation=orientation,
        encoder=encoder,
        hardware_encode=encoder is not None,
        stall_timeout=stall_timeout,
    )


# ---- choosing ----------------------------------------------------------------------------


def _test_pattern(config: VideoSettings) -> MediaStreamTrack:
    from .testpattern import TestPatternTrack

    return TestPatternTrack(config.width, config.height, config.fps)


def _picamera2_factory(video: VideoSelection) -> Factory | None:
    """picamera2's source factory, when the module and its dependencies import."""
    try:
        module = importlib.import_module("edged.media.picamera2_source")
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
    video: VideoSelection,
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
    video: VideoSelection,
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


def _file_source(config: VideoSettings, path: str, orientation: Orientation | None) -> Any:
    return file_video_source(path, orientation)


def _missing_picamera2(config: VideoSettings) -> MediaStreamTrack:
    from ..errors import EdgedError, ErrorCode

    raise EdgedError(ErrorCode.PICAMERA2_UNAVAILABLE, "edged's picamera2 source cannot be loaded")


def choose_audio_source(
    audio: AudioSelection,
    *,
    sound: Callable[[], tuple[SoundDevice, ...]] = sound_devices,
    alsa_usable: Callable[[], bool] | None = None,
) -> SourceChoice:
    """The audio source ``audio`` asks for; for ``auto`` ALSA capture if there is any."""
    kind, device = audio.source, audio.capture_device
    if kind == "none":
        choice = SourceChoice("none", "", "audio.source is none", None)
    elif kind == "tone":
        choice = SourceChoice("tone", "", "audio.source is tone", _tone)
    elif kind == "alsa":
        choice = SourceChoice("alsa", device, "audio.source is alsa", _alsa_factory(audio))
    else:
        capture = [d for d in sound() if d.capture]
        usable = alsa_usable if alsa_usable is not None else _alsa_importable
        if not capture:
            choice = SourceChoice("none", "", "auto: no ALSA capture device", None)
        elif not usable():
            choice = SourceChoice("none", "", "auto: pyalsaaudio is not installed", None)
        else:
            reason = f"auto: capture device {capture[0].alsa_name} ({capture[0].card_name})"
            choice = SourceChoice("alsa", device, reason, _alsa_factory(audio))
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
    from .tone import ToneTrack

    return ToneTrack(channels=config.channels, sample_rate=config.sample_rate)


def _alsa_importable() -> bool:
    try:
        alsa = importlib.import_module("edged.media.alsa")
    except Exception:
        return False
    return bool(alsa.alsa_available())


def _alsa_factory(audio: AudioSelection) -> Factory:
    def make(config: Any) -> MediaStreamTrack:
        capture = importlib.import_module("edged.media.alsa_capture")
        track: MediaStreamTrack = capture.alsa_audio_source(
            config, audio.capture_device, period_ms=audio.period_ms
        )
        return track

    return make
