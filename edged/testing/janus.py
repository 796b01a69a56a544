"""A real Janus (Debian's ``janus``, VideoRoom plugin) started and stopped by tests and
benchmarks.

Its configuration is written to a folder of the test's own: the WebSocket API on a free
port of 127.0.0.1, ICE only on the harness namespace's interfaces, every plugin but the
VideoRoom and every transport but WebSockets disabled, string room and user ids, and an
optional API secret. ``janus -C FILE -F FOLDER`` reads nothing from /etc/janus.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

from edged.testing.daemon import start_listening, stop_process
from edged.testing.netns import HOST_INTERFACE, PEER_INTERFACE

OTHER_PLUGINS = (
    "audiobridge duktape echotest lua nosip recordplay sip streaming textroom videocall voicemail"
)
OTHER_TRANSPORTS = "http mqtt nanomsg pfunix rabbitmq"


def installed() -> bool:
    return bool(shutil.which("janus")) or Path("/usr/bin/janus").exists()


def janus_lib() -> Path:
    """Where Debian put Janus's plugins and transports (the multiarch folder)."""
    for path in sorted(Path("/usr/lib").glob("*/janus/plugins")):
        return path.parent
    raise RuntimeError("janus is not installed (scripts/setup --test installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _so(names: str) -> str:
    return ",".join(f"libjanus_{n}.so" for n in names.split())


class Janus:
    """Owns one janus process, its configuration folder and its log."""

    def __init__(
        self,
        workdir: Path,
        *,
        api_secret: str | None = None,
        session_timeout_s: int = 60,
        rtp_ports: tuple[int, int] = (20000, 20999),
    ) -> None:
        exe = shutil.which("janus") or "/usr/bin/janus"
        if not Path(exe).exists():
            raise RuntimeError("janus is not installed (scripts/setup --test installs it)")
        self.exe = exe
        self.dir = workdir / "janus"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/"
        self.api_secret = api_secret
        self.log = self.dir / "janus.log"
        lib = janus_lib()
        secret = f'\tapi_secret = "{api_secret}"\n' if api_secret else ""
        (self.dir / "janus.jcfg").write_text(
            "general: {\n"
            f'\tconfigs_folder = "{self.dir}"\n'
            f'\tplugins_folder = "{lib}/plugins"\n'
            f'\ttransports_folder = "{lib}/transports"\n'
            f'\tevents_folder = "{lib}/events"\n'
            f'\tloggers_folder = "{lib}/loggers"\n'
            "\tdebug_level = 4\n"
            f"\tsession_timeout = {session_timeout_s}\n"
            f"{secret}"
            "}\n"
            "media: {\n"
            f'\trtp_port_range = "{rtp_ports[0]}-{rtp_ports[1]}"\n'
            "}\n"
            "nat: {\n"
            f'\tice_enforce_list = "{HOST_INTERFACE},{PEER_INTERFACE}"\n'
            "}\n"
            f'plugins: {{\n\tdisable = "{_so(OTHER_PLUGINS)}"\n}}\n'
            f'transports: {{\n\tdisable = "{_so(OTHER_TRANSPORTS)}"\n}}\n'
            "events: {\n\tbroadcast = false\n}\n"
        )
        (self.dir / "janus.transport.websockets.jcfg").write_text(
            "general: {\n"
            '\tjson = "compact"\n'
            "\tws = true\n"
            f"\tws_port = {self.port}\n"
            '\tws_ip = "127.0.0.1"\n'
            "\twss = false\n"
            "}\n"
            "admin: {\n\tadmin_ws = false\n\tadmin_wss = false\n}\n"
        )
        (self.dir / "janus.plugin.videoroom.jcfg").write_text(
            "general: {\n\tstring_ids = true\n}\n"
        )
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        argv = [self.exe, "-C", str(self.dir / "janus.jcfg"), "-F", str(self.dir)]
        argv += ["--disable-colors", "--debug-timestamps"]
        self.proc = await start_listening(argv, self.log, "127.0.0.1", self.port)

    async def kill(self) -> None:
        """SIGKILL: what a crash looks like to its clients."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None

    async def stop(self) -> None:
        await stop_process(self.proc)
        self.proc = None
