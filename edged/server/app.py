"""The room server's aiohttp application: the ``/ws`` endpoint and its dispatch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from .. import __version__
from ..errors import EdgedError, ErrorCode
from ..logs import log_event
from ..model import StreamDeleteReason
from ..protocol import (
    Broadcast,
    BroadcastMessage,
    ClientMessage,
    CustomCommand,
    CustomCommandMessage,
    ErrorBody,
    Heartbeat,
    Login,
    Logout,
    Play,
    ProtocolError,
    Publish,
    RenewToken,
    Reply,
    Resume,
    SetStreamExtraInfo,
    Signal,
    SignalRelay,
    StopPlay,
    StreamExtraInfoUpdate,
    StreamInfo,
    Unpublish,
    decode_client,
    encode,
    encode_ok_reply,
)
from ..tokens import TokenClaims
from .forwarded import FORWARDED_FOR, client_address
from .limits import AddressLimiter, TokenBucket
from .proxy import CLIENT_HEADER
from .rooms import RoomService
from .routing import ClusterRouting
from .session import Connection, Session, Socket
from .settings import ServerSettings
from .store import MemoryRoomStore, RoomStore
from .webapp import add_web_routes
from .whep import WhepEndpoint
from .whip import WhipEndpoint

log = logging.getLogger("edged.server")

SERVICE_KEY = web.AppKey("edged_rooms", RoomService)
ENDS = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)
"""What ends a client's socket: it closed, or failed."""
STALL_S = 2.0
"""A sweep this much later than due means the server itself stood still meanwhile."""


def error_reply(code: ErrorCode, message: str, request_id: int | None) -> str:
    return encode(Reply(id=request_id, ok=False, error=ErrorBody(code=code, message=message)))


