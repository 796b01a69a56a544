"""A room's state as its node writes it to Redis, and its adoption by another node when
that node died (multi-node, docs/scaling.md).

The node that runs a room writes, as they change, a record of each member's session
(identity, resume token, token claims, published streams) and of each peer-to-peer link,
so that when it dies the node its clients reconnect to can take the room over: it rebuilds
every session (detached, as if its socket had just dropped), stream and link, claims them
in Redis, and then resumes the clients one by one as they come back within the heartbeat
timeout. Nobody in the room hears of it; a client that does not come back is removed at
the timeout, as on a single server. Messages the dead node had queued but not delivered
are lost (the records carry no message history); resumed clients go on from the sequence
number they had.
"""

from __future__ import annotations

import json
import time
from dataclasses import fields
from typing import Any

from ..protocol import StreamInfo, UserInfo
from ..tokens import TokenClaims
from .links import Link
from .rooms import RoomService
from .session import Session


def session_record(rooms: RoomService, session: Session) -> str:
    """The session as its node writes it (JSON text)."""
    room = rooms.store.room(session.app_id, session.room_id)
    streams = []
    for stream_id in sorted(session.published):
        info = room.streams.get(stream_id) if room is not None else None
        if info is None:
            continue
        relay, p2p = session.relay.get(stream_id, (None, None))
        cap = room.max_viewers.get(stream_id, 0) if room is not None else 0
        streams.append(
            {"info": info.model_dump(mode="json"), "cap": cap, "relay": relay, "p2p": p2p}
        )
    claims = _fields(session.claims) if session.claims is not None else None
    if claims is not None:
        for key in ("stream_ids", "relays"):
            claims[key] = sorted(claims[key]) if claims[key] is not None else None
        claims = {k: v for k, v in claims.items() if v is not None}
    record: dict[str, Any] = {
        "sid": session.session_id,
        "rt": session.resume_token,
        "user": session.user.model_dump(mode="json"),
        "at": session.joined_at,
        "max": room.max_members if room is not None else 0,
    }
    # Only what differs from a fresh session's defaults: a few hundred bytes a member.
    optional = {"uu": session.user_update, "claims": claims, "streams": streams}
    record.update({k: v for k, v in optional.items() if v})
    if session.fed:
        record["fed"] = sorted(session.fed)
    return json.dumps(record, separators=(",", ":"))


def _fields(claims: TokenClaims) -> dict[str, Any]:
    """The claims' fields, as ``dataclasses.asdict`` gives them (none is a dataclass)
    without its deep copy: a tenth of the cost, once per login."""
    return {f.name: getattr(claims, f.name) for f in fields(claims)}


def link_record(link: Link) -> str | None:
    """A peer-to-peer link as its node writes it; None for a link with the SFU at one end
    (Janus's handles die with the node that made them)."""
    if link.via_sfu or link.player is None:
        return None
    return json.dumps(
        {
            "stream": link.stream_id,
            "pub": link.publisher.session_id,
            "play": link.player.session_id,
        },
        separators=(",", ":"),
    )


def _claims(data: dict[str, Any] | None) -> TokenClaims | None:
    if data is None:
        return None
    for key in ("stream_ids", "relays"):
        if data.get(key) is not None:
            data[key] = frozenset(data[key])
    return TokenClaims(**data)


def adopt(
    rooms: RoomService, app_id: str, room_id: str, members: dict[str, str], links: dict[str, str]
) -> list[Session]:
    """Rebuild a dead node's room here from its records; the sessions made (detached)."""
    records = sorted((json.loads(text) for text in members.values()), key=lambda r: r["at"])
    made: list[Session] = []
    now = time.monotonic()
    for record in records:
        if record["sid"] in rooms.sessions:
            continue
        user = UserInfo.model_validate(record["user"])
        session = Session(
            session_id=record["sid"],
            resume_token=record["rt"],
            app_id=app_id,
            room_id=room_id,
            user=user,
            user_update=bool(record.get("uu")),
            claims=_claims(record.get("claims")),
            replay_limit=rooms.settings.limits.outbox_limit,
            last_seen=now,
            adopted=True,
            joined_at=float(record["at"]),
        )
        limit = int(record.get("max") or rooms.settings.limits.default_max_members)
        if not rooms.store.join(app_id, room_id, user.user_id, session.session_id, limit):
            continue
        rooms.sessions[session.session_id] = session
        rooms.index_resume(session)
        for stream in record.get("streams", []):
            info = StreamInfo.model_validate(stream["info"])
            if rooms.store.add_stream(app_id, room_id, info, int(stream["cap"])):
                session.published.add(info.stream_id)
                session.relay[info.stream_id] = (stream["relay"], stream["p2p"])
        session.fed.update(record.get("fed", []))
        rooms.arm_token(session)
        made.append(session)
    room = rooms.store.room(app_id, room_id)
    for link_id, text in links.items():
        data = json.loads(text)
        publisher = rooms.sessions.get(data["pub"])
        player = rooms.sessions.get(data["play"])
        if publisher is None or player is None or room is None:
            continue
        if data["stream"] not in publisher.published:
            continue
        rooms.links.restore(link_id, data["stream"], publisher, player)
        room.viewers[data["stream"]] = room.viewers.get(data["stream"], 0) + 1
    return made
