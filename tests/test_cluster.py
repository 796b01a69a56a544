"""Room servers as several nodes sharing a real Redis (docs/scaling.md): what only several
nodes can get wrong. Every rule of the rooms suite also runs across three nodes
(tests/test_rooms.py, tests/test_room_messages.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from edged.engine.config import PublishConfig, RoomConfig
from edged.engine.events import (
    EventRecorder,
    PlayerRecvVideoFirstFrame,
    PlayerStateUpdate,
    RoomStateChanged,
    RoomStreamUpdate,
    RoomUserUpdate,
)
from edged.engine.whip_out import TargetState, WhipTarget
from edged.model import PlayerState as PS
from edged.model import RoomState, UpdateType, User
from edged.model import RoomStateChangedReason as R
from edged.server.settings import Limits, SfuSettings
from edged.testing.balancer import Balancer
from edged.testing.daemon import start_listening, stop_process
from edged.testing.janus import Janus, free_port
from edged.testing.redis import RedisServer
from edged.testing.waiting import until
from edged.tokens import mint

from conftest import (
    APP,
    CLUSTER_SECRET,
    JANUS_SECRET,
    SECRET,
    RunningServer,
    ServerFactory,
    serving,
)
from enginekit import AnalysisSink, make_engine
from janusd import requires_janus
from protoclient import ProtoClient
from test_whep import delete, left_the_room, whep_play


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    async with serving("redis", tmp_path) as make:
        yield make


async def client_of(srv: RunningServer, node: int) -> ProtoClient:
    c = await ProtoClient(srv.urls[node], srv.http).connect()
    srv.clients.append(c)
    return c


async def logged_in(srv: RunningServer, node: int, user: str, room: str) -> ProtoClient:
    c = await client_of(srv, node)
    await c.login(app_id=APP, room_id=room, user_id=user, token=srv.token(user), user_update=True)
    return c


async def kicked_out(client: ProtoClient, reply: dict[str, Any]) -> int:
    """The code ``client`` was kicked out with: in its login's reply, or pushed later."""
    if not reply["ok"]:
        return int(reply["error"]["code"])
    return int((await client.next_of("kicked_out", 10))["code"])


async def test_racing_logins_of_one_user_on_two_nodes_leave_exactly_one(
    nodes: ServerFactory,
) -> None:
    srv = await nodes()
    for i in range(8):
        user = f"racer-{i}"
        one, two = await client_of(srv, 0), await client_of(srv, 1)
        fields = {"app_id": APP, "user_id": user, "token": srv.token(user)}
        replies = await asyncio.gather(
            one.request("login", room_id=f"east-{i}", **fields),
            two.request("login", room_id=f"west-{i}", **fields),
        )
        waits = [
            asyncio.ensure_future(kicked_out(c, r))
            for c, r in zip((one, two), replies, strict=True)
        ]
        done, pending = await asyncio.wait(waits, timeout=10, return_when="FIRST_COMPLETED")
        assert len(done) == 1, f"{user}: kicked {len(done)} times"
        assert next(iter(done)).result() == 1002050
        survivor = (one, two)[waits.index(next(iter(pending)))]
        for wait in pending:
            wait.cancel()
        # The survivor is logged in and nothing is on its way to it (its own fence).
        assert await survivor.pushes_before_heartbeat() == []


@pytest.mark.netns
async def test_a_viewer_on_one_node_plays_a_publisher_on_another(nodes: ServerFactory) -> None:
    srv = await nodes()
    publisher, _ = make_engine(srv, server_url=srv.urls[1])
    viewer, _ = make_engine(srv, server_url=srv.urls[2])
    sink = AnalysisSink()
    async with publisher, viewer:
        await publisher.login_room("r", User("B"))
        await publisher.start_publishing("cam")
        await viewer.login_room("r", User("A"))
        await viewer.start_playing("cam", sink)
        await until(lambda: sink.video is not None and sink.video.stats().decoded >= 30, 20)
        await until(lambda: sink.audio is not None and sink.audio.seconds_received >= 1.0, 20)
        assert sink.video is not None and sink.audio is not None
        seqs = [o.sequence for o in sink.video.observations]
        assert seqs == sorted(seqs) and sink.video.stats().out_of_order == 0
        assert sink.audio.tone_present(440.0)


