"""Clients' WebSockets carried to the node that owns their room (multi-node, :mod:`.cluster`),
many of them on one WebSocket between the two nodes: a *trunk*.

The node a client reached (the *entry*) keeps one trunk to each node it carries clients
to, opened at the first and kept while the two nodes live. Carrying a client is then a
message on the trunk, not a connection of its own: the entry sends ``OPEN`` with the
client's address and first message (the login or resume it routed by), then every frame
of the client as ``TEXT`` (or ``BINARY``); the owner runs a :class:`CarriedSocket` for it,
served exactly as a client's own socket, and sends back what it writes, and ``CLOSE``
with its close code when it closes. A client that goes away is a ``CLOSE`` the other way.
Everything one turn of the event loop sends on a trunk goes as one binary frame.

What one carried socket costs is then what it is: its frames, copied once each way. A
WebSocket per carried client cost both nodes a handshake per login (a client handshake on
the entry, an accept on the owner) and a system call per frame on each.

When a trunk breaks (its other node died or stopped, or it answers no ping), every socket
it carried is closed with 1001 on the entry (its client reconnects, through the load
balancer to any node, and resumes) and every carried socket on the owner is closed as if
its client had dropped (its session waits for the resume, as for any lost socket).

Frame layout: messages back to back, each a 9-byte header (socket id: u32, kind: u8,
payload length: u32, big-endian) and the payload (UTF-8 for ``OPEN``, ``TEXT`` and
``CLOSE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Iterator

import aiohttp
from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from ..logs import log_event
from .session import Socket

log = logging.getLogger("edged.server.proxy")

CLUSTER_HEADER = "X-Edged-Cluster"
"""The cluster secret: a socket or request that carries it comes from another node."""
CLIENT_HEADER = "X-Edged-Client"
"""The address of the client a forwarded request carries (for the owner's logs)."""
TRUNK_PATH = "/cluster/trunk"

OPEN, TEXT, BINARY, CLOSE = 1, 2, 3, 4
HEADER = struct.Struct(">IBI")
MAX_TRUNK_FRAME = 64 * 1024 * 1024
"""The largest frame a trunk accepts (a turn's messages of every socket it carries)."""
TRUNK_HEARTBEAT_S = 10.0
"""Each end pings the other this often, and ends the trunk when a pong is half this late:
a path between the nodes that silently stops carrying anything is noticed in 15 s, not
at TCP's own timeouts (minutes)."""


def _messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """The (socket id, kind, payload) messages of one trunk frame."""
    at, end = 0, len(data)
    while at + HEADER.size <= end:
        sid, kind, size = HEADER.unpack_from(data, at)
        at += HEADER.size
        yield sid, kind, data[at : at + size]
        at += size


class _Wire:
    """A trunk's sending side: what one turn of the event loop sends goes as one frame."""

    def __init__(self, ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._out: list[bytes] = []
        self._task: asyncio.Task[None] | None = None

    def put(self, sid: int, kind: int, payload: bytes) -> None:
        self._out += (HEADER.pack(sid, kind, len(payload)), payload)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        try:
            while self._out:
                data, self._out = b"".join(self._out), []
                await self._ws.send_bytes(data)
        except (ConnectionError, RuntimeError):
            self._out = []  # the trunk is closing: its reader ends every socket on it
        finally:
            self._task = None


# ---- the owner's side --------------------------------------------------------------------


class CarriedSocket:
    """A client's socket as the owner sees it through a trunk: served like its own."""

    def __init__(self, sid: int, wire: _Wire, forget: Callable[[int], object]) -> None:
        self._sid = sid
        self._wire = wire
        self._forget = forget
        self._inbox: deque[WSMessage] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.close_code: int | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def feed(self, message: WSMessage) -> None:
        """A frame from the client (or its end: ``CLOSED``)."""
        self._inbox.append(message)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self, timeout: float | None = None) -> WSMessage:
        while not self._inbox:
            if self._closed:
                return WSMessage(WSMsgType.CLOSED, None, None)
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._inbox.popleft()

    async def send_str(self, data: str, compress: int | None = None) -> None:
        if self._closed:
            raise ConnectionResetError("the carried socket is closed")
        self._wire.put(self._sid, TEXT, data.encode())

    async def send_bytes(self, data: bytes, compress: int | None = None) -> None:
        if self._closed:
            raise ConnectionResetError("the carried socket is closed")
        self._wire.put(self._sid, BINARY, data)

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"") -> bool:
        """Close it here and tell the entry, which closes the client with ``code``."""
        if self._closed:
            return False
        self._wire.put(self._sid, CLOSE, str(code).encode())
        self._ended(code)
        return True

    def dropped(self) -> None:
        """The client went away (or the trunk broke): end it without a word back."""
        if not self._closed:
            self._ended(WSCloseCode.GOING_AWAY)

    def _ended(self, code: int) -> None:
        self._closed, self.close_code = True, code
        self._forget(self._sid)
        self.feed(WSMessage(WSMsgType.CLOSED, None, None))


