"""Several room-server nodes sharing one Redis: who owns each room, and the app-wide claims.

Each room lives on one node, its *owner*, which runs it exactly as a single server does
(:class:`~.rooms.RoomService`, unchanged): members, streams, links, the order of events.
A client may reach any node (a load balancer, no stickiness): the node reads its first
message, and a login for a room another node owns, or a resume of a session another node
holds, is proxied there as a whole WebSocket (:mod:`.proxy`). Redis holds only what the
nodes must agree on:

* ``node:<id>`` → the node's internal URL, expiring unless the node renews it (over a
  connection of its own, never queued behind logins): a node that stops renewing
  (killed) is dead for the others within ``node_ttl_s``;
* ``room:<app>␟<room>`` → its owner's id, claimed atomically by the first node asked
  (a script takes it over from a dead owner);
* ``user:<app>␟<user>`` → ``<node>␟<session>`` of the user's one session in the app: a
  login swaps it atomically (``SET … GET``), and the node that gets a previous holder
  back asks that node to kick it (1002050), so of two logins racing on two nodes
  exactly one stays;
* ``stream:<app>␟<stream>`` → the node publishing that stream id (unique in the app).

Redis blinking never stops a node: logins are refused with 1002035
ROOM_STATE_UNAVAILABLE (the reason logged once), while running sessions, proxies and
media go on, since none of them touch Redis. When Redis answers again (restarted, maybe
empty), the node writes back the claims of everything it holds; if its own key had expired
meanwhile (the node was paused, or cut off), a room that another node took over is given
up rather than claimed back, so that no room runs on two nodes.

One Redis (with Sentinel or a replica for failover), not Redis Cluster: the scripts
touch keys they compute.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import EdgedError, ErrorCode
from ..logs import log_event

log = logging.getLogger("edged.server.cluster")

SEP = "\x1f"
PREFIX = "edged:"

# KEYS[1] the room; ARGV[1] this node, ARGV[2] the prefix of node keys.
_OWN_ROOM = """
local owner = redis.call('GET', KEYS[1])
if owner and redis.call('EXISTS', ARGV[2] .. owner) == 1 then return owner end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""
# KEYS[1] the stream; ARGV[1] this node, ARGV[2] the prefix of node keys.
_CLAIM_STREAM = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] and redis.call('EXISTS', ARGV[2] .. holder) == 1 then
  return 0
