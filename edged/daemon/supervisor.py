"""Keeping the engine where the desired state says it should be.

:class:`Supervisor` owns the engine lock (one change of the engine at a time: a command,
a pass of the supervisor or the engine's replacement on reload) and the task that,
woken by every state change and at least twice a second, restores what is missing —
the login, the published stream, each wanted player — with a backoff per action, so
the device is back in its room after a boot before the network, a kick-out or a give-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..backoff import Backoff
from ..engine.engine import Engine
from ..errors import EdgedError
from ..logs import log_event
from ..model import RoomState
from ..tasks import cancel_and_wait
from .desired import DesiredState

log = logging.getLogger("edged.daemon")


class Supervisor:
    """Owns the engine lock and the restoring task; sees the engine of the moment
    (``engine``), the desired state and where a played stream goes (``sink``)."""

    def __init__(
        self,
        engine: Callable[[], Engine],
        desired: DesiredState,
        sink: Callable[[str], Any],
    ) -> None:
        self._engine = engine
        self._desired = desired
        self._sink = sink
        self.lock = asyncio.Lock()  # held while the engine is being changed or replaced
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._retry_at: dict[str, float] = {}
        self._backoffs: dict[str, Backoff] = {}

    # ---- the actions that restore --------------------------------------------------

    async def login(self) -> None:
        d = self._desired
        await self._engine().login_room(d.room_id, d.user, d.room_config())

    async def publish(self) -> None:
        d = self._desired
        await self._engine().start_publishing(d.stream_id, d.publish_config)

    async def play(self, stream_id: str) -> None:
        video = self._desired.video_for(stream_id)
        await self._engine().start_playing(stream_id, self._sink(stream_id), video=video)

    # ---- running -------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Restore nothing more; returns once a pass under way has ended."""
        self._stopping = True
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def wake(self) -> None:
        """Look at the desired state now."""
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            async with self.lock:
                if self._stopping:
                    break
                await self.restore()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.5)
            self._wake.clear()

    async def restore(self) -> None:
        """One pass over the desired state (the caller holds the lock)."""
        engine, d = self._engine(), self._desired
        state = engine.room_state
        if d.login and state == RoomState.DISCONNECTED:
            await self._attempt("login", self.login)
        elif state == RoomState.CONNECTED:
            if d.publish and d.stream_id not in engine.publishers:
                await self._attempt("publish", self.publish)
            for stream_id in d.streams_to_play(engine.streams, engine.players):
                await self._attempt(f"play:{stream_id}", functools.partial(self.play, stream_id))

    async def _attempt(self, key: str, action: Callable[[], Awaitable[None]]) -> None:
        if time.monotonic() < self._retry_at.get(key, 0.0):
            return
        try:
            await action()
            self._backoffs.pop(key, None)
        except EdgedError as exc:
            delay = self._backoffs.setdefault(key, Backoff(1.0, 30.0)).next()
            self._retry_at[key] = time.monotonic() + delay
            log_event(
                log,
                logging.WARNING,
                "retry_later",
                action=key,
                code=int(exc.code),
                retry_s=delay,
            )
