"""A TCP load balancer for tests and benchmarks: each new connection goes to the next
backend in turn that accepts it (a dead one is skipped), with no stickiness, as a
round-robin balancer in front of room-server nodes does; or, ``by_room``, to the backend
its request line's ``?app=…&room=…`` hashes to (the next one that accepts it when that one
is dead; without them, the next in turn), as an HTTP balancer hashing a URL parameter does
(docs/scaling.md)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import zlib
from urllib.parse import parse_qs, urlsplit

from edged.testing.janus import free_port


class Balancer:
    """Owns a listening socket on 127.0.0.1 and the connections it carries."""

    def __init__(self, backends: list[tuple[str, int]], *, by_room: bool = False) -> None:
        self.backends = backends
        self.by_room = by_room
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.chosen: list[int] = []
        """The backend index each connection went to, in order."""
        self.rooms: list[str] = []
        """``by_room``: the ``app/room`` of each connection's URL, in order (``/`` for
        none, which goes to the next backend in turn)."""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._carry, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            first = b""
            if self.by_room:  # "GET /ws?app=…&room=… HTTP/1.1"
                first = await reader.readline()
                target = first.split(b" ")[1].decode() if first.count(b" ") >= 2 else ""
                query = parse_qs(urlsplit(target).query)
                room = "/".join(query.get("app", [""])[:1] + query.get("room", [""])[:1])
                self.rooms.append(room)
                hashed = zlib.crc32(room.encode()) if room != "/" else next(self._turn)
                upstream = await self._connect(hashed % len(self.backends))
            else:
                upstream = await self._connect(next(self._turn))
            if upstream is None:
                return
            up_reader, up_writer = upstream
            up_writer.write(first)
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
            )
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _connect(
        self, first: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for step in range(len(self.backends)):
            index = (first + step) % len(self.backends)
            host, port = self.backends[index]
            try:
                connection = await asyncio.open_connection(host, port)
            except OSError:
                continue
            self.chosen.append(index)
            return connection
        return None

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()
