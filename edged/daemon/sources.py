"""The daemon's choice of capture sources, from the configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config.model import Config
from ..engine.config import EngineProfile
from .source_choice import choose_audio_source, choose_video_source

if TYPE_CHECKING:
    from ..media.alsa.intercom import Intercom
    from ..media.board import BoardDefaults


@dataclass(frozen=True, slots=True)
class MediaChoice:
    """What the device publishes: which sources were chosen, and why."""

    video: str
    audio: str
    reasons: tuple[str, str]
    board: BoardDefaults | None = None
    """The board's row of defaults, when the daemon detected one."""

    @property
    def has_video(self) -> bool:
        return self.video != "none"

    @property
    def has_audio(self) -> bool:
        return self.audio != "none"


def apply_sources(
    profile: EngineProfile,
    config: Config,
    intercom: Intercom | None = None,
    board: BoardDefaults | None = None,
) -> MediaChoice:
    """Set the profile's video and audio source factories for ``config``.

    ``auto`` picks picamera2, then a V4L2 camera, then the test pattern for video, and an
    ALSA microphone or nothing for audio (:mod:`edged.daemon.source_choice` logs why); an
    ALSA microphone goes through ``intercom`` (echo cancellation, gain). The video keys
    left unset take the ``board``'s defaults.
    """
    if board is not None:
        profile.video = config.video_config(board.picture)
    video = choose_video_source(config.video)
    audio = choose_audio_source(config.audio, intercom=intercom)
    if video.factory is not None:
        profile.video_source = video.factory
    if audio.factory is not None:
        profile.audio_source = audio.factory
    return MediaChoice(video.kind, audio.kind, (video.reason, audio.reason), board)
