"""A node's Redis commands sent in batches: everything asked in one turn of the event loop
goes to Redis as one pipeline (multi-node room server, :mod:`.cluster`).

A login makes a few Redis calls (the room's owner, the user's claim, the member's record).
Sent one by one through redis-py, each pays for the connection pool, the retry wrapper,
the observability hooks and a system call of its own: at a thousand logins a second that
was a fifth of a node's CPU. :class:`Batcher` queues each command with a future, and one
task writes the queue on one connection (:class:`~.resp.RespConnection`) at once and
takes the replies in order (a pipeline); what is asked while a batch is on the wire goes
in the next. A batch has ``timeout_s`` for all its replies; a connection that failed or
timed out is closed (replies may still be on their way) and the next batch opens another.
Under load batches grow, so the cost per command falls as the load rises; an idle node
sends each command alone, as before, after at most one turn of the loop.

One batch at a time on one connection also keeps commands in the order they were made
(a member's record saved, then dropped, reaches Redis in that order).

Scripts go as ``EVALSHA``; one Redis no longer knows (it restarted) is sent again as
``EVAL``, which loads it back.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from typing import Any

from redis.exceptions import NoScriptError

from .resp import RespConnection, pack

Queued = tuple[tuple[Any, ...], bytes, asyncio.Future[Any]]
"""A command's arguments, the command in RESP and the future for its reply."""


def _seen(future: asyncio.Future[Any]) -> None:
    """Mark a result nobody awaits as read (no "exception never retrieved")."""
    if not future.cancelled():
        future.exception()


class Batcher:
    """Commands for the Redis at ``url``, sent a batch at a time on one connection."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self._url = url
        self.timeout_s = timeout_s
        """For connecting, and for all the replies of one batch."""
        self._conn: RespConnection | None = None
        self._queue: list[Queued] = []
        self._task: asyncio.Task[None] | None = None
        self._scripts: dict[str, str] = {}
        self.batches = 0
        """Pipelines sent so far (commands per batch = commands / batches)."""
        self.commands = 0

    def script(self, body: str) -> str:
        """Register a Lua script; its SHA1, for :meth:`run_script`."""
        sha = hashlib.sha1(body.encode()).hexdigest()
        self._scripts[sha] = body
        return sha

    def run_script(self, sha: str, keys: list[str], args: list[str]) -> asyncio.Future[Any]:
        return self.command("EVALSHA", sha, len(keys), *keys, *args)

    def command(self, *args: str | bytes | int) -> asyncio.Future[Any]:
        """Queue one command; its reply as Redis sends it (no redis-py reply parsing:
        ``HGETALL`` is a flat list) or its error, on the future returned. TypeError, at
        once, for an argument that is not ``str``, ``bytes`` or ``int``."""
        packed = pack(args)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((args, packed, future))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._send_all())
        return future

    def fire(self, *args: str | bytes | int) -> None:
        """Queue a command whose reply nobody waits for (a failure is dropped)."""
        self.command(*args).add_done_callback(_seen)

    def fire_script(self, sha: str, keys: list[str], args: list[str]) -> None:
        self.run_script(sha, keys, args).add_done_callback(_seen)

    async def close(self) -> None:
        """Stop sending; whatever is queued fails with ConnectionError."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._fail(self._queue, ConnectionError("closed"))
        self._queue = []
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _send_all(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._send(batch)
                except asyncio.CancelledError:
                    self._fail(batch, ConnectionError("closed"))
                    raise
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    async def _send(self, batch: list[Queued]) -> None:
        self.batches += 1
        self.commands += len(batch)
        try:
            replies = await self._exchange(b"".join(packed for _, packed, _ in batch), len(batch))
        except Exception as exc:  # no connection, or it failed: every command of the batch
            self._fail(batch, exc)
            return
        for (args, _, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue  # its caller gave up
            if isinstance(reply, NoScriptError) and args[1] in self._scripts:
                # Redis lost its scripts (restarted): send the body, which loads it back.
                again = self.command("EVAL", self._scripts[args[1]], *args[2:])
                again.add_done_callback(functools.partial(_chain, target=future))
            elif isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _exchange(self, commands: bytes, count: int) -> list[Any]:
        """Write the packed commands, wait for their replies (an error reply, as an
        exception, in its command's place)."""
        conn = self._conn
        if conn is None or not conn.usable:
            self._conn = None
            conn = self._conn = await RespConnection.open(self._url, self.timeout_s)
        replies = conn.send(commands, count)
        try:
            async with asyncio.timeout(self.timeout_s):
                await replies[-1]  # in order: the last one done, all are
        except BaseException:
            conn.close()
            self._conn = None
            for reply in replies:
                if reply.done():
                    _seen(reply)
                else:
                    reply.cancel()
            raise
        return [reply.result() for reply in replies]

    @staticmethod
    def _fail(batch: list[Queued], exc: BaseException) -> None:
        for *_, future in batch:
            if not future.done():
                future.set_exception(exc)


def _chain(source: asyncio.Future[Any], *, target: asyncio.Future[Any]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (exc := source.exception()) is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())
