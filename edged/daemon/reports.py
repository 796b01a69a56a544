"""What the daemon tells on a timer: quality, a snapshot now and then, systemd's status.

:class:`Reports` owns the periodic task. Every ``interval`` seconds it publishes the
quality payload on its topic (when there is a broker), makes a snapshot every ``snapshot_every``
seconds (0: never) and refreshes the status line systemd shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from ..errors import EdgedError
from . import systemd
from .mqtt import ControlChannel
from .sinks import Snapshots


class Reports:
    """Owns the reporting task; sees the channel of the moment (None without a broker)
    and the quality topic, the quality payload, the snapshots and the status line."""

    def __init__(
        self,
        interval: float,
        snapshot_every: float,
        channel: Callable[[], ControlChannel | None],
        topic: str,
        quality: Callable[[], dict[str, Any]],
        snapshots: Snapshots,
        status_line: Callable[[], str],
    ) -> None:
        self.interval = interval
        self.snapshot_every = snapshot_every
        self._channel = channel
        self._topic = topic
        self._quality = quality
        self._snapshots = snapshots
        self._status_line = status_line
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        last_snapshot = 0.0
        while True:
            await asyncio.sleep(self.interval)
            channel = self._channel()
            if channel is not None:
                channel.publish(self._topic, json.dumps(self._quality()))
                if self.snapshot_every and time.monotonic() - last_snapshot >= self.snapshot_every:
                    last_snapshot = time.monotonic()
                    with contextlib.suppress(EdgedError):
                        await self._snapshots.take()
            systemd.status(self._status_line())
