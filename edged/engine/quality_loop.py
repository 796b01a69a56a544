"""The periodic quality report of every publisher and player (every 3 s by default)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..tasks import cancel_and_wait
from .events import Emit, PlayerQualityUpdate, PublisherQualityUpdate
from .quality import PlayCounters, PlayerQualityMeter, PublishCounters, PublisherQualityMeter

if TYPE_CHECKING:
    from .player import Player
    from .publisher import Publisher
    from .room import RoomSession

log = logging.getLogger("edged.engine")


class QualityLoop:
    """Owns the task that samples getStats and the engine's counters each period.

    It sees only what it needs: the room session of the moment (``room``, None while
    logged out) and where the reports go (``emit``, the engine's event dispatch).
    """

    def __init__(
        self,
        room: Callable[[], RoomSession | None],
        emit: Emit,
        interval: float,
    ) -> None:
        self._room = room
        self._emit = emit
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._publishers: dict[int, PublisherQualityMeter] = {}
        self._players: dict[int, PlayerQualityMeter] = {}

    def start(self) -> None:
        if self._task is None and self.interval > 0:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sample()
            except Exception:
                log.exception("quality sampling failed")

    async def sample(self) -> None:
        """Compute and emit one report per publisher and player."""
        room = self._room()
        if room is None:
            return
        publishers, players = list(room.publishers.values()), list(room.players.values())
        for publisher in publishers:
            await self._publisher(publisher)
        for player in players:
            await self._player(player)
        live = {id(p) for p in publishers} | {id(p) for p in players}
        for meters in (self._publishers, self._players):
            for key in [k for k in meters if k not in live]:
                del meters[key]

    async def _publisher(self, publisher: Publisher) -> None:
        meter = self._publishers.setdefault(id(publisher), PublisherQualityMeter())
        reports = [await link.pc.getStats() for link in list(publisher.links.values())]
        fanout, tap = publisher.video_fanout, publisher.video_tap
        stats = fanout.stats() if fanout is not None else None
        width, height = (tap.frame_size if tap else None) or (0, 0)
        counters = PublishCounters(
            frames_captured=tap.frames if tap else 0,
            frames_encoded=stats.frames_encoded if stats else 0,
            frames_sent=stats.frames_in - stats.frames_idle if stats else 0,
            width=width,
            height=height,
            codec="H264" if fanout is not None else "",
            hardware_encode=tap.capabilities.hardware_encode if tap else False,
            target_fps=publisher.video_config.fps if fanout is not None else 0.0,
        )
        quality = meter.update(reports, counters)
        quality.targets = tuple(sender.info() for sender in publisher.targets)
        self._emit(PublisherQualityUpdate(publisher.stream_id, quality))

    async def _player(self, player: Player) -> None:
        if player.pc is None:
            return
        meter = self._players.setdefault(id(player), PlayerQualityMeter())
        c = player.counters
        counters = PlayCounters(
            frames_received=c.video_frames,
            frames_decoded=c.video_frames,
            width=c.width,
            height=c.height,
            codec="H264" if c.video_frames else "",
        )
        quality = meter.update(await player.pc.getStats(), counters)
        self._emit(PlayerQualityUpdate(player.stream_id, quality))
