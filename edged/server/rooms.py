"""The room service: what each client message does to rooms, users and streams.

It owns the node's sessions and media links and applies the rules of the call
model (product contract §2): login creates rooms, a second login of the same user
kicks the first, stream ids are unique per app, the others hear of every user and
stream change in the order the server saw them, and a stream's DELETE comes
before its user's DELETE.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Protocol

from .. import __version__
from ..errors import EdgedError, ErrorCode
from ..logs import log_event
from ..model import StreamDeleteReason, UpdateType
from ..protocol import (
    PROTOCOL_VERSION,
    KickedOut,
    LinkClosed,
    LinkOpen,
    Login,
    LoginResult,
    Resume,
    RoomStreamUpdate,
    RoomUserUpdate,
    SessionDescription,
    StreamInfo,
    TokenWillExpire,
    UserInfo,
    encode,
)
from ..tokens import TokenClaims
from .auth import TokenTimers, login_claims, renewed_claims
from .links import Link, LinkTable
from .relay_links import RelayLinks
from .roster import Roster
from .session import Connection, Session
from .settings import ServerSettings
from .store import RoomStore
from .turn import IceServerIssuer

log = logging.getLogger("edged.server")

RESUME_SEP = "~"
"""With several nodes, a resume token is ``node~app~room~random``: no id may hold a ``~``."""


def _users(room_id: str, update_type: UpdateType, users: list[UserInfo]) -> str:
    return encode(RoomUserUpdate(room_id=room_id, update_type=update_type, users=users))


def _streams(
    room_id: str, update_type: UpdateType, streams: list[StreamInfo], reason: str | None = None
) -> str:
    return encode(
        RoomStreamUpdate(room_id=room_id, update_type=update_type, streams=streams, reason=reason)
    )


class Shared(Protocol):
    """What a multi-node server is told when a session, stream, link or room changes here
    (it keeps the claims and the room's records in Redis)."""

    def saved(self, session: Session) -> None:
        """The session's identity, claims or streams changed (or it logged in)."""

    def link_opened(self, link: Link) -> None: ...

    def link_closed(self, link: Link) -> None: ...

    def release_user(self, session: Session) -> None: ...

    async def claim_user(
        self, app_id: str, user_id: str, session_id: str
    ) -> Callable[[bool], None]:
        """Make ``session_id``, about to log in here, the user's one session across the
        nodes; call what it returns with whether the login succeeded (the session another
        node held is then ended there, or the claim given back). EdgedError when Redis
        cannot be reached or this login was already kicked by a later one."""

    async def claim_stream(self, app_id: str, stream_id: str) -> int:
        """Claim ``stream_id`` for this node: 0 when another node publishes it, 1 when this
        node held it already, 2 when newly claimed (release it if it is not published)."""

    def release_stream(self, app_id: str, stream_id: str) -> None: ...

    def release_room(self, app_id: str, room_id: str) -> None: ...


class RoomService:
    """Sessions, links and the rules of rooms, users and streams on this node."""

    def __init__(
        self,
        settings: ServerSettings,
        store: RoomStore,
        *,
        node_id: str | None = None,
        shared: Shared | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.node_id = node_id
        """With several nodes: this one's id, which starts its resume tokens."""
        self.shared = shared
        """With several nodes: told of every change the other nodes may need."""
        self.sessions: dict[str, Session] = {}
        self.roster = Roster(store, self.sessions)
        self._by_resume: dict[str, Session] = {}
        self.links = LinkTable()
        warn, expire = self._warn_token, self._expire_token
        self._token_timers = TokenTimers(settings.token_warning_s, warn, expire)
        self.ice = IceServerIssuer(settings.ice_servers, settings.turn)
        self.relay_links: RelayLinks | None = None
        if settings.sfu is not None:
            self.relay_links = RelayLinks(settings.sfu, self.links, self.send, self.close_link)

    # ---- sending -------------------------------------------------------------------

    def send(self, session: Session, body: str) -> None:
        """Queue ``body`` for ``session``; a client too far behind is disconnected."""
        if session.closed:
            return
        if not session.push(body):
            log_event(log, logging.WARNING, "slow_consumer", session=session.session_id)
            self._kick(session, ErrorCode.SLOW_CONSUMER, StreamDeleteReason.DISCONNECTED)

    def _to_room(
        self,
        app_id: str,
        room_id: str,
        body: str,
        *,
        skip: Session | None = None,
        users_only: bool = False,
    ) -> None:
        for other in self.roster.members(app_id, room_id, skip=skip, users_only=users_only):
            self.send(other, body)

    # ---- login, resume, logout -----------------------------------------------------

    def check_login(
        self,
        conn: Connection | None,
        msg: Login,
        verified: tuple[TokenClaims | None] | None = None,
    ) -> tuple[Session | None, TokenClaims | None]:
        """Refuse ``msg`` as :meth:`login` would; the token's claims and the user's session
        here, if any. ``verified``: the claims of ``msg``'s token as an earlier check of the
        same login found them (its signature is not checked twice)."""
        if conn is not None and conn.session is not None:
            raise EdgedError(ErrorCode.ALREADY_LOGGED_IN)
        if msg.version != PROTOCOL_VERSION:
            raise EdgedError(ErrorCode.PROTOCOL_VERSION_UNSUPPORTED)
        claims = verified[0] if verified is not None else login_claims(self.settings, msg)
        old_id = self.store.user_session(msg.app_id, msg.user_id)
        old = self.sessions.get(old_id) if old_id else None
        room = self.store.room(msg.app_id, msg.room_id)
        if (
            room is not None
            and len(room.members) >= room.max_members
            and (old is None or old.room_id != msg.room_id)
        ):
            raise EdgedError(ErrorCode.ROOM_FULL)
        return old, claims

    def login(
        self,
        conn: Connection | None,
        msg: Login,
        on_push: Callable[[str], None] | None = None,
        *,
        session_id: str | None = None,
        verified: tuple[TokenClaims | None] | None = None,
    ) -> tuple[Session, LoginResult]:
        """Log ``msg``'s user in on ``conn``, or with no socket, its messages to ``on_push``
        (``verified``: as :meth:`check_login` found the token's claims just before)."""
        old, claims = self.check_login(conn, msg, verified)
        if old is not None:
            self._kick(old, ErrorCode.KICKED_OUT, StreamDeleteReason.REPEATED_LOGIN)
        resume_token = secrets.token_urlsafe(24)
        if self.node_id is not None:  # where it is, for whichever node it reaches
            resume_token = RESUME_SEP.join((self.node_id, msg.app_id, msg.room_id, resume_token))
        session = Session(
            session_id=session_id or secrets.token_hex(8),
            resume_token=resume_token,
            app_id=msg.app_id,
            room_id=msg.room_id,
            user=UserInfo(user_id=msg.user_id, user_name=msg.user_name),
            user_update=msg.user_update,
            claims=claims,
            replay_limit=self.settings.limits.outbox_limit,
            on_push=on_push,
        )
        max_members = msg.max_members or self.settings.limits.default_max_members
        if not self.store.join(
            msg.app_id, msg.room_id, msg.user_id, session.session_id, max_members
        ):
            raise EdgedError(ErrorCode.ROOM_FULL)
        self.sessions[session.session_id] = session
        self._by_resume[session.resume_token] = session
        if conn is not None:
            session.attach(conn, 0)
        self._token_timers.arm(session)
        if self.shared is not None:
            self.shared.saved(session)
        log_event(
            log,
            logging.INFO,
            "login",
            app=msg.app_id,
            room=msg.room_id,
            user=msg.user_id,
            session=session.session_id,
            addr=conn.address if conn is not None else "whep",
            dev=claims is None,
        )
        return session, self._login_result(session, resumed=False)

    def after_login(self, session: Session) -> None:
        """Tell the new session who is there, and the others that it came."""
        room = self.store.room(session.app_id, session.room_id)
        if room is None:
            return
        if session.user_update:
            users = self.roster.others(session)
            if users:
                self.send(session, _users(session.room_id, UpdateType.ADD, users))
        if room.streams:
            streams = list(room.streams.values())
            self.send(session, _streams(session.room_id, UpdateType.ADD, streams))
        self._to_room(
            session.app_id,
            session.room_id,
            _users(session.room_id, UpdateType.ADD, [session.user]),
            skip=session,
            users_only=True,
        )

    def resume(self, conn: Connection, msg: Resume) -> tuple[Session, LoginResult]:
        if conn.session is not None:
            raise EdgedError(ErrorCode.ALREADY_LOGGED_IN)
        session = self._by_resume.get(msg.resume_token)
        if session is not None and session.adopted and not session.closed:
            session.take_over(msg.last_seq)  # its room was taken over from a dead node
        if session is None or session.closed or not session.can_replay_from(msg.last_seq):
            raise EdgedError(ErrorCode.RESUME_FAILED)
        old_conn = session.conn
        session.detach()
        if old_conn is not None:
            old_conn.close_after_flush()
        session.last_seen = time.monotonic()
        result = self._login_result(session, resumed=True)
        session.attach(conn, msg.last_seq)
        log_event(
            log,
            logging.INFO,
            "resume",
            session=session.session_id,
            addr=conn.address,
            replay=session.unsent(),
        )
        return session, result

    def _login_result(self, session: Session, *, resumed: bool) -> LoginResult:
        s = self.settings
        room = self.store.room(session.app_id, session.room_id)
        return LoginResult(
            session_id=session.session_id,
            resume_token=session.resume_token,
            room_id=session.room_id,
            user=session.user,
            heartbeat_interval_s=s.heartbeat_interval_s,
            heartbeat_timeout_s=s.heartbeat_timeout_s,
            token_expires_at=session.claims.expires_at if session.claims else None,
            ice_servers=self.ice.for_client(
                session.user.user_id, session.claims.expires_at if session.claims else None
            ),
            server_version=__version__,
            resumed=resumed,
            users=self.roster.others(session) if session.user_update else [],
            streams=list(room.streams.values()) if room else [],
        )

    def logout(self, session: Session) -> None:
        session.release()
        self.remove(session, StreamDeleteReason.STOPPED)
        log_event(log, logging.INFO, "logout", session=session.session_id)

    def remove(self, session: Session, reason: StreamDeleteReason) -> None:
        """End a session: links it plays, its streams' DELETE (then their links), user DELETE."""
        if session.closed:
            return
        session.closed = True
        session.cancel_timers()
        for link_id in list(session.playing.values()):
            self.close_link(link_id, reason.value)
        for stream_id in list(session.published):
            self.remove_stream(session, stream_id, reason)
        self.store.leave(session.app_id, session.room_id, session.user.user_id)
        if self.shared is not None:
            self.shared.release_user(session)
            if self.store.room(session.app_id, session.room_id) is None:
                self.shared.release_room(session.app_id, session.room_id)
        self.sessions.pop(session.session_id, None)
        self._by_resume.pop(session.resume_token, None)
        self._to_room(
            session.app_id,
            session.room_id,
            _users(session.room_id, UpdateType.DELETE, [session.user]),
            users_only=True,
        )

    def forget_room(self, app_id: str, room_id: str) -> list[Connection]:
        """Another node runs this room now (it took it over while this one was taken for
        dead): end its sessions here without a word to their clients and without touching
        what the nodes share (the other node holds their claims and records now); returns
        their connections, for the caller to close."""
        doomed = [s for s in self.sessions.values() if (s.app_id, s.room_id) == (app_id, room_id)]
        conns = [s.conn for s in doomed if s.conn is not None]
        shared, self.shared = self.shared, None
        try:
            for session in doomed:  # what they are sent from here on goes nowhere
                session.detach()
                self.remove(session, StreamDeleteReason.DISCONNECTED)
        finally:
            self.shared = shared
        return conns

    def kick_repeated_login(self, app_id: str, user_id: str, session_id: str) -> bool:
        """The user logged in again on another node: end this session of theirs (1002050)."""
        session = self.sessions.get(session_id)
        if session is None or (session.app_id, session.user.user_id) != (app_id, user_id):
            return False
        self._kick(session, ErrorCode.KICKED_OUT, StreamDeleteReason.REPEATED_LOGIN)
        return True

    def _kick(self, session: Session, code: ErrorCode, reason: StreamDeleteReason) -> None:
        if session.closed:
            return
        conn = session.release() if code != ErrorCode.SLOW_CONSUMER else session.conn
        if conn is not None and code != ErrorCode.SLOW_CONSUMER:
            message = EdgedError(code).message
            conn.send_direct(encode(KickedOut(room_id=session.room_id, code=code, message=message)))
        self.remove(session, reason)
        if conn is not None:
            conn.session = None
            session.conn = None
            conn.close_after_flush()
        log_event(log, logging.INFO, "kicked", session=session.session_id, code=int(code))

    # ---- timers --------------------------------------------------------------------

    def _warn_token(self, session: Session, remaining: float) -> None:
        self.send(
            session,
            encode(TokenWillExpire(room_id=session.room_id, remaining_s=round(remaining, 3))),
        )

    def _expire_token(self, session: Session) -> None:
        self._kick(session, ErrorCode.TOKEN_EXPIRED_KICKED_OUT, StreamDeleteReason.KICKED)

    def renew_token(self, session: Session, token: str) -> float:
        claims = renewed_claims(self.settings, session, token)
        session.claims = claims
        self._token_timers.arm(session)
        if self.shared is not None:
            self.shared.saved(session)
        return claims.expires_at

    def arm_token(self, session: Session) -> None:
        """Start the token's timers of a session made here without a login (adopted)."""
        self._token_timers.arm(session)

    def holds(self, resume_token: str) -> bool:
        """Whether the session ``resume_token`` resumes is on this node."""
        return resume_token in self._by_resume

    def index_resume(self, session: Session) -> None:
        """Let ``session`` be resumed by its token (a session made without a login)."""
        self._by_resume[session.resume_token] = session

    def stood_still(self, seconds: float) -> None:
        """This server did not run for ``seconds``: that long is not its clients' silence."""
        for session in self.sessions.values():
            session.last_seen += seconds

    def sweep(self, now: float | None = None) -> None:
        """Remove sessions silent for longer than the heartbeat timeout."""
        t = time.monotonic() if now is None else now
        timeout = self.settings.heartbeat_timeout_s
        silent = [s for s in self.sessions.values() if t - s.last_seen > timeout]
        for session in [s for s in silent if s.on_push is None]:  # WHEP: until DELETE
            log_event(log, logging.INFO, "heartbeat_timeout", session=session.session_id)
            self._kick(session, ErrorCode.HEARTBEAT_TIMEOUT, StreamDeleteReason.HEARTBEAT_TIMEOUT)

    # ---- streams and links ---------------------------------------------------------

    def publish(
        self, session: Session, stream: StreamInfo, max_viewers: int, relay: str | None = None
    ) -> None:
        """Claim ``stream`` for ``session`` (asking for the ``relay`` policy), or refuse."""
        claims = session.claims
        refusal = claims.may_publish(stream.stream_id, relay) if claims else None
        if refusal is not None:
            raise EdgedError(refusal)
        if stream.stream_id in session.published:
            raise EdgedError(ErrorCode.ALREADY_PUBLISHING)
        if len(session.published) >= self.settings.limits.max_streams_per_session:
            raise EdgedError(ErrorCode.PUBLISH_FAILED, "too many streams in one session")
        if not self.store.add_stream(session.app_id, session.room_id, stream, max_viewers):
            raise EdgedError(ErrorCode.STREAM_ID_ALREADY_PUBLISHED)
        session.published.add(stream.stream_id)
        log_event(log, logging.INFO, "publish", session=session.session_id, stream=stream.stream_id)

    def announce_stream(self, session: Session, stream: StreamInfo) -> None:
        if self.shared is not None:
            self.shared.saved(session)
        self._to_room(
            session.app_id,
            session.room_id,
            _streams(session.room_id, UpdateType.ADD, [stream]),
            skip=session,
        )

    def remove_stream(self, session: Session, stream_id: str, reason: StreamDeleteReason) -> None:
        if stream_id not in session.published:
            raise EdgedError(ErrorCode.NOT_PUBLISHING)
        session.published.discard(stream_id)
        session.relay.pop(stream_id, None)
        stream = self.store.remove_stream(session.app_id, stream_id)
        if self.shared is not None:
            self.shared.release_stream(session.app_id, stream_id)
            if not session.closed:
                self.shared.saved(session)
        if stream is not None:
            self._to_room(
                session.app_id,
                session.room_id,
                _streams(session.room_id, UpdateType.DELETE, [stream], reason.value),
                skip=session,
            )
        for link in self.links.of_stream(session, stream_id):
            self.close_link(link.link_id, "stream_deleted")

    def set_extra_info(self, session: Session, stream_id: str, extra_info: str) -> StreamInfo:
        room = self.store.room(session.app_id, session.room_id)
        if stream_id not in session.published or room is None:
            raise EdgedError(ErrorCode.NOT_PUBLISHING)
        stream = room.streams[stream_id].model_copy(update={"extra_info": extra_info})
        room.streams[stream_id] = stream
        if self.shared is not None:
            self.shared.saved(session)
        return stream

    def play(self, session: Session, stream_id: str, *, relay: bool = True) -> Link:
        """A viewer's link to a stream (``relay``: through the SFU if the policy says so)."""
        room_id = self.store.stream_room(session.app_id, stream_id)
        room = self.store.room(session.app_id, session.room_id)
        if room_id != session.room_id or room is None:
            raise EdgedError(ErrorCode.STREAM_NOT_FOUND)
        if stream_id in session.playing:
            raise EdgedError(ErrorCode.ALREADY_PLAYING)
        if len(session.playing) >= self.settings.limits.max_plays_per_session:
            raise EdgedError(ErrorCode.PLAYER_COUNT_EXCEEDED)
        cap = room.max_viewers.get(stream_id, 0)
        if cap and room.viewers.get(stream_id, 0) >= cap:
            raise EdgedError(ErrorCode.VIEWER_LIMIT_REACHED)
        stream = room.streams[stream_id]
        publisher = self.sessions[room.members[stream.user.user_id]]
        sfu = self.relay_links
        relayed = relay and sfu is not None and sfu.wanted(publisher, stream_id)
        link = self.links.open(stream_id, publisher, session, relayed)
        room.viewers[stream_id] = room.viewers.get(stream_id, 0) + 1
        if self.shared is not None:
            self.shared.link_opened(link)
        log_event(
            log,
            logging.INFO,
            "play",
            session=session.session_id,
            stream=stream_id,
            link=link.link_id,
        )
        return link

    def open_link(self, link: Link, offer: SessionDescription | None = None) -> None:
        """Ask the publisher for an offer (or the SFU), or to answer a player's ``offer``."""
        if link.via_sfu and self.relay_links is not None:
            self.relay_links.open_down(link)
        elif link.player is not None:
            user = link.player.user
            opening = LinkOpen(
                link_id=link.link_id, stream_id=link.stream_id, user=user, description=offer
            )
            self.send(link.publisher, encode(opening))

    def stop_play(self, session: Session, stream_id: str) -> None:
        link_id = session.playing.get(stream_id)
        if link_id is None:
            raise EdgedError(ErrorCode.NOT_PLAYING)
        self.close_link(link_id, "stopped")

    def close_link(self, link_id: str, reason: str) -> None:
        """End a link and tell whichever end is still there (the SFU's end: the relay)."""
        link = self.links.pop(link_id)
        if link is None:
            return
        if self.shared is not None:
            self.shared.link_closed(link)
        room = self.store.room(link.publisher.app_id, link.publisher.room_id)
        if link.player is not None and room is not None and link.stream_id in room.viewers:
            room.viewers[link.stream_id] -= 1
        body = encode(LinkClosed(link_id=link_id, stream_id=link.stream_id, reason=reason))
        for end in (None if link.down else link.publisher, link.player):
            if end is not None:
                self.send(end, body)
        if link.via_sfu and self.relay_links is not None:
            self.relay_links.closed(link)
            up = self.links.uplink(link.publisher, link.stream_id)
            if up is not None and not self.links.count(
                link.publisher, link.stream_id, via_sfu=True
            ):
                self.close_link(up.link_id, "no_relayed_viewer")

    def to_others(self, session: Session, body: str) -> None:
        """Send ``body`` to everyone else in the session's room."""
        self._to_room(session.app_id, session.room_id, body, skip=session)