end
if holder == ARGV[1] then return 1 end
redis.call('SET', KEYS[1], ARGV[1])
return 2
"""
# KEYS[1]; ARGV[1] the dead holder's value, ARGV[2] the new one: taken over only from it.
_TAKE_OVER = """
local now = redis.call('GET', KEYS[1])
if now == false or now == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end
return 0
"""
# KEYS[1]; ARGV[1] the value it must still hold.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """This node in a multi-node deployment (``--store``, ``--node-id``, ``--advertise``)."""

    store_url: str
    node_id: str
    advertise_url: str
    """The base URL (``http://host:port``) other nodes reach this one at."""
    secret: str
    """Shared by the nodes: authenticates proxied sockets and kick requests."""
    node_ttl_s: float = 6.0
    """A node that has not renewed its key for this long is dead to the others."""


NODE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
STORE_SCHEMES = ("redis://", "rediss://", "unix://")


def cluster_settings(
    store: str,
    *,
    host: str,
    port: int,
    https: bool,
    secret: str | None,
    node_id: str | None = None,
    advertise_url: str | None = None,
) -> ClusterSettings | None:
    """This node's cluster settings from ``--store`` and its companions (None for
    ``memory``); ``EdgedError(CONFIG_INVALID_VALUE)`` saying what is wrong."""
    if store in ("", "memory"):
        return None
    bad = ErrorCode.CONFIG_INVALID_VALUE
    if not store.startswith(STORE_SCHEMES):
        raise EdgedError(bad, f"store must be memory or a redis:// URL, not {store!r}")
    if importlib.util.find_spec("redis") is None:
        raise EdgedError(bad, "a Redis store needs the redis package (apt install python3-redis)")
    if not secret:
        raise EdgedError(bad, "a Redis store needs the secret the nodes share (a secret file)")
    name = node_id or re.sub(r"[^A-Za-z0-9_-]", "-", f"{socket.gethostname()}-{port}")[:64]
    if not NODE_ID.fullmatch(name):
        raise EdgedError(bad, f"node id must be 1-64 letters, digits, - or _: {name!r}")
    if advertise_url is None:
        shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
        advertise_url = f"{'https' if https else 'http'}://{shown}:{port}"
    return ClusterSettings(store, name, advertise_url.rstrip("/"), secret)


@dataclass(slots=True)
class Holdings:
    """What a node holds, to write back after Redis lost it."""

    rooms: list[tuple[str, str]]
    users: list[tuple[str, str, str, str]]
    """(app, room, user, session)"""
    streams: list[tuple[str, str, str]]
    """(app, room, stream)"""
    members: list[tuple[str, str, str, str]]
    """(app, room, session, record)"""
    links: list[tuple[str, str, str, str]]
    """(app, room, link, record)"""


@dataclass(frozen=True, slots=True)
class Holder:
    """A user's session somewhere in the cluster."""

    node: str
    session_id: str


class Cluster:
    """This node's view of the cluster: its Redis connection, its liveness key, its claims.

    ``snapshot`` (given by the server) lists what this node holds, to write back after
    Redis lost it (:class:`Holdings`); ``give_up`` is told the rooms that another node
    took over meanwhile, which this node must no longer run.
    """

    def __init__(
        self,
        settings: ClusterSettings,
        snapshot: Callable[[], Holdings],
        give_up: Callable[[list[tuple[str, str]]], None],
    ) -> None:
        import redis.asyncio as redis_asyncio  # only with --store redis://

        from .redis_batch import Batcher

        self.settings = settings
        self.node_id = settings.node_id
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": 2.0,
            "socket_connect_timeout": 2.0,
        }
        # Everything but the liveness key goes in batches on one connection of its own.
        self._batch = Batcher(settings.store_url, timeout_s=2.0)
        # The liveness key has a connection of its own: renewing it must never queue
        # behind a burst of logins, or a busy node would expire and lose its rooms.
        self._beat_redis: Any = redis_asyncio.Redis.from_url(
            settings.store_url, single_connection_client=True, **options
        )
        self._own_room = self._batch.script(_OWN_ROOM)
        self._claim_stream = self._batch.script(_CLAIM_STREAM)
        self._release = self._batch.script(_RELEASE)
        self._take_over = self._batch.script(_TAKE_OVER)
        self._reclaim = self._beat_redis.register_script(_OWN_ROOM)
        self._snapshot = snapshot
        self._give_up = give_up
        self.healthy = False
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._restoring = False
        self._urls: dict[str, tuple[str | None, float]] = {}

    # ---- keys ------------------------------------------------------------------------

    def _node_key(self, node: str) -> str:
        return f"{PREFIX}node:{node}"

    @staticmethod
    def _key(kind: str, app_id: str, name: str) -> str:
        return f"{PREFIX}{kind}:{app_id}{SEP}{name}"

    # ---- life ------------------------------------------------------------------------

    async def start(self) -> None:
        """Register this node (if Redis answers now) and keep renewing it."""
        await self._beat()
        self._task = asyncio.create_task(self._beat_loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._batch.close()
        with contextlib.suppress(Exception):
            await self._beat_redis.delete(self._node_key(self.node_id))
        with contextlib.suppress(Exception):
            await self._beat_redis.aclose()

    async def _beat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.node_ttl_s / 3)
            await self._beat()

    async def _beat(self) -> None:
        ttl_ms = round(self.settings.node_ttl_s * 1000)
        try:
            before = await self._beat_redis.set(
                self._node_key(self.node_id), self.settings.advertise_url, px=ttl_ms, get=True
            )
            if before is None:  # first start, or Redis lost our key: restart or expiry
                self._restoring = True
            if self._restoring:  # until it has gone through once
                await self._restore()
                self._restoring = False
        except Exception as exc:  # any failure of Redis: the node goes on without it
            self._failed(exc)
            return
        if not self.healthy:
            log_event(log, logging.INFO, "store_available", node=self.node_id)
        self.healthy, self.last_error = True, None

    def _failed(self, exc: BaseException) -> None:
        reason = str(exc) or type(exc).__name__
        if self.healthy or self.last_error is None:
            log_event(log, logging.WARNING, "store_unavailable", node=self.node_id, reason=reason)
        self.healthy, self.last_error = False, reason

    async def _restore(self) -> None:
        """Write back the claims of everything this node holds: Redis lost them (it
        restarted), or this node's key expired (it was paused, or cut off from Redis, for
        longer than the key lives). In the second case another node may have taken some of
        its rooms over: those rooms are given up, and nothing of theirs written back."""
        held = self._snapshot()
        owners = [
            await self._reclaim(
                keys=[self._key("room", app_id, room_id)], args=[self.node_id, f"{PREFIX}node:"]
            )
            for app_id, room_id in held.rooms
        ]
        mine = [owner == self.node_id for owner in owners]
        lost = [room for room, kept in zip(held.rooms, mine, strict=True) if not kept]
        gone = set(lost)
        pipe = self._beat_redis.pipeline(transaction=False)
        for app_id, room_id, user_id, session_id in held.users:
            if (app_id, room_id) not in gone:
                value = f"{self.node_id}{SEP}{session_id}"
                pipe.set(self._key("user", app_id, user_id), value)
        for app_id, room_id, stream_id in held.streams:
            if (app_id, room_id) not in gone:
                pipe.set(self._key("stream", app_id, stream_id), self.node_id)
        for app_id, room_id, session_id, record in held.members:
            if (app_id, room_id) not in gone:
                pipe.hset(self._key("members", app_id, room_id), session_id, record)
        for app_id, room_id, link_id, record in held.links:
            if (app_id, room_id) not in gone:
                pipe.hset(self._key("links", app_id, room_id), link_id, record)
        await pipe.execute()
        count = len(held.rooms) + len(held.users) + len(held.streams) + len(held.links)
        if count:
            log_event(log, logging.INFO, "store_restored", node=self.node_id, keys=count)
        if lost:
            self._give_up(lost)

    async def _call(self, what: Any) -> Any:
        """Await a Redis call; ROOM_STATE_UNAVAILABLE when Redis does not answer."""
        try:
            result = await what
        except Exception as exc:
            self._failed(exc)
            raise EdgedError(ErrorCode.ROOM_STATE_UNAVAILABLE) from None
        return result

    # ---- lookups and claims --------------------------------------------------------------

    async def room_owner(self, app_id: str, room_id: str) -> str:
        """The node that owns the room, this one if nobody (alive) did."""
        key = self._key("room", app_id, room_id)
        owner: str = await self._call(
            self._batch.run_script(self._own_room, [key], [self.node_id, f"{PREFIX}node:"])
        )
        return owner

    async def stream_node(self, app_id: str, stream_id: str) -> str | None:
        """The node publishing ``stream_id``, None when no node does."""
        node: str | None = await self._call(
            self._batch.command("GET", self._key("stream", app_id, stream_id))
        )
        return node

    async def node_url(self, node: str) -> str | None:
        """A live node's internal URL (cached for a second); None when it is dead."""
        cached = self._urls.get(node)
        now = time.monotonic()
        if cached is not None and now - cached[1] < 1.0:
            return cached[0]
        url: str | None = await self._call(self._batch.command("GET", self._node_key(node)))
        self._urls[node] = (url, now)
        return url

    async def claim_user(self, app_id: str, user_id: str, session_id: str) -> Holder | None:
        """Make ``session_id`` on this node the user's session; the previous holder."""
        key = self._key("user", app_id, user_id)
        value = f"{self.node_id}{SEP}{session_id}"
        before: str | None = await self._call(self._batch.command("SET", key, value, "GET"))
        if before is None or SEP not in before:
            return None
        node, session = before.split(SEP, 1)
        return Holder(node, session)

    async def claim_stream(self, app_id: str, stream_id: str) -> int:
        """Claim a stream id for this node: 0 when another live node publishes it, 1 when
        this node held it already (its own store decides), 2 when newly claimed."""
        key = self._key("stream", app_id, stream_id)
        claimed = await self._call(
            self._batch.run_script(self._claim_stream, [key], [self.node_id, f"{PREFIX}node:"])
        )
        return int(claimed)

    def release_user(self, app_id: str, user_id: str, session_id: str) -> None:
        key, value = self._key("user", app_id, user_id), f"{self.node_id}{SEP}{session_id}"
        self._batch.fire_script(self._release, [key], [value])

    def release_stream(self, app_id: str, stream_id: str) -> None:
        key = self._key("stream", app_id, stream_id)
        self._batch.fire_script(self._release, [key], [self.node_id])

    def release_room(self, app_id: str, room_id: str) -> None:
        self._batch.fire_script(self._release, [self._key("room", app_id, room_id)], [self.node_id])

    # ---- a room's records (adopt.py) --------------------------------------------------------

    def save_member(self, app_id: str, room_id: str, session_id: str, record: str) -> None:
        key = self._key("members", app_id, room_id)
        self._batch.fire("HSET", key, session_id, record)

    def drop_member(self, app_id: str, room_id: str, session_id: str) -> None:
        self._batch.fire("HDEL", self._key("members", app_id, room_id), session_id)

    def save_link(self, app_id: str, room_id: str, link_id: str, record: str | None) -> None:
        key = self._key("links", app_id, room_id)
        if record:
            self._batch.fire("HSET", key, link_id, record)
        else:
            self._batch.fire("HDEL", key, link_id)

    async def room_records(
        self, app_id: str, room_id: str
    ) -> tuple[dict[str, str], dict[str, str]]:
        """A room's member and link records (a dead node's room, to adopt)."""
        members, links = await self._call(
            asyncio.gather(
                self._batch.command("HGETALL", self._key("members", app_id, room_id)),
                self._batch.command("HGETALL", self._key("links", app_id, room_id)),
            )
        )
        return as_hash(members), as_hash(links)

    async def take_over(
        self, users: list[tuple[str, str, str, str]], streams: list[tuple[str, str, str]]
    ) -> None:
        """Move the claims of adopted sessions, ``(app, user, session, dead node)``, and of
        their streams, ``(app, stream, dead node)``, from the dead node to this one (unless
        someone claimed them since)."""
        moves = []
        for app_id, user_id, session_id, dead in users:
            key = self._key("user", app_id, user_id)
            old, new = f"{dead}{SEP}{session_id}", f"{self.node_id}{SEP}{session_id}"
            moves.append(self._batch.run_script(self._take_over, [key], [old, new]))
        for app_id, stream_id, dead in streams:
            key = self._key("stream", app_id, stream_id)
            moves.append(self._batch.run_script(self._take_over, [key], [dead, self.node_id]))
        await self._call(asyncio.gather(*moves))

    def health(self) -> dict[str, object]:
        """For ``/healthz``: the store and this node."""
        return {
            "kind": "redis",
            "ok": self.healthy,
            **({"error": self.last_error} if self.last_error else {}),
        }


def as_hash(reply: list[str] | dict[str, str]) -> dict[str, str]:
    """A hash as ``HGETALL`` sends it: a map in RESP3, field, value, field… in RESP2."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))