async def publish_when_free(client: ProtoClient, stream_id: str) -> None:
    """Publish ``stream_id`` as soon as the node that held it has let it go."""
    replies: list[dict[str, Any]] = []

    async def free() -> bool:
        replies.append(await client.request("publish", stream_id=stream_id))
        assert replies[-1]["ok"] or replies[-1]["error"]["code"] == 1003028, replies[-1]
        return bool(replies[-1]["ok"])

    async with asyncio.timeout(10):
        while not await free():
            await asyncio.sleep(0.05)


async def test_a_stream_id_is_unique_across_nodes(nodes: ServerFactory) -> None:
    srv = await nodes()
    east = await logged_in(srv, 0, "E", "east")
    west = await logged_in(srv, 1, "W", "west")
    await east.ok("publish", stream_id="shared")
    refused = await west.request("publish", stream_id="shared")
    assert refused["error"]["code"] == 1003028
    await east.ok("unpublish", stream_id="shared")
    await publish_when_free(west, "shared")  # released across the nodes


@requires_janus
async def test_a_whip_stream_id_is_unique_across_nodes(nodes: ServerFactory, janus: Janus) -> None:
    srv = await nodes(sfu=SfuSettings([janus.url], JANUS_SECRET))
    whip = srv.urls[1].replace("ws://", "http://").removesuffix("/ws") + f"/whip/{APP}/west"
    east = await logged_in(srv, 0, "E", "east")
    await east.ok("publish", stream_id="taken")
    token = mint(SECRET, APP, "studio", 600)
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
    async with srv.http.post(f"{whip}/taken", data="v=0\r\n", headers=headers) as refused:
        assert refused.status == 409
        assert (await refused.json(content_type=None))["code"] == 1003028
    # A WHIP encoder's stream, in a room another node runs, keeps its id from a device.
    board, _ = make_engine(dataclasses.replace(srv, url=srv.urls[2], clients=[]))
    async with board:
        await board.login_room("home", User("board"))
        target = WhipTarget(f"{whip}/door", token)
        await board.start_publishing("cam", PublishConfig(targets=(target,)))
        await until(lambda: board.publishers["cam"].targets[0].state == TargetState.SENDING, 20)
        assert (await east.request("publish", stream_id="door"))["error"]["code"] == 1003028
        await board.stop_publishing("cam")  # its DELETE ends the stream and frees the id
        await publish_when_free(east, "door")


async def test_redis_restarted_mid_call_loses_nothing(nodes: ServerFactory) -> None:
    srv = await nodes()
    assert srv.redis is not None
    a = await logged_in(srv, 0, "A", "r")
    b = await logged_in(srv, 1, "B", "r")  # carried to the room's node
    await b.next_of("room_user_update")  # A was there
    await b.ok("publish", stream_id="s1")
    await a.next_of("room_user_update")
    await a.next_of("room_stream_update")

    for client in (a, b):  # past the heartbeat timeout: keep the sessions alive
        client.keep_alive(0.5)
    await srv.redis.kill()
    # Sessions already running go on; a login is refused with its code.
    await b.ok("broadcast", message="while Redis is down")
    assert (await a.next_of("broadcast"))["message"] == "while Redis is down"
    c = await client_of(srv, 2)
    down = await c.request("login", app_id=APP, room_id="r", user_id="C", token=srv.token("C"))
    assert down["error"]["code"] == 1002035
    # A WHEP player is refused the same way, as a retryable 503.
    via = dataclasses.replace(srv, url=srv.urls[2], clients=[])
    played = await whep_play(via, mint(SECRET, APP, "tv", 600), stream_id="s1")
    await played.pc.close()
    assert (played.status, '"code": 1002035' in played.body) == (503, True), played.body

    await srv.redis.start()  # empty: each node writes back what it holds at its next beat
    async with srv.redis.client() as store, asyncio.timeout(15):
        while not await store.exists(f"edged:stream:{APP}\x1fs1"):
            await asyncio.sleep(0.1)
    assert await a.pushes_before_heartbeat() == []  # nobody left, nothing changed
    # What was restored still holds: B's stream id, and B's login kicks the old B.
    d = await logged_in(srv, 2, "D", "elsewhere")
    assert (await d.request("publish", stream_id="s1"))["error"]["code"] == 1003028
    b2 = await logged_in(srv, 2, "B", "r")
    assert (await b.next_of("kicked_out", 10))["code"] == 1002050
    assert b2.login_result["room_id"] == "r"