class RoomServer:
    """Owns the room service, the connection limits and the periodic sweeper."""

    def __init__(self, settings: ServerSettings, store: RoomStore | None = None) -> None:
        self.settings = settings
        self.routing: ClusterRouting | None = None
        if settings.cluster is not None:
            self.routing = ClusterRouting(settings.cluster, self)
            node_id = self.routing.cluster.node_id
            self.rooms = RoomService(
                settings, store or MemoryRoomStore(), node_id=node_id, shared=self.routing
            )
        else:
            self.rooms = RoomService(settings, store or MemoryRoomStore())
        self.whep = WhepEndpoint(self.rooms)
        self.whip = WhipEndpoint(self.rooms)
        lim = settings.limits
        self.addresses = AddressLimiter(
            lim.max_connections_per_ip,
            lim.ip_messages_per_s,
            lim.ip_message_burst,
            lim.ip_connects_per_s,
            lim.ip_connect_burst,
        )
        self.connections: set[Connection] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._handlers: dict[type[Any], Callable[[Connection, Any], Any]] = {
            Heartbeat: self._on_heartbeat,
            Logout: self._on_logout,
            Publish: self._on_publish,
            Unpublish: self._on_unpublish,
            SetStreamExtraInfo: self._on_extra_info,
            Play: self._on_play,
            StopPlay: self._on_stop_play,
            Signal: self._on_signal,
            Broadcast: self._on_broadcast,
            CustomCommand: self._on_custom_command,
            RenewToken: self._on_renew_token,
        }

    def make_app(self) -> web.Application:
        app = web.Application()
        app[SERVICE_KEY] = self.rooms
        app.router.add_get("/ws", self.handle_ws)
        app.router.add_get("/healthz", self.handle_health)
        self.whep.add_routes(app)
        self.whip.add_routes(app)
        if self.routing is not None:
            self.routing.add_routes(app)
        app.cleanup_ctx.append(self._lifecycle)
        app.on_shutdown.append(self._going_away)
        add_web_routes(app, self.settings)
        return app

    async def _going_away(self, app: web.Application) -> None:
        """Close every socket at once: clients reconnect instead of timing out."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping")
        if self.routing is not None:
            await self.routing.going_away()

    async def _lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        self._sweeper = asyncio.create_task(self._sweep_loop())
        if self.routing is not None:
            await self.routing.start()
        yield
        self._sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sweeper
        if self.routing is not None:
            await self.routing.close()
        for conn in list(self.connections):
            await conn.aclose()
        if self.rooms.relay_links is not None:
            await self.rooms.relay_links.close()

    async def _sweep_loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.settings.sweep_interval_s
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            late = loop.time() - due
            if late > STALL_S:
                # The server itself stood still (a stalled VM, SIGSTOP, a blocked loop):
                # its clients' heartbeats wait unread in its sockets, their silence is its own.
                self.rooms.stood_still(late)
                log_event(log, logging.WARNING, "server_stalled", seconds=round(late, 1))
            self.rooms.sweep()
            self.addresses.prune()
            self._close_loginless()

    def _close_loginless(self) -> None:
        """Close sockets that did not log in within the login timeout: an idle socket
        costs memory and a connection slot, and needs no token to open."""
        deadline = time.monotonic() - self.settings.limits.login_timeout_s
        for conn in self.connections:
            if not conn.ever_bound and conn.opened_at < deadline and not conn.closing:
                conn.send_direct(error_reply(ErrorCode.LOGIN_TIMEOUT, "no login in time", None))
                conn.close_after_flush()
                log_event(log, logging.INFO, "login_timeout", addr=conn.address)

    async def handle_health(self, request: web.Request) -> web.Response:
        rooms, members, streams = self.rooms.store.count()
        routing = self.routing
        return web.json_response(
            {
                "ok": True,
                "version": __version__,
                "node": routing.cluster.node_id if routing else None,
                "store": routing.cluster.health() if routing else {"kind": "memory", "ok": True},
                "rooms": rooms,
                "users": members,
                "streams": streams,
                "connections": len(self.connections),
                **({"carrying": routing.trunk_health()} if routing else {}),
            }
        )

    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        lim = self.settings.limits
        ws = web.WebSocketResponse(max_msg_size=lim.max_message_bytes * 2, heartbeat=None)
        await ws.prepare(request)
        address = client_address(
            request.remote, request.headers.get(FORWARDED_FOR), self.settings.trusted_proxies
        )
        proxied = self.routing is not None and self.routing.from_node(request)
        if proxied:  # carried here by another node: the client's own address
            address = request.headers.get(CLIENT_HEADER, address)
        await self.serve(ws, address, proxied=proxied)
        return ws

    async def serve(self, ws: Socket, address: str, *, proxied: bool) -> None:
        """Serve one client's socket until it closes (``proxied``: carried here by another
        node, whose client's address ``address`` is)."""
        lim = self.settings.limits
        conn = Connection(ws, address, TokenBucket(lim.messages_per_s, lim.message_burst))
        if len(self.connections) >= lim.max_connections or not self.addresses.connect(address):
            conn.send_direct(
                error_reply(ErrorCode.TOO_MANY_CONNECTIONS, "connection limit reached", None)
            )
            conn.close_after_flush()
            log_event(log, logging.WARNING, "connection_refused", addr=address)
            with contextlib.suppress(Exception):
                while (await ws.receive()).type not in ENDS:
                    pass
            return
        self.connections.add(conn)
        try:
            while (frame := await ws.receive()).type not in ENDS:
                if frame.type == WSMsgType.TEXT:
                    if self.routing is None:
                        self.receive(conn, frame.data)
                    elif await self.routing.on_text(conn, ws, frame.data, proxied=proxied):
                        break  # carried to the node that owns the room

                elif frame.type == WSMsgType.BINARY:
                    conn.send_direct(
                        error_reply(
                            ErrorCode.MALFORMED_MESSAGE, "binary frames are not accepted", None
                        )
                    )
        finally:
            self.connections.discard(conn)
            self.addresses.disconnect(address)
            if conn.session is not None:
                conn.session.detach()
            await conn.aclose()

    # ---- dispatch ------------------------------------------------------------------

    def receive(self, conn: Connection, text: str) -> None:
        """One text frame of a client: decoded, then handled."""
        msg = self.decode(conn, text)
        if msg is not None:
            self.handle(conn, msg)

    def decode(self, conn: Connection, text: str) -> ClientMessage | None:
        """A frame's message, after the rate limits; None when refused (and answered)."""
        if not conn.bucket.take() or not self.addresses.message(conn.address):
            conn.send_direct(error_reply(ErrorCode.RATE_LIMITED, "too many messages", None))
            return None
        if conn.backlog() > self.settings.limits.outbox_limit:
            log_event(log, logging.WARNING, "slow_consumer_conn", addr=conn.address)
            conn.close_after_flush()
            return None
        try:
            msg = decode_client(text)
        except ProtocolError as exc:
            self.reply_error(conn, exc.code, exc.message, exc.request_id)
            return None
        if conn.session is not None:
            conn.session.last_seen = time.monotonic()
        return msg

    def handle(self, conn: Connection, msg: ClientMessage) -> None:
        """Do what ``msg`` asks, answering errors to the client."""
        try:
            self._dispatch(conn, msg)
        except EdgedError as exc:
            self.reply_error(conn, exc.code, exc.message, msg.id)
        except Exception:
            log.exception("internal error handling %s", msg.type)
            self.reply_error(conn, ErrorCode.INTERNAL_ERROR, "internal error", msg.id)

    def reply_error(
        self, conn: Connection, code: ErrorCode, message: str, request_id: int | None
    ) -> None:
        text = error_reply(code, message, request_id)
        if conn.session is not None:
            self.rooms.send(conn.session, text)
        else:
            conn.send_direct(text)

    def _reply(
        self,
        session: Session,
        msg: ClientMessage,
        result: dict[str, Any] | None = None,
    ) -> None:
        if msg.id is not None:
            self.rooms.send(session, encode(Reply(id=msg.id, ok=True, result=result)))

    def log_in(
        self,
        conn: Connection,
        msg: Login,
        session_id: str | None = None,
        verified: tuple[TokenClaims | None] | None = None,
    ) -> Session:
        """Log the client in, answer, and tell the room (``session_id``: one chosen already;
        ``verified``: the token's claims as a check just before found them)."""
        session, result = self.rooms.login(conn, msg, session_id=session_id, verified=verified)
        self.rooms.send(session, encode_ok_reply(msg.id, result))
        self.rooms.after_login(session)
        return session

    def _dispatch(self, conn: Connection, msg: ClientMessage) -> None:
        if isinstance(msg, Login):
            self.log_in(conn, msg)
            return
        if isinstance(msg, Resume):
            session, result = self.rooms.resume(conn, msg)
            self.rooms.send(session, encode_ok_reply(msg.id, result))
            return
        if conn.session is None:
            raise EdgedError(ErrorCode.NOT_LOGGED_IN)
        self._handlers[type(msg)](conn, msg)

    def _session(self, conn: Connection) -> Session:
        assert conn.session is not None
        return conn.session

    def _on_heartbeat(self, conn: Connection, msg: Heartbeat) -> None:
        session = self._session(conn)
        if msg.ack is not None:
            session.ack(msg.ack)
        self._reply(session, msg, {"server_time": time.time()})

    def _on_logout(self, conn: Connection, msg: Logout) -> None:
        session = self._session(conn)
        self._reply(session, msg)
        self.rooms.logout(session)

    def _on_publish(self, conn: Connection, msg: Publish) -> None:
        session = self._session(conn)
        stream = StreamInfo(
            stream_id=msg.stream_id,
            user=session.user,
            extra_info=msg.extra_info,
            video=msg.video,
            audio=msg.audio,
        )
        self.rooms.publish(session, stream, msg.max_viewers, msg.relay)
        session.relay[msg.stream_id] = (msg.relay, msg.p2p_max_viewers)
        self._reply(session, msg)
        self.rooms.announce_stream(session, stream)

    def _on_unpublish(self, conn: Connection, msg: Unpublish) -> None:
        session = self._session(conn)
        self.rooms.remove_stream(session, msg.stream_id, StreamDeleteReason.STOPPED)
        self._reply(session, msg)

    def _on_extra_info(self, conn: Connection, msg: SetStreamExtraInfo) -> None:
        session = self._session(conn)
        stream = self.rooms.set_extra_info(session, msg.stream_id, msg.extra_info)
        self._reply(session, msg)
        self.rooms.to_others(
            session, encode(StreamExtraInfoUpdate(room_id=session.room_id, streams=[stream]))
        )

    def _on_play(self, conn: Connection, msg: Play) -> None:
        session = self._session(conn)
        offer = msg.description
        if offer is not None and offer.type != "offer":
            raise EdgedError(ErrorCode.INVALID_PARAMETER, "play's description must be an offer")
        link = self.rooms.play(session, msg.stream_id, relay=offer is None)
        self._reply(session, msg, {"link_id": link.link_id, "relayed": link.via_sfu})
        self.rooms.open_link(link, offer)

    def _on_stop_play(self, conn: Connection, msg: StopPlay) -> None:
        session = self._session(conn)
        self.rooms.stop_play(session, msg.stream_id)
        self._reply(session, msg)

    def _on_signal(self, conn: Connection, msg: Signal) -> None:
        session = self._session(conn)
        link, peer = self.rooms.links.peer(session, msg.link_id)
        if peer is None:  # the SFU's end
            assert self.rooms.relay_links is not None
            self.rooms.relay_links.signal(session, link, msg)
            self._reply(session, msg)
            return
        self.rooms.send(
            peer,
            encode(
                SignalRelay(
                    link_id=link.link_id,
                    stream_id=link.stream_id,
                    user=session.user,
                    description=msg.description,
                    candidate=msg.candidate,
                )
            ),
        )
        self._reply(session, msg)

    def _on_broadcast(self, conn: Connection, msg: Broadcast) -> None:
        session = self._session(conn)
        room = self.rooms.store.room(session.app_id, session.room_id)
        assert room is not None
        message_id = room.next_message_id
        room.next_message_id += 1
        self._reply(session, msg, {"message_id": message_id})
        self.rooms.to_others(
            session,
            encode(
                BroadcastMessage(
                    room_id=session.room_id,
                    user=session.user,
                    message=msg.message,
                    message_id=message_id,
                )
            ),
        )

    def _on_custom_command(self, conn: Connection, msg: CustomCommand) -> None:
        session = self._session(conn)
        room = self.rooms.store.room(session.app_id, session.room_id)
        assert room is not None
        targets = msg.to or [u for u in room.members if u != session.user.user_id]
        missing = [u for u in targets if u not in room.members]
        if missing:
            raise EdgedError(ErrorCode.USER_NOT_IN_ROOM, f"not in the room: {len(missing)} user(s)")
        body = encode(
            CustomCommandMessage(room_id=session.room_id, user=session.user, command=msg.command)
        )
        for user_id in targets:
            other = self.rooms.sessions.get(room.members[user_id])
            if other is not None:
                self.rooms.send(other, body)
        self._reply(session, msg)

    def _on_renew_token(self, conn: Connection, msg: RenewToken) -> None:
        session = self._session(conn)
        expires_at = self.rooms.renew_token(session, msg.token)
        servers = self.rooms.ice.for_client(session.user.user_id, expires_at)
        ice_servers = [s.model_dump(exclude_none=True) for s in servers]
        self._reply(session, msg, {"token_expires_at": expires_at, "ice_servers": ice_servers})
