"""Who is in a room on this node: the live sessions of its members, in join order."""

from __future__ import annotations

from ..protocol import UserInfo
from .session import Session
from .store import RoomStore


class Roster:
    """Looks a room's members up among the node's sessions (the store knows only ids)."""

    def __init__(self, store: RoomStore, sessions: dict[str, Session]) -> None:
        self.store = store
        self.sessions = sessions

    def members(
        self, app_id: str, room_id: str, *, skip: Session | None = None, users_only: bool = False
    ) -> list[Session]:
        """The room's sessions but ``skip`` (only those that asked for user updates, if
        ``users_only``)."""
        room = self.store.room(app_id, room_id)
        if room is None:
            return []
        found = [self.sessions.get(sid) for sid in room.members.values()]
        return [
            s
            for s in found
            if s is not None and s is not skip and (s.user_update or not users_only)
        ]

    def others(self, session: Session) -> list[UserInfo]:
        """The users of the session's room but its own."""
        return [s.user for s in self.members(session.app_id, session.room_id, skip=session)]