async def test_a_node_whose_redis_batches_are_stalled_is_not_taken_for_dead(
    nodes: ServerFactory,
) -> None:
    srv = await nodes()
    assert srv.redis is not None and srv.server.routing is not None
    cluster = srv.server.routing.cluster
    a = await logged_in(srv, 0, "A", "r")  # node 0 runs the room
    a.keep_alive(0.5)
    # Batch after batch waits a second on Redis (as behind a burst of logins), for longer
    # than the node's liveness key lives unrenewed.
    batches = cluster._batch

    async def stall() -> None:
        while True:
            await batches.command("BLPOP", "edged:never", 1)

    stalling = asyncio.create_task(stall())
    try:
        async with srv.redis.client() as store:
            loop = asyncio.get_running_loop()
            until_time = loop.time() + cluster.settings.node_ttl_s + 2
            while loop.time() < until_time:  # alive all along, not only at the end
                assert await store.exists(f"edged:node:{cluster.node_id}")
                assert not stalling.done()
                await asyncio.sleep(0.25)
            assert await store.get(f"edged:room:{APP}\x1fr") == cluster.node_id
    finally:
        stalling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stalling
    # The room stayed on its node: a login through another node is carried there.
    b = await logged_in(srv, 1, "B", "r")
    assert [u["user_id"] for u in (await b.next_of("room_user_update"))["users"]] == ["A"]
    assert (await a.next_of("room_user_update"))["users"][0]["user_id"] == "B"


# ---- a node killed mid-call ---------------------------------------------------------------


class NodeProcesses:
    """``edged server`` nodes as processes of their own (so that one can be SIGKILLed),
    sharing a Redis, behind a round-robin balancer."""

    def __init__(
        self, workdir: Path, redis: RedisServer, count: int, heartbeat_timeout: float = 10.0
    ) -> None:
        self.workdir = workdir
        self.redis = redis
        self.heartbeat_timeout = heartbeat_timeout
        self.ports = [free_port() for _ in range(count)]
        self.procs: list[asyncio.subprocess.Process | None] = [None] * count
        self.apps = workdir / "apps.yaml"
        self.apps.write_text(yaml.safe_dump({APP: SECRET}))
        self.apps.chmod(0o600)
        self.secret = workdir / "cluster-secret"
        self.secret.write_text(CLUSTER_SECRET)
        self.secret.chmod(0o600)

    def url(self, node: int) -> str:
        return f"ws://127.0.0.1:{self.ports[node]}/ws"

    async def start(self, node: int) -> None:
        port = self.ports[node]
        argv = [sys.executable, "-m", "edged", "server", "--port", str(port)]
        argv += ["--apps", str(self.apps), "--app", APP, "--store", self.redis.url]
        argv += ["--node-id", f"node{node}", "--cluster-secret-file", str(self.secret)]
        argv += ["--heartbeat-interval", "1", "--heartbeat-timeout", str(self.heartbeat_timeout)]
        log = self.workdir / f"node{node}.log"
        self.procs[node] = await start_listening(argv, log, "127.0.0.1", port)

    async def kill(self, node: int) -> None:
        proc = self.procs[node]
        assert proc is not None
        proc.kill()
        await proc.wait()
        self.procs[node] = None

    def pause(self, node: int, paused: bool = True) -> None:
        """Stop (SIGSTOP) or continue (SIGCONT) a node: a stalled VM, a swapped-out host."""
        proc = self.procs[node]
        assert proc is not None
        proc.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    def log(self, node: int) -> str:
        return (self.workdir / f"node{node}.log").read_text(errors="replace")

    async def stop(self) -> None:
        for node, proc in enumerate(self.procs):
            if proc is not None and proc.returncode is None:
                self.pause(node, False)
            await stop_process(proc)


