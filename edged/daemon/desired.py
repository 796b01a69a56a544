"""What the device should be doing: the one owner of the daemon's desired state.

:class:`DesiredState` starts from the configuration (``auto``: log in, publish, play)
and is changed by commands (``login_room`` names another room, ``stop_playing`` refuses a
stream even under ``play: all``); the supervisor compares it with the engine and restores
what is missing. A reload of the configuration starts it over.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping

from ..config.model import Config
from ..engine.config import RoomConfig
from ..model import Stream, User
from .sources import MediaChoice


class DesiredState:
    """Owns the login (room, user, token), the published stream and the played ones."""

    def __init__(self, config: Config, media: MediaChoice | None) -> None:
        self.reset(config, media)

    def reset(self, config: Config, media: MediaChoice | None) -> None:
        """Back to what the configuration asks for, forgetting every command."""
        self.login = config.auto.login
        self.room_id = config.room.room_id
        self.user = User(config.room.user_id, config.room.user_name)
        self.token: str | None = None
        self._room_config = config.room_config()
        self.publish = config.auto.publish.enabled
        self.stream_id = config.auto.publish.stream_id
        self.publish_config = config.publish_config()
        if media is not None:  # publish what was found: no microphone, no audio
            self.publish_config = dataclasses.replace(
                self.publish_config, video=media.has_video, audio=media.has_audio
            )
        if (
            media is not None
            and media.board is not None
            and self.publish_config.p2p_max_viewers is None
        ):
            self.publish_config = dataclasses.replace(
                self.publish_config, p2p_max_viewers=media.board.p2p_max_viewers
            )
        self.play_all = config.auto.play == "all"
        self.wanted: set[str] = set() if self.play_all else set(config.auto.play)
        self.refused: set[str] = set()
        self.play_video = config.auto.play_video
        self.video_choice: dict[str, bool] = {}  # per stream, from start_playing

    # ---- the login -----------------------------------------------------------------

    def room_config(self) -> RoomConfig:
        """The options of a login: the configuration's, with the token a command gave."""
        return dataclasses.replace(self._room_config, token=self.token)

    def log_in_as(
        self,
        room_id: str | None,
        user_id: str | None,
        user_name: str | None,
        token: str | None,
    ) -> None:
        """Another room, user or token (each None keeps the present one)."""
        self.room_id = room_id or self.room_id
        if user_id or user_name:
            self.user = User(
                user_id or self.user.user_id,
                user_name if user_name is not None else self.user.user_name,
            )
        self.token = token or self.token

    # ---- publishing ----------------------------------------------------------------

    def publish_as(
        self, stream_id: str | None, extra_info: str | None, max_viewers: int | None
    ) -> None:
        """Publish (and keep publishing), with these options where given."""
        self.stream_id = stream_id or self.stream_id
        if extra_info is not None:
            self.publish_config = dataclasses.replace(self.publish_config, extra_info=extra_info)
        if max_viewers is not None:
            self.publish_config = dataclasses.replace(self.publish_config, max_viewers=max_viewers)
        self.publish = True

    # ---- playing -------------------------------------------------------------------

    def play(self, stream_id: str, video: bool | None) -> None:
        """Play ``stream_id`` from now on; ``video`` None keeps the earlier choice."""
        self.wanted.add(stream_id)
        self.refused.discard(stream_id)
        if video is not None:
            self.video_choice[stream_id] = video

    def stop_playing(self, stream_id: str) -> None:
        """Do not play ``stream_id`` again, also under ``play: all``."""
        self.wanted.discard(stream_id)
        self.refused.add(stream_id)

    def video_for(self, stream_id: str) -> bool:
        return self.video_choice.get(stream_id, self.play_video)

    def streams_to_play(self, streams: Mapping[str, Stream], playing: Collection[str]) -> list[str]:
        """Wanted streams not yet played; with ``play: all``, every stream of the others."""
        wanted = set(self.wanted)
        if self.play_all:
            wanted |= {sid for sid, s in streams.items() if s.user.user_id != self.user.user_id}
        return sorted(wanted - set(playing) - self.refused)
