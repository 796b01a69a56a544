"""The ``view_token`` command: a short-lived, play-only token for the device's own
stream and the WHEP URL to play it at.

Who asks is trusted with the device already (the MQTT broker carries full control of
it), so a viewer it speaks for — Home Assistant's camera entity proxying a dashboard's
offer — gets credentials that live minutes and can do one thing: play in the device's
room. Only a device holding its app's secret can mint; a device given a token by
someone else says so (1001003) instead.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import quote, urlsplit

from ..engine.config import EngineProfile
from ..errors import EdgedError, ErrorCode
from ..tokens import mint

VIEWER_PREFIX = "viewer-"
"""The user id of each token's viewer: this prefix and 8 random hex digits."""


def whep_url(server_url: str, app_id: str, stream_id: str) -> str:
    """The WHEP endpoint of ``stream_id`` on the room server at ``server_url``, its
    signaling URL or its page (``ws://HOST:PORT/ws`` or ``http://HOST:PORT`` →
    ``http://HOST:PORT/whep/APP/STREAM``)."""
    parts = urlsplit(server_url)
    scheme = "https" if parts.scheme in ("wss", "https") else "http"
    return f"{scheme}://{parts.netloc}/whep/{quote(app_id, safe='')}/{quote(stream_id, safe='')}"


def view_token(
    profile: EngineProfile,
    room_id: str,
    stream_id: str,
    ttl_s: float,
    page_url: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The command's result: ``url``, ``token``, ``user_id`` and ``expires_at``.

    The URL is on the embedded server's page address when it serves one to the network
    (``page_url``), else on the server the device logs into."""
    if not profile.app_secret:
        raise EdgedError(
            ErrorCode.CREDENTIALS_MISSING, "this device has no app secret to mint a viewer token"
        )
    issued = time.time() if now is None else now
    user_id = VIEWER_PREFIX + secrets.token_hex(4)
    token = mint(
        profile.app_secret,
        profile.app_id,
        user_id,
        ttl_s,
        room_id=room_id,
        can_publish=False,
        now=issued,
    )
    return {
        "url": whep_url(page_url or profile.server_url, profile.app_id, stream_id),
        "token": token,
        "user_id": user_id,
        "expires_at": issued + ttl_s,
    }