Serve = Callable[[CarriedSocket, str], Awaitable[None]]
"""Serves one carried socket (its client's address given) until it closes."""


class TrunkEnd:
    """The trunks other nodes opened to this one, and the sockets they carry here."""

    def __init__(self, serve: Serve) -> None:
        self._serve = serve
        self.sockets = 0
        self._trunks: set[web.WebSocketResponse] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def trunks(self) -> int:
        return len(self._trunks)

    async def accept(self, request: web.Request) -> web.WebSocketResponse:
        """Serve one trunk (the request carries the cluster secret: checked before)."""
        ws = web.WebSocketResponse(max_msg_size=MAX_TRUNK_FRAME, heartbeat=TRUNK_HEARTBEAT_S)
        await ws.prepare(request)
        wire = _Wire(ws)
        sockets: dict[int, CarriedSocket] = {}

        def forget(sid: int) -> None:
            sockets.pop(sid, None)

        self._trunks.add(ws)
        try:
            async for frame in ws:
                if frame.type != WSMsgType.BINARY:
                    continue
                for sid, kind, payload in _messages(frame.data):
                    if kind == OPEN:
                        address, _, first = payload.decode().partition("\n")
                        sock = sockets[sid] = CarriedSocket(sid, wire, forget)
                        sock.feed(WSMessage(WSMsgType.TEXT, first, None))
                        self._spawn(sock, address)
                    elif (sock_or_none := sockets.get(sid)) is None:
                        continue  # closed here meanwhile
                    elif kind == TEXT:
                        sock_or_none.feed(WSMessage(WSMsgType.TEXT, payload.decode(), None))
                    elif kind == BINARY:
                        sock_or_none.feed(WSMessage(WSMsgType.BINARY, payload, None))
                    elif kind == CLOSE:
                        sock_or_none.dropped()
        finally:
            self._trunks.discard(ws)
            for sock in list(sockets.values()):
                sock.dropped()
        return ws

    async def close(self) -> None:
        """Close every trunk (this node stops): the other nodes close what they carried."""
        for ws in list(self._trunks):
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY)

    def _spawn(self, sock: CarriedSocket, address: str) -> None:
        async def run() -> None:
            self.sockets += 1
            try:
                await self._serve(sock, address)
            finally:
                self.sockets -= 1
                sock.dropped()

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# ---- the entry's side ----------------------------------------------------------------------


class _Carried:
    """One client carried by this node: what the owner sends it, written in order."""

    def __init__(self, client: Socket, limit: int) -> None:
        self.client = client
        self.limit = limit
        self.queue: deque[WSMessage] = deque()
        self.code: int | None = None
        """Set when the owner (or the trunk's end) closed it: the code for the client."""
        self._waiter: asyncio.Future[None] | None = None

    def deliver(self, message: WSMessage) -> None:
        if self.code is not None:
            return
        if len(self.queue) >= self.limit:  # the client does not read: as the owner would
            log_event(log, logging.WARNING, "slow_consumer_carried")
            self.end(WSCloseCode.OK)
            return
        self.queue.append(message)
        self._wake()

    def end(self, code: int) -> None:
        if self.code is None:
            self.code = code
            self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def write(self) -> None:
        """Send what the owner sends until it closes, then close the client likewise."""
        client = self.client
        try:
            while True:
                while self.queue:
                    message = self.queue.popleft()
                    if message.type == WSMsgType.TEXT:
                        await client.send_str(message.data)
                    else:
                        await client.send_bytes(message.data)
                if self.code is not None:
                    break
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
        except (ConnectionError, RuntimeError):
            pass  # the client is gone: the reading side ends it
        if not client.closed:
            with contextlib.suppress(Exception):
                await client.close(code=self.code or WSCloseCode.GOING_AWAY)


