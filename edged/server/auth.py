"""The tokens of sessions: checked at login and at renewal, and each one's clock.

A login's token must be signed with its app's secret and name its app, user and room
(in development mode a login may come without one). One timer per session
(``Session.timer``): armed at login and at every renewal for ``warning_s`` before the
token's expiry; when it fires it tells the room service to warn the client and re-arms
itself for the expiry, which the room service turns into a kick.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..errors import EdgedError, ErrorCode
from ..protocol import Login
from ..tokens import TokenClaims, verify
from .session import Session
from .settings import ServerSettings


def login_claims(settings: ServerSettings, msg: Login) -> TokenClaims | None:
    """The claims of a login's token; None for a token-less login in development mode."""
    secret = settings.apps.get(msg.app_id)
    if secret is None:
        raise EdgedError(ErrorCode.APP_UNKNOWN)
    if msg.token is None:
        if settings.dev_mode:
            return None
        raise EdgedError(ErrorCode.TOKEN_MISSING)
    return verify(msg.token, secret, app_id=msg.app_id, user_id=msg.user_id, room_id=msg.room_id)


def renewed_claims(settings: ServerSettings, session: Session, token: str) -> TokenClaims:
    """The claims of a renewal's token, which must name the session's own app, user and room."""
    return verify(
        token,
        settings.apps[session.app_id],
        app_id=session.app_id,
        user_id=session.user.user_id,
        room_id=session.room_id,
    )


class TokenTimers:
    """Arms the warning and the expiry of every session's token."""

    def __init__(
        self,
        warning_s: float,
        warn: Callable[[Session, float], None],
        expire: Callable[[Session], None],
    ) -> None:
        self.warning_s = warning_s
        self._warn = warn
        self._expire = expire

    def arm(self, session: Session) -> None:
        """(Re)arm the session's one timer: the warning first; the warning arms the expiry."""
        session.cancel_timers()
        if session.claims is None:
            return
        remaining = session.claims.expires_at - time.time()
        session.timer = asyncio.get_running_loop().call_later(
            max(0.0, remaining - self.warning_s), self._on_warning, session
        )

    def _on_warning(self, session: Session) -> None:
        session.timer = None
        if session.claims is None or session.closed:
            return
        remaining = max(0.0, session.claims.expires_at - time.time())
        session.timer = asyncio.get_running_loop().call_later(remaining, self._on_expiry, session)
        self._warn(session, remaining)

    def _on_expiry(self, session: Session) -> None:
        session.timer = None
        self._expire(session)
