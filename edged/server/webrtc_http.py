"""What the WHEP and WHIP endpoints share: CORS, the bearer token, RFC 9457 problem
bodies carrying the error table's codes, and trickle-ice-sdpfrag candidates."""

from __future__ import annotations

from aiohttp import web

from ..errors import ErrorCode, describe
from ..protocol import IceCandidate

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
