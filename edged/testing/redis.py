"""A real Redis (Debian's ``redis-server``) started, killed and restarted by tests and
benchmarks: a free port of 127.0.0.1, no persistence (a restart comes back empty, as a
Redis that lost its memory does), its log in the test's folder."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edged.testing.daemon import start_listening, stop_process
from edged.testing.janus import free_port


def installed() -> bool:
    return bool(shutil.which("redis-server")) or Path("/usr/bin/redis-server").exists()


class RedisServer:
    """Owns one redis-server process on a port that stays the same across restarts."""

    def __init__(self, workdir: Path, password: str | None = None) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(exe).exists():
            raise RuntimeError("redis-server is not installed (scripts/setup --test installs it)")
        self.exe = exe
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.log = self.dir / "redis.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        argv = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.dir)]
        if self.password:
            argv += ["--requirepass", self.password]
        self.proc = await start_listening(argv, self.log, "127.0.0.1", self.port)

    async def kill(self) -> None:
        """SIGKILL: everything it held is gone."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None

    def pause(self, paused: bool = True) -> None:
        """SIGSTOP (it stops answering, its connections stay open) or SIGCONT."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    async def stop(self) -> None:
        await stop_process(self.proc)
        self.proc = None

    @contextlib.asynccontextmanager
    async def client(self, db: int = 0) -> AsyncIterator[Any]:
        """A redis-py asyncio client of this server (strings decoded), closed after."""
        import redis.asyncio as redis_asyncio

        url = f"{self.url.removesuffix('/0')}/{db}"
        store = redis_asyncio.Redis.from_url(url, decode_responses=True)
        try:
            yield store
        finally:
            await store.aclose()
