"""The engine: the public API of the SDK half of edged (product contract §2).

Create it with an :class:`EngineProfile`, attach event handlers, then log into a room,
publish and play. Every method is a coroutine run on the caller's event loop; failures
raise :class:`~edged.errors.EdgedError` with a code from the error table, and the
matching state events are emitted as well.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping
from types import MappingProxyType

from ..errors import EdgedError, ErrorCode
from ..media.aiortc.receivers import guard_empty_frames
from ..media.aiortc.sender_reports import wrap_sender_report_counters
from ..model import PlayerState, PublisherState, RoomState, Stream, User
from ..protocol import StopPlay, Unpublish
from .config import EngineProfile, PublishConfig, RoomConfig, VideoConfig
from .events import Event, EventDispatcher, EventHandler
from .player import MediaSink, Player
from .preview import Preview
from .publisher import Publisher
from .quality_loop import QualityLoop
from .room import RoomSession
from .talkback import TalkbackSinks
from .views import PlayerInfo, PublisherInfo, RoomInfo, SnapshotSource

log = logging.getLogger("edged.engine")
_ID = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _check_id(value: str, max_len: int, code: ErrorCode) -> None:
    if not value or len(value) > max_len or not _ID.match(value):
        raise EdgedError(code)


class Engine:
    """Owns one room session at a time, its publishers and players, and the event handlers.

    ``talkback`` (also settable later, for links opened afterwards) gives, for a viewer's
    user id, the sink of the audio that viewer sends on a link it offered (a WHEP
    player's microphone, :mod:`edged.engine.talkback`); None declines it.
    """

    def __init__(
        self,
        profile: EngineProfile,
        handler: EventHandler | None = None,
        *,
        talkback: TalkbackSinks | None = None,
    ) -> None:
        _check_id(profile.app_id, 64, ErrorCode.APP_ID_INVALID)
        wrap_sender_report_counters()  # aiortc's sender reports past 4 GiB; once per process
        guard_empty_frames()  # a padding-only packet must not stop a decoder for good
        self.profile = profile
        self.events = EventDispatcher()
        if handler is not None:
            self.events.handlers.append(handler)
        self.video_config: VideoConfig = profile.video_config()
        self._room: RoomSession | None = None
        self.quality = QualityLoop(lambda: self._room, self._emit, profile.timers.quality_interval)
        self._destroyed = False
        self._muted = {"audio": False, "video": False}
        self.preview: Preview | None = None
        self.talkback = talkback

    def add_event_handler(self, handler: EventHandler) -> None:
        """Attach a handler; do it before ``login_room`` so that no event is lost."""
        self.events.handlers.append(handler)

    def _emit(self, event: Event) -> None:
        self.events.emit(event)

    def _alive(self) -> None:
        if self._destroyed:
            raise EdgedError(ErrorCode.ENGINE_DESTROYED)

    def _session(self) -> RoomSession:
        self._alive()
        room = self._room
        if room is None or room.state == RoomState.DISCONNECTED:
            raise EdgedError(ErrorCode.NOT_LOGGED_IN)
        return room

    # ---- rooms ---------------------------------------------------------------------

    async def login_room(self, room_id: str, user: User, config: RoomConfig | None = None) -> None:
        """Log into ``room_id`` (created if absent); returns once CONNECTED."""
        self._alive()
        _check_id(room_id, 128, ErrorCode.ROOM_ID_INVALID)
        _check_id(user.user_id, 64, ErrorCode.USER_ID_INVALID)
        if self._room is not None and self._room.state != RoomState.DISCONNECTED:
            raise EdgedError(ErrorCode.ROOM_COUNT_EXCEEDED)
        cfg = config or RoomConfig()
        self._room = RoomSession(self.profile, room_id, user, cfg, self._emit)
        try:
            await self._room.login()
        except EdgedError:
            await self._room.close(logout=False)
            raise
        self.quality.start()

    async def logout_room(self) -> None:
        """Stop publishing and playing, send the logout and wait for it to be confirmed."""
        self._alive()
        room, self._room = self._room, None
        await self.quality.stop()
        if room is not None:
            await room.close(logout=room.state != RoomState.DISCONNECTED)
        self._follow_capture()

    # ---- publishing ----------------------------------------------------------------

    async def start_publishing(self, stream_id: str, config: PublishConfig | None = None) -> None:
        """Capture, encode once and offer the stream; returns once PUBLISHING."""
        room = self._session()
        _check_id(stream_id, 128, ErrorCode.STREAM_ID_INVALID)
        if stream_id in room.publishers:
            raise EdgedError(ErrorCode.ALREADY_PUBLISHING)
        publisher = Publisher(
            stream_id,
            config or PublishConfig(),
            self.profile,
            self.video_config,
            self.profile.audio,
            room.send_signal,
            self._emit,
            room.ice_servers,
            self._talkback_sink,
        )
        room.publishers[stream_id] = publisher
        publisher.set_state(PublisherState.PUBLISH_REQUESTING)
        try:
            publisher.start_capture()
            for kind, muted in self._muted.items():
                publisher.mute(kind, muted)
            self._follow_capture()
            await publisher.wait_first_frame(self.profile.timers.request_timeout)
            await room.announce(publisher)
        except EdgedError as exc:
            room.publishers.pop(stream_id, None)
            await publisher.close()
            publisher.set_state(PublisherState.NO_PUBLISH, int(exc.code))
            raise

    async def stop_publishing(self, stream_id: str) -> None:
        room = self._session()
        publisher = room.publishers.pop(stream_id, None)
        if publisher is None:
            raise EdgedError(ErrorCode.NOT_PUBLISHING)
        with contextlib.suppress(EdgedError):
            await room.signaling.request(Unpublish(stream_id=stream_id))
        await publisher.close()
        publisher.set_state(PublisherState.NO_PUBLISH)
        self._follow_capture()

    def mute_publish_audio(self, muted: bool) -> None:
        self._mute("audio", muted)

    def mute_publish_video(self, muted: bool) -> None:
        self._mute("video", muted)

    def _mute(self, kind: str, muted: bool) -> None:
        self._alive()
        self._muted[kind] = muted
        for publisher in self._room.publishers.values() if self._room else ():
            publisher.mute(kind, muted)

    def set_video_config(self, config: VideoConfig) -> None:
        """Size and rate apply to the next publish; the bitrate also applies at once."""
        self._alive()
        self.video_config = config
        for publisher in self._room.publishers.values() if self._room else ():
            publisher.set_bitrate(config.bitrate)

    def _talkback_sink(self, user_id: str) -> MediaSink | None:
        return self.talkback(user_id) if self.talkback is not None else None

    # ---- preview -------------------------------------------------------------------

    def start_preview(self, sink: MediaSink) -> None:
        """Hand the local camera's frames to ``sink``, whether publishing or not."""
        self._alive()
        if self.preview is not None:
            raise EdgedError(ErrorCode.INVALID_PARAMETER, "a preview is already running")
        self.preview = Preview(sink, self.profile, self.video_config)
        self._follow_capture()

    async def stop_preview(self) -> None:
        preview, self.preview = self.preview, None
        if preview is not None:
            await preview.close()

    def _follow_capture(self) -> None:
        if self.preview is None:
            return
        taps = [p.video_tap for p in self._room.publishers.values()] if self._room else []
        self.preview.follow(next((t for t in taps if t is not None), None))

    # ---- playing -------------------------------------------------------------------

    async def start_playing(
        self, stream_id: str, sink: MediaSink | None = None, *, video: bool = True
    ) -> None:
        """Play ``stream_id``; if it does not exist yet, wait for it in PLAY_REQUESTING.

        ``video=False`` plays the audio only: the answer declines the video, so the
        publisher sends none and nothing is decoded (a board with just a speaker).
        """
        room = self._session()
        _check_id(stream_id, 128, ErrorCode.STREAM_ID_INVALID)
        if stream_id in room.players:
            raise EdgedError(ErrorCode.ALREADY_PLAYING)
        player = Player(
            stream_id,
            sink,
            self.profile,
            room.request_play,
            room.release_link,
            room.send_signal,
            lambda sid: sid in room.streams,
            self._emit,
            video=video,
            ice_servers=room.ice_servers,
        )
        room.players[stream_id] = player
        player.start()

    async def stop_playing(self, stream_id: str) -> None:
        room = self._session()
        player = room.players.pop(stream_id, None)
        if player is None:
            raise EdgedError(ErrorCode.NOT_PLAYING)
        had_link = player.link_id is not None
        await player.stop()
        if had_link:
            with contextlib.suppress(EdgedError):
                await room.signaling.request(StopPlay(stream_id=stream_id))

    # ---- tokens and teardown -------------------------------------------------------

    async def renew_token(self, token: str) -> None:
        await self._session().renew_token(token)

    async def destroy(self) -> None:
        """Log out (waiting for the server to confirm) and release camera, mic and network."""
        if self._destroyed:
            return
        with contextlib.suppress(EdgedError):
            await self.logout_room()
        await self.stop_preview()
        self._destroyed = True

    # ---- views (edged.engine.views: copies, never the live objects) -----------------

    @property
    def room_info(self) -> RoomInfo | None:
        """The room of the last ``login_room`` until ``logout_room``, else None."""
        room = self._room
        if room is None:
            return None
        return RoomInfo(room.room_id, room.user, room.state, room.token_expires_at)

    @property
    def room_state(self) -> RoomState:
        room = self._room
        return room.state if room is not None else RoomState.DISCONNECTED

    @property
    def streams(self) -> Mapping[str, Stream]:
        """Every stream of the room as this client knows it, ours included."""
        return MappingProxyType(dict(self._room.streams) if self._room else {})

    @property
    def publishers(self) -> Mapping[str, PublisherInfo]:
        """Our published streams, with their viewers, capabilities and counts."""
        room = self._room
        return MappingProxyType({s: p.info() for s, p in (room.publishers if room else {}).items()})

    @property
    def players(self) -> Mapping[str, PlayerInfo]:
        """The streams we play (or wait for), with what arrived so far."""
        room = self._room
        return MappingProxyType({s: p.info() for s, p in (room.players if room else {}).items()})

    def snapshot_source(self) -> SnapshotSource | None:
        """Where a still picture of the first published video can come from, or None."""
        for publisher in self._room.publishers.values() if self._room else ():
            source = publisher.snapshot_source()
            if source is not None:
                return source
        return None

    async def packets_received(self, stream_id: str) -> dict[str, int]:
        """RTP packets a played stream's link received so far, by kind ("video", "audio")."""
        player = self._room.players.get(stream_id) if self._room else None
        return await player.packets_received() if player is not None else {}

    def publisher_state(self, stream_id: str) -> PublisherState:
        p = self._room.publishers.get(stream_id) if self._room else None
        return p.state if p else PublisherState.NO_PUBLISH

    def player_state(self, stream_id: str) -> PlayerState:
        p = self._room.players.get(stream_id) if self._room else None
        return p.state if p else PlayerState.NO_PLAY

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.destroy()
