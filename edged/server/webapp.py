"""The web client's side of the room server: the page, its files and its small JSON API.

Routes added to the room server's aiohttp application by :func:`add_web_routes`:

* ``GET /`` — the page (``web/index.html``);
* ``GET /web/{name}`` — its static files (scripts, style, icon), no build step;
* ``GET /api/config`` — what the page needs before logging in: app ids, the ICE
  servers the operator configured, whether development mode is on;
* ``GET /api/errors`` — the error-code table of :mod:`edged.errors`, so that the page
  explains every code the way the docs do;
* ``POST /api/dev-token`` — development mode only: a short-lived token for one user in
  one room, so that a person can try a local test room without minting tokens.

:func:`join_url` builds the shareable link that opens the page already filled in.
The server only relays signaling: nothing here touches media.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from .. import __version__
from ..errors import ERRORS, ErrorCode
from ..logs import log_event
from ..tokens import mint
from .settings import ServerSettings

log = logging.getLogger("edged.server")

WEB_DIR = Path(__file__).resolve().parent / "web"
DEV_TOKEN_TTL_S = 600.0
"""Lifetime of a development-mode token; the page renews it before it expires."""

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_STATIC_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(js|css|svg|png)$")
_ID = re.compile(r"^[A-Za-z0-9_.\-]+$")
_ID_LIMITS = {"app_id": 64, "room_id": 128, "user_id": 64}

# The page loads nothing from elsewhere; media elements show local and remote streams.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self' ws: wss:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # Join links carry a token in their query: never send it on as a referrer.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_SETTINGS_KEY = web.AppKey("edged_web_settings", ServerSettings)


def join_url(
    base_url: str, app_id: str, room_id: str, token: str, user_id: str | None = None
) -> str:
    """The link that opens the page filled in for ``room_id`` (and ``user_id``, if given).

    ``base_url`` is where the page is served, e.g. ``https://door.local:8790``. The query
    uses the page's field names: ``app``, ``room``, ``user``, ``token``.
    """
    query = {"app": app_id, "room": room_id}
    if user_id:
        query["user"] = user_id
    if token:
        query["token"] = token
    return f"{base_url.rstrip('/')}/?{urlencode(query)}"


def page_url(host: str, port: int, https: bool) -> str:
    """Where the page is served, as a person on the network opens it.

    A wildcard ``host`` (``0.0.0.0``, ``::``) becomes ``HOSTNAME.local``, the name
    Raspberry Pi OS (avahi) announces on the LAN and the self-signed certificate covers.
    """
    if host in ("0.0.0.0", "::", "", "*"):
        name = socket.gethostname()
        host = name if "." in name else f"{name}.local"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if https else 'http'}://{host}:{port}"


def guest_join_url(base_url: str, app_id: str, secret: str, room_id: str, ttl_s: float) -> str:
    """A join link for user ``guest`` with a fresh token (valid ``ttl_s``, any room)."""
    token = mint(secret, app_id, "guest", ttl_s)
    return join_url(base_url, app_id, room_id, token, user_id="guest")


def add_web_routes(app: web.Application, settings: ServerSettings) -> None:
    """Serve the web client and its API from ``app`` (the room server's application)."""
    app[_SETTINGS_KEY] = settings
    app.router.add_get("/", _index)
    app.router.add_get("/web/{name}", _static)
    app.router.add_get("/api/config", _config)
    app.router.add_get("/api/errors", _errors)
    app.router.add_post("/api/dev-token", _dev_token)
    if settings.dev_mode:
        log.warning(
            "DEVELOPMENT MODE: the web page hands out tokens (POST /api/dev-token) "
            "to anyone who can reach this server; never use it on a shared network"
        )


def _file_response(path: Path) -> web.FileResponse:
    headers = dict(SECURITY_HEADERS)
    headers["Content-Type"] = _CONTENT_TYPES[path.suffix]
    return web.FileResponse(path, headers=headers)


async def _index(request: web.Request) -> web.StreamResponse:
    return _file_response(WEB_DIR / "index.html")


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = WEB_DIR / name
    if not _STATIC_NAME.match(name) or not path.is_file():
        raise web.HTTPNotFound()
    return _file_response(path)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=SECURITY_HEADERS)


async def _config(request: web.Request) -> web.Response:
    settings = request.app[_SETTINGS_KEY]
    return _json(
        {
            "version": __version__,
            "apps": sorted(settings.apps),
            "ice_servers": settings.ice_servers,
            "dev_mode": settings.dev_mode,
            "ws_path": "/ws",
        }
    )


def error_table() -> list[dict[str, Any]]:
    """Every error code as the page shows it: number, name, area, meaning, what to do."""
    return [
        {
            "code": int(info.code),
            "name": info.code.name,
            "area": info.area,
            "meaning": info.meaning,
            "remedy": info.remedy,
        }
        for info in ERRORS.values()
    ]


async def _errors(request: web.Request) -> web.Response:
    return _json({"errors": error_table()})


def _refusal(code: ErrorCode, message: str, status: int) -> web.Response:
    return _json({"error": {"code": int(code), "message": message}}, status=status)


async def _dev_token(request: web.Request) -> web.Response:
    settings = request.app[_SETTINGS_KEY]
    if not settings.dev_mode:
        raise web.HTTPNotFound()
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return _refusal(ErrorCode.INVALID_PARAMETER, "expected a JSON object", 400)
    fields: dict[str, str] = {}
    for key, limit in _ID_LIMITS.items():
        value = body.get(key)
        if not isinstance(value, str) or not 0 < len(value) <= limit or not _ID.match(value):
            rule = f"{key}: 1 to {limit} characters of A-Z a-z 0-9 _ . -"
            return _refusal(ErrorCode.INVALID_PARAMETER, rule, 400)
        fields[key] = value
    secret = settings.apps.get(fields["app_id"])
    if secret is None:
        return _refusal(ErrorCode.APP_UNKNOWN, "no such app on this server", 404)
    token = mint(
        secret, fields["app_id"], fields["user_id"], DEV_TOKEN_TTL_S, room_id=fields["room_id"]
    )
    log_event(
        log,
        logging.WARNING,
        "dev_token_issued",
        app=fields["app_id"],
        room=fields["room_id"],
        user=fields["user_id"],
        addr=request.remote or "unknown",
    )
    return _json(
        {"token": token, "expires_at": time.time() + DEV_TOKEN_TTL_S, **fields},
    )
