"""The node's media links: which player plays which stream from which publisher.

A link is the unit the room server relays signaling for (offer, answer, candidates)
between its two ends. A peer-to-peer link joins the publisher and a player; a stream
relayed through the SFU has one *up* link (publisher to SFU) and one *down* link per
player (SFU to player), whose other end is the SFU, driven by the room server itself.
This table owns the links and the sessions' bookkeeping of them (``Session.playing``
and ``Session.serving``); the room service decides when one opens or closes and tells
the ends.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from ..errors import EdgedError, ErrorCode
from .janus import JanusHandle
from .session import Session


@dataclass(slots=True)
class Link:
    """A media link of one stream: publisher to player, publisher to SFU, or SFU to player.

    ``publisher`` is always the stream's publishing session (the up link's sending end,
    and what a down link's player is watching); ``player`` is None on an up link.
    """

    link_id: str
    stream_id: str
    publisher: Session
    player: Session | None
    via_sfu: bool = False
    janus: JanusHandle | None = None  # a down link's subscriber handle on Janus

    @property
    def up(self) -> bool:
        return self.player is None

    @property
    def down(self) -> bool:
        return self.via_sfu and self.player is not None


class LinkTable:
    """Every open link of this node, by id."""

    def __init__(self) -> None:
        self._links: dict[str, Link] = {}

    def __len__(self) -> int:
        return len(self._links)

    def get(self, link_id: str) -> Link | None:
        return self._links.get(link_id)

    def relayed(self) -> list[Link]:
        """Every link with the SFU at one end."""
        return [lk for lk in self._links.values() if lk.via_sfu]

    def open(
        self, stream_id: str, publisher: Session, player: Session | None, via_sfu: bool = False
    ) -> Link:
        """A new link; ``player`` None: the stream's up link to the SFU."""
        link = Link(secrets.token_hex(8), stream_id, publisher, player, via_sfu or player is None)
        self._links[link.link_id] = link
        if player is not None:
            player.playing[stream_id] = link.link_id
        if not link.down:
            publisher.serving.add(link.link_id)
        return link

    def restore(self, link_id: str, stream_id: str, publisher: Session, player: Session) -> Link:
        """A peer-to-peer link another node had opened (its room adopted here)."""
        link = Link(link_id, stream_id, publisher, player)
        self._links[link_id] = link
        player.playing[stream_id] = link_id
        publisher.serving.add(link_id)
        return link

    def pop(self, link_id: str) -> Link | None:
        """Forget a link (and both ends' record of it); None if it is already gone."""
        link = self._links.pop(link_id, None)
        if link is not None:
            if link.player is not None:
                link.player.playing.pop(link.stream_id, None)
            link.publisher.serving.discard(link_id)
        return link

    def uplink(self, publisher: Session, stream_id: str) -> Link | None:
        """The stream's up link to the SFU, if it has one."""
        return next((lk for lk in self.of_stream(publisher, stream_id) if lk.up), None)

    def count(self, publisher: Session, stream_id: str, *, via_sfu: bool) -> int:
        """The stream's viewers that play peer to peer (or through the SFU)."""
        links = self.of_stream(publisher, stream_id)
        return sum(1 for lk in links if lk.player is not None and lk.via_sfu == via_sfu)

    def of_stream(self, publisher: Session, stream_id: str) -> list[Link]:
        return [
            lk
            for lk in self._links.values()
            if lk.publisher is publisher and lk.stream_id == stream_id
        ]

    def peer(self, session: Session, link_id: str) -> tuple[Link, Session | None]:
        """The link and its other end (None: the SFU), if ``session`` is one of its ends."""
        link = self._links.get(link_id)
        if link is None:
            raise EdgedError(ErrorCode.LINK_NOT_FOUND)
        if (link.up and session is link.publisher) or (link.down and session is link.player):
            return link, None
        if link.via_sfu or session not in (link.publisher, link.player):
            raise EdgedError(ErrorCode.LINK_NOT_FOUND)
        return link, link.player if session is link.publisher else link.publisher
