"""The SFU's end of relayed links: signaling translated between clients and Janus.

A client never speaks Janus. On a stream's *up* link the publisher's offer goes to Janus
as the feed's ``publish`` and Janus's answer comes back to it on the link, from the SFU
user; on each *down* link the room server asks Janus for a subscriber's offer (once the
feed's media is up), sends it to the player on the link, and gives the player's answer to
Janus's ``start``. Candidates a client trickles go to the handle of its link.

Each link's steps run in order, one after the other (a lock per link), in tasks this
part owns; a step Janus refuses, or a Janus that cannot be reached, closes the link with
the reason ``sfu_unavailable``, and the client's usual retry takes it from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ..logs import log_event
from ..model import NO_RELAYED_PLAYER, SFU_REFUSED, SFU_UNAVAILABLE
from ..protocol import LinkOpen, Signal, SignalRelay, UserInfo, encode
from .janus import JanusError, JanusUnavailable
from .links import Link, LinkTable
from .relay import Relay
from .session import Session
from .settings import SfuSettings

log = logging.getLogger("edged.server.relay")

SFU_USER = UserInfo(user_id="edged-sfu", user_name="SFU")
"""The user the SFU's end of a link speaks as (on ``link_open`` and signaling)."""


class RelayLinks:
    """Runs the SFU's side of every relayed link of this node."""

    def __init__(
        self,
        settings: SfuSettings,
        links: LinkTable,
        send: Callable[[Session, str], None],
        close_link: Callable[[str, str], None],
    ) -> None:
        self.relay = Relay(settings, self.lost)
        self.links = links
        self._send = send
        self._close_link = close_link
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _run(self, link: Link, step: Callable[[], Awaitable[None]]) -> None:
        lock = self._locks.setdefault(link.link_id, asyncio.Lock())

        async def ordered() -> None:
            async with lock:
                try:
                    await step()
                except (JanusError, JanusUnavailable, TimeoutError) as exc:
                    log_event(
                        log,
                        logging.WARNING,
                        "relay_failed",
                        link=link.link_id,
                        stream=link.stream_id,
                        error=str(exc) or type(exc).__name__,
                    )
                    reason = SFU_REFUSED if isinstance(exc, JanusError) else SFU_UNAVAILABLE
                    self._close_link(link.link_id, reason)
                    if link.up:  # its players wait for a feed that will not come up
                        for down in self.links.relayed():
                            if down.down and (down.publisher, down.stream_id) == (
                                link.publisher,
                                link.stream_id,
                            ):
                                self._close_link(down.link_id, reason)

        task = asyncio.create_task(ordered())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _relay(self, to: Session, link: Link, user: UserInfo, **signal: object) -> None:
        body = SignalRelay(link_id=link.link_id, stream_id=link.stream_id, user=user, **signal)
        self._send(to, encode(body))

    # ---- links ---------------------------------------------------------------------

    def wanted(self, publisher: Session, stream_id: str) -> bool:
        """Whether the stream's next player goes through the SFU (the relay policy)."""
        settings = self.relay.settings
        asked, cap = publisher.relay.get(stream_id, (None, None))
        policy = asked or settings.relay
        cap = settings.p2p_max_viewers if cap is None else cap
        p2p = self.links.count(publisher, stream_id, via_sfu=False)
        return policy == "sfu" or (policy == "auto" and p2p >= cap)

    def open_down(self, link: Link) -> None:
        """Ask Janus for the player's offer once the stream's feed is up, and send it; the
        stream's up link from the publisher opens with its first relayed player."""
        player, publisher = link.player, link.publisher
        assert player is not None
        fed = link.stream_id in publisher.fed  # a WHIP encoder feeds Janus itself
        if not fed and self.links.uplink(publisher, link.stream_id) is None:
            up = self.links.open(link.stream_id, publisher, None)
            opening = LinkOpen(
                link_id=up.link_id, stream_id=link.stream_id, user=SFU_USER, relayed=True
            )
            self._send(publisher, encode(opening))

        async def offer() -> None:
            handle, description = await self.relay.subscribe(publisher.app_id, link.stream_id)
            link.janus = handle
            self._relay(player, link, publisher.user, description=description)

        self._run(link, offer)

    def signal(self, session: Session, link: Link, msg: Signal) -> None:
        """A client's description or candidate on a relayed link, for Janus."""
        description, candidate = msg.description, msg.candidate
        if link.up and description is not None and description.type == "offer":

            async def publish() -> None:
                answer = await self.relay.publish(
                    session.app_id, session.room_id, link.stream_id, description
                )
                self._relay(session, link, SFU_USER, description=answer)

            self._run(link, publish)
        elif link.down and description is not None and description.type == "answer":

            async def start() -> None:
                if link.janus is not None:
                    await self.relay.start(link.janus, description)

            self._run(link, start)
        if candidate is not None and candidate.candidate:

            async def trickle() -> None:
                handle = link.janus or self.relay.feed_handle(session.app_id, link.stream_id)
                if handle is not None:
                    await self.relay.trickle(handle, candidate)

            self._run(link, trickle)

    def closed(self, link: Link) -> None:
        """A relayed link ended: its subscriber, or (an up link) the stream's feed, goes;
        the up link itself once the stream has no relayed player left."""
        app_id = link.publisher.app_id
        up = self.links.uplink(link.publisher, link.stream_id)
        if up is not None and not self.links.count(link.publisher, link.stream_id, via_sfu=True):
            self._close_link(up.link_id, NO_RELAYED_PLAYER)

        async def release() -> None:
            if link.up:
                await self.relay.unpublish(app_id, link.stream_id)
            elif link.janus is not None:
                await link.janus.detach()
            self._locks.pop(link.link_id, None)

        self._run(link, release)

    def lost(self, url: str, rooms: set[str]) -> None:
        """Janus at ``url`` is gone with ``rooms`` (their "app/room" names): every link
        relayed through them ends now (the players play again, and the next relayed play
        rebuilds the room, on the next Janus while this one is down)."""
        for link in self.links.relayed():
            if f"{link.publisher.app_id}/{link.publisher.room_id}" in rooms:
                self._close_link(link.link_id, SFU_UNAVAILABLE)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.relay.close()
