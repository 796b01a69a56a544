"""A minimal client of the room protocol, for tests: raw messages, no engine."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp

SOCKET_CLOSED: dict[str, Any] = {"type": "socket_closed"}  # what a closed socket "says"


class ProtoClient:
    """One WebSocket to the room server; pushes are queued, replies matched by id."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self._http = session
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.pushes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        # heartbeat id -> (its reply, every push that arrived before it)
        self.fences: dict[int, asyncio.Future[tuple[dict[str, Any], list[dict[str, Any]]]]] = {}
        self.unmatched: list[dict[str, Any]] = []
        self.last_seq = 0
        self.login_result: dict[str, Any] = {}
        self._next_id = 1
        self._reader: asyncio.Task[None] | None = None
        self._heartbeats: asyncio.Task[None] | None = None

    async def connect(self, headers: dict[str, str] | None = None) -> ProtoClient:
        self.ws = await self._http.ws_connect(self.url, max_msg_size=0, headers=headers)
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for frame in self.ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                msg = json.loads(frame.data)
                if "seq" in msg:
                    assert msg["seq"] == self.last_seq + 1, (msg, self.last_seq)
                    self.last_seq = msg["seq"]
                if msg["type"] == "reply" and msg.get("id") in self.fences:
                    self.fences.pop(msg["id"]).set_result((msg, self._take_pushes()))
                elif msg["type"] == "reply" and msg.get("id") in self.replies:
                    waiting = self.replies.pop(msg["id"])
                    if not waiting.done():  # a reply later than its request's timeout
                        waiting.set_result(msg)
                elif msg["type"] == "reply" and msg.get("id") is not None:
                    self.unmatched.append(msg)
                else:
                    self.pushes.put_nowait(msg)
        finally:
            self._settle_fences()

    def _settle_fences(self) -> None:
        """The socket is closed: no heartbeat reply will come; what arrived is all."""
        for fence in self.fences.values():
            if not fence.done():
                fence.set_result((SOCKET_CLOSED, self._take_pushes()))
        self.fences.clear()

    def keep_alive(self, every: float) -> None:
        """Send a heartbeat every ``every`` seconds, as a real client does, so a test
        that waits longer than the server's heartbeat timeout keeps its session."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(every)
                await self.ok("heartbeat")

        self._heartbeats = asyncio.create_task(beat())

    async def send_raw(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send_str(text)

    def _new_id(self) -> int:
        rid = self._next_id
        self._next_id += 1
        return rid

    async def request(self, mtype: str, **fields: Any) -> dict[str, Any]:
        """Send a message with a fresh id and return its reply."""
        rid = self._new_id()
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[rid] = fut
        await self.send_raw(json.dumps({"type": mtype, "id": rid, **fields}))
        return await asyncio.wait_for(fut, 5)

    async def ok(self, mtype: str, **fields: Any) -> dict[str, Any]:
        reply = await self.request(mtype, **fields)
        assert reply["ok"], reply
        return reply.get("result") or {}

    async def login(self, **fields: Any) -> dict[str, Any]:
        self.last_seq = 0  # a new session numbers its messages from 1
        self.login_result = await self.ok("login", **fields)
        return self.login_result

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.pushes.get(), timeout)

    async def next_of(self, mtype: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next push of ``mtype``, failing on any other push before it."""
        msg = await self.next(timeout)
        assert msg["type"] == mtype, msg
        return msg

    async def pushes_before_heartbeat(self) -> list[dict[str, Any]]:
        """Send a heartbeat (logged in); return the pushes not yet taken that came before
        its reply.

        The server queues a session's messages in one ordered outbox and handles this
        socket's messages in order, so anything it queued for us before it handled the
        heartbeat (a room update that another client's acknowledged request caused, a
        timer that already fired) arrives before the reply. An empty list therefore
        proves that no such message was sent, without waiting for a fixed time.
        """
        rid = self._new_id()
        fence: asyncio.Future[tuple[dict[str, Any], list[dict[str, Any]]]]
        fence = asyncio.get_running_loop().create_future()
        self.fences[rid] = fence
        if self._reader is None or self._reader.done():
            self._settle_fences()
        else:
            with contextlib.suppress(ConnectionError):  # closing: the reader settles it
                await self.send_raw(json.dumps({"type": "heartbeat", "id": rid}))
        reply, pushed = await asyncio.wait_for(fence, 5)
        if reply is SOCKET_CLOSED:
            return [*pushed, reply]  # the server closed the socket: that arrived too
        assert reply["ok"], reply
        return pushed

    def _take_pushes(self) -> list[dict[str, Any]]:
        got = []
        while not self.pushes.empty():
            got.append(self.pushes.get_nowait())
        return got

    async def closed_by_server(self, timeout: float = 5.0) -> int | None:
        """Wait for the server to close the socket; the close code it gave."""
        assert self.ws is not None and self._reader is not None
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.ws.close_code

    async def drop(self) -> None:
        """Close the socket without logging out (a network loss, as the server sees it)."""
        assert self.ws is not None
        if self._heartbeats is not None:
            self._heartbeats.cancel()
        await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def close(self) -> None:
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            await asyncio.gather(self._heartbeats, return_exceptions=True)
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
