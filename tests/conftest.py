"""Fixtures: a real room server on 127.0.0.1 and protocol clients talking to it."""

from __future__ import annotations

import contextlib
import errno
import itertools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from alsa import pcms as alsa_pcms

from edged.server.app import RoomServer
from edged.server.cluster import ClusterSettings
from edged.server.settings import Limits, ServerSettings
from edged.testing.janus import Janus
from edged.testing.redis import RedisServer
from edged.tokens import mint

from broker import Broker
from protoclient import ProtoClient

pytest.register_assert_rewrite("pagekit")  # a plugin whose helpers tests also import
collect_ignore = ["ha"]  # Home Assistant's harness, in its own venv: test_home_assistant.py

APP = "testapp"
SECRET = "test-secret-that-is-long-enough-for-hs256!"
JANUS_SECRET = "janus-api-secret-of-the-tests"
CLUSTER_SECRET = "cluster-secret-of-the-tests"
NODES = 3
"""Nodes of a Redis-backed room server in the tests (clients spread over them in turn)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    """A room server serving on a free port of 127.0.0.1, and a client factory."""

    server: RoomServer
    url: str
    http: aiohttp.ClientSession
    runner: web.AppRunner
    clients: list[ProtoClient] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    """With several nodes: every node's URL, which :meth:`client` takes in turn."""
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    redis: RedisServer | None = None
    """With several nodes: the Redis they share."""

    @property
    def settings(self) -> ServerSettings:
        return self.server.settings

    def token(self, user: str, ttl: float = 600, **kw: object) -> str:
        return mint(SECRET, APP, user, ttl, **kw)  # type: ignore[arg-type]

    def next_url(self) -> str:
        """The URL for the next client: the server's, or the nodes' in turn."""
        return self.urls[next(self._turn) % len(self.urls)] if self.urls else self.url

    async def client(self, headers: dict[str, str] | None = None) -> ProtoClient:
        c = await ProtoClient(self.next_url(), self.http).connect(headers)
        self.clients.append(c)
        return c

    async def user(
        self, user: str, room: str = "r1", notify: bool = True, **kw: object
    ) -> ProtoClient:
        """A client logged in as ``user`` into ``room`` with a valid token."""
        c = await self.client()
        await c.login(
            app_id=APP, room_id=room, user_id=user, token=self.token(user), user_update=notify, **kw
        )
        return c


ServerFactory = Callable[..., Awaitable[RunningServer]]


@contextlib.asynccontextmanager
async def serving(store: str, workdir: Path) -> AsyncIterator[ServerFactory]:
    """Room servers for one test: one in-memory node (``memory``), or ``NODES`` nodes
    sharing a real Redis (``redis``), each call of the factory making one server."""
    runners: list[tuple[list[web.AppRunner], RunningServer]] = []
    redis: RedisServer | None = None

    async def node(
        settings_for: Callable[[int], ServerSettings], port: int | None
    ) -> tuple[RoomServer, web.AppRunner, int]:
        """A server on ``port``, or on a free port when None: a port picked free may be
        taken before the server binds it (another socket's ephemeral port), so then
        another is picked."""
        for attempt in range(5):
            chosen = port or free_port()
            server = RoomServer(settings_for(chosen))
            runner = web.AppRunner(server.make_app(), access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, "127.0.0.1", chosen).start()
            except OSError as exc:
                await runner.cleanup()
                if port is not None or exc.errno != errno.EADDRINUSE or attempt == 4:
                    raise
                continue
            return server, runner, chosen
        raise AssertionError("unreachable")

    async def make(**overrides: object) -> RunningServer:
        nonlocal redis
        limits = overrides.pop("limits", Limits())
        port = int(overrides.pop("port", 0)) or None  # type: ignore[call-overload]
        wanted = [port] + [None] * (NODES - 1 if store == "redis" else 0)
        if store == "redis" and redis is None:
            redis = RedisServer(workdir / f"redis-{len(runners)}")
            await redis.start()
        made: list[tuple[RoomServer, web.AppRunner, int]] = []
        for i, p in enumerate(wanted):

            def settings_for(chosen: int, i: int = i) -> ServerSettings:
                settings = ServerSettings(
                    apps={APP: SECRET},
                    heartbeat_interval_s=0.5,
                    heartbeat_timeout_s=2.0,
                    sweep_interval_s=0.1,
                    limits=limits,
                )  # type: ignore[arg-type]
                for key, value in overrides.items():
                    setattr(settings, key, value)
                if redis is not None:
                    url = f"http://127.0.0.1:{chosen}"
                    settings.cluster = ClusterSettings(
                        redis.url, f"n{len(runners)}-{i}", url, CLUSTER_SECRET
                    )
                return settings

            made.append(await node(settings_for, p))
        urls = [f"ws://127.0.0.1:{p}/ws" for _, _, p in made]
        running = RunningServer(
            made[0][0],
            urls[0],
            aiohttp.ClientSession(),
            made[0][1],
            urls=urls if len(urls) > 1 else [],
            redis=redis,
        )
        runners.append(([r for _, r, _ in made], running))
        return running

    try:
        yield make
    finally:
        for node_runners, running in runners:
            for c in running.clients:
                await c.close()
            await running.http.close()
            for runner in node_runners:
                await runner.cleanup()
        if redis is not None:
            await redis.stop()


@pytest.fixture
async def server_factory(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    async with serving("memory", tmp_path) as make:
        yield make


@pytest.fixture(params=["memory", "redis"])
async def store_server_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ServerFactory]:
    """The rooms suite's servers: one in-memory node, then three nodes sharing Redis."""
    async with serving(request.param, tmp_path) as make:
        yield make


@pytest.fixture
async def srv(server_factory: ServerFactory) -> RunningServer:
    return await server_factory()


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    """A real Mosquitto broker on a free port of 127.0.0.1, for one test."""
    b = Broker(tmp_path)
    await b.start()
    yield b
    await b.stop()


@pytest.fixture
async def janus(tmp_path: Path) -> AsyncIterator[Janus]:
    """A real Janus (VideoRoom) with the API secret JANUS_SECRET, for one test."""
    server = Janus(tmp_path, api_secret=JANUS_SECRET)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def pcms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> alsa_pcms.AlsaPcms:
    """The PCMs of tests/alsa/pcms.conf, for this test (alsa-lib rereads ALSA_CONFIG_PATH
    on every open; a daemon the test starts inherits it)."""
    installed = alsa_pcms.install(tmp_path)
    monkeypatch.setenv("ALSA_CONFIG_PATH", alsa_pcms.config_path(installed))
    return installed
