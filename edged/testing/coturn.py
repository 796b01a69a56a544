"""A real coturn for tests: time-limited credentials only, on an address of its own.

:class:`Coturn` starts Debian's ``turnserver`` with ``use-auth-secret`` (the TURN REST
scheme the room server mints credentials for, :mod:`edged.server.turn`), listening and
relaying on :data:`TURN_ADDRESS`, which it adds to the harness namespace's veth while it
runs. Its relay ports (:data:`RELAY_PORTS`) lie below the kernel's ephemeral range, so a
firewall rule can tell relayed media from peers' own host candidates on that address
(:meth:`edged.testing.faults.NetworkFaults.only_through`).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from pathlib import Path

from . import netns
from .daemon import start_listening, stop_process

TURN_ADDRESS = "198.18.0.3"
RELAY_PORTS = (22000, 22999)
REALM = "edged.test"


def installed() -> bool:
    return shutil.which("turnserver") is not None or Path("/usr/bin/turnserver").exists()


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


class Coturn:
    """Owns one ``turnserver`` process and its address on the namespace's veth."""

    def __init__(self, workdir: Path, secret: str, address: str = TURN_ADDRESS) -> None:
        self.exe = shutil.which("turnserver") or "/usr/bin/turnserver"
        self.secret = secret
        self.address = address
        self.log = workdir / "turnserver.log"
        self.port = 0
        self.proc: asyncio.subprocess.Process | None = None
        self._added = False

    @property
    def url(self) -> str:
        return f"turn:{self.address}:{self.port}?transport=udp"

    async def start(self) -> None:
        if not netns.inside_test_namespace():
            raise RuntimeError("coturn runs only inside the harness's namespace")
        with contextlib.suppress(netns.NamespaceError):  # already there: not ours to remove
            netns.ip("addr", "add", f"{self.address}/32", "dev", netns.PEER_INTERFACE)
            self._added = True
        self.port = _free_port(self.address)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            self.exe,
            "-n",  # no configuration file: everything is here
            f"--listening-ip={self.address}",
            f"--relay-ip={self.address}",
            f"--listening-port={self.port}",
            f"--min-port={RELAY_PORTS[0]}",
            f"--max-port={RELAY_PORTS[1]}",
            "--use-auth-secret",
            f"--static-auth-secret={self.secret}",
            f"--realm={REALM}",
            *("--fingerprint", "--no-tls", "--no-dtls", "--no-cli", "--no-software-attribute"),
            *("--simple-log", "--log-file=stdout", "--verbose"),
        ]
        self.proc = await start_listening(argv, self.log, self.address, self.port, 15)

    def allocations(self) -> int:
        """Relay allocations the server granted so far (read from its log)."""
        return self.log.read_text(errors="replace").count("ALLOCATE processed, success")

    async def stop(self) -> None:
        await stop_process(self.proc)
        self.proc = None
        if self._added:
            netns.ip("addr", "del", f"{self.address}/32", "dev", netns.PEER_INTERFACE)
            self._added = False
