"""A node's Redis commands sent in batches: everything asked in one turn of the event loop
goes to Redis as one pipeline (multi-node room server, :mod:`.cluster`).

A login makes a few Redis calls (the room's owner, the user's claim, the member's record).
Sent one by one through redis-py, each pays for the connection pool, the retry wrapper,
the observability hooks and a system call of its own: at a thousand logins a second that
was a fifth of a node's CPU. :class:`Batcher` queues each command with a future; at the end
of the loop's turn the queue is written at once on one connection
(:class:`~.resp.RespConnection`), whose replies go to their futures in order as they
arrive (a pipeline): no task, no wait per batch. A command has ``timeout_s`` for its
reply; a connection that failed or timed out fails what waits on it and is closed, and
the next batch opens another. Under load batches grow, so the cost per command falls as
the load rises; an idle node sends each command alone after at most one turn of the
loop.

One connection also keeps commands in the order they were made (a member's record saved,
then dropped, reaches Redis in that order).

Scripts go as ``EVALSHA``; one Redis no longer knows (it restarted) is sent again as
``EVAL``, which loads it back.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from redis.exceptions import NoScriptError

from .resp import RespConnection, pack, settle

Queued = tuple[bytes, asyncio.Future[Any], tuple[Any, ...]]
"""A command in RESP, the future for its reply and its arguments."""


def _seen(future: asyncio.Future[Any]) -> None:
    """Mark a result nobody awaits as read (no "exception never retrieved")."""
    if not future.cancelled():
        future.exception()


class Batcher:
    """Commands for the Redis at ``url``, written a batch per turn on one connection."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self._url = url
        self.timeout_s = timeout_s
        """For connecting, and for each command's reply."""
        self._conn: RespConnection | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._queue: list[Queued] = []
        self._flush_soon: asyncio.Handle | None = None
        self._scripts: dict[str, str] = {}
        self.batches = 0
        """Writes so far (commands per batch = commands / batches)."""
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
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue_command(pack(args), future, args)
        return future

    def fire(self, *args: str | bytes | int) -> None:
        """Queue a command whose reply nobody waits for (a failure is dropped)."""
        self.command(*args).add_done_callback(_seen)

    def fire_script(self, sha: str, keys: list[str], args: list[str]) -> None:
        self.run_script(sha, keys, args).add_done_callback(_seen)

    async def close(self) -> None:
        """Stop sending; whatever is queued or waiting fails with ConnectionError."""
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        task, self._connecting = self._connecting, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._fail_queue(ConnectionError("closed"))
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _queue_command(
        self, packed: bytes, future: asyncio.Future[Any], args: tuple[Any, ...]
    ) -> None:
        self._queue.append((packed, future, args))
        if self._flush_soon is None:
            self._flush_soon = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Write what is queued, or connect first."""
        self._flush_soon = None
        if not self._queue:
            return
        conn = self._conn
        if conn is None or not conn.usable:
            self._conn = None
            if self._connecting is None:
                self._connecting = asyncio.get_running_loop().create_task(self._connect())
            return
        batch, self._queue = self._queue, []
        self.batches += 1
        self.commands += len(batch)
        conn.send(b"".join(packed for packed, _, _ in batch), [(f, a) for _, f, a in batch])

    async def _connect(self) -> None:
        try:
            self._conn = await RespConnection.open(self._url, self.timeout_s, self._on_reply)
        except Exception as exc:  # no Redis: what waits for it fails
            self._fail_queue(exc)
        finally:
            self._connecting = None
        self._flush()

    def _on_reply(self, future: asyncio.Future[Any], args: tuple[Any, ...], reply: Any) -> None:
        if isinstance(reply, NoScriptError) and args[0] == "EVALSHA" and args[1] in self._scripts:
            # Redis lost its scripts (restarted): send the body, which loads it back.
            again = ("EVAL", self._scripts[args[1]], *args[2:])
            self._queue_command(pack(again), future, again)
            return
        settle(future, args, reply)

    def _fail_queue(self, exc: BaseException) -> None:
        queue, self._queue = self._queue, []
        for _, future, _ in queue:
            if not future.done():
                future.set_exception(exc)