@dataclass
class Address:
    url: str


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[tuple[NodeProcesses, Balancer]]:
    """Three node processes sharing a Redis, behind a balancer that takes them in order."""
    redis = RedisServer(tmp_path)
    await redis.start()
    nodes = NodeProcesses(tmp_path, redis, 3)
    balancer = Balancer([("127.0.0.1", port) for port in nodes.ports])
    try:
        for node in range(3):
            await nodes.start(node)
        await balancer.start()
        yield nodes, balancer
    finally:
        await balancer.stop()
        await nodes.stop()
        await redis.stop()


@pytest.mark.netns
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("kill", "what"), [(1, "a node that carries a client"), (0, "the node that runs the room")]
)
async def test_a_node_killed_mid_call_is_silent_to_the_room(
    processes: tuple[NodeProcesses, Balancer], kill: int, what: str
) -> None:
    nodes, balancer = processes
    publisher, rec_p = make_engine(Address(balancer.url))  # type: ignore[arg-type]
    viewer, rec_v = make_engine(Address(balancer.url))  # type: ignore[arg-type]
    observer, seen = make_engine(Address(balancer.url))  # type: ignore[arg-type]
    sink = AnalysisSink()
    async with publisher, viewer, observer:
        # The balancer sends them to nodes 0, 1 and 2: the room is node 0's (its first
        # login), the viewer and the observer are carried there by nodes 1 and 2.
        await publisher.login_room("r", User("P"))
        await publisher.start_publishing("cam")
        await viewer.login_room("r", User("V"))
        await viewer.start_playing("cam", sink)
        await observer.login_room("r", User("O"), RoomConfig(user_update=True))
        assert balancer.chosen[:3] == [0, 1, 2]
        await until(lambda: sink.video is not None and sink.video.stats().decoded >= 15, 20)
        await until(lambda: "cam" in observer.streams)
        before = len(seen.events)
        assert sink.video is not None
        decoded = sink.video.stats().decoded
        played = len(rec_v.of(PlayerStateUpdate))

        await nodes.kill(kill)
        # Whoever lost its socket reconnects through the balancer and resumes (on the
        # room's node, or on the node that took the room over from its dead one).
        dropped = [rec_p, rec_v, seen] if kill == 0 else [rec_v]
        for rec in dropped:
            await until(
                lambda rec=rec: any(e.reason == R.RECONNECTED for e in rec.of(RoomStateChanged)),
                30,
                f"a reconnection after {what} died",
            )
            reasons = [e.reason for e in rec.of(RoomStateChanged)]
            assert reasons[-2:] == [R.RECONNECTING, R.RECONNECTED], reasons
        # Peer-to-peer media never went through the dead node: frames kept coming.
        await until(lambda: sink.video is not None and sink.video.stats().decoded > decoded + 15)
        assert viewer.player_state("cam") == PS.PLAYING
        # The viewer's own signaling dropped: it reported the interruption and its end,
        # its peer connection kept (one first frame in all).
        states = [(e.state, e.error_code) for e in rec_v.of(PlayerStateUpdate)[played:]]
        assert states == [(PS.PLAY_REQUESTING, 0), (PS.PLAYING, 0)], states
        assert len(rec_v.of(PlayerRecvVideoFirstFrame)) == 1
        # The room heard nothing: nobody left or came, the stream is still listed.
        assert "cam" in observer.streams
        heard = {type(e) for e in seen.events[before:]}
        assert not {RoomUserUpdate, RoomStreamUpdate} & heard, seen.events[before:]
        assert observer.room_state == RoomState.CONNECTED


async def joined(http: aiohttp.ClientSession, url: str, user: str, **fields: Any) -> ProtoClient:
    """A client logged into room ``r`` through ``url``."""
    client = await ProtoClient(url, http).connect()
    token = mint(SECRET, APP, user, 600)
    await client.login(app_id=APP, room_id="r", user_id=user, token=token, **fields)
    return client


