"""A real Mosquitto broker on a free port of 127.0.0.1, started and stopped by tests
(of this suite and of the Home Assistant harness in tests/ha, which has no aiomqtt)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from edged.testing.waiting import until

if TYPE_CHECKING:
    import aiomqtt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """Owns one mosquitto process and its configuration file."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise RuntimeError("mosquitto is not installed (scripts/setup installs it)")
        self.exe = exe
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "log_dest none\n"
        )
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(self.exe, "-c", str(self.conf))

        def listening() -> bool:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.1),
            ):
                return True
            return False

        await until(listening, 10, f"mosquitto to listen on port {self.port}")

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            await self.proc.wait()
            self.proc = None

    def client(self, **kw: object) -> aiomqtt.Client:
        import aiomqtt

        return aiomqtt.Client("127.0.0.1", self.port, **kw)  # type: ignore[arg-type]
