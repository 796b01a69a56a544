"""The engine's settings: profile, timers, video and audio, per-room and per-stream options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..model import Scenario
from .whip_out import WhipTarget


@dataclass(slots=True)
class VideoConfig:
    """What the published video looks like and how it is encoded."""

    width: int = 640
    height: int = 480
    fps: float = 30.0
    bitrate: int = 800_000
    min_bitrate: int = 150_000
    max_bitrate: int = 2_500_000
    keyframe_interval_s: float = 2.0


@dataclass(slots=True)
class AudioConfig:
    """What the published audio looks like and how it is encoded."""

    sample_rate: int = 48_000
    channels: int = 1
    bitrate: int = 32_000


SCENARIO_VIDEO: dict[Scenario, VideoConfig] = {
    Scenario.CALL: VideoConfig(640, 480, 30.0, 800_000),
    Scenario.BROADCAST: VideoConfig(1280, 720, 30.0, 2_000_000),
    Scenario.SURVEILLANCE: VideoConfig(1280, 720, 15.0, 1_200_000, keyframe_interval_s=4.0),
}


@dataclass(slots=True)
class EngineTimers:
    """Every delay of the engine, in seconds (tests shorten them); the signaling client's
    among them (request, connect, retry and give-up), so that there is one record."""

    request_timeout: float = 10.0
    connect_timeout: float = 5.0
    retry_min: float = 0.2
    retry_max: float = 5.0
    reconnect_give_up: float = 120.0
    play_retry: float = 1.0
    keyframe_min_interval: float = 0.5
    quality_interval: float = 3.0
    token_renew_before: float = 60.0


VideoSourceFactory = Callable[[VideoConfig], Any]
AudioSourceFactory = Callable[[AudioConfig], Any]


def default_video_source(config: VideoConfig) -> Any:
    """The test pattern with its time code: the source on a machine with no camera."""
    from ..media.sources.testpattern import TestPatternTrack

    return TestPatternTrack(config.width, config.height, config.fps)


def default_audio_source(config: AudioConfig) -> Any:
    """A 440 Hz tone: the source on a machine with no microphone."""
    from ..media.sources.tone import ToneTrack

    return ToneTrack(channels=config.channels, sample_rate=config.sample_rate)


@dataclass(slots=True)
class EngineProfile:
    """What an engine is created with: app, credentials, scenario, network and timers.

    Credentials are a ``token`` (minted elsewhere) or the ``app_secret`` on a trusted
    device, with which the engine mints its own short-lived tokens and renews them.
    """

    app_id: str
    server_url: str
    token: str | None = field(default=None, repr=False)
    app_secret: str | None = field(default=None, repr=False)
    token_ttl_s: float = 3600.0
    scenario: Scenario = Scenario.CALL
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    timers: EngineTimers = field(default_factory=EngineTimers)
    video: VideoConfig | None = None
    audio: AudioConfig = field(default_factory=AudioConfig)
    video_source: VideoSourceFactory = default_video_source
    audio_source: AudioSourceFactory = default_audio_source

    def video_config(self) -> VideoConfig:
        return replace(self.video) if self.video else replace(SCENARIO_VIDEO[self.scenario])


@dataclass(slots=True)
class RoomConfig:
    """Options of one login."""

    user_update: bool = False
    token: str | None = None
    max_members: int | None = None


@dataclass(slots=True)
class PublishConfig:
    """Options of one published stream."""

    extra_info: str = ""
    max_viewers: int = 0
    video: bool = True
    audio: bool = True
    relay: str | None = None
    """``p2p``, ``sfu`` or ``auto`` where the room server has an SFU; None: its policy."""
    p2p_max_viewers: int | None = None
    """With ``auto``: the viewers played peer to peer (None: the server's default)."""
    targets: tuple[WhipTarget, ...] = ()
    """External WHIP endpoints the stream is sent to as well (edged.engine.whip_out)."""
