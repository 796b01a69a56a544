"""A node's Redis commands sent in batches: everything asked in one turn of the event loop
goes to Redis as one pipeline (multi-node room server, :mod:`.cluster`).

A login makes a few Redis calls (the room's owner, the user's claim, the member's record).
Sent one by one through redis-py, each pays for the connection pool, the retry wrapper,
the observability hooks and a system call of its own: at a thousand logins a second that
was a fifth of a node's CPU. :class:`Batcher` queues each command with a future, and one
task writes the queue on one connection at once and reads the replies in order (a
pipeline); what is asked while a batch is on the wire goes in the next. Under load batches
grow, so the cost per command falls as the load rises; an idle node sends each command
alone, as before, after at most one turn of the loop.

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

from redis.exceptions import NoScriptError, ResponseError

Queued = tuple[tuple[Any, ...], asyncio.Future[Any]]
"""A command's arguments and the future for its reply."""


def _seen(future: asyncio.Future[Any]) -> None:
    """Mark a result nobody awaits as read (no "exception never retrieved")."""
    if not future.cancelled():
        future.exception()


class Batcher:
    """Commands for one ``redis.asyncio.Redis`` client, sent a batch at a time."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis
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

    def command(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command; its reply as Redis sends it (no redis-py reply parsing:
        ``HGETALL`` is a flat list) or its error, on the future returned."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((args, future))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._send_all())
        return future

    def fire(self, *args: Any) -> None:
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
            replies = await self._exchange([args for args, _ in batch])
        except Exception as exc:  # no connection, or it failed: every command of the batch
            self._fail(batch, exc)
            return
        for (args, future), reply in zip(batch, replies, strict=True):
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

    async def _exchange(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Write the commands on one pooled connection, read their replies (an error
        reply in its command's place). Straight on redis-py's connection rather than
        through its ``Pipeline``, whose retry and observability layers cost more than
        the commands themselves."""
        pool = self._redis.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command(conn.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:
                    replies.append(exc)
        except BaseException:
            # Replies may be left on the socket: never hand it to the next batch.
            await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)
        return replies

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
