"""Streams relayed through Janus: the VideoRoom side of the room server.

For every (app, room) with a relayed stream the room server keeps one VideoRoom on the
Janus that owns the room: the first that answers in the room's own order of the
configured list (a rotation chosen by a hash of the room's name, so rooms spread over the
servers and a room whose Janus is down moves to the next one). Each relayed stream is
one publisher *feed* in it (its id is the stream id, unique per app), fed by one link
from the publishing client; each viewer of it is one subscriber handle, whose offer
Janus makes. Nothing here knows about sessions or links: :mod:`.relay_links` ties these
to them.

The VideoRoom is created with H.264 (packetization-mode 1, constrained baseline
42e01f, the profile the engine's encoders and the board's hardware encoder produce),
Opus, a bitrate cap that Janus announces to the publisher by REMB, string ids and a
secret of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from ..logs import log_event
from ..protocol import IceCandidate, SessionDescription
from .janus import JanusConnection, JanusError, JanusHandle, JanusSession, JanusUnavailable
from .settings import SfuSettings

log = logging.getLogger("edged.server.relay")

VIDEOROOM = "janus.plugin.videoroom"
ROOM_EXISTS = 427
FEED_TIMEOUT_S = 10.0
"""How long a viewer waits for the publisher's link to Janus to come up."""


@dataclass(slots=True)
class Feed:
    """One stream published into a VideoRoom: its handle and whether its media is up."""

    room: str
    stream_id: str
    handle: JanusHandle
    up: asyncio.Event
    watcher: asyncio.Task[None] | None = None


