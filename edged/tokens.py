"""Minting and verifying room tokens (JWT, HS256, one secret per app).

Claims: ``app`` (app id), ``sub`` (user id), ``iat``, ``exp``, and optionally
``room`` (the only room the token may enter), ``priv`` (``{"login": bool,
"publish": bool}``, both true when absent) and ``streams`` (the only stream ids the
user may publish). Every refusal has its own error code.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

import jwt

from .errors import EdgedError, ErrorCode

ALGORITHM = "HS256"
ISSUER = "edged"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token allows."""

    app_id: str
    user_id: str
    expires_at: float
    room_id: str | None = None
    can_login: bool = True
    can_publish: bool = True
    stream_ids: frozenset[str] | None = None

    def may_publish(self, stream_id: str) -> ErrorCode | None:
        """None when publishing ``stream_id`` is allowed, else the refusal's code."""
        if not self.can_publish:
            return ErrorCode.NO_PUBLISH_PRIVILEGE
        if self.stream_ids is not None and stream_id not in self.stream_ids:
            return ErrorCode.STREAM_ID_NOT_ALLOWED
        return None


def generate_secret() -> str:
    """A new random app secret (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def mint(
    secret: str,
    app_id: str,
    user_id: str,
    ttl_s: float,
    *,
    room_id: str | None = None,
    can_login: bool = True,
    can_publish: bool = True,
    stream_ids: Iterable[str] | None = None,
    now: float | None = None,
) -> str:
    """Sign a token for ``user_id`` of ``app_id`` valid for ``ttl_s`` seconds."""
    if ttl_s <= 0:
        raise EdgedError(ErrorCode.INVALID_PARAMETER, "ttl must be positive")
    issued = time.time() if now is None else now
    claims: dict[str, object] = {
        "iss": ISSUER,
        "app": app_id,
        "sub": user_id,
        "iat": int(issued),
        "exp": int(issued + ttl_s),
    }
    if room_id is not None:
        claims["room"] = room_id
    if not (can_login and can_publish):
        claims["priv"] = {"login": can_login, "publish": can_publish}
    if stream_ids is not None:
        claims["streams"] = sorted(stream_ids)
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def peek_app(token: str) -> str | None:
    """The ``app`` claim of a token without verifying it (to pick the secret)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    app = claims.get("app")
    return app if isinstance(app, str) else None


def verify(
    token: str,
    secret: str,
    *,
    app_id: str,
    user_id: str,
    room_id: str | None = None,
    now: float | None = None,
) -> TokenClaims:
    """Check a token for logging ``user_id`` into ``room_id`` of ``app_id``.

    Raises :class:`EdgedError` with AUTHENTICATION_FAILED (malformed or bad
    signature), TOKEN_APP_MISMATCH, TOKEN_EXPIRED, TOKEN_USER_MISMATCH,
    TOKEN_ROOM_MISMATCH or TOKEN_NO_LOGIN_PRIVILEGE.
    """
    claimed_app = peek_app(token)
    if claimed_app is None:
        raise EdgedError(ErrorCode.AUTHENTICATION_FAILED, "token is malformed")
    if claimed_app != app_id:
        raise EdgedError(ErrorCode.TOKEN_APP_MISMATCH)
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "sub", "app", "iss"], "verify_exp": False},
        )
    except jwt.PyJWTError:
        raise EdgedError(ErrorCode.AUTHENTICATION_FAILED) from None
    checked_at = time.time() if now is None else now
    expires_at = claims["exp"]
    if not isinstance(expires_at, int | float) or expires_at <= checked_at:
        raise EdgedError(ErrorCode.TOKEN_EXPIRED)
    if claims["sub"] != user_id:
        raise EdgedError(ErrorCode.TOKEN_USER_MISMATCH)
    token_room = claims.get("room")
    if token_room is not None and token_room != room_id:
        raise EdgedError(ErrorCode.TOKEN_ROOM_MISMATCH)
    priv = claims.get("priv") or {}
    if not isinstance(priv, dict):
        raise EdgedError(ErrorCode.AUTHENTICATION_FAILED, "token privileges are malformed")
    streams = claims.get("streams")
    result = TokenClaims(
        app_id=app_id,
        user_id=user_id,
        expires_at=float(expires_at),
        room_id=token_room if isinstance(token_room, str) else None,
        can_login=bool(priv.get("login", True)),
        can_publish=bool(priv.get("publish", True)),
        stream_ids=frozenset(str(s) for s in streams) if isinstance(streams, list) else None,
    )
    if not result.can_login:
        raise EdgedError(ErrorCode.TOKEN_NO_LOGIN_PRIVILEGE)
    return result
