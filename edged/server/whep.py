"""WHEP egress: any published stream played over plain HTTP by any WHEP player.

A player ``POST``s its SDP offer to ``/whep/{app}/{stream}`` with an edged token (an
``Authorization: Bearer`` header, or ``?token=`` for players that send no header, such
as go2rtc); the room server logs it into the stream's room as a member with no socket
(:attr:`Session.on_push`), opens a link whose offer is the player's own
(``link_open`` with ``description``), and answers ``201 Created`` with the publisher's
answer, the resource's ``Location`` and ``ETag``, and its ICE servers (TURN
credentials included) as ``Link`` headers. ``PATCH`` trickles candidates
(``application/trickle-ice-sdpfrag``) to the publisher, ``DELETE`` logs the player out.
A stream not (yet) published is ``409`` with ``Retry-After``; refusals carry the error
table's code in an RFC 9457 problem body.

No WHEP library fits: the server side of the draft is a handful of HTTP routes around
the room server's own sessions and links, which a library would not know.

WHEP links are peer to peer, also where the stream is relayed through the room's SFU:
Janus's VideoRoom makes the offers to its subscribers, and a WHEP player makes its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from ..errors import EdgedError, ErrorCode
from ..logs import log_event
from ..protocol import (
    IceServer,
    LinkClosed,
    SessionDescription,
    SignalRelay,
    encode,
)
from .rooms import RoomService
from .session import Session
from .webrtc_http import (
    CORS,
    RETRY_AFTER_S,
    add_resource_routes,
    candidates,
    login_without_socket,
    problem,
    refuse_offer,
    resource_id,
    resource_owner,
)

log = logging.getLogger("edged.server.whep")

ANSWER_TIMEOUT_S = 10.0


@dataclass(eq=False)
class Viewer:
    """One WHEP resource: its session, link, and the publisher's answer once it came."""

    resource_id: str
    etag: str
    ended: Callable[[Viewer], None]
    """Called (soon, not from within the room server's send) once its link closed."""
    session: Session | None = None
    link_id: str = ""
    answer: asyncio.Future[SessionDescription] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def on_push(self, body: str) -> None:
        """A message the room server sends this member: only its link's matter."""
        message = json.loads(body)  # parsed once; most are room news, ignored
        kind = message.get("type")
        if kind == "signal":
            relay = SignalRelay.model_validate(message)
            if relay.link_id == self.link_id and relay.description and not self.answer.done():
                self.answer.set_result(relay.description)
        elif kind == "link_closed":
            closed = LinkClosed.model_validate(message)
            if closed.link_id != self.link_id:
                return
            if not self.answer.done():
                self.answer.set_exception(EdgedError(ErrorCode.STREAM_NOT_FOUND, closed.reason))
            else:  # the stream ended or its publisher left: so does this resource
                asyncio.get_running_loop().call_soon(self.ended, self)


def ice_links(servers: list[IceServer]) -> list[str]:
    """ICE servers as the WHEP draft's ``Link`` header values."""
    links = []
    for server in servers:
        for url in server.urls:
            link = f'<{url}>; rel="ice-server"'
            if server.username:
                link += f'; username="{server.username}"; credential="{server.credential}"'
                link += '; credential-type="password"'
            links.append(link)
    return links


class WhepEndpoint:
    """Owns the WHEP resources of this room server."""

    def __init__(self, rooms: RoomService) -> None:
        self.rooms = rooms
        self.viewers: dict[str, Viewer] = {}

    def add_routes(self, app: web.Application) -> None:
        add_resource_routes(app, "/whep/{app}/{stream}", self)

    async def post(self, request: web.Request) -> web.Response:
        app_id, stream_id = request.match_info["app"], request.match_info["stream"]
        refused = refuse_offer(request)
        if refused is not None:
            return refused
        room_id = self.rooms.store.stream_room(app_id, stream_id)
        if room_id is None:
            return problem(
                409,
                ErrorCode.STREAM_NOT_FOUND,
                f"{stream_id} is not published; try again",
                **{"Retry-After": str(RETRY_AFTER_S)},
            )
        offer = SessionDescription(type="offer", sdp=await request.text())
        viewer = Viewer(resource_id(self.rooms.node_id), f'"{secrets.token_hex(8)}"', self._end)
        logged_in = await login_without_socket(self.rooms, request, app_id, room_id, viewer.on_push)
        if isinstance(logged_in, web.Response):
            return logged_in
        session, result = logged_in
        viewer.session = session
        self.viewers[viewer.resource_id] = viewer
        try:
            link = self.rooms.play(session, stream_id, relay=False)
            viewer.link_id = link.link_id
            self.rooms.open_link(link, offer)
            answer = await asyncio.wait_for(asyncio.shield(viewer.answer), ANSWER_TIMEOUT_S)
        except (EdgedError, TimeoutError) as exc:
            self._end(viewer)
            code = exc.code if isinstance(exc, EdgedError) else ErrorCode.REQUEST_TIMEOUT
            status = 409 if code == ErrorCode.STREAM_NOT_FOUND else 503
            return problem(status, code, **{"Retry-After": str(RETRY_AFTER_S)})
        log_event(log, logging.INFO, "whep_play", stream=stream_id, resource=viewer.resource_id)
        headers = {**CORS, "Location": f"{request.path}/{viewer.resource_id}", "ETag": viewer.etag}
        response = web.Response(
            status=201, text=answer.sdp, content_type="application/sdp", headers=headers
        )
        for value in ice_links(result.ice_servers):
            response.headers.add("Link", value)
        return response

    def _viewer(self, request: web.Request) -> tuple[Viewer, Session] | None:
        """The resource a request names, if it is live and the request's token is its
        user's (anyone could otherwise end another's playback)."""
        viewer = self.viewers.get(request.match_info["resource"])
        session = resource_owner(viewer.session if viewer else None, request)
        return (viewer, session) if viewer is not None and session is not None else None

    async def patch(self, request: web.Request) -> web.Response:
        found = self._viewer(request)
        if found is None:
            return problem(404, ErrorCode.LINK_NOT_FOUND)
        viewer, session = found
        if request.content_type != "application/trickle-ice-sdpfrag":
            return problem(415, ErrorCode.INVALID_PARAMETER, "send application/trickle-ice-sdpfrag")
        match = request.headers.get("If-Match")
        if match not in (None, "*", viewer.etag):
            return problem(412, ErrorCode.INVALID_PARAMETER, "the ICE session changed (ETag)")
        try:
            link, peer = self.rooms.links.peer(session, viewer.link_id)
        except EdgedError as exc:
            return problem(404, exc.code)
        for candidate in candidates(await request.text()):
            if peer is not None:
                body = SignalRelay(
                    link_id=link.link_id, stream_id=link.stream_id, user=session.user
                )
                self.rooms.send(peer, encode(body.model_copy(update={"candidate": candidate})))
        return web.Response(status=204, headers=CORS)

    async def delete(self, request: web.Request) -> web.Response:
        found = self._viewer(request)
        if found is None:
            return problem(404, ErrorCode.LINK_NOT_FOUND)
        self._end(found[0])
        return web.Response(status=200, headers=CORS)

    def _end(self, viewer: Viewer) -> None:
        self.viewers.pop(viewer.resource_id, None)
        if viewer.session is not None and not viewer.session.closed:
            self.rooms.logout(viewer.session)