def users_heard(rec: EventRecorder) -> set[str]:
    """The other users of the room as a client's user updates said, in order."""
    users: set[str] = set()
    for e in rec.of(RoomUserUpdate):
        names = {u.user_id for u in e.users}
        users = users | names if e.update_type == UpdateType.ADD else users - names
    return users


@pytest.mark.netns
@pytest.mark.timeout(150)
async def test_a_node_paused_past_its_key_gives_up_the_room_another_node_took(
    processes: tuple[NodeProcesses, Balancer],
) -> None:
    nodes, balancer = processes
    publisher, rec_p = make_engine(Address(balancer.url))  # type: ignore[arg-type]
    observer, seen = make_engine(Address(balancer.url))  # type: ignore[arg-type]
    async with publisher, observer:
        await publisher.login_room("r", User("P"))  # node 0 runs the room
        await publisher.start_publishing("cam")
        await observer.login_room("r", User("O"), RoomConfig(user_update=True))
        await until(lambda: "cam" in observer.streams)
        before = len(seen.events)
        async with nodes.redis.client() as store:  # written just after each login

            async def both_saved() -> bool:
                return int(await store.hlen(f"edged:members:{APP}\x1fr")) == 2

            await until(both_saved, 5, "both sessions' records in Redis")

        nodes.pause(0)  # longer than its key lives: the others take it for dead
        try:
            for rec in (rec_p, seen):  # each hears its node fall silent and resumes elsewhere
                await until(
                    lambda rec=rec: any(
                        e.reason == R.RECONNECTED for e in rec.of(RoomStateChanged)
                    ),
                    60,
                    "a reconnection away from the paused node",
                )
        finally:
            nodes.pause(0, False)
        # Back, the node writes back what it holds, but not the room another node runs now.
        await until(lambda: "store_restored" in nodes.log(0), 20, "node 0 back in Redis")
        async with nodes.redis.client() as store:
            assert await store.get(f"edged:room:{APP}\x1fr") not in (None, "node0")

        # A newcomer, through whichever node, joins the one room everyone is in.
        late, rec_l = make_engine(Address(balancer.url))  # type: ignore[arg-type]
        async with late:
            await late.login_room("r", User("L"), RoomConfig(user_update=True))
            await until(lambda: users_heard(rec_l) == {"P", "O"}, 10, "the newcomer seeing both")
            assert "cam" in late.streams
            await until(lambda: "L" in users_heard(seen), 10, "the observer seeing the newcomer")
        # The room heard nothing of the pause: only the newcomer came (and went).
        assert "cam" in observer.streams and "P" in users_heard(seen)
        kinds = RoomUserUpdate | RoomStreamUpdate
        updates = [e for e in seen.events[before:] if isinstance(e, kinds)]
        first = updates[0] if updates else None
        assert isinstance(first, RoomUserUpdate), updates
        assert first.update_type == UpdateType.ADD, updates
        assert [u.user_id for u in first.users] == ["L"], updates
    assert "room_given_up" in nodes.log(0)


@pytest.mark.timeout(120)
async def test_a_client_still_on_a_paused_node_resumes_in_the_room_another_node_took(
    processes: tuple[NodeProcesses, Balancer],
) -> None:
    nodes, _ = processes
    async with aiohttp.ClientSession() as http, nodes.redis.client() as store:
        a = await joined(http, nodes.url(0), "A")  # node 0 runs the room
        token, last_seq = a.login_result["resume_token"], a.last_seq
        session = a.login_result["session_id"]

        async def saved() -> bool:  # written just after the login: then it can move
            return bool(await store.hexists(f"edged:members:{APP}\x1fr", session))

        async def dead() -> bool:
            return not await store.exists("edged:node:node0")

        await until(saved, 5, "A's record in Redis")
        nodes.pause(0)
        try:
            await until(dead, 15, "node 0 taken for dead")
            # A login for the room reaches node 1, which takes the room over, A included.
            b = await joined(http, nodes.url(1), "B", user_update=True)
            b.keep_alive(0.5)
            assert [u["user_id"] for u in (await b.next_of("room_user_update"))["users"]] == ["A"]
        finally:
            nodes.pause(0, False)
        # Back, node 0 gives the room up and closes A's socket as a node going away does...
        assert await a.closed_by_server(20) == 1001
        # ... and A resumes through any node, node 0 included, in the room node 1 runs.
        again = await resume_somewhere(http, nodes.url(0), token, last_seq)
        await again.ok("broadcast", message="back")
        assert (await b.next_of("broadcast"))["message"] == "back"
        assert [m["type"] for m in await b.pushes_before_heartbeat()] == []  # nobody left
        await again.close()
        await b.close()


