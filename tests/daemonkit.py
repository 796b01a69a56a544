"""Helpers for tests of `edged run` as a process: its config, the process, its topics."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

from broker import Broker
from conftest import APP, SECRET, RunningServer

DEVICE = "door1"
STATE = f"edged/{DEVICE}/state"


def write_config(
    path: Path,
    srv: RunningServer,
    broker: Broker,
    room: str = "porch",
    server_url: str | None = None,
    **timers: float,
) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "device": {"id": DEVICE, "name": "Front door"},
                "room": {
                    "server_url": server_url or srv.url,
                    "app_id": APP,
                    "app_secret": SECRET,
                    "room_id": room,
                    "user_id": DEVICE,
                },
                "auto": {"publish": {"stream_id": f"{DEVICE}-cam"}},
                "video": {"source": "testpattern", "width": 320, "height": 240},
                "audio": {"source": "tone"},
                "mqtt": {
                    "host": "127.0.0.1",
                    "port": broker.port,
                    "quality_interval_s": 1,
                    "snapshot_interval_s": 0,
                },
                "timers": {
                    "retry_min_s": 0.1,
                    "retry_max_s": 0.5,
                    "quality_interval_s": 1,
                    **timers,
                },
                "logging": {"journald": False},
            }
        )
    )


class DaemonProcess:
    """One `edged run` subprocess with a notify socket of its own."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.config = config
        self.notify_path = workdir / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.setblocking(False)
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = workdir / "daemon.log"

    async def start(self) -> None:
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path)}
        with self.log_path.open("ab") as log:  # a file: a full pipe would block the daemon
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "edged",
                "run",
                "--config",
                str(self.config),
                env=env,
                stderr=log,
            )

    async def notifications(self, until: str, timeout: float = 15) -> list[str]:
        got: list[str] = []
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while not any(until in g for g in got):
                data = await loop.sock_recv(self.notify, 4096)
                got.append(data.decode())
        return got

    def signal(self, signo: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signo)

    async def wait(self, timeout: float = 20) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.notify.close()
        if self.log_path.exists():  # shown by pytest when the test failed
            sys.stderr.write(self.log_path.read_text()[-4000:])


async def state_where(client: aiomqtt.Client, check: Any, timeout: float = 20) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            if message.topic.matches(STATE):
                state = json.loads(message.payload)  # type: ignore[arg-type]
                if check(state):
                    return dict(state)
    raise AssertionError("unreachable")


def publishing(state: dict[str, Any]) -> bool:
    return state["room"]["state"] == "CONNECTED" and state["publisher"]["state"] == "PUBLISHING"


async def command(client: aiomqtt.Client, name: str, **args: Any) -> dict[str, Any]:
    rid = f"{name}-{id(args)}"
    await client.publish(
        f"edged/{DEVICE}/command", json.dumps({"command": name, "request_id": rid, **args}), qos=1
    )
    async with asyncio.timeout(20):
        async for message in client.messages:
            if message.topic.matches(f"edged/{DEVICE}/command/response"):
                body = json.loads(message.payload)  # type: ignore[arg-type]
                if body["request_id"] == rid:
                    return dict(body)
    raise AssertionError("unreachable")
