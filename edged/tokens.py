"""Minting and verifying room tokens (JWT, HS256, one secret per app).

Claims: ``app`` (app id), ``sub`` (user id), ``iat``, ``exp``, and optionally
``room`` (the only room the token may enter), ``priv`` (``{"login": bool,
"publish": bool}``, both true when absent) and ``streams`` (the only stream ids the
user may publish). Every refusal has its own error code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm

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
    relays: frozenset[str] | None = None
    """The relay policies a publish may ask for (None: any); the server's own always goes."""

    def may_publish(self, stream_id: str, relay: str | None = None) -> ErrorCode | None:
        """None when publishing ``stream_id`` (asking for ``relay``) is allowed, else the
        refusal's code."""
        if not self.can_publish:
            return ErrorCode.NO_PUBLISH_PRIVILEGE
        if self.stream_ids is not None and stream_id not in self.stream_ids:
            return ErrorCode.STREAM_ID_NOT_ALLOWED
        if relay is not None and self.relays is not None and relay not in self.relays:
            return ErrorCode.RELAY_NOT_ALLOWED
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
    relays: Iterable[str] | None = None,
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
    if relays is not None:
        claims["relay"] = sorted(relays)
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def room_token(
    secret: str | None, app_id: str, user_id: str, room_id: str, ttl_s: float
) -> str | None:
    """A token for ``user_id`` in ``room_id`` signed with the app's ``secret``, or None
    when there is no secret to sign with (the caller then has a given token, or none).

    What a device holding its app's secret uses for itself: the engine logging in, the
    daemon renewing its token and printing a guest's join link.
    """
    if not secret:
        return None
    return mint(secret, app_id, user_id, ttl_s, room_id=room_id)


def peek_app(token: str) -> str | None:
    """The ``app`` claim of a token without verifying it (to pick the secret)."""
    return peek(token, "app")


def peek(token: str, claim: str) -> str | None:
    """A text claim of a token without verifying it (``sub``: whom to verify it for)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    value = claims.get(claim)
    return value if isinstance(value, str) else None


# The two headers PyJWT writes for HS256 (``mint`` makes the first), as JSON objects.
_PLAIN_HEADERS = ({"alg": ALGORITHM, "typ": "JWT"}, {"alg": ALGORITHM})
# The claims ``mint`` writes; a token with any other claim takes PyJWT's full path.
_PLAIN_CLAIMS = frozenset({"iss", "app", "sub", "iat", "exp", "room", "priv", "streams", "relay"})
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")


def _b64(segment: str) -> bytes:
    """Decode a base64url segment; ValueError unless it is the canonical encoding."""
    data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode() != segment:
        raise ValueError("non-canonical base64url")
    return data


@dataclass(frozen=True, slots=True)
class _Key:
    """An app secret as HMAC key bytes, or None when PyJWT refuses it as an HMAC key."""

    key: bytes | None


_keys: dict[str, _Key] = {}


def _hmac_key(secret: str) -> bytes | None:
    found = _keys.get(secret)
    if found is None:
        try:
            key: bytes | None = HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
        except jwt.PyJWTError:
            key = None
        if len(_keys) >= 64:  # a handful of apps; never grows without bound
            _keys.clear()
        found = _keys[secret] = _Key(key)
    return found.key


def _plain_claims(token: str, secret: str, now: float) -> dict[str, Any] | None:
    """The claims of a plainly well-formed HS256 token with a good signature, else None.

    Accepts only tokens shaped like ``mint``'s (the usual header, no claims beyond
    ``mint``'s, well-typed, ``iat`` not in the future): for those PyJWT's decode
    returns exactly these claims, at a fraction of its cost. Anything else, valid
    or not, returns None and is left to PyJWT, which then decides (and names the
    refusal) exactly as before.
    """
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT.fullmatch(p) and len(p) % 4 != 1 for p in parts):
        return None
    key = _hmac_key(secret)
    if key is None:
        return None
    try:
        signature = _b64(parts[2])
        header = json.loads(_b64(parts[0]))
        claims = json.loads(_b64(parts[1]))
    except (ValueError, binascii.Error):
        return None
    expected = hmac.new(key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        return None
    if header not in _PLAIN_HEADERS or not isinstance(claims, dict):
        return None
    if not claims.keys() <= _PLAIN_CLAIMS or claims.get("iss") != ISSUER:
        return None
    if not (isinstance(claims.get("sub"), str) and isinstance(claims.get("app"), str)):
        return None
    exp, iat = claims.get("exp"), claims.get("iat", 0)
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    if isinstance(iat, bool) or not isinstance(iat, int) or iat > now:
        return None
    return claims


def _decode(token: str, secret: str, app_id: str, now: float) -> dict[str, Any]:
    """Verified claims of ``token``, or the refusal (in the order the checks are named)."""
    claims = _plain_claims(token, secret, now)
    if claims is not None:
        if claims["app"] != app_id:
            raise EdgedError(ErrorCode.TOKEN_APP_MISMATCH)
        return claims
    claimed_app = peek_app(token)
    if claimed_app is None:
        raise EdgedError(ErrorCode.AUTHENTICATION_FAILED, "token is malformed")
    if claimed_app != app_id:
        raise EdgedError(ErrorCode.TOKEN_APP_MISMATCH)
    try:
        decoded: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "sub", "app", "iss"], "verify_exp": False},
        )
    except jwt.PyJWTError:
        raise EdgedError(ErrorCode.AUTHENTICATION_FAILED) from None
    return decoded


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
    checked_at = time.time() if now is None else now
    claims = _decode(token, secret, app_id, checked_at)
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
    streams, relays = claims.get("streams"), claims.get("relay")
    result = TokenClaims(
        app_id=app_id,
        user_id=user_id,
        expires_at=float(expires_at),
        room_id=token_room if isinstance(token_room, str) else None,
        can_login=bool(priv.get("login", True)),
        can_publish=bool(priv.get("publish", True)),
        stream_ids=frozenset(str(s) for s in streams) if isinstance(streams, list) else None,
        relays=frozenset(str(r) for r in relays) if isinstance(relays, list) else None,
    )
    if not result.can_login:
        raise EdgedError(ErrorCode.TOKEN_NO_LOGIN_PRIVILEGE)
    return result