@pytest.mark.timeout(60)
async def test_a_server_that_stood_still_longer_than_the_heartbeat_timeout_kicks_nobody(
    tmp_path: Path,
) -> None:
    redis = RedisServer(tmp_path)
    await redis.start()
    nodes = NodeProcesses(tmp_path, redis, 1, heartbeat_timeout=3)
    try:
        await nodes.start(0)
        async with aiohttp.ClientSession() as http:
            a = await joined(http, nodes.url(0), "A")
            b = await joined(http, nodes.url(0), "B", user_update=True)
            await b.next_of("room_user_update")
            for client in (a, b):  # their heartbeats wait in the server's sockets meanwhile
                client.keep_alive(0.5)
            nodes.pause(0)
            await asyncio.sleep(4.5)  # the stall itself: longer than the heartbeat timeout
            nodes.pause(0, False)
            # The silence was the server's, not theirs: both are still there, nobody left.
            await a.ok("broadcast", message="still here")
            assert (await b.next_of("broadcast", 10))["message"] == "still here"
            assert [m["type"] for m in await b.pushes_before_heartbeat()] == []
            await a.close()
            await b.close()
    finally:
        await nodes.stop()
        await redis.stop()


@pytest.mark.netns
async def test_whep_through_any_node_plays_the_stream_of_another(nodes: ServerFactory) -> None:
    srv = await nodes()
    board, rec = make_engine(srv)  # node 0 runs the room
    async with board:
        await board.login_room("r", User("board"), RoomConfig(user_update=True))
        await board.start_publishing("cam")
        via = dataclasses.replace(srv, url=srv.urls[1], clients=[])
        played = await whep_play(via, mint(SECRET, APP, "tv", 600))
        try:
            assert played.status == 201, played.body
            location = played.headers["Location"]
            await until(lambda: played.sink.video is not None, 20)
            await until(lambda: played.sink.video.stats().decoded >= 15, 20)  # type: ignore[union-attr]
            assert [v.user_id for v in board.publishers["cam"].viewers] == ["tv"]
            # Its DELETE through a third node reaches the resource on node 0.
            other = dataclasses.replace(srv, url=srv.urls[2], clients=[])
            assert await delete(other, location, "tv") == 200
            await until(lambda: not board.publishers["cam"].viewers)
            await until(lambda: left_the_room(rec, "tv"))
        finally:
            await played.pc.close()


async def test_a_whep_player_is_its_users_one_session_across_nodes(nodes: ServerFactory) -> None:
    """A WHEP player logs its token's user in as a socket does: that user's session on
    another node is kicked out with 1002050."""
    srv = await nodes()
    board, _ = make_engine(srv)  # node 0 runs the room
    async with board:
        await board.login_room("r", User("board"))
        await board.start_publishing("cam")
        den = await logged_in(srv, 1, "tv", "den")  # node 1 runs this one
        den.keep_alive(0.5)
        via = dataclasses.replace(srv, url=srv.urls[2], clients=[])
        played = await whep_play(via, mint(SECRET, APP, "tv", 600))
        try:
            assert played.status == 201, played.body
            assert (await den.next_of("kicked_out", 10))["code"] == 1002050
        finally:
            await played.pc.close()


