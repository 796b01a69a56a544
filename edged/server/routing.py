"""A node's part in a multi-node room server: where each client's socket belongs, and the
claims a login or a publish makes in Redis before this node grants it.

:class:`ClusterRouting` sits between the WebSocket and :class:`~.app.RoomServer`'s
dispatch. A login for a room another node owns, or a resume of another node's session,
is proxied there (:mod:`.proxy`); everything else is handled here, with two awaits the
single server does not need: a login swaps the user's claim (and the node that held the
user before is asked to kick that session), a publish claims its stream id. It also
serves ``POST /cluster/kick``, by which other nodes ask it to end one of its sessions.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import aiohttp
from aiohttp import WSCloseCode, web

from ..errors import EdgedError, ErrorCode
from ..logs import log_event
from ..protocol import ClientMessage, Login, Publish, Resume
from ..tokens import TokenClaims
from .adopt import adopt, link_record, session_record
from .cluster import Cluster, ClusterSettings, Holder, Holdings
from .forwarded import FORWARDED_FOR, client_address
from .links import Link
from .proxy import CLIENT_HEADER, CLUSTER_HEADER, TRUNK_PATH, CarriedSocket, TrunkEnd, Trunks
from .rooms import RESUME_SEP, RoomService
from .session import Connection, Session, Socket
from .settings import ServerSettings
from .webrtc_http import problem

log = logging.getLogger("edged.server.cluster")

HOP_HEADERS = frozenset(
    ("host", "connection", "keep-alive", "transfer-encoding", "content-length", "upgrade")
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

EARLY_KICK_S = 30.0
"""How long a kick for a session this node has not made yet is remembered (a login racing
on two nodes can be kicked before its own login here has run)."""


class RoomServer(Protocol):
    """What routing uses of :class:`~.app.RoomServer`."""

    rooms: RoomService
    settings: ServerSettings

    def decode(self, conn: Connection, text: str) -> ClientMessage | None: ...

    def handle(self, conn: Connection, msg: ClientMessage) -> None: ...

    def reply_error(
        self, conn: Connection, code: ErrorCode, message: str, request_id: int | None
    ) -> None: ...

    def log_in(
        self,
        conn: Connection,
        msg: Login,
        session_id: str | None = None,
        verified: tuple[TokenClaims | None] | None = None,
    ) -> Session: ...

    async def serve(self, ws: Socket, address: str, *, proxied: bool) -> None: ...


class ClusterRouting:
    """Owns this node's :class:`Cluster` and its HTTP client to the other nodes."""

    def __init__(self, settings: ClusterSettings, server: RoomServer) -> None:
        self.settings = settings
        self.server = server
        self.cluster = Cluster(settings, self._holdings, self._give_up)
        self._http: aiohttp.ClientSession | None = None
        self.trunks: Trunks | None = None
        self.trunk_end = TrunkEnd(self._serve_carried)
        self._early_kicks: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._adopting: dict[tuple[str, str], asyncio.Future[None]] = {}

    def _holdings(self) -> Holdings:
        rooms = self.server.rooms
        sessions = [s for s in rooms.sessions.values() if not s.closed]
        links = []
        for session in sessions:
            for link_id in session.serving:
                link = rooms.links.get(link_id)
                record = link_record(link) if link is not None else None
                if record is not None:
                    links.append((session.app_id, session.room_id, link_id, record))
        return Holdings(
            rooms=sorted({(s.app_id, s.room_id) for s in sessions}),
            users=[(s.app_id, s.room_id, s.user.user_id, s.session_id) for s in sessions],
            streams=[(s.app_id, s.room_id, stream) for s in sessions for stream in s.published],
            members=[
                (s.app_id, s.room_id, s.session_id, session_record(rooms, s))
                for s in sessions
                if s.on_push is None
            ],
            links=links,
        )

    # ---- what the room service tells (rooms.Shared) ---------------------------------------

    def saved(self, session: Session) -> None:
        if session.on_push is not None or session.closed:
            return  # a WHEP viewer has no socket to resume
        record = session_record(self.server.rooms, session)
        self.cluster.save_member(session.app_id, session.room_id, session.session_id, record)

    def link_opened(self, link: Link) -> None:
        record = link_record(link)
        if record is not None:
            p = link.publisher
            self.cluster.save_link(p.app_id, p.room_id, link.link_id, record)

    def link_closed(self, link: Link) -> None:
        if link_record(link) is not None:
            p = link.publisher
            self.cluster.save_link(p.app_id, p.room_id, link.link_id, None)

    def release_user(self, session: Session) -> None:
        self.cluster.release_user(session.app_id, session.user.user_id, session.session_id)
        if session.on_push is None:
            self.cluster.drop_member(session.app_id, session.room_id, session.session_id)

    async def claim_stream(self, app_id: str, stream_id: str) -> int:
        return await self.cluster.claim_stream(app_id, stream_id)

    def release_stream(self, app_id: str, stream_id: str) -> None:
        self.cluster.release_stream(app_id, stream_id)

    def release_room(self, app_id: str, room_id: str) -> None:
        self.cluster.release_room(app_id, room_id)

    def _give_up(self, rooms: list[tuple[str, str]]) -> None:
        """Other nodes took these rooms over while this one was taken for dead: drop them
        here and close their clients' sockets with 1001 (they resume where the room is)."""
        for app_id, room_id in rooms:
            conns = self.server.rooms.forget_room(app_id, room_id)
            log_event(
                log, logging.WARNING, "room_given_up", app=app_id, room=room_id, sockets=len(conns)
            )
            for conn in conns:
                self._spawn(conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"room moved"))

    # ---- a dead node's rooms ------------------------------------------------------------------

    async def _ensure_room(self, app_id: str, room_id: str) -> None:
        """This node owns the room now: if it does not run it yet and a dead node left its
        records, take it over from them (once, whoever asks first)."""
        key = (app_id, room_id)
        if self.server.rooms.store.room(app_id, room_id) is not None:
            return
        pending = self._adopting.get(key)
        if pending is not None:
            await asyncio.shield(pending)
            return
        pending = self._adopting[key] = asyncio.get_running_loop().create_future()
        try:
            members, links = await self.cluster.room_records(app_id, room_id)
            if members and self.server.rooms.store.room(app_id, room_id) is None:
                made = adopt(self.server.rooms, app_id, room_id, members, links)
                dead = {s.session_id: s.resume_token.split(RESUME_SEP)[0] for s in made}
                await self.cluster.take_over(
                    [(app_id, s.user.user_id, s.session_id, dead[s.session_id]) for s in made],
                    [(app_id, t, dead[s.session_id]) for s in made for t in s.published],
                )
                log_event(
                    log, logging.INFO, "room_adopted", app=app_id, room=room_id, sessions=len(made)
                )
        finally:
            pending.set_result(None)
            del self._adopting[key]

    async def start(self) -> None:
        # No pool limit: each carried socket holds one connection for its whole life.
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        limit = self.server.settings.limits.outbox_limit
        self.trunks = Trunks(self._http, self.settings.secret, limit)
        await self.cluster.start()

    async def going_away(self) -> None:
        """This node stops: close the trunks both ways (their sockets close with 1001)."""
        await self.trunk_end.close()
        if self.trunks is not None:
            await self.trunks.close()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.trunks is not None:
            await self.trunks.close()
        await self.cluster.close()
        if self._http is not None:
            await self._http.close()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/cluster/kick", self._on_kick)
        app.router.add_get(TRUNK_PATH, self._on_trunk)
        app.middlewares.append(self._carry_http)

    # ---- WHEP and WHIP requests -------------------------------------------------------------

    @web.middleware
    async def _carry_http(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A WHEP or WHIP request for a stream or room another node runs goes there: a
        ``POST`` by the stream's (WHEP) or the room's (WHIP) node, a ``PATCH`` or ``DELETE``
        by its resource's id, which starts with its node's."""
        path = request.path
        if (
            not path.startswith(("/whep/", "/whip/"))
            or request.method == "OPTIONS"
            or self.from_node(request)
        ):
            return await handler(request)
        try:
            node = await self._node_of(path, request.method)
            url = (
                await self.cluster.node_url(node)
                if node not in (None, self.cluster.node_id)
                else None
            )
        except EdgedError as exc:
            return problem(503, exc.code, exc.message)
        if url is None:
            return await handler(request)
        return await self._forward(request, url)

    async def _node_of(self, path: str, method: str) -> str | None:
        parts = path.split(
            "/"
        )  # "", whep, app, stream[, resource] / "", whip, app, room, stream[, resource]
        whep = parts[1] == "whep"
        resource = len(parts) == (5 if whep else 6)
        if resource:
            node, dot, _ = parts[-1].partition(".")
            return node if dot else None
        if method != "POST" or len(parts) != (4 if whep else 5):
            return None
        if whep:
            return await self.cluster.stream_node(parts[2], parts[3])
        return await self.cluster.room_owner(parts[2], parts[3])

    async def _forward(self, request: web.Request, url: str) -> web.Response:
        assert self._http is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        headers[CLUSTER_HEADER] = self.settings.secret
        trusted = self.server.settings.trusted_proxies
        forwarded = request.headers.get(FORWARDED_FOR)
        headers[CLIENT_HEADER] = client_address(request.remote, forwarded, trusted)
        try:
            async with asyncio.timeout(30):
                async with self._http.request(
                    request.method,
                    url + request.path_qs,
                    headers=headers,
                    data=await request.read(),
                    allow_redirects=False,
                ) as upstream:
                    body = await upstream.read()
                    response = web.Response(status=upstream.status, body=body)
                    for key, value in upstream.headers.items():
                        if key.lower() not in HOP_HEADERS:
                            response.headers.add(key, value)
                    return response
        except (TimeoutError, aiohttp.ClientError, OSError):
            return problem(
                503, ErrorCode.ROOM_STATE_UNAVAILABLE, "the room's node cannot be reached"
            )

    def from_node(self, request: web.Request) -> bool:
        """Whether ``request`` carries the cluster secret (another node sent it)."""
        given = request.headers.get(CLUSTER_HEADER)
        return given is not None and hmac.compare_digest(given, self.settings.secret)

    # ---- a client's frames -----------------------------------------------------------

    async def on_text(self, conn: Connection, ws: Socket, text: str, *, proxied: bool) -> bool:
        """Handle one frame; True when the socket was carried to another node (it is done
        when this returns). ``proxied``: the socket came from another node, never sent on."""
        server = self.server
        msg = server.decode(conn, text)
        if msg is None:
            return False
        try:
            if not proxied and conn.session is None and isinstance(msg, Login | Resume):
                url = await self._elsewhere(msg)
                if url is not None:
                    assert self.trunks is not None
                    conn.ever_bound = True  # carried: not a socket that never logs in
                    if await self.trunks.carry(ws, text, url, conn.address):
                        return True
                    if isinstance(msg, Resume):
                        # Its node is down, not yet dead to the others (its key has not
                        # expired): as if this server were unreachable, so that the client
                        # tries again rather than log in anew; then this node takes over.
                        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER)
                        return True
                    raise EdgedError(
                        ErrorCode.ROOM_STATE_UNAVAILABLE, "the room's node cannot be reached"
                    )
            if isinstance(msg, Login):
                await self._login(conn, msg)
                return False
            if isinstance(msg, Publish) and conn.session is not None:
                await self._publish(conn, msg)
                return False
        except EdgedError as exc:
            server.reply_error(conn, exc.code, exc.message, msg.id)
            return False
        server.handle(conn, msg)
        return False

    async def _elsewhere(self, msg: Login | Resume) -> str | None:
        """The URL of the node that should run ``msg``'s session, None for this one."""
        cluster = self.cluster
        if isinstance(msg, Login):
            return await self._room_node(msg.app_id, msg.room_id)
        parts = msg.resume_token.split(RESUME_SEP)
        if len(parts) != 4:
            return None
        node, app_id, room_id, _ = parts
        if node == cluster.node_id and self.server.rooms.holds(msg.resume_token):
            return None
        # A session lives on its room's node: the node that made it, unless that node died
        # (or was taken for dead and gave the room up) and another took the room over.
        try:
            return await self._room_node(app_id, room_id)
        except EdgedError:
            return None  # resumed here, which fails: the client logs in again

    async def _room_node(self, app_id: str, room_id: str) -> str | None:
        """The URL of the node that runs the room, None for this one (having taken it over
        if its node died)."""
        owner = await self.cluster.room_owner(app_id, room_id)
        if owner == self.cluster.node_id:
            await self._ensure_room(app_id, room_id)
            return None
        url = await self.cluster.node_url(owner)
        if url is None:
            raise EdgedError(ErrorCode.ROOM_STATE_UNAVAILABLE, "the room's node is gone")
        return url

    async def claim_user(
        self, app_id: str, user_id: str, session_id: str
    ) -> Callable[[bool], None]:
        before = await self.cluster.claim_user(app_id, user_id, session_id)
        if self._early_kicks.pop(session_id, None) is not None:
            raise EdgedError(ErrorCode.KICKED_OUT)

        def settle(logged_in: bool) -> None:
            if not logged_in:
                self.cluster.release_user(app_id, user_id, session_id)
            elif before is not None and before.node != self.cluster.node_id:
                self._spawn(self._kick_elsewhere(before, app_id, user_id))

        return settle

    async def _login(self, conn: Connection, msg: Login) -> None:
        _, claims = self.server.rooms.check_login(conn, msg)
        session_id = secrets.token_hex(8)
        settle = await self.claim_user(msg.app_id, msg.user_id, session_id)
        try:
            self.server.log_in(conn, msg, session_id, verified=(claims,))
        except EdgedError:
            settle(False)
            raise
        settle(True)

    async def _publish(self, conn: Connection, msg: Publish) -> None:
        session = conn.session
        assert session is not None
        claimed = await self.claim_stream(session.app_id, msg.stream_id)
        if not claimed:
            raise EdgedError(ErrorCode.STREAM_ID_ALREADY_PUBLISHED)
        self.server.handle(conn, msg)
        if claimed == 2 and msg.stream_id not in session.published:
            self.cluster.release_stream(session.app_id, msg.stream_id)

    # ---- kicks between nodes --------------------------------------------------------------

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _kick_elsewhere(self, holder: Holder, app_id: str, user_id: str) -> None:
        """Ask the node that held the user's session to end it."""
        try:
            url = await self.cluster.node_url(holder.node)
        except EdgedError:
            return
        if url is None or self._http is None:
            return  # that node is dead: its sessions are gone with it
        body = {"app_id": app_id, "user_id": user_id, "session_id": holder.session_id}
        headers = {CLUSTER_HEADER: self.settings.secret}
        try:
            async with asyncio.timeout(5.0):
                async with self._http.post(f"{url}/cluster/kick", json=body, headers=headers):
                    pass
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log_event(log, logging.WARNING, "kick_failed", node=holder.node, reason=str(exc))

    # ---- sockets other nodes carry here --------------------------------------------------

    async def _on_trunk(self, request: web.Request) -> web.StreamResponse:
        if not self.from_node(request):
            return web.json_response({"ok": False}, status=403)
        return await self.trunk_end.accept(request)

    async def _serve_carried(self, sock: CarriedSocket, address: str) -> None:
        await self.server.serve(sock, address, proxied=True)

    def trunk_health(self) -> dict[str, int]:
        """For ``/healthz``: trunks to and from other nodes, and the sockets they carry."""
        out = self.trunks
        return {
            "trunks_out": out.count if out is not None else 0,
            "carried_out": out.sockets if out is not None else 0,
            "trunks_in": self.trunk_end.trunks,
            "carried_in": self.trunk_end.sockets,
        }

    async def _on_kick(self, request: web.Request) -> web.Response:
        if not self.from_node(request):
            return web.json_response({"ok": False}, status=403)
        body = await request.json()
        app_id, user_id = str(body.get("app_id", "")), str(body.get("user_id", ""))
        session_id = str(body.get("session_id", ""))
        kicked = self.server.rooms.kick_repeated_login(app_id, user_id, session_id)
        if not kicked:
            now = time.monotonic()
            self._early_kicks = {
                k: t for k, t in self._early_kicks.items() if now - t < EARLY_KICK_S
            }
            self._early_kicks[session_id] = now
        return web.json_response({"ok": True, "kicked": kicked})