class Relay:
    """The VideoRooms, feeds and subscriptions of this room server on its Janus servers."""

    def __init__(
        self,
        settings: SfuSettings,
        on_lost: Callable[[str, set[str]], None] = lambda url, rooms: None,
    ) -> None:
        if not settings.urls:
            raise ValueError("an SFU needs at least one Janus URL")
        self.settings = settings
        self._on_lost = on_lost
        self._watchers: set[asyncio.Task[None]] = set()
        self._sessions: dict[str, JanusSession] = {}
        self._connecting: dict[str, asyncio.Lock] = {}
        self._rooms: dict[str, str] = {}  # VideoRoom id -> Janus URL where it exists
        self._feeds: dict[str, Feed] = {}  # "app/stream" -> feed
        self._ups: dict[str, asyncio.Event] = {}  # "app/stream" -> its feed's media is up

    def janus_order(self, app_id: str, room_id: str) -> list[str]:
        """The Janus servers a room tries, in order: the configured list rotated to start
        at the one its name hashes to (the same order on every node)."""
        urls = self.settings.urls
        first = zlib.crc32(f"{app_id}/{room_id}".encode()) % len(urls)
        return urls[first:] + urls[:first]

    def janus_of(self, app_id: str, room_id: str) -> str | None:
        """Where the room's VideoRoom lives now, if it exists."""
        return self._rooms.get(f"{app_id}/{room_id}")

    async def _session(self, url: str) -> JanusSession:
        lock = self._connecting.setdefault(url, asyncio.Lock())
        async with lock:
            session = self._sessions.get(url)
            if session is not None and not session.ended.is_set():
                return session
            self._forget(url)
            conn = await JanusConnection.connect(url, api_secret=self.settings.api_secret)
            try:
                session = await conn.create_session()
            except BaseException:  # refused (a wrong secret), lost, cancelled
                await conn.close()
                raise
            self._sessions[url] = session
            log_event(log, logging.INFO, "janus_connected", url=url)
            watcher = asyncio.create_task(self._watch(url, session))
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)
            return session

    async def _watch(self, url: str, session: JanusSession) -> None:
        """A Janus lost (stopped, crashed, unreachable, the session timed out): forget what
        lived there and say so, so that its relayed links end at once."""
        await session.ended.wait()
        if self._sessions.get(url) is session:
            log_event(log, logging.WARNING, "janus_lost", url=url)
            rooms = {room for room, where in self._rooms.items() if where == url}
            self._forget(url)
            await session.conn.close()
            self._on_lost(url, rooms)

    def _forget(self, url: str) -> None:
        """Drop what lived on a Janus that is gone: its rooms and feeds went with it."""
        self._sessions.pop(url, None)
        for room in [r for r, u in self._rooms.items() if u == url]:
            del self._rooms[room]
        for key in [k for k, f in self._feeds.items() if f.handle.session.conn.closed.is_set()]:
            del self._feeds[key]

    async def _room(self, app_id: str, room_id: str) -> tuple[JanusSession, str]:
        """The room's VideoRoom, where it lives, or made on the first Janus of its order
        that answers (:class:`JanusUnavailable` when none does)."""
        room = f"{app_id}/{room_id}"
        placed = self._rooms.get(room)
        if placed is not None:
            return await self._session(placed), room
        failures: list[str] = []
        for url in self.janus_order(app_id, room_id):
            try:
                return await self._create_room(url, room), room
            except JanusUnavailable as exc:
                failures.append(str(exc))
                log_event(log, logging.WARNING, "janus_unavailable", url=url, room=room)
        raise JanusUnavailable("; ".join(failures))

    async def _create_room(self, url: str, room: str) -> JanusSession:
        session = await self._session(url)
        if room not in self._rooms:
            admin = await session.attach(VIDEOROOM)
            try:
                await admin.request(
                    {
                        "request": "create",
                        "room": room,
                        "description": room,
                        "secret": secrets.token_urlsafe(18),
                        "publishers": 1000,
                        "bitrate": self.settings.bitrate_cap,
                        "videocodec": "h264",
                        "h264_profile": "42e01f",
                        "audiocodec": "opus",
                    }
                )
            except JanusError as exc:
                if exc.code != ROOM_EXISTS:
                    raise
            finally:
                await admin.detach()
            self._rooms[room] = url
            log_event(log, logging.INFO, "janus_room", room=room, url=url)
        return session

    # ---- publishing ----------------------------------------------------------------

    async def publish(
        self, app_id: str, room_id: str, stream_id: str, offer: SessionDescription
    ) -> SessionDescription:
        """Join a stream's feed into its room with the publisher's offer; Janus's answer."""
        log_event(log, logging.DEBUG, "relay_publish", app=app_id, stream=stream_id)
        await self.unpublish(app_id, stream_id, forget=False)
        session, room = await self._room(app_id, room_id)
        handle = await session.attach(VIDEOROOM)
        key = f"{app_id}/{stream_id}"
        feed = Feed(room, stream_id, handle, self._ups.setdefault(key, asyncio.Event()))
        self._feeds[key] = feed
        feed.watcher = asyncio.create_task(_watch_feed(feed))
        try:
            await handle.message(
                {"request": "join", "ptype": "publisher", "room": room, "id": stream_id}
            )
            reply = await handle.message(
                {"request": "publish", "audio": True, "video": True},
                {"type": "offer", "sdp": offer.sdp},
            )
        except (JanusError, JanusUnavailable):
            await self.unpublish(app_id, stream_id)
            raise
        if reply.jsep is None:
            await self.unpublish(app_id, stream_id)
            raise JanusError(0, "janus answered the publisher without a session description")
        return SessionDescription(type="answer", sdp=str(reply.jsep["sdp"]))

    async def unpublish(self, app_id: str, stream_id: str, *, forget: bool = True) -> None:
        """Take a stream's feed out of Janus; ``forget``: the stream is gone from the SFU
        (no viewer waits for it any more), not about to be published again."""
        key = f"{app_id}/{stream_id}"
        if forget:
            self._ups.pop(key, None)
        feed = self._feeds.pop(key, None)
        if feed is None:
            return
        feed.up.clear()
        if feed.watcher is not None:
            feed.watcher.cancel()
        await feed.handle.detach()

    def feed_handle(self, app_id: str, stream_id: str) -> JanusHandle | None:
        feed = self._feeds.get(f"{app_id}/{stream_id}")
        return feed.handle if feed is not None else None

    # ---- viewing -------------------------------------------------------------------

    async def subscribe(
        self, app_id: str, stream_id: str
    ) -> tuple[JanusHandle, SessionDescription]:
        """A subscriber of a stream's feed, once its media is up, and Janus's offer."""
        key = f"{app_id}/{stream_id}"
        log_event(log, logging.DEBUG, "relay_subscribe", app=app_id, stream=stream_id)
        await asyncio.wait_for(self._ups.setdefault(key, asyncio.Event()).wait(), FEED_TIMEOUT_S)
        feed = self._feeds.get(key)
        if feed is None:
            raise JanusError(0, f"stream {stream_id} is not published into janus")
        handle = await feed.handle.session.attach(VIDEOROOM)
        try:
            reply = await handle.message(
                {
                    "request": "join",
                    "ptype": "subscriber",
                    "room": feed.room,
                    "streams": [{"feed": stream_id}],
                }
            )
        except (JanusError, JanusUnavailable):
            await handle.detach()
            raise
        if reply.jsep is None:
            await handle.detach()
            raise JanusError(0, "janus made no offer for the subscriber")
        return handle, SessionDescription(type="offer", sdp=str(reply.jsep["sdp"]))

    async def start(self, handle: JanusHandle, answer: SessionDescription) -> None:
        await handle.message({"request": "start"}, {"type": "answer", "sdp": answer.sdp})

    async def trickle(self, handle: JanusHandle, candidate: IceCandidate) -> None:
        """Hand Janus a candidate (it refuses a null ``sdpMLineIndex``: absent ones go)."""
        await handle.trickle(candidate.model_dump(exclude_none=True))

    async def close(self) -> None:
        for watcher in list(self._watchers):
            watcher.cancel()
        for key in list(self._feeds):
            app_id, _, stream_id = key.partition("/")
            await self.unpublish(app_id, stream_id)
        for session in list(self._sessions.values()):
            await session.destroy()
            await session.conn.close()
        self._sessions.clear()


async def _watch_feed(feed: Feed) -> None:
    """Mark a feed up when Janus reports its media connection, down when it hangs up."""
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            event = await feed.handle.events.get()
            kind = event.get("janus")
            log_event(log, logging.DEBUG, "relay_feed_event", stream=feed.stream_id, kind=kind)
            if kind == "webrtcup":
                feed.up.set()
            elif kind in ("hangup", "detached", "connection_lost"):
                feed.up.clear()
                if kind == "connection_lost":
                    return
