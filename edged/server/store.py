"""Room state behind one small interface.

:class:`RoomStore` is everything the server keeps about rooms, members and streams.
:class:`MemoryRoomStore` keeps it in this process; a multi-node deployment can put
the same interface in front of a shared store without touching the rest of the
server. Sessions and their connections are node-local and live elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..protocol import StreamInfo


@dataclass(slots=True)
class RoomRecord:
    """One room: its members (user id -> session id) and streams, in join order."""

    app_id: str
    room_id: str
    max_members: int
    members: dict[str, str] = field(default_factory=dict)
    streams: dict[str, StreamInfo] = field(default_factory=dict)
    viewers: dict[str, int] = field(default_factory=dict)  # stream id -> viewer count
    max_viewers: dict[str, int] = field(default_factory=dict)  # stream id -> cap, 0 none
    next_message_id: int = 1


class RoomStore(Protocol):
    """Rooms, members and streams of every app."""

    def room(self, app_id: str, room_id: str) -> RoomRecord | None: ...

    def join(
        self, app_id: str, room_id: str, user_id: str, session_id: str, max_members: int
    ) -> bool:
        """Add a member, creating the room; False when the room is full."""
        ...

    def leave(self, app_id: str, room_id: str, user_id: str) -> None:
        """Remove a member; an empty room is dropped."""
        ...

    def user_session(self, app_id: str, user_id: str) -> str | None:
        """The session id of the user anywhere in the app."""
        ...

    def add_stream(self, app_id: str, room_id: str, stream: StreamInfo, max_viewers: int) -> bool:
        """Add a stream; False when the stream id is already published in the app."""
        ...

    def remove_stream(self, app_id: str, stream_id: str) -> StreamInfo | None: ...

    def stream_room(self, app_id: str, stream_id: str) -> str | None:
        """The room a stream id is published in."""
        ...

    def count(self) -> tuple[int, int, int]:
        """(rooms, members, streams) across every app."""
        ...


class MemoryRoomStore:
    """A :class:`RoomStore` in this process's memory."""

    def __init__(self) -> None:
        self._rooms: dict[tuple[str, str], RoomRecord] = {}
        self._users: dict[tuple[str, str], str] = {}
        self._streams: dict[tuple[str, str], str] = {}

    def room(self, app_id: str, room_id: str) -> RoomRecord | None:
        return self._rooms.get((app_id, room_id))

    def join(
        self, app_id: str, room_id: str, user_id: str, session_id: str, max_members: int
    ) -> bool:
        key = (app_id, room_id)
        room = self._rooms.get(key)
        if room is None:
            room = self._rooms[key] = RoomRecord(app_id, room_id, max_members)
        if user_id not in room.members and len(room.members) >= room.max_members:
            if not room.members:
                del self._rooms[key]
            return False
        room.members[user_id] = session_id
        self._users[(app_id, user_id)] = session_id
        return True

    def leave(self, app_id: str, room_id: str, user_id: str) -> None:
        key = (app_id, room_id)
        room = self._rooms.get(key)
        if room is not None:
            room.members.pop(user_id, None)
            if not room.members:
                for stream_id in room.streams:
                    self._streams.pop((app_id, stream_id), None)
                del self._rooms[key]
        self._users.pop((app_id, user_id), None)

    def user_session(self, app_id: str, user_id: str) -> str | None:
        return self._users.get((app_id, user_id))

    def add_stream(self, app_id: str, room_id: str, stream: StreamInfo, max_viewers: int) -> bool:
        key = (app_id, stream.stream_id)
        room = self._rooms.get((app_id, room_id))
        if key in self._streams or room is None:
            return False
        self._streams[key] = room_id
        room.streams[stream.stream_id] = stream
        room.viewers[stream.stream_id] = 0
        room.max_viewers[stream.stream_id] = max_viewers
        return True

    def remove_stream(self, app_id: str, stream_id: str) -> StreamInfo | None:
        room_id = self._streams.pop((app_id, stream_id), None)
        room = self._rooms.get((app_id, room_id)) if room_id is not None else None
        if room is None:
            return None
        room.viewers.pop(stream_id, None)
        room.max_viewers.pop(stream_id, None)
        return room.streams.pop(stream_id, None)

    def stream_room(self, app_id: str, stream_id: str) -> str | None:
        return self._streams.get((app_id, stream_id))

    def count(self) -> tuple[int, int, int]:
        members = sum(len(r.members) for r in self._rooms.values())
        return len(self._rooms), members, len(self._streams)
