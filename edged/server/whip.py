"""WHIP ingest: any WHIP encoder (OBS, GStreamer, a browser) publishes into a room.

With an SFU configured, ``POST /whip/{app}/{room}/{stream}`` with an SDP offer and an
edged token that may publish logs the encoder into the room as a member with no socket
(like a WHEP player, :mod:`.whep`), publishes the stream into the room's Janus VideoRoom
with the encoder's own offer, and answers ``201 Created`` with Janus's answer. The
stream is an ordinary one: the room hears its ADD (and its DELETE when the encoder's
``DELETE`` comes, or its token expires), and every viewer plays it through Janus, as a
relayed stream (docs/scaling.md). ``PATCH`` trickles the encoder's candidates to Janus.

Without an SFU there is nothing to receive the media (the room server carries none):
``503`` with 1004051.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from aiohttp import web

from ..errors import EdgedError, ErrorCode
from ..logs import log_event
from ..model import StreamDeleteReason
from ..protocol import SessionDescription, StreamInfo
from .janus import JanusError, JanusUnavailable
from .rooms import RoomService
from .session import Session
from .webrtc_http import (
    CORS,
    add_resource_routes,
    candidates,
    login_without_socket,
    problem,
    refuse_offer,
    resource_id,
    resource_owner,
)

log = logging.getLogger("edged.server.whip")


@dataclass(eq=False)
class Encoder:
    """One WHIP resource: the encoder's session and the stream it publishes."""

    resource_id: str
    etag: str
    session: Session
    stream_id: str


def _kinds(sdp: str) -> set[str]:
    return {line[2:].split(" ", 1)[0] for line in sdp.splitlines() if line.startswith("m=")}


class WhipEndpoint:
    """Owns the WHIP resources of this room server."""

    def __init__(self, rooms: RoomService) -> None:
        self.rooms = rooms
        self.encoders: dict[str, Encoder] = {}

    def add_routes(self, app: web.Application) -> None:
        add_resource_routes(app, "/whip/{app}/{room}/{stream}", self)

    async def post(self, request: web.Request) -> web.Response:
        app_id, room_id = request.match_info["app"], request.match_info["room"]
        stream_id = request.match_info["stream"]
        relay_links = self.rooms.relay_links
        if relay_links is None:
            detail = "WHIP ingest needs an SFU: start the room server with --sfu"
            return problem(503, ErrorCode.RELAY_UNAVAILABLE, detail)
        refused = refuse_offer(request)
        if refused is not None:
            return refused
        offer = SessionDescription(type="offer", sdp=await request.text())
        kinds = _kinds(offer.sdp)
        logged_in = await login_without_socket(self.rooms, request, app_id, room_id, lambda _: None)
        if isinstance(logged_in, web.Response):
            return logged_in
        session = logged_in[0]
        stream = StreamInfo(
            stream_id=stream_id, user=session.user, video="video" in kinds, audio="audio" in kinds
        )
        shared, claimed = self.rooms.shared, 1
        try:
            if shared is not None:  # several nodes: the stream id is unique across them
                claimed = await shared.claim_stream(app_id, stream_id)
                if not claimed:
                    raise EdgedError(ErrorCode.STREAM_ID_ALREADY_PUBLISHED)
            self.rooms.publish(session, stream, 0, "sfu")
            session.relay[stream_id] = ("sfu", None)
            session.fed.add(stream_id)
            answer = await relay_links.relay.publish(app_id, room_id, stream_id, offer)
        except EdgedError as exc:
            if shared is not None and claimed == 2 and stream_id not in session.published:
                shared.release_stream(app_id, stream_id)
            self.rooms.logout(session)
            status = {
                ErrorCode.STREAM_ID_ALREADY_PUBLISHED: 409,
                ErrorCode.ROOM_STATE_UNAVAILABLE: 503,
            }.get(exc.code, 403)
            return problem(status, exc.code)
        except (JanusError, JanusUnavailable) as exc:
            session.published.discard(stream_id)  # never announced: no DELETE to send
            self.rooms.store.remove_stream(app_id, stream_id)
            if shared is not None:
                shared.release_stream(app_id, stream_id)
            self.rooms.logout(session)
            code = (
                ErrorCode.RELAY_REFUSED
                if isinstance(exc, JanusError)
                else ErrorCode.RELAY_UNAVAILABLE
            )
            return problem(503, code, str(exc))
        encoder = Encoder(
            resource_id(self.rooms.node_id), f'"{secrets.token_hex(8)}"', session, stream_id
        )
        self.encoders[encoder.resource_id] = encoder
        self.rooms.announce_stream(session, stream)
        log_event(log, logging.INFO, "whip_publish", stream=stream_id, resource=encoder.resource_id)
        headers = {
            **CORS,
            "Location": f"{request.path}/{encoder.resource_id}",
            "ETag": encoder.etag,
        }
        return web.Response(
            status=201, text=answer.sdp, content_type="application/sdp", headers=headers
        )

    def _encoder(self, request: web.Request) -> Encoder | None:
        """The resource a request names, if live and the request's token is its user's."""
        encoder = self.encoders.get(request.match_info["resource"])
        owner = resource_owner(encoder.session if encoder else None, request)
        return encoder if owner is not None else None

    async def patch(self, request: web.Request) -> web.Response:
        encoder = self._encoder(request)
        relay_links = self.rooms.relay_links
        if encoder is None or relay_links is None:
            return problem(404, ErrorCode.LINK_NOT_FOUND)
        if request.content_type != "application/trickle-ice-sdpfrag":
            return problem(415, ErrorCode.INVALID_PARAMETER, "send application/trickle-ice-sdpfrag")
        if request.headers.get("If-Match") not in (None, "*", encoder.etag):
            return problem(412, ErrorCode.INVALID_PARAMETER, "the ICE session changed (ETag)")
        handle = relay_links.relay.feed_handle(encoder.session.app_id, encoder.stream_id)
        try:
            for candidate in candidates(await request.text()):
                if handle is not None:
                    await relay_links.relay.trickle(handle, candidate)
        except (JanusError, JanusUnavailable) as exc:
            return problem(
                400 if isinstance(exc, JanusError) else 503, ErrorCode.INVALID_PARAMETER, str(exc)
            )
        return web.Response(status=204, headers=CORS)

    async def delete(self, request: web.Request) -> web.Response:
        encoder = self._encoder(request)
        if encoder is None:
            return problem(404, ErrorCode.LINK_NOT_FOUND)
        await self.end(encoder)
        return web.Response(status=200, headers=CORS)

    async def end(self, encoder: Encoder) -> None:
        """The encoder stops: its stream's DELETE, its feed out of Janus, it logs out."""
        self.encoders.pop(encoder.resource_id, None)
        session = encoder.session
        if not session.closed:
            self.rooms.remove_stream(session, encoder.stream_id, StreamDeleteReason.STOPPED)
            self.rooms.logout(session)
        if self.rooms.relay_links is not None:
            await self.rooms.relay_links.relay.unpublish(session.app_id, encoder.stream_id)