class Trunk:
    """This node's trunk to one other node, and the clients it carries there."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, limit: int) -> None:
        self._ws = ws
        self._wire = _Wire(ws)
        self._limit = limit
        self._next = 0
        self.clients: dict[int, _Carried] = {}
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @property
    def open(self) -> bool:
        return not self.reader.done()

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                if frame.type != WSMsgType.BINARY:
                    continue
                for sid, kind, payload in _messages(frame.data):
                    carried = self.clients.get(sid)
                    if carried is None:
                        continue
                    if kind == TEXT:
                        carried.deliver(WSMessage(WSMsgType.TEXT, payload.decode(), None))
                    elif kind == BINARY:
                        carried.deliver(WSMessage(WSMsgType.BINARY, payload, None))
                    elif kind == CLOSE:
                        carried.end(int(payload or WSCloseCode.GOING_AWAY))
        finally:
            for carried in self.clients.values():
                carried.end(WSCloseCode.GOING_AWAY)  # the owner's node is gone or stopping

    async def carry(self, client: Socket, first: str, address: str) -> None:
        """Carry ``client`` (whose first message was ``first``) until either side ends."""
        self._next += 1
        sid = self._next
        carried = self.clients[sid] = _Carried(client, self._limit)
        self._wire.put(sid, OPEN, f"{address}\n{first}".encode())
        writer = asyncio.get_running_loop().create_task(carried.write())
        try:
            if not self.open:
                carried.end(WSCloseCode.GOING_AWAY)
            while carried.code is None:
                frame = await client.receive()
                if frame.type == WSMsgType.TEXT:
                    self._wire.put(sid, TEXT, frame.data.encode())
                elif frame.type == WSMsgType.BINARY:
                    self._wire.put(sid, BINARY, frame.data)
                else:
                    break  # the client closed or failed
        finally:
            del self.clients[sid]
            if carried.code is None:  # the client went first: the owner detaches it
                self._wire.put(sid, CLOSE, b"")
                carried.end(WSCloseCode.GOING_AWAY)
            await writer

    async def close(self) -> None:
        await self._ws.close(code=WSCloseCode.GOING_AWAY)
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


class Trunks:
    """The trunks this node opened to the others, one per node URL."""

    def __init__(self, http: aiohttp.ClientSession, secret: str, limit: int) -> None:
        self._http = http
        self._secret = secret
        self._limit = limit
        """What a carried client may have waiting unread before it is closed."""
        self._trunks: dict[str, Trunk] = {}
        self._opening: dict[str, asyncio.Future[Trunk | None]] = {}

    @property
    def count(self) -> int:
        return sum(1 for trunk in self._trunks.values() if trunk.open)

    @property
    def sockets(self) -> int:
        return sum(len(trunk.clients) for trunk in self._trunks.values())

    async def carry(self, client: Socket, first: str, url: str, address: str) -> bool:
        """Carry ``client`` to the node at ``url`` until either side ends it; False when
        that node cannot be reached (the caller then answers the client itself)."""
        trunk = await self._trunk(url.rstrip("/"))
        if trunk is None:
            return False
        await trunk.carry(client, first, address)
        return True

    async def _trunk(self, url: str) -> Trunk | None:
        trunk = self._trunks.get(url)
        if trunk is not None and trunk.open:
            return trunk
        opening = self._opening.get(url)
        if opening is not None:  # another client is opening it: wait for that one
            return await asyncio.shield(opening)
        opening = self._opening[url] = asyncio.get_running_loop().create_future()
        trunk = None
        try:
            async with asyncio.timeout(5.0):
                ws = await self._http.ws_connect(
                    url + TRUNK_PATH,
                    headers={CLUSTER_HEADER: self._secret},
                    heartbeat=TRUNK_HEARTBEAT_S,
                    max_msg_size=MAX_TRUNK_FRAME,
                )
            trunk = self._trunks[url] = Trunk(ws, self._limit)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log_event(log, logging.WARNING, "proxy_failed", owner=url, reason=str(exc))
        finally:
            opening.set_result(trunk)
            del self._opening[url]
        return trunk

    async def close(self) -> None:
        for trunk in list(self._trunks.values()):
            with contextlib.suppress(Exception):
                await trunk.close()
        self._trunks.clear()
