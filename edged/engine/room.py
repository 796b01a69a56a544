"""The logged-in room: the state machine of login, reconnect and kick-out, the users and
streams as this client knows them, and the publishers and players that live in it.

Every server push and every change of the signaling connection goes through one queue
handled by one task, so that events reach the application in the order the server sent
them, and media actions (offers, answers, candidates) never overtake each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from ..backoff import Backoff
from ..errors import EdgedError, ErrorCode
from ..logs import log_event
from ..model import (
    PlayerState,
    PublisherState,
    RoomState,
    RoomStateChangedReason,
    Stream,
    UpdateType,
    User,
)
from ..protocol import (
    BroadcastMessage,
    CustomCommandMessage,
    KickedOut,
    LinkClosed,
    LinkOpen,
    Login,
    LoginResult,
    Play,
    Publish,
    RoomStreamUpdate,
    RoomUserUpdate,
    ServerMessage,
    Signal,
    SignalRelay,
    StopPlay,
    StreamExtraInfoUpdate,
    StreamInfo,
    TokenWillExpire,
    UserInfo,
)
from ..tokens import room_token
from . import events
from .config import EngineProfile, RoomConfig
from .player import RELAY_LOSS_CODES, Player
from .publisher import Publisher
from .signaling import LinkState, SignalingClient

log = logging.getLogger("edged.engine")
R = RoomStateChangedReason


def to_user(info: UserInfo) -> User:
    return User(info.user_id, info.user_name)


def to_stream(info: StreamInfo) -> Stream:
    return Stream(info.stream_id, to_user(info.user), info.extra_info, info.video, info.audio)


class RoomSession:
    """Owns one room login: signaling, known users and streams, publishers and players."""

    def __init__(
        self,
        profile: EngineProfile,
        room_id: str,
        user: User,
        config: RoomConfig,
        emit: events.Emit,
    ) -> None:
        self.profile = profile
        self.room_id = room_id
        self.user = user
        self.config = config
        self.emit = emit
        self.state = RoomState.DISCONNECTED
        self.users: dict[str, User] = {}
        self.streams: dict[str, Stream] = {}
        self.publishers: dict[str, Publisher] = {}
        self.players: dict[str, Player] = {}
        self.token_expires_at: float | None = None
        self.signaling = SignalingClient(
            profile.server_url,
            self._queue_push,
            self._queue_state,
            profile.timers,
        )
        self._inbox: asyncio.Queue[tuple[Callable[..., Coroutine[Any, Any, None]], tuple[Any, ...]]]
        self._inbox = asyncio.Queue()
        self._worker = asyncio.create_task(self._work())
        self._kick_code = 0
        self._interrupted_at: float | None = None

    # ---- state ---------------------------------------------------------------------

    def _set(self, state: RoomState, reason: RoomStateChangedReason, code: int = 0) -> None:
        self.emit(events.RoomStateChanged(self.room_id, reason, code, {}))
        self.state = state
        self.emit(events.RoomStateUpdate(self.room_id, state, code, {}))

    def _token(self) -> str | None:
        p = self.profile
        return (
            self.config.token
            or room_token(p.app_secret, p.app_id, self.user.user_id, self.room_id, p.token_ttl_s)
            or p.token
        )

    def _login_message(self) -> Login:
        return Login(
            app_id=self.profile.app_id,
            room_id=self.room_id,
            user_id=self.user.user_id,
            user_name=self.user.user_name,
            token=self._token(),
            user_update=self.config.user_update,
            max_members=self.config.max_members,
        )

    async def login(self) -> None:
        self._set(RoomState.CONNECTING, R.LOGINING)
        try:
            result = await self.signaling.login(self._login_message())
        except EdgedError as exc:
            self._set(RoomState.DISCONNECTED, R.LOGIN_FAILED, int(exc.code))
            raise
        self.token_expires_at = result.token_expires_at
        self._set(RoomState.CONNECTED, R.LOGINED)

    # ---- the inbox -----------------------------------------------------------------

    def _queue_push(self, msg: ServerMessage) -> None:
        self._inbox.put_nowait((self._on_push, (msg,)))

    def _queue_state(self, state: LinkState, code: ErrorCode | None) -> None:
        self._inbox.put_nowait((self._on_link_state, (state, code)))

    def call_soon(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        """Run ``fn`` in order with the server's messages."""
        self._inbox.put_nowait((fn, args))

    async def _work(self) -> None:
        while True:
            fn, args = await self._inbox.get()
            try:
                await fn(*args)
            except EdgedError as exc:
                log_event(
                    log,
                    logging.WARNING,
                    "room_action_failed",
                    action=fn.__name__,
                    code=int(exc.code),
                )
            except Exception:
                log.exception("room action %s failed", fn.__name__)

    async def _on_push(self, msg: ServerMessage) -> None:
        if isinstance(msg, RoomUserUpdate):
            self._users_changed(msg.update_type, [to_user(u) for u in msg.users])
        elif isinstance(msg, RoomStreamUpdate):
            await self._streams_changed(
                msg.update_type, [to_stream(s) for s in msg.streams], msg.reason
            )
        elif isinstance(msg, StreamExtraInfoUpdate):
            streams = [to_stream(s) for s in msg.streams]
            self.streams.update({s.stream_id: s for s in streams})
            self.emit(events.RoomStreamExtraInfoUpdate(self.room_id, streams))
        elif isinstance(msg, LinkOpen):
            publisher = self.publishers.get(msg.stream_id)
            if publisher is not None:
                await publisher.open_link(msg.link_id, msg.user, msg.relayed, msg.description)
        elif isinstance(msg, LinkClosed):
            await self._link_closed(msg)
        elif isinstance(msg, SignalRelay):
            await self._signal(msg)
        elif isinstance(msg, BroadcastMessage):
            self.emit(events.RoomBroadcastMessage(self.room_id, to_user(msg.user), msg.message))
        elif isinstance(msg, CustomCommandMessage):
            self.emit(events.RoomCustomCommand(self.room_id, to_user(msg.user), msg.command))
        elif isinstance(msg, TokenWillExpire):
            self.emit(events.RoomTokenWillExpire(self.room_id, msg.remaining_s))
            if self.profile.app_secret and not self.config.token:
                await self.renew_token(self._token() or "")
        elif isinstance(msg, KickedOut):
            self._kick_code = msg.code

    def _users_changed(self, update: int, users: list[User]) -> None:
        if update == UpdateType.ADD:
            changed = [u for u in users if u.user_id not in self.users]
            self.users.update({u.user_id: u for u in changed})
        else:
            changed = [u for u in users if self.users.pop(u.user_id, None) is not None]
        if changed:
            self.emit(events.RoomUserUpdate(self.room_id, UpdateType(update), changed))

    async def _streams_changed(
        self, update: int, streams: list[Stream], reason: str | None
    ) -> None:
        if update == UpdateType.ADD:
            changed = [s for s in streams if s.stream_id not in self.streams]
            self.streams.update({s.stream_id: s for s in changed})
            if changed:
                self.emit(events.RoomStreamUpdate(self.room_id, UpdateType.ADD, changed, {}))
            for s in changed:
                if (player := self.players.get(s.stream_id)) is not None:
                    player.request_if_possible()
            return
        changed = [s for s in streams if self.streams.pop(s.stream_id, None) is not None]
        if changed:
            extra = {"reason": reason} if reason else {}
            self.emit(events.RoomStreamUpdate(self.room_id, UpdateType.DELETE, changed, extra))
        for s in changed:
            if (player := self.players.get(s.stream_id)) is not None:
                await player.link_lost()

    async def _link_closed(self, msg: LinkClosed) -> None:
        for publisher in self.publishers.values():
            if msg.link_id in publisher.links:
                await publisher.close_link(msg.link_id, msg.reason)
                return
        player = self.players.get(msg.stream_id)
        if player is not None and player.link_id == msg.link_id:
            code = RELAY_LOSS_CODES.get(msg.reason, 0)
            await player.link_lost(rebuild=True, code=code)

    async def _signal(self, msg: SignalRelay) -> None:
        for publisher in self.publishers.values():
            if msg.link_id in publisher.links:
                await publisher.on_signal(msg.link_id, msg.description, msg.candidate)
                return
        player = self.players.get(msg.stream_id)
        if player is not None:
            await player.on_signal(msg.link_id, msg.description, msg.candidate)

    # ---- connection changes --------------------------------------------------------

    async def _on_link_state(self, state: LinkState, code: ErrorCode | None) -> None:
        log_event(
            log,
            logging.INFO,
            "signaling",
            state=state.value,
            room=self.room_id,
            code=int(code) if code else None,
        )
        if state == LinkState.INTERRUPTED:
            self._interrupted_at = time.monotonic()
            self._set(RoomState.CONNECTING, R.RECONNECTING, int(ErrorCode.NETWORK_INTERRUPTED))
            for publisher in self.publishers.values():
                publisher.set_state(
                    PublisherState.PUBLISH_REQUESTING, int(ErrorCode.PUBLISH_NETWORK_INTERRUPTED)
                )
            for player in self.players.values():
                player.interrupted()
        elif state == LinkState.RESUMED:
            self._set(RoomState.CONNECTED, R.RECONNECTED)
            for publisher in self.publishers.values():
                publisher.set_state(PublisherState.PUBLISHING)
            for player in self.players.values():
                player.resumed()
        elif state == LinkState.SESSION_LOST:
            await self._login_again()
        elif state == LinkState.GAVE_UP:
            await self._end(R.RECONNECT_FAILED, int(ErrorCode.RECONNECT_GAVE_UP))
        elif state == LinkState.ENDED:
            await self._end(R.KICK_OUT, self._kick_code or int(ErrorCode.KICKED_OUT_BY_SERVER))

    async def _login_again(self) -> None:
        """The server forgot us (restart, timeout): log in afresh and restore everything."""
        started = self._interrupted_at or time.monotonic()
        deadline = started + self.profile.timers.reconnect_give_up
        backoff = Backoff(self.profile.timers.retry_min, self.profile.timers.retry_max)
        for publisher in self.publishers.values():
            for link_id in list(publisher.links):
                await publisher.close_link(link_id)
        for player in self.players.values():
            await player.session_lost()
        while True:
            try:
                result = await self.signaling.login(self._login_message())
                break
            except EdgedError as exc:
                retry = exc.code in (
                    ErrorCode.CONNECT_FAILED,
                    ErrorCode.LOGIN_TIMEOUT,
                    ErrorCode.NETWORK_INTERRUPTED,
                    ErrorCode.ROOM_STATE_UNAVAILABLE,
                )
                if not retry or time.monotonic() + backoff.delay > deadline:
                    await self._end(R.RECONNECT_FAILED, int(ErrorCode.RECONNECT_GAVE_UP))
                    return
            await asyncio.sleep(backoff.next())
        self.token_expires_at = result.token_expires_at
        self._set(RoomState.CONNECTED, R.RECONNECTED)
        self._reconcile(result)
        for publisher in list(self.publishers.values()):
            await self.announce(publisher)
        for player in self.players.values():
            player.request_if_possible()

    def _reconcile(self, result: LoginResult) -> None:
        """Tell the application what changed in the room while we were away."""
        if self.config.user_update:
            present = {u.user_id for u in result.users}
            self._users_changed(
                UpdateType.DELETE, [u for uid, u in self.users.items() if uid not in present]
            )
        present_streams = {s.stream_id for s in result.streams}
        gone = [s for sid, s in self.streams.items() if sid not in present_streams]
        for s in gone:
            self.streams.pop(s.stream_id)
        if gone:
            self.emit(
                events.RoomStreamUpdate(
                    self.room_id, UpdateType.DELETE, gone, {"reason": "disconnected"}
                )
            )

    async def _end(self, reason: RoomStateChangedReason, code: int) -> None:
        for publisher in list(self.publishers.values()):
            await publisher.close()
            publisher.set_state(PublisherState.NO_PUBLISH, code)
        for player in list(self.players.values()):
            await player.stop(code)
        self.publishers.clear()
        self.players.clear()
        self._set(RoomState.DISCONNECTED, reason, code)
        await self.signaling.close()

    # ---- publishing ----------------------------------------------------------------

    async def announce(self, publisher: Publisher) -> None:
        """Ask the server to list the stream; PUBLISHING once it accepted."""
        try:
            await self.signaling.request(
                Publish(
                    stream_id=publisher.stream_id,
                    extra_info=publisher.config.extra_info,
                    video=publisher.config.video,
                    audio=publisher.config.audio,
                    max_viewers=publisher.config.max_viewers,
                    relay=publisher.config.relay,
                    p2p_max_viewers=publisher.config.p2p_max_viewers,
                )
            )
        except EdgedError as exc:
            if exc.code != ErrorCode.ALREADY_PUBLISHING:
                raise
        publisher.set_state(PublisherState.PUBLISHING)

    async def request_play(self, stream_id: str) -> str:
        result = await self.signaling.request(Play(stream_id=stream_id))
        return str(result["link_id"])

    async def release_link(self, stream_id: str) -> None:
        """Tell the server we no longer play ``stream_id`` on the current link."""
        await self.signaling.request(StopPlay(stream_id=stream_id))

    def ice_servers(self) -> list[dict[str, Any]]:
        """The profile's ICE servers, then those the room server issued (TURN)."""
        return [*self.profile.ice_servers, *self.signaling.ice_servers]

    async def send_signal(self, signal: Signal) -> None:
        await self.signaling.send(signal)

    async def renew_token(self, token: str) -> None:
        self.token_expires_at = await self.signaling.renew_token(token)

    async def close(self, logout: bool) -> None:
        """Stop every publisher and player, log out (if asked) and end the session."""
        for publisher in list(self.publishers.values()):
            await publisher.close()
            publisher.set_state(PublisherState.NO_PUBLISH)
        for player in list(self.players.values()):
            await player.stop()
        self.publishers.clear()
        self.players.clear()
        if logout:
            await self.signaling.logout()
        else:
            await self.signaling.close()
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        if self.state != RoomState.DISCONNECTED:
            self._set(RoomState.DISCONNECTED, R.LOGOUT)

    def player_states(self) -> dict[str, PlayerState]:
        return {sid: p.state for sid, p in self.players.items()}
