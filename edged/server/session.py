"""A logged-in session and the WebSocket connection it is attached to.

A :class:`Session` outlives its connection: when the socket drops it stays
detached until the heartbeat timeout, keeping the messages it is sent in a bounded
replay buffer, so that a ``resume`` on a new connection continues where it left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import WSCloseCode, WSMessage

from ..logs import log_event
from ..protocol import UserInfo
from ..tokens import TokenClaims
from .limits import TokenBucket

log = logging.getLogger("edged.server")


class Socket(Protocol):
    """What serving a client needs of its WebSocket: aiohttp's ``WebSocketResponse``, or
    a client's socket carried from another node (:class:`~.proxy.CarriedSocket`)."""

    @property
    def closed(self) -> bool: ...

    async def receive(self, timeout: float | None = None) -> WSMessage: ...

    async def send_str(self, data: str, compress: int | None = None) -> None: ...

    async def send_bytes(self, data: bytes, compress: int | None = None) -> None: ...

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"") -> bool: ...


class Connection:
    """One WebSocket: its address, rate bucket and the task that writes to it."""

    def __init__(self, ws: Socket, address: str, bucket: TokenBucket) -> None:
        self.ws = ws
        self.address = address
        self.bucket = bucket
        self.session: Session | None = None
        self.opened_at = time.monotonic()
        self.ever_bound = False  # a session was attached once (login or resume)
        self._direct: deque[str] = deque()
        # Set while the writer waits for something to send; resolved by wake().
        self._waiter: asyncio.Future[None] | None = None
        self._closing = False
        self._writer = asyncio.create_task(self._write_loop())

    def send_direct(self, text: str) -> None:
        """Queue a message that belongs to no session (errors before login)."""
        self._direct.append(text)
        self.wake()

    def wake(self) -> None:
        """Have the writer look for something to send (it may be sending already)."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def backlog(self) -> int:
        return len(self._direct) + (self.session.unsent() if self.session else 0)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                # Send everything queued, then sleep until wake(): between the last
                # check and the new waiter there is no await, so no wake-up is lost.
                while True:
                    if self._direct:
                        text = self._direct.popleft()
                    elif self.session is not None and self.session.conn is self:
                        item = self.session.next_unsent()
                        if item is None:
                            break
                        text = item
                    else:
                        break
                    await self.ws.send_str(text)
                if self._closing:
                    break
                self._waiter = loop.create_future()
                await self._waiter
        except (ConnectionError, RuntimeError):
            pass
        finally:
            if self._closing and not self.ws.closed:
                with contextlib.suppress(Exception):
                    await self.ws.close()

    @property
    def closing(self) -> bool:
        return self._closing

    def close_after_flush(self) -> None:
        """Send what is queued, then close the socket."""
        self._closing = True
        self.wake()

    async def aclose(self) -> None:
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.close()


@dataclass(eq=False, slots=True)
class Session:
    """A user logged into a room: identity, streams, links and outbound messages."""

    session_id: str
    resume_token: str
    app_id: str
    room_id: str
    user: UserInfo
    user_update: bool
    claims: TokenClaims | None
    replay_limit: int
    conn: Connection | None = None
    published: set[str] = field(default_factory=set)
    relay: dict[str, tuple[str | None, int | None]] = field(default_factory=dict)
    """Per published stream: the relay policy and peer-to-peer cap its publish asked for."""
    fed: set[str] = field(default_factory=set)
    """Published streams the client sends to the SFU itself (WHIP ingest): no up link."""
    playing: dict[str, str] = field(default_factory=dict)  # stream id -> link id
    serving: set[str] = field(default_factory=set)  # link ids where we publish
    last_seen: float = field(default_factory=time.monotonic)
    outbox: deque[tuple[int, str]] = field(default_factory=deque)
    next_seq: int = 1
    sent_seq: int = 0
    timer: asyncio.TimerHandle | None = None  # the token's warning, then its expiry
    closed: bool = False
    on_push: Callable[[str], None] | None = None
    """A session with no socket (a WHEP viewer): its messages go here, none is kept."""
    joined_at: float = field(default_factory=time.time)
    adopted: bool = False
    """Taken over from a dead node (multi-node): its client's sequence numbers are not
    known until it resumes; what it is sent until then waits in ``held``."""
    held: list[str] = field(default_factory=list)

    def push(self, body: str) -> bool:
        """Queue a server message (JSON object text) with the next ``seq``.

        False when the client fell more than the replay limit behind (slow consumer).
        """
        if self.on_push is not None:
            self.on_push(body)
            return True
        if self.adopted:
            self.held.append(body)
            return len(self.held) <= self.replay_limit
        seq = self.next_seq
        self.next_seq += 1
        self.outbox.append((seq, f'{{"seq":{seq},{body[1:]}'))
        while len(self.outbox) > self.replay_limit and self.outbox[0][0] <= self.sent_seq:
            self.outbox.popleft()
        if len(self.outbox) > self.replay_limit:
            return False
        if self.conn is not None:
            self.conn.wake()
        return True

    def unsent(self) -> int:
        return self.next_seq - 1 - self.sent_seq

    def next_unsent(self) -> str | None:
        if self.sent_seq >= self.next_seq - 1:
            return None
        first = self.outbox[0][0] if self.outbox else self.next_seq
        index = self.sent_seq + 1 - first
        self.sent_seq += 1
        return self.outbox[index][1]

    def ack(self, seq: int) -> None:
        """The client has every message up to ``seq``: forget them."""
        while self.outbox and self.outbox[0][0] <= min(seq, self.sent_seq):
            self.outbox.popleft()

    def take_over(self, last_seq: int) -> None:
        """An adopted session's client resumed from ``last_seq``: number from there on, and
        queue what it was sent while it was away."""
        self.adopted = False
        self.next_seq = self.sent_seq = last_seq + 1
        self.sent_seq = last_seq
        held, self.held = self.held, []
        for body in held:
            self.push(body)

    def can_replay_from(self, last_seq: int) -> bool:
        """Whether every message after ``last_seq`` is still in the buffer."""
        if last_seq > self.next_seq - 1:
            return False
        first = self.outbox[0][0] if self.outbox else self.next_seq
        return first <= last_seq + 1

    def attach(self, conn: Connection, last_seq: int) -> None:
        """Continue on ``conn``, resending everything after ``last_seq``."""
        self.ack(last_seq)
        self.sent_seq = last_seq
        self.conn = conn
        conn.session = self
        conn.ever_bound = True
        conn.wake()

    def release(self) -> Connection | None:
        """Leave the connection, handing it what is still unsent; return it."""
        conn = self.conn
        if conn is not None:
            while (text := self.next_unsent()) is not None:
                conn.send_direct(text)
            conn.session = None
            self.conn = None
        return conn

    def detach(self) -> None:
        if self.conn is not None:
            self.conn.session = None
            self.conn = None
        log_event(log, logging.INFO, "session_detached", session=self.session_id)

    def cancel_timers(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
