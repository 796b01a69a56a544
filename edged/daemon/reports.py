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
from dataclasses import dataclass, field
from typing import Any

from ..errors import EdgedError
from ..tasks import cancel_and_wait
from . import systemd
from .mqtt import ControlChannel
from .sinks import Snapshots


@dataclass(eq=False)
class Reports:
    """Owns the reporting task; sees the channel of the moment (None without a broker)
    and the quality topic, the quality payload, the snapshots and the status line."""

    interval: float
    snapshot_every: float  # 0: never
    channel: Callable[[], ControlChannel | None]
    topic: str
    quality: Callable[[], dict[str, Any]]
    snapshots: Snapshots
    status_line: Callable[[], str]
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        last_snapshot = 0.0
        while True:
            await asyncio.sleep(self.interval)
            channel = self.channel()
            if channel is not None:
                channel.publish(self.topic, json.dumps(self.quality()))
                if self.snapshot_every and time.monotonic() - last_snapshot >= self.snapshot_every:
                    last_snapshot = time.monotonic()
                    with contextlib.suppress(EdgedError):
                        await self.snapshots.take()
            systemd.status(self.status_line())
