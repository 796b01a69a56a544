"""What the daemon does when told: the MQTT commands, each with its schema and handler.

:data:`COMMANDS` is the one table of the commands: each name with the model of its
arguments (:mod:`edged.daemon.commands`) and the method of :class:`Actions` that runs it.
:class:`Actions` changes the desired state and calls the engine; it sees only what it
uses: the engine of the moment, the desired state, the supervisor (its lock, its wake-up
and the actions that restore), the snapshots, the state snapshot and the board's audio
controls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from ..engine.engine import Engine
from ..engine.views import RoomInfo
from ..errors import EdgedError, ErrorCode
from ..media.alsa.echo import EchoMode
from ..model import RoomState
from ..tokens import room_token
from .audio import DeviceAudio
from .commands import (
    Args,
    Command,
    EchoModeArgs,
    LoginRoomArgs,
    MicGainArgs,
    MuteArgs,
    NoArgs,
    RenewTokenArgs,
    SetVideoConfigArgs,
    SpeakerVolumeArgs,
    StartPlayingArgs,
    StartPublishingArgs,
    StopPlayingArgs,
    StopPublishingArgs,
    ViewTokenArgs,
)
from .desired import DesiredState
from .sinks import Snapshots
from .supervisor import Supervisor
from .view_token import view_token as mint_view_token

A = TypeVar("A", bound=Args)


@dataclass(frozen=True, slots=True)
class Actions:
    """Runs each command: one at a time, never interleaved with the supervisor."""

    engine: Callable[[], Engine]  # the engine of the moment (a reload replaces it)
    desired: DesiredState
    supervisor: Supervisor
    snapshots: Snapshots
    state: Callable[[], dict[str, Any]]  # the state snapshot, as on the state topic
    audio: DeviceAudio
    page_url: str | None = None  # the embedded server's page, when the network reaches it

    async def run(self, command: Command) -> Any:
        """Run one command; the result goes in its response."""
        spec = COMMANDS[command.name]
        async with self.supervisor.lock:
            result = await spec.handler(self, command.args)
        self.supervisor.wake()
        return result

    def _logged_in(self) -> RoomInfo:
        room = self.engine().room_info
        if room is None or room.state == RoomState.DISCONNECTED:
            raise EdgedError(ErrorCode.NOT_LOGGED_IN)
        return room

    # ---- the handlers (one per entry of COMMANDS) ----------------------------------

    async def login_room(self, args: LoginRoomArgs) -> Any:
        d = self.desired
        d.log_in_as(args.room_id, args.user_id, args.user_name, args.token)
        engine = self.engine()
        room = engine.room_info
        if room is not None and room.state != RoomState.DISCONNECTED:
            if room.room_id == d.room_id and room.user == d.user:
                return self.state()["room"]
            await engine.logout_room()
        d.login = True
        await self.supervisor.login()
        return self.state()["room"]

    async def logout_room(self, args: NoArgs) -> Any:
        self.desired.login = False
        await self.engine().logout_room()
        return None

    async def start_publishing(self, args: StartPublishingArgs) -> Any:
        """Publish; logged out, log in first (as ``login_room`` without arguments does):
        Home Assistant's switch means "be seen", whatever the room's state. A login that
        fails is the command's error, and the supervisor goes on trying both."""
        d = self.desired
        d.publish_as(args.stream_id, args.extra_info, args.max_viewers)
        room = self.engine().room_info
        if room is None or room.state == RoomState.DISCONNECTED:
            d.login = True
            await self.supervisor.login()
        if d.stream_id not in self.engine().publishers:
            await self.supervisor.publish()
        return {"stream_id": d.stream_id}

    async def stop_publishing(self, args: StopPublishingArgs) -> Any:
        self._logged_in()
        stream_id = args.stream_id or self.desired.stream_id
        self.desired.publish = False
        engine = self.engine()
        if stream_id not in engine.publishers:
            raise EdgedError(ErrorCode.NOT_PUBLISHING)
        await engine.stop_publishing(stream_id)
        return {"stream_id": stream_id}

    async def start_playing(self, args: StartPlayingArgs) -> Any:
        self._logged_in()
        self.desired.play(args.stream_id, args.video)
        await self.supervisor.play(args.stream_id)
        return {"stream_id": args.stream_id}

    async def stop_playing(self, args: StopPlayingArgs) -> Any:
        self._logged_in()
        self.desired.stop_playing(args.stream_id)
        await self.engine().stop_playing(args.stream_id)
        return {"stream_id": args.stream_id}

    async def mute_publish_audio(self, args: MuteArgs) -> Any:
        self.engine().mute_publish_audio(args.muted)
        return {"muted": args.muted}

    async def mute_publish_video(self, args: MuteArgs) -> Any:
        self.engine().mute_publish_video(args.muted)
        return {"muted": args.muted}

    async def set_speaker_volume(self, args: SpeakerVolumeArgs) -> Any:
        return self.audio.update(speaker_volume=args.volume)

    async def mute_speaker(self, args: MuteArgs) -> Any:
        return self.audio.update(speaker_muted=args.muted)

    async def set_mic_gain(self, args: MicGainArgs) -> Any:
        return self.audio.update(mic_gain_db=args.gain_db)

    async def set_echo_mode(self, args: EchoModeArgs) -> Any:
        return self.audio.update(echo_mode=EchoMode(args.mode))

    async def set_video_config(self, args: SetVideoConfigArgs) -> Any:
        engine = self.engine()
        update = args.model_dump(exclude_none=True)
        engine.set_video_config(dataclasses.replace(engine.video_config, **update))
        return dataclasses.asdict(engine.video_config)

    async def renew_token(self, args: RenewTokenArgs) -> Any:
        room = self._logged_in()
        engine = self.engine()
        token = args.token
        if token is None:
            p = engine.profile
            user_id = self.desired.user.user_id
            token = room_token(p.app_secret, p.app_id, user_id, room.room_id, p.token_ttl_s)
            if token is None:
                raise EdgedError(ErrorCode.CREDENTIALS_MISSING, "no token given and no app secret")
        self.desired.token = args.token or self.desired.token
        await engine.renew_token(token)
        renewed = engine.room_info
        return {"token_expires_at": renewed.token_expires_at if renewed else None}

    async def view_token(self, args: ViewTokenArgs) -> Any:
        room = self._logged_in()
        engine = self.engine()
        stream_id = args.stream_id or self.desired.stream_id
        if stream_id not in engine.publishers:
            raise EdgedError(ErrorCode.NOT_PUBLISHING, f"not publishing {stream_id!r}")
        return mint_view_token(
            engine.profile, room.room_id, stream_id, args.ttl_s, page_url=self.page_url
        )

    async def snapshot(self, args: NoArgs) -> Any:
        return {"bytes": await self.snapshots.take()}

    async def get_state(self, args: NoArgs) -> Any:
        return self.state()