async def resume_somewhere(
    http: aiohttp.ClientSession, url: str, token: str, last_seq: int
) -> ProtoClient:
    """Resume a session through ``url``, trying again while the answer is a closed socket
    (the room's node is down but not yet known dead), as the engine does."""
    async with asyncio.timeout(30):
        while True:
            client = await ProtoClient(url, http).connect()
            client.last_seq = last_seq
            try:
                reply = await client.request("resume", resume_token=token, last_seq=last_seq)
            except (ConnectionError, TimeoutError, aiohttp.ClientError):
                reply = None
            if reply is not None and reply["ok"]:
                return client
            assert reply is None or reply["error"]["code"] != 1002054, reply
            await client.close()
            await asyncio.sleep(0.2)


@pytest.mark.timeout(120)
async def test_who_does_not_come_back_after_its_node_died_is_removed_at_the_timeout(
    processes: tuple[NodeProcesses, Balancer],
) -> None:
    nodes, _ = processes
    async with aiohttp.ClientSession() as http:
        publisher = await ProtoClient(nodes.url(0), http).connect()  # node 0 runs the room
        token = mint(SECRET, APP, "P", 600)
        await publisher.login(app_id=APP, room_id="r", user_id="P", token=token)
        await publisher.ok("publish", stream_id="cam")
        observer = await ProtoClient(nodes.url(1), http).connect()  # carried to node 0
        token = mint(SECRET, APP, "O", 600)
        await observer.login(app_id=APP, room_id="r", user_id="O", token=token, user_update=True)
        await observer.next_of("room_user_update")
        await observer.next_of("room_stream_update")
        resume_token, last_seq = observer.login_result["resume_token"], observer.last_seq
        # Both sessions' records are in Redis (written just after each login: a node that
        # dies before cannot hand that session over, docs/scaling.md).
        async with nodes.redis.client() as store:

            async def both_saved() -> bool:
                return int(await store.hlen(f"edged:members:{APP}\x1fr")) == 2

            await until(both_saved, 5, "both sessions' records in Redis")

        await nodes.kill(0)  # the publisher never comes back; the observer does, elsewhere
        observer = await resume_somewhere(http, nodes.url(2), resume_token, last_seq)
        observer.keep_alive(1.0)
        # After the heartbeat timeout (10 s): the stream's DELETE, then its user's.
        deleted = await observer.next_of("room_stream_update", 30)
        assert (deleted["update_type"], deleted["reason"]) == (1, "heartbeat_timeout")
        assert [s["stream_id"] for s in deleted["streams"]] == ["cam"]
        left = await observer.next_of("room_user_update", 5)
        assert (left["update_type"], [u["user_id"] for u in left["users"]]) == (1, ["P"])
        await observer.close()
        await publisher.close()


async def carrying(srv: RunningServer, node: int) -> dict[str, int]:
    """What ``/healthz`` of a node says of the sockets carried to and from it."""
    url = srv.urls[node].replace("ws://", "http://").removesuffix("/ws") + "/healthz"
    async with srv.http.get(url) as response:
        health = await response.json()
    return dict(health["carrying"])


async def test_behind_a_balancer_that_hashes_the_room_no_client_is_carried(
    nodes: ServerFactory,
) -> None:
    srv = await nodes()
    ports = [int(url.split(":")[2].split("/")[0]) for url in srv.urls]
    balancer = Balancer([("127.0.0.1", port) for port in ports], by_room=True)
    await balancer.start()
    via = dataclasses.replace(srv, url=balancer.url, clients=[])
    engines = {(room, user): make_engine(via) for room in ("r", "q") for user in "ABC"}
    try:
        async with contextlib.AsyncExitStack() as stack:
            for (room, user), (engine, _) in engines.items():
                await stack.enter_async_context(engine)
                await engine.login_room(room, User(user), RoomConfig(user_update=True))
            # The engines name their room in the URL: each room's members reach one node.
            assert balancer.rooms == [f"{APP}/r"] * 3 + [f"{APP}/q"] * 3
            assert len(set(balancer.chosen[:3])) == len(set(balancer.chosen[3:])) == 1
            for node in range(len(ports)):
                assert await carrying(srv, node) == {
                    "trunks_out": 0,
                    "carried_out": 0,
                    "trunks_in": 0,
                    "carried_in": 0,
                }
            _, first = engines["r", "A"]

            def heard() -> set[str]:
                return {u.user_id for e in first.of(RoomUserUpdate) for u in e.users}

            await until(lambda: heard() == {"B", "C"})
    finally:
        await balancer.stop()


