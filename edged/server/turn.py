"""The ICE servers a client is handed with its login: the configured ones, and TURN
credentials minted for it that expire.

TURN servers such as coturn (``use-auth-secret`` with ``static-auth-secret``) accept
time-limited credentials that anyone holding the shared secret can mint (the "TURN REST
API" scheme): the username is ``<expiry unix time>:<user id>`` and the password is
base64(HMAC-SHA1(secret, username)). The room server holds the secret; each client gets
its own credentials in its login reply (and new ones with each token renewal), so nothing
long-lived ever reaches a client. A credential expires with the session's token, but
never sooner than ``min_ttl_s`` (a call must outlive a short token: peer connections keep
the credentials they were made with, and TURN checks them at each allocation refresh).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass, field

from ..protocol import IceServer


@dataclass(slots=True)
class TurnSettings:
    """TURN servers sharing one secret with this room server."""

    urls: list[str]
    secret: str = field(repr=False)
    min_ttl_s: float = 3600.0
    max_ttl_s: float = 86400.0

    def __post_init__(self) -> None:
        bad = [u for u in self.urls if not u.startswith(("turn:", "turns:"))]
        if not self.urls or bad:
            raise ValueError(f"TURN URLs start with turn: or turns: {bad or self.urls}")
        if not self.secret:
            raise ValueError("a TURN shared secret is required")
        if not 60 <= self.min_ttl_s <= self.max_ttl_s:
            raise ValueError("TURN credential lifetimes: 60 <= min_ttl_s <= max_ttl_s")


def turn_credentials(secret: str, user_id: str, expires_at: float) -> tuple[str, str]:
    """(username, password) for ``user_id``, valid until ``expires_at`` (unix time)."""
    username = f"{int(expires_at)}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def credential_expiry(username: str) -> float | None:
    """When credentials of the REST scheme expire (unix time), read from their username."""
    stamp = username.partition(":")[0]
    return float(stamp) if stamp.isdigit() else None


class IceServerIssuer:
    """Owns the ICE servers every login reply carries: the configured ones, validated
    once, and per-client TURN credentials."""

    def __init__(self, configured: list[dict[str, object]], turn: TurnSettings | None) -> None:
        self._configured = [IceServer.model_validate(x) for x in configured]
        self._turn = turn

    def for_client(
        self, user_id: str, token_expires_at: float | None, now: float | None = None
    ) -> list[IceServer]:
        """The ICE servers of one client whose token expires at ``token_expires_at``."""
        turn = self._turn
        if turn is None:
            return list(self._configured)
        now = time.time() if now is None else now
        lifetime = (token_expires_at or now) - now
        expires = now + min(max(lifetime, turn.min_ttl_s), turn.max_ttl_s)
        username, password = turn_credentials(turn.secret, user_id, expires)
        minted = IceServer(urls=list(turn.urls), username=username, credential=password)
        return [*self._configured, minted]