@dataclass(frozen=True, slots=True)
class CommandSpec(Generic[A]):
    """One command: the model of its arguments and the handler that runs it."""

    schema: type[A]
    handler: Callable[[Actions, A], Awaitable[Any]]


def _command(schema: type[A], handler: Callable[[Actions, A], Awaitable[Any]]) -> CommandSpec[Any]:
    """A table entry; ``mypy`` checks that the handler takes that schema's arguments."""
    return CommandSpec(schema, handler)


COMMANDS: Mapping[str, CommandSpec[Any]] = MappingProxyType(
    {
        "login_room": _command(LoginRoomArgs, Actions.login_room),
        "logout_room": _command(NoArgs, Actions.logout_room),
        "start_publishing": _command(StartPublishingArgs, Actions.start_publishing),
        "stop_publishing": _command(StopPublishingArgs, Actions.stop_publishing),
        "start_playing": _command(StartPlayingArgs, Actions.start_playing),
        "stop_playing": _command(StopPlayingArgs, Actions.stop_playing),
        "mute_publish_audio": _command(MuteArgs, Actions.mute_publish_audio),
        "mute_publish_video": _command(MuteArgs, Actions.mute_publish_video),
        "set_video_config": _command(SetVideoConfigArgs, Actions.set_video_config),
        "set_speaker_volume": _command(SpeakerVolumeArgs, Actions.set_speaker_volume),
        "mute_speaker": _command(MuteArgs, Actions.mute_speaker),
        "set_mic_gain": _command(MicGainArgs, Actions.set_mic_gain),
        "set_echo_mode": _command(EchoModeArgs, Actions.set_echo_mode),
        "renew_token": _command(RenewTokenArgs, Actions.renew_token),
        "view_token": _command(ViewTokenArgs, Actions.view_token),
        "snapshot": _command(NoArgs, Actions.snapshot),
        "get_state": _command(NoArgs, Actions.get_state),
    }
)
"""Every MQTT command: its name, the model of its arguments and its handler."""

SCHEMAS: Mapping[str, type[Args]] = MappingProxyType(
    {name: spec.schema for name, spec in COMMANDS.items()}
)
"""The model of each command's arguments, for the parser (:func:`parse_command`)."""