async def test_clients_carried_to_one_node_share_one_connection_between_the_nodes(
    nodes: ServerFactory,
) -> None:
    srv = await nodes()
    owner = await logged_in(srv, 0, "A", "r")  # node 0 runs the room
    carried = [await logged_in(srv, 1, f"B{i}", "r") for i in range(5)]
    for i in range(5):
        assert (await owner.next_of("room_user_update"))["users"][0]["user_id"] == f"B{i}"
    assert await carrying(srv, 1) == {
        "trunks_out": 1,
        "carried_out": 5,
        "trunks_in": 0,
        "carried_in": 0,
    }
    assert await carrying(srv, 0) == {
        "trunks_out": 0,
        "carried_out": 0,
        "trunks_in": 1,
        "carried_in": 5,
    }
    # Each carried client's frames stay its own, both ways and in order.
    for n in range(3):
        for i, client in enumerate(carried):
            await client.ok("broadcast", message=f"{i}.{n}")
    heard = [(await owner.next_of("broadcast"))["message"] for _ in range(15)]
    for i in range(5):
        assert [m for m in heard if m.startswith(f"{i}.")] == [f"{i}.{n}" for n in range(3)]
    # A binary frame is refused by the room's node, as on a socket of its own.
    await carried[0].pushes_before_heartbeat()  # the others' broadcasts
    assert carried[0].ws is not None
    await carried[0].ws.send_bytes(b"\x00")
    assert (await carried[0].next_of("reply"))["error"]["code"] == 1000003
    # A client that goes away is gone on the room's node too; the others stay carried.
    await carried[4].drop()

    async def owner_lets_go() -> bool:
        return (await carrying(srv, 0))["carried_in"] == 4

    await until(owner_lets_go, 5, "node 0 ends the socket its client dropped")
    assert (await carrying(srv, 1))["carried_out"] == 4


async def test_a_broken_trunk_closes_what_it_carried_and_its_clients_resume(
    nodes: ServerFactory,
) -> None:
    srv = await nodes()
    owner = await logged_in(srv, 0, "A", "r")
    carried = await logged_in(srv, 1, "B", "r")
    await owner.next_of("room_user_update")
    assert srv.server.routing is not None
    await srv.server.routing.trunk_end.close()  # node 0 drops every trunk to it
    assert await carried.closed_by_server() == 1001  # going away: it reconnects and resumes
    again = await client_of(srv, 1)
    token, again.last_seq = carried.login_result["resume_token"], carried.last_seq
    assert (await again.ok("resume", resume_token=token, last_seq=again.last_seq))["resumed"]
    await again.ok("broadcast", message="back")
    assert (await owner.next_of("broadcast"))["message"] == "back"
    # Silent to the room: the owner heard no one leave or come back.
    assert [m["type"] for m in await owner.pushes_before_heartbeat()] == []
    assert (await carrying(srv, 1))["trunks_out"] == 1


async def test_a_carried_socket_outlives_the_login_timeout_of_the_node_it_reached(
    nodes: ServerFactory,
) -> None:
    srv = await nodes(limits=Limits(login_timeout_s=0.3))
    owner = await logged_in(srv, 0, "A", "r")
    carried = await logged_in(srv, 1, "B", "r")  # node 1 carries it to node 0
    carried.keep_alive(0.2)
    await owner.next_of("room_user_update")
    # Node 1 never saw a login of its own on that socket: past its login timeout (several
    # sweeps of 0.1 s), the socket still carries B's messages.
    for _ in range(10):
        await carried.ok("broadcast", message="still here")
        assert (await owner.next_of("broadcast"))["message"] == "still here"
        await asyncio.sleep(0.1)
