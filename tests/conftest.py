"""Fixtures: a real room server on 127.0.0.1 and protocol clients talking to it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from alsa import pcms as alsa_pcms

from edged.server.app import RoomServer
from edged.server.settings import Limits, ServerSettings
from edged.testing.janus import Janus
from edged.tokens import mint

from broker import Broker
from protoclient import ProtoClient

pytest.register_assert_rewrite("pagekit")  # a plugin whose helpers tests also import
collect_ignore = ["ha"]  # Home Assistant's harness, in its own venv: test_home_assistant.py

APP = "testapp"
SECRET = "test-secret-that-is-long-enough-for-hs256!"
JANUS_SECRET = "janus-api-secret-of-the-tests"


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

    @property
    def settings(self) -> ServerSettings:
        return self.server.settings

    def token(self, user: str, ttl: float = 600, **kw: object) -> str:
        return mint(SECRET, APP, user, ttl, **kw)  # type: ignore[arg-type]

    async def client(self) -> ProtoClient:
        c = await ProtoClient(self.url, self.http).connect()
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


@pytest.fixture
async def server_factory() -> AsyncIterator[ServerFactory]:
    runners: list[tuple[web.AppRunner, RunningServer]] = []

    async def make(**overrides: object) -> RunningServer:
        limits = overrides.pop("limits", Limits())
        port = overrides.pop("port", 0)
        settings = ServerSettings(
            apps={APP: SECRET},
            heartbeat_interval_s=0.5,
            heartbeat_timeout_s=2.0,
            sweep_interval_s=0.1,
            limits=limits,
        )  # type: ignore[arg-type]
        for key, value in overrides.items():
            setattr(settings, key, value)
        server = RoomServer(settings)
        runner = web.AppRunner(server.make_app(), access_log=None)
        await runner.setup()
        port = int(port) or free_port()  # type: ignore[call-overload]
        await web.TCPSite(runner, "127.0.0.1", port).start()
        running = RunningServer(
            server, f"ws://127.0.0.1:{port}/ws", aiohttp.ClientSession(), runner
        )
        runners.append((runner, running))
        return running

    yield make
    for runner, running in runners:
        for c in running.clients:
            await c.close()
        await running.http.close()
        await runner.cleanup()


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
