"""The engine's connection to the room server.

:class:`SignalingClient` owns one WebSocket at a time: it sends requests and matches
replies, sends heartbeats carrying the acknowledgement of what it received, delivers
server pushes in order, and when the socket drops, or stays silent for longer than a
heartbeat interval plus half the server's timeout (a network partition leaves a TCP
connection open but dead), it reconnects and resumes the session
(silently to the others) or, when the server lost it, reports the loss so the engine
logs in afresh. Every timer is a parameter so tests stay fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from enum import Enum
from typing import Any

import aiohttp
from pydantic import BaseModel, ValidationError

from ..backoff import Backoff
from ..errors import EdgedError, ErrorCode
from ..logs import log_event
from ..protocol import (
    Heartbeat,
    IceServer,
    Login,
    LoginResult,
    Logout,
    RenewToken,
    Reply,
    Resume,
    ServerMessage,
    decode_server,
    room_url,
)
from .config import EngineTimers

log = logging.getLogger("edged.engine")


class LinkState(Enum):
    """What the signaling connection is doing, as the engine needs to know it."""

    CONNECTED = "connected"  # logged in (fresh)
    INTERRUPTED = "interrupted"  # socket lost, trying to resume
    RESUMED = "resumed"  # same session continues
    SESSION_LOST = "session_lost"  # server no longer knows us: log in again
    GAVE_UP = "gave_up"  # nothing worked within the give-up time
    ENDED = "ended"  # the server ended the session (kick-out)


def to_code(number: int) -> ErrorCode:
    """The :class:`ErrorCode` of a number from the server (unknown: INTERNAL_ERROR)."""
    try:
        return ErrorCode(number)
    except ValueError:
        return ErrorCode.INTERNAL_ERROR


PushHandler = Callable[[ServerMessage], None]
StateHandler = Callable[[LinkState, ErrorCode | None], None]


class SignalingClient:
    """One logged-in session with the room server, kept alive across socket losses."""

    def __init__(
        self,
        url: str,
        on_push: PushHandler,
        on_state: StateHandler,
        timers: EngineTimers | None = None,
    ) -> None:
        self.url = url
        self._on_push = on_push
        self._on_state = on_state
        self.timers = timers or EngineTimers()
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._next_id = 1
        self._last_seq = 0
        self._last_heard = time.monotonic()
        self._login: Login | None = None
        self.result: LoginResult | None = None
        self.ice_servers: list[dict[str, Any]] = []
        """The ICE servers (TURN credentials) the server issued with the last login,
        resume or token renewal: kept while the socket is down."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._beats: asyncio.Task[None] | None = None
        self._closing = False
        self._recovering = False

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed and self.result is not None

    # ---- connecting ----------------------------------------------------------------

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        url = self.url
        if self._login is not None:
            url = room_url(url, self._login.app_id, self._login.room_id)
        try:
            ws = await asyncio.wait_for(
                self._http.ws_connect(url, heartbeat=None, max_msg_size=0),
                self.timers.connect_timeout,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise EdgedError(ErrorCode.CONNECT_FAILED, f"{self.url}: {exc}") from None
        self._ws = ws
        self._last_heard = time.monotonic()
        self._reader = asyncio.create_task(self._read(ws))
        return ws

    async def login(self, message: Login) -> LoginResult:
        """Connect and log in; raises :class:`EdgedError` with the server's code."""
        self._closing = False
        self._login = message
        await self._open()
        self._last_seq = 0
        try:
            reply = await self._request(
                message.model_copy(update={"id": self._take_id()}), ErrorCode.LOGIN_TIMEOUT
            )
        except EdgedError:
            await self._drop_socket()
            raise
        result = self._took(LoginResult.model_validate(reply.result))
        if self._beats is None or self._beats.done():
            self._beats = asyncio.create_task(self._heartbeat_loop())
            self._tasks.add(self._beats)
            self._beats.add_done_callback(self._tasks.discard)
        return result

    def _take_id(self) -> int:
        rid = self._next_id
        self._next_id += 1
        return rid

    # ---- requests ------------------------------------------------------------------

    def _took(self, result: LoginResult) -> LoginResult:
        self.result = result
        self.ice_servers = [s.model_dump(exclude_none=True) for s in result.ice_servers]
        return result

    async def renew_token(self, token: str) -> float | None:
        """Renew the session's token; returns its new expiry. The server's reply brings
        new TURN credentials too, for the peer connections made from now on."""
        result = await self.request(RenewToken(token=token))
        servers = result.get("ice_servers")
        if isinstance(servers, list):
            issued = [IceServer.model_validate(s) for s in servers]
            self.ice_servers = [s.model_dump(exclude_none=True) for s in issued]
        expires_at = result.get("token_expires_at")
        return float(expires_at) if isinstance(expires_at, int | float) else None

    async def request(self, message: BaseModel) -> dict[str, Any]:
        """Send a request and return its result; errors raise :class:`EdgedError`."""
        if not self.connected:
            raise EdgedError(ErrorCode.NETWORK_INTERRUPTED, "not connected to the room server")
        reply = await self._request(
            message.model_copy(update={"id": self._take_id()}), ErrorCode.REQUEST_TIMEOUT
        )
        return reply.result or {}

    async def send(self, message: BaseModel) -> None:
        """Send without waiting for a reply (the server replies only on error)."""
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._ws.send_str(message.model_dump_json(exclude_none=True))

    async def _request(self, message: BaseModel, timeout_code: ErrorCode) -> Reply:
        rid = getattr(message, "id")  # noqa: B009 - every request model has an id
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            assert self._ws is not None
            await self._ws.send_str(message.model_dump_json(exclude_none=True))
            reply = await asyncio.wait_for(fut, self.timers.request_timeout)
        except TimeoutError:
            raise EdgedError(timeout_code) from None
        except (ConnectionError, RuntimeError):
            raise EdgedError(ErrorCode.NETWORK_INTERRUPTED) from None
        finally:
            self._pending.pop(rid, None)
        if not reply.ok:
            assert reply.error is not None
            raise EdgedError(to_code(reply.error.code), reply.error.message)
        return reply

    # ---- receiving -----------------------------------------------------------------

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in ws:
            self._last_heard = time.monotonic()
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                msg = decode_server(frame.data)
            except (ValidationError, json.JSONDecodeError):
                log_event(log, logging.WARNING, "bad_server_message", size=len(frame.data))
                continue
            if msg.seq is not None:
                if msg.seq <= self._last_seq:
                    continue  # already seen before a resume
                self._last_seq = msg.seq
            if isinstance(msg, Reply):  # unmatched: a heartbeat's, or one past its timeout
                fut = self._pending.get(msg.id) if msg.id is not None else None
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                continue
            if msg.type == "kicked_out":
                self._closing = True
            self._on_push(msg)
        if ws is self._ws:
            self._lost()

    def _lost(self) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(EdgedError(ErrorCode.NETWORK_INTERRUPTED))
        self._ws = None
        if self._closing:
            self._on_state(LinkState.ENDED, None)
            return
        if self.result is not None and not self._recovering:
            # (A socket lost while resuming is the running recovery's to retry.)
            self._on_state(LinkState.INTERRUPTED, ErrorCode.NETWORK_INTERRUPTED)
            self._spawn(self._recover())

    async def _recover(self) -> None:
        self._recovering = True
        try:
            await self._recover_session()
        finally:
            self._recovering = False

    async def _recover_session(self) -> None:
        deadline = time.monotonic() + self.timers.reconnect_give_up
        backoff = Backoff(self.timers.retry_min, self.timers.retry_max)
        while not self._closing and time.monotonic() < deadline:
            try:
                ws = await self._open()
            except EdgedError:
                await asyncio.sleep(backoff.next())
                continue
            assert self.result is not None
            resume = Resume(
                id=self._take_id(), resume_token=self.result.resume_token, last_seq=self._last_seq
            )
            try:
                reply = await self._request(resume, ErrorCode.LOGIN_TIMEOUT)
            except EdgedError as exc:
                if exc.code == ErrorCode.NETWORK_INTERRUPTED:
                    await asyncio.sleep(backoff.delay)
                    continue
                if ws is self._ws:
                    self._ws = None
                    await ws.close()
                self.result = None
                self._on_state(LinkState.SESSION_LOST, exc.code)
                return
            self._took(LoginResult.model_validate(reply.result))
            self._on_state(LinkState.RESUMED, None)
            return
        if not self._closing:
            self.result = None
            self._on_state(LinkState.GAVE_UP, ErrorCode.RECONNECT_GAVE_UP)

    async def _heartbeat_loop(self) -> None:
        next_beat = 0.0
        while not self._closing:
            result = self.result
            interval = result.heartbeat_interval_s if result else self.timers.retry_min
            await asyncio.sleep(interval / 4)
            ws = self._ws
            if result is None or ws is None or ws.closed or not self.connected:
                continue
            now = time.monotonic()
            silence = now - self._last_heard
            if silence > interval + result.heartbeat_timeout_s / 2:
                self._silent_link(ws, silence)
            elif now >= next_beat:
                next_beat = now + interval
                # With an id, so the server replies: the reply is the sign of life.
                await self.send(Heartbeat(id=self._take_id(), ack=self._last_seq))

    def _silent_link(self, ws: aiohttp.ClientWebSocketResponse, silence: float) -> None:
        """Treat a socket that stopped hearing anything as lost, and discard it."""
        log_event(log, logging.WARNING, "signaling_silent", seconds=round(silence, 1))
        reader = self._reader
        self._lost()
        self._spawn(self._discard(ws, reader))

    @staticmethod
    async def _discard(
        ws: aiohttp.ClientWebSocketResponse, reader: asyncio.Task[None] | None
    ) -> None:
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        with contextlib.suppress(Exception):
            await ws.close()  # bounded by aiohttp's close timeout on a dead network

    # ---- closing -------------------------------------------------------------------

    async def logout(self) -> None:
        """Send the logout and wait for its reply (or a timeout), then close."""
        self._closing = True
        if self.connected:
            with contextlib.suppress(EdgedError):
                await self._request(Logout(id=self._take_id()), ErrorCode.REQUEST_TIMEOUT)
        await self.close()

    async def _drop_socket(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def close(self) -> None:
        self._closing = True
        self.result = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._drop_socket()
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
