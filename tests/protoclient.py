"""A minimal client of the room protocol, for tests: raw messages, no engine."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp


class ProtoClient:
    """One WebSocket to the room server; pushes are queued, replies matched by id."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self._http = session
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.pushes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.unmatched: list[dict[str, Any]] = []
        self.last_seq = 0
        self.login_result: dict[str, Any] = {}
        self._next_id = 1
        self._reader: asyncio.Task[None] | None = None
        self._heartbeats: asyncio.Task[None] | None = None

    async def connect(self) -> ProtoClient:
        self.ws = await self._http.ws_connect(self.url, max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            msg = json.loads(frame.data)
            if "seq" in msg:
                assert msg["seq"] == self.last_seq + 1, (msg, self.last_seq)
                self.last_seq = msg["seq"]
            if msg["type"] == "reply" and msg.get("id") in self.replies:
                self.replies.pop(msg["id"]).set_result(msg)
            elif msg["type"] == "reply" and msg.get("id") is not None:
                self.unmatched.append(msg)
            else:
                self.pushes.put_nowait(msg)

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

    async def request(self, mtype: str, **fields: Any) -> dict[str, Any]:
        """Send a message with a fresh id and return its reply."""
        rid = self._next_id
        self._next_id += 1
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

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Everything pushed within ``seconds`` (to prove nothing arrived)."""
        await asyncio.sleep(seconds)
        got = []
        while not self.pushes.empty():
            got.append(self.pushes.get_nowait())
        return got

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
