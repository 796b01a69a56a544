"""The node's media links: which player plays which stream from which publisher.

A link is the unit the room server relays signaling for (offer, answer, candidates)
between two sessions. This table owns the links and the two sessions' bookkeeping of
them (``Session.playing`` and ``Session.serving``); the room service decides when one
opens or closes and tells the ends.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from ..errors import EdgedError, ErrorCode
from .session import Session


@dataclass(slots=True)
class Link:
    """A media link: one player of one stream and the stream's publisher."""

    link_id: str
    stream_id: str
    publisher: Session
    player: Session


class LinkTable:
    """Every open link of this node, by id."""

    def __init__(self) -> None:
        self._links: dict[str, Link] = {}

    def __len__(self) -> int:
        return len(self._links)

    def open(self, stream_id: str, publisher: Session, player: Session) -> Link:
        link = Link(secrets.token_hex(8), stream_id, publisher, player)
        self._links[link.link_id] = link
        player.playing[stream_id] = link.link_id
        publisher.serving.add(link.link_id)
        return link

    def pop(self, link_id: str) -> Link | None:
        """Forget a link (and both ends' record of it); None if it is already gone."""
        link = self._links.pop(link_id, None)
        if link is not None:
            link.player.playing.pop(link.stream_id, None)
            link.publisher.serving.discard(link_id)
        return link

    def of_stream(self, publisher: Session, stream_id: str) -> list[Link]:
        return [
            lk
            for lk in self._links.values()
            if lk.publisher is publisher and lk.stream_id == stream_id
        ]

    def peer(self, session: Session, link_id: str) -> tuple[Link, Session]:
        """The link and its other end, if ``session`` is one of its ends."""
        link = self._links.get(link_id)
        if link is None or session not in (link.publisher, link.player):
            raise EdgedError(ErrorCode.LINK_NOT_FOUND)
        return link, link.player if session is link.publisher else link.publisher
