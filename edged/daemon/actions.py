"""What the daemon does when told (MQTT commands) or when it restores its desired state.

:class:`Actions` owns the daemon's overrides of the configuration made by commands (the
room or stream a ``login_room`` or ``start_publishing`` named) and the set of streams it
wants to play, and turns each command into engine calls.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..engine.views import RoomInfo
from ..errors import EdgedError, ErrorCode
from ..model import RoomState, User
from ..tokens import room_token
from .commands import (
    Command,
    LoginRoomArgs,
    MuteArgs,
    RenewTokenArgs,
    SetVideoConfigArgs,
    StartPlayingArgs,
    StartPublishingArgs,
    StopPlayingArgs,
    StopPublishingArgs,
)

if TYPE_CHECKING:
    from .service import Daemon


class Actions:
    """Owns the command-made overrides and the wanted players; runs each command."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.reset()

    def reset(self) -> None:
        cfg = self.daemon.config
        self.room_id = cfg.room.room_id
        self.user = User(cfg.room.user_id, cfg.room.user_name)
        self.token: str | None = None
        self.stream_id = cfg.auto.publish.stream_id
        self.publish_config = cfg.publish_config()
        media = self.daemon.media
        if media is not None:  # publish what was found: no microphone, no audio
            self.publish_config = dataclasses.replace(
                self.publish_config, video=media.has_video, audio=media.has_audio
            )
        self.play_all = cfg.auto.play == "all"
        self.wanted: set[str] = set() if self.play_all else set(cfg.auto.play)
        self.refused: set[str] = set()
        self.play_video = cfg.auto.play_video
        self.video_choice: dict[str, bool] = {}  # per stream, from start_playing

    # ---- the desired state ---------------------------------------------------------

    async def login(self) -> None:
        cfg = self.daemon.config.room_config()
        await self.daemon.engine.login_room(
            self.room_id, self.user, dataclasses.replace(cfg, token=self.token)
        )

    async def publish(self) -> None:
        await self.daemon.engine.start_publishing(self.stream_id, self.publish_config)

    def streams_to_play(self) -> list[str]:
        """Wanted streams not yet played; with ``play: all``, every stream of the others."""
        engine = self.daemon.engine
        wanted = set(self.wanted)
        if self.play_all:
            wanted |= {
                sid for sid, s in engine.streams.items() if s.user.user_id != self.user.user_id
            }
        return sorted(wanted - set(engine.players) - self.refused)

    async def play(self, stream_id: str) -> None:
        video = self.video_choice.get(stream_id, self.play_video)
        await self.daemon.engine.start_playing(
            stream_id, self.daemon.player_sink(stream_id), video=video
        )

    # ---- commands ------------------------------------------------------------------

    async def run(self, command: Command) -> Any:
        """Run one command; the result goes in its response."""
        handler = getattr(self, f"cmd_{command.name}")
        async with self.daemon.engine_lock:  # never interleaved with the supervisor
            result = await handler(command.args)
        self.daemon.wake()
        return result

    def _engine_room(self) -> RoomInfo:
        room = self.daemon.engine.room_info
        if room is None or room.state == RoomState.DISCONNECTED:
            raise EdgedError(ErrorCode.NOT_LOGGED_IN)
        return room

    async def cmd_login_room(self, args: LoginRoomArgs) -> Any:
        self.room_id = args.room_id or self.room_id
        if args.user_id or args.user_name:
            self.user = User(
                args.user_id or self.user.user_id,
                args.user_name if args.user_name is not None else self.user.user_name,
            )
        self.token = args.token or self.token
        engine = self.daemon.engine
        room = engine.room_info
        if room is not None and room.state != RoomState.DISCONNECTED:
            if room.room_id == self.room_id and room.user == self.user:
                return self.daemon.tracker.snapshot()["room"]
            await engine.logout_room()
        self.daemon.want_login = True
        await self.login()
        return self.daemon.tracker.snapshot()["room"]

    async def cmd_logout_room(self, args: Any) -> Any:
        self.daemon.want_login = False
        await self.daemon.engine.logout_room()
        return None

    async def cmd_start_publishing(self, args: StartPublishingArgs) -> Any:
        self._engine_room()
        if args.stream_id and args.stream_id != self.stream_id:
            self.stream_id = args.stream_id
        pc = self.publish_config
        if args.extra_info is not None:
            pc = dataclasses.replace(pc, extra_info=args.extra_info)
        if args.max_viewers is not None:
            pc = dataclasses.replace(pc, max_viewers=args.max_viewers)
        self.publish_config = pc
        self.daemon.want_publish = True
        if self.stream_id not in self.daemon.engine.publishers:
            await self.publish()
        return {"stream_id": self.stream_id}

    async def cmd_stop_publishing(self, args: StopPublishingArgs) -> Any:
        self._engine_room()
        stream_id = args.stream_id or self.stream_id
        self.daemon.want_publish = False
        if stream_id not in self.daemon.engine.publishers:
            raise EdgedError(ErrorCode.NOT_PUBLISHING)
        await self.daemon.engine.stop_publishing(stream_id)
        return {"stream_id": stream_id}

    async def cmd_start_playing(self, args: StartPlayingArgs) -> Any:
        self._engine_room()
        self.wanted.add(args.stream_id)
        self.refused.discard(args.stream_id)
        if args.video is not None:
            self.video_choice[args.stream_id] = args.video
        await self.play(args.stream_id)
        return {"stream_id": args.stream_id}

    async def cmd_stop_playing(self, args: StopPlayingArgs) -> Any:
        self._engine_room()
        self.wanted.discard(args.stream_id)
        self.refused.add(args.stream_id)  # also under `play: all`
        await self.daemon.engine.stop_playing(args.stream_id)
        return {"stream_id": args.stream_id}

    async def cmd_mute_publish_audio(self, args: MuteArgs) -> Any:
        self.daemon.engine.mute_publish_audio(args.muted)
        return {"muted": args.muted}

    async def cmd_mute_publish_video(self, args: MuteArgs) -> Any:
        self.daemon.engine.mute_publish_video(args.muted)
        return {"muted": args.muted}

    async def cmd_set_video_config(self, args: SetVideoConfigArgs) -> Any:
        engine = self.daemon.engine
        update = args.model_dump(exclude_none=True)
        engine.set_video_config(dataclasses.replace(engine.video_config, **update))
        return dataclasses.asdict(engine.video_config)

    async def cmd_renew_token(self, args: RenewTokenArgs) -> Any:
        room = self._engine_room()
        token = args.token
        profile = self.daemon.engine.profile
        if token is None:
            token = room_token(
                profile.app_secret,
                profile.app_id,
                self.user.user_id,
                room.room_id,
                profile.token_ttl_s,
            )
            if token is None:
                raise EdgedError(ErrorCode.CREDENTIALS_MISSING, "no token given and no app secret")
        self.token = args.token or self.token
        await self.daemon.engine.renew_token(token)
        renewed = self.daemon.engine.room_info
        return {"token_expires_at": renewed.token_expires_at if renewed else None}

    async def cmd_snapshot(self, args: Any) -> Any:
        size = await self.snapshot()
        return {"bytes": size}

    async def cmd_get_state(self, args: Any) -> Any:
        return self.daemon.tracker.snapshot()

    async def snapshot(self) -> int:
        """Make a JPEG of the published video now and publish it retained."""
        jpeg = await self.daemon.snapshot_jpeg()
        if jpeg is None:
            raise EdgedError(ErrorCode.SNAPSHOT_FAILED)
        if self.daemon.channel is not None:
            self.daemon.channel.set_retained(self.daemon.topics.snapshot, jpeg)
        return len(jpeg)
