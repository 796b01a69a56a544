"""Starting a server program for a test and waiting until it listens on its TCP port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Mapping
from pathlib import Path

from .waiting import until


async def start_listening(
    argv: list[str],
    log: Path,
    address: str,
    port: int,
    timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
) -> asyncio.subprocess.Process:
    """Start ``argv`` (its output appended to ``log``, ``env`` its environment if given)
    and return once something accepts TCP connections on ``address:port``; fail at once
    if the program exits first."""
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=out, env=env)

    def listening() -> bool:
        if proc.returncode is not None:
            raise RuntimeError(f"{argv[0]} exited with {proc.returncode}: see {log}")
        with contextlib.suppress(OSError), socket.create_connection((address, port), 0.1):
            return True
        return False

    await until(listening, timeout, f"{Path(argv[0]).name} to listen on {address}:{port} ({log})")
    return proc


async def stop_process(proc: asyncio.subprocess.Process | None, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc is not None and proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            proc.kill()
            await proc.wait()
