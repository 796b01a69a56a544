"""What the WHEP and WHIP endpoints share: CORS, the bearer token, RFC 9457 problem
bodies carrying the error table's codes, and trickle-ice-sdpfrag candidates."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from ..errors import EdgedError, ErrorCode, describe
from ..protocol import IceCandidate, Login, LoginResult
from ..tokens import peek
from .rooms import RoomService
from .session import Session

Handler = Callable[[web.Request], Awaitable[web.Response]]

RETRY_AFTER_S = 2
MAX_OFFER_BYTES = 64 * 1024
AUTH_HINT = "send an edged token as Authorization: Bearer TOKEN, or as ?token=TOKEN"
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Retry-After",
}
UNAUTHORIZED = {
    ErrorCode.AUTHENTICATION_FAILED,
    ErrorCode.TOKEN_MISSING,
    ErrorCode.TOKEN_EXPIRED,
    ErrorCode.TOKEN_USER_MISMATCH,
    ErrorCode.TOKEN_APP_MISMATCH,
    ErrorCode.TOKEN_ROOM_MISMATCH,
}
"""Refusals of the token itself (401); any other refusal of the login is 403."""


def problem(status: int, code: int, detail: str = "", **headers: str) -> web.Response:
    """An ``application/problem+json`` response with the error table's code."""
    info = describe(code)
    body = {
        "type": f"https://edged.invalid/errors/{int(code)}",
        "title": info.meaning,
        "status": status,
        "code": int(code),
        "name": info.code.name,
        "detail": detail or info.remedy,
    }
    return web.json_response(
        body, status=status, content_type="application/problem+json", headers={**CORS, **headers}
    )


def bearer_token(request: web.Request) -> str | None:
    """The request's edged token: ``Authorization: Bearer``, else ``?token=`` (for
    players that send no header; the server keeps no access log, so it is never logged)."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.query.get("token") or None


def candidates(fragment: str) -> list[IceCandidate]:
    """The candidates of a trickle-ice-sdpfrag body, with the mid each belongs to."""
    found: list[IceCandidate] = []
    mid: str | None = None
    for line in fragment.splitlines():
        line = line.strip()
        if line.startswith("a=mid:"):
            mid = line[6:]
        elif line.startswith("a=candidate:"):
            found.append(IceCandidate(candidate=line[2:], sdpMid=mid))
    return found


async def preflight(request: web.Request) -> web.Response:
    """``OPTIONS``: CORS, and what ``POST`` takes."""
    return web.Response(status=204, headers={**CORS, "Accept-Post": "application/sdp"})


class Resources(Protocol):
    """A WHIP or WHEP endpoint: a ``POST`` that makes a resource, and its ``PATCH``/``DELETE``."""

    async def post(self, request: web.Request) -> web.Response: ...
    async def patch(self, request: web.Request) -> web.Response: ...
    async def delete(self, request: web.Request) -> web.Response: ...


def resource_id(node_id: str | None) -> str:
    """A new WHEP or WHIP resource's id; with several nodes, it starts with the node's id
    (so that its ``PATCH`` and ``DELETE`` reach it through any node)."""
    token = secrets.token_hex(8)
    return f"{node_id}.{token}" if node_id else token


def add_resource_routes(app: web.Application, path: str, endpoint: Resources) -> None:
    """``POST path``, ``PATCH``/``DELETE path/{resource}``, and ``OPTIONS`` on both."""
    app.router.add_post(path, endpoint.post)
    app.router.add_route("OPTIONS", path, preflight)
    app.router.add_patch(f"{path}/{{resource}}", endpoint.patch)
    app.router.add_delete(f"{path}/{{resource}}", endpoint.delete)
    app.router.add_route("OPTIONS", f"{path}/{{resource}}", preflight)


def refuse_offer(request: web.Request) -> web.Response | None:
    """The refusal of a ``POST`` that is no SDP offer (415, 413) or has no token (401)."""
    if request.content_type != "application/sdp":
        return problem(415, ErrorCode.INVALID_PARAMETER, "the offer must be application/sdp")
    if (request.content_length or 0) > MAX_OFFER_BYTES:
        return problem(413, ErrorCode.MESSAGE_TOO_LARGE)
    if bearer_token(request) is None:
        return problem(401, ErrorCode.TOKEN_MISSING, AUTH_HINT)
    return None


async def login_without_socket(
    rooms: RoomService,
    request: web.Request,
    app_id: str,
    room_id: str,
    on_push: Callable[[str], None],
) -> tuple[Session, LoginResult] | web.Response:
    """Log the request's token's user into a room as a member with no socket (its
    messages to ``on_push``), told who is there; or the refusal (401 for the token
    itself, 403 for the login, 503 when several nodes' shared state cannot be reached).
    With several nodes the user's session elsewhere is ended, as a socket's login does."""
    token = bearer_token(request) or ""
    session_id = secrets.token_hex(8)
    try:
        login = Login(app_id=app_id, room_id=room_id, user_id=peek(token, "sub") or "", token=token)
        settle, verified = None, None
        if rooms.shared is not None:
            verified = (rooms.check_login(None, login)[1],)
            settle = await rooms.shared.claim_user(app_id, login.user_id, session_id)
        try:
            session, result = rooms.login(
                None, login, on_push, session_id=session_id, verified=verified
            )
        except EdgedError:
            if settle is not None:
                settle(False)
            raise
        if settle is not None:
            settle(True)
    except EdgedError as exc:
        status = 503 if exc.code == ErrorCode.ROOM_STATE_UNAVAILABLE else 403
        return problem(401 if exc.code in UNAUTHORIZED else status, exc.code)
    except ValueError:
        return problem(401, ErrorCode.AUTHENTICATION_FAILED, "the token names no valid user")
    rooms.after_login(session)
    return session, result


def resource_owner(session: Session | None, request: web.Request) -> Session | None:
    """``session`` if it is live and the request's token is its user's (anyone could
    otherwise end another's resource)."""
    token = bearer_token(request)
    if session is None or session.closed or token is None:
        return None
    claims = session.claims
    return session if claims is None or peek(token, "sub") == claims.user_id else None
