"""The .deb on Debian 13: installed with apt into a fresh trixie root, then used there.

``scripts/build-deb`` builds ``dist/edged_<version>-1_all.deb`` inside a Debian 13 root and
runs lintian there; this module installs that file into a fresh copy of a cached minbase
trixie root the way docs/hardware-check.md tells an administrator to (``apt-get install
--no-install-recommends ./…deb python3-alsaaudio ca-certificates``: apt resolves every
dependency from Debian 13, and what the program needs is a dependency, not a
recommendation). Chrooted into it, it runs what a user runs first: ``edged --version``,
``edged check-config``, ``systemd-analyze verify`` on both units, and a real call (``edged
server``, ``edged run`` publishing the test pattern and a tone, and a player on the root's
own Python, aiortc and PyAV decoding the frames). It checks what an administrator reads
and sees: the documentation is there uncompressed wherever the units and the man page
point, the test harness (``edged.testing``) is not installed, and a snapshot writes no
FFmpeg warning to stderr (the journal). Then a reinstall keeps a local edit of the
conffile and a purge removes the state.

It needs root, ``debootstrap`` and Debian's package archive (reached through
:func:`edged.testing.netns.host_network`; the call itself runs in the test namespace).
Duration, measured on the CI machine: with nothing cached about 1.5 minutes
(debootstrap about 30 s, then apt downloading and installing about 260 packages about a
minute, the checks and the call about 10 s); with the cache about 1 to 1.5 minutes, almost
all of it dpkg unpacking and configuring those packages in the fresh root (the minbase
root and every downloaded package are cached in ``$EDGED_CI_CACHE``, default
/var/cache/edged-ci; see scripts/trixie-root). scripts/build-deb takes about 1.5 minutes
the first time and under 10 s afterwards.

It runs when ``EDGED_DEB_TEST=1``, which ``.ci/run`` sets after ``scripts/build-deb``
succeeded; without it the module is skipped with that reason, and with it a missing .deb
is a failure, not a skip.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from edged import __version__
from edged.media.sinks.analysis import luma_plane
from edged.media.sources.timecode import decode
from edged.testing.netns import host_network

REPO = Path(__file__).resolve().parents[1]
TRIXIE_ROOT = REPO / "scripts" / "trixie-root"
DEB_NAME = f"edged_{__version__}-1_all.deb"
DEB = REPO / "dist" / DEB_NAME
CACHE = Path(os.environ.get("EDGED_CI_CACHE", "/var/cache/edged-ci"))
INSTALL = "apt-get install -y -q --no-install-recommends"
INSTALL_ALSO = "python3-alsaaudio ca-certificates"
"""The lean install of docs/hardware-check.md: without the FFmpeg libraries' recommendations
(Vulkan and VA drivers, GTK, speech models: about 250 MB), with the two recommendations
of use on a board: ALSA audio, and the CA certificates for a broker or server with a
public certificate."""

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("EDGED_DEB_TEST") != "1",
        reason="the .deb install test runs with EDGED_DEB_TEST=1 after scripts/build-deb "
        "(.ci/run does both)",
    ),
    pytest.mark.timeout(900),
]

TIMINGS: dict[str, float] = {}


def _report(phase: str, start: float) -> None:
    TIMINGS[phase] = time.monotonic() - start
    print(f"test_deb: {phase}: {TIMINGS[phase]:.1f} s", file=sys.stderr)


def _host(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """A command on this machine, in its own network (debootstrap, apt downloads)."""
    with host_network():
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


class Root:
    """A trixie root with the package installed; :meth:`run` runs a command chrooted in it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def run(
        self, script: str, *, timeout: float = 120, network: bool = False
    ) -> subprocess.CompletedProcess[str]:
        args = [str(TRIXIE_ROOT), "run", str(self.path), "sh", "-ec", script]
        if network:
            return _host(*args, timeout=timeout)
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)

    def ok(self, script: str, *, timeout: float = 120, network: bool = False) -> str:
        result = self.run(script, timeout=timeout, network=network)
        assert result.returncode == 0, (
            f"{script!r} exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
        return result.stdout


@pytest.fixture(scope="module")
def root() -> Iterator[Root]:
    assert os.geteuid() == 0, "the .deb install test needs root (debootstrap, chroot)"
    assert DEB.is_file(), f"{DEB} is missing: run scripts/build-deb first"
    assert shutil.which("debootstrap"), "debootstrap is missing (apt-get install debootstrap)"
    path = CACHE / f"install-test-{os.getpid()}"
    start = time.monotonic()
    made = _host(str(TRIXIE_ROOT), "fresh", str(path), timeout=600)
    assert made.returncode == 0, made.stderr
    _report("fresh trixie root (debootstrap when not cached)", start)
    try:
        shutil.copy(DEB, path / "tmp" / DEB_NAME)
        start = time.monotonic()
        r = Root(path)
        r.ok(
            f"apt-get update -q >/dev/null; {INSTALL} /tmp/{DEB_NAME} {INSTALL_ALSO}",
            timeout=900,
            network=True,
        )
        _report("apt-get install ./edged.deb", start)
        yield r
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_apt_installs_it_on_debian_13_with_its_python_stack(root: Root) -> None:
    status = root.ok("dpkg-query -W -f '${Status} ${Version}' edged")
    assert status == f"install ok installed {__version__}-1"
    assert root.ok("cat /etc/debian_version").startswith("13")
    versions = json.loads(
        root.ok(
            "python3 -c 'import json, sys, aiortc, av, aiohttp, aiomqtt, edged; print(json.dumps("
            "[sys.version_info[:2], aiortc.__version__, av.__version__, edged.__file__]))'"
        )
    )
    python, aiortc_version, av_version, edged_file = versions
    assert python == [3, 13]
    assert aiortc_version.startswith("1.11")
    assert av_version.startswith("14.")
    assert edged_file == "/usr/lib/python3/dist-packages/edged/__init__.py"
    # The program on the PATH runs on the system Python.
    assert root.ok("command -v edged").strip() == "/usr/bin/edged"
    assert root.ok("head -1 /usr/bin/edged").replace(" ", "").strip() == "#!/usr/bin/python3"


def test_version_and_shipped_config(root: Root) -> None:
    assert root.ok("edged --version").strip() == f"edged {__version__}"
    out = root.ok("edged check-config /etc/edged/edged.yaml")
    assert out.startswith("ok: /etc/edged/edged.yaml")
    assert "(embedded)" in out
    assert "/etc/edged/edged.yaml" in root.ok("cat /var/lib/dpkg/info/edged.conffiles")
    assert root.ok("man -w edged 2>/dev/null || ls /usr/share/man/man1/edged.1.gz").strip()


def test_service_user_and_the_secret_made_at_install(root: Root) -> None:
    groups = root.ok("id -nG edged").split()
    assert {"edged", "video", "audio", "render"} <= set(groups)
    assert root.ok("getent passwd edged | cut -d: -f6,7").strip() == (
        "/var/lib/edged:/usr/sbin/nologin"
    )
    stat = root.ok("stat -c '%U:%G %a' /var/lib/edged /var/lib/edged/apps.yaml").split("\n")
    assert stat[:2] == ["edged:edged 750", "edged:edged 600"]
    apps = root.ok(
        "python3 -c 'import json, yaml; "
        'print(json.dumps(yaml.safe_load(open("/var/lib/edged/apps.yaml"))))\''
    )
    secret = json.loads(apps)["default"]
    assert len(secret) >= 40
    # Made on this machine: the package does not carry it.
    found = root.run(f"dpkg-deb --fsys-tarfile /tmp/{DEB_NAME} | tar -xO | grep -caF -- '{secret}'")
    assert found.stdout.strip() == "0", found.stdout + found.stderr
    # The root's token command finds it (what a user runs to let a browser in).
    token = root.ok("edged token --user browser --ttl 60").strip()
    assert token.count(".") == 2


def test_both_units_verify_and_only_the_daemon_is_enabled(root: Root) -> None:
    units = "/usr/lib/systemd/system/edged.service /usr/lib/systemd/system/edged-server.service"
    # No man-db in a minbase root: Documentation=man:edged(1) is checked above instead.
    result = root.run(f"systemd-analyze verify --man=no {units}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr
    assert "Type=notify-reload" in root.ok("cat /usr/lib/systemd/system/edged.service")
    wants = root.ok("ls /etc/systemd/system/multi-user.target.wants/").split()
    assert "edged.service" in wants
    assert "edged-server.service" not in wants


DOC_DIR = "/usr/share/doc/edged"
ADMIN_DOCS = [
    "configuration.md",
    "hardware-check.md",
    "mqtt.md",
    "web.md",
    "security.md",
    "errors.md",
    "audio.md",
    "media.md",
    "quality.md",
    "scaling.md",
    "whep.md",
    "home-assistant.md",
]


def test_admin_documentation_is_installed_readable(root: Root) -> None:
    for name in ADMIN_DOCS:
        shipped = (root.path / DOC_DIR.lstrip("/") / name).read_text()
        # The page itself, as plain text: not gzipped, not empty, not a stale copy.
        assert shipped == (REPO / "docs" / name).read_text(), name
    listing = root.ok(f"ls {DOC_DIR}").split()
    assert not [name for name in listing if name.endswith(".md.gz")], listing


def _documentation_targets(root: Root) -> dict[str, set[str]]:
    """Every /usr/share/doc path the units (Documentation=) and the man page point at."""
    targets: dict[str, set[str]] = {}
    for unit in ("edged.service", "edged-server.service"):
        text = root.ok(f"cat /usr/lib/systemd/system/{unit}")
        uris = [
            uri
            for line in text.splitlines()
            if line.startswith("Documentation=")
            for uri in line.removeprefix("Documentation=").split()
        ]
        assert "man:edged(1)" in uris, unit
        targets[unit] = {uri.removeprefix("file://") for uri in uris if uri.startswith("file://")}
    man = root.ok("zcat /usr/share/man/man1/edged.1.gz").replace("\\-", "-")
    # FILES names the directory, then each page in it.
    assert f"{DOC_DIR}/" in man
    pages = re.findall(r"^\.I ([\w.-]+\.md)$", man, re.MULTILINE)
    targets["edged(1)"] = {f"{DOC_DIR}/{page}" for page in pages}
    return targets


def test_documentation_the_units_and_man_page_point_at_exists(root: Root) -> None:
    targets = _documentation_targets(root)
    assert f"{DOC_DIR}/hardware-check.md" in targets["edged.service"]
    assert {f"{DOC_DIR}/mqtt.md", f"{DOC_DIR}/security.md"} <= targets["edged.service"]
    assert {f"{DOC_DIR}/web.md", f"{DOC_DIR}/security.md"} <= targets["edged-server.service"]
    assert {f"{DOC_DIR}/{name}" for name in ADMIN_DOCS} <= targets["edged(1)"]
    for where, paths in targets.items():
        for path in paths:
            # What `systemctl help edged` and the man page send an administrator to.
            head = root.run(f"head -c 2 {path}")
            assert head.returncode == 0, f"{where} points at {path}: {head.stderr}"
            assert head.stdout == "# ", f"{where} points at {path}, which is not the page"


def test_the_test_harness_is_not_installed(root: Root) -> None:
    files = root.ok("dpkg -L edged").split()
    assert not [f for f in files if "/edged/testing" in f]
    missing = root.run("python3 -c 'import edged.testing'")
    assert missing.returncode != 0
    assert "No module named 'edged.testing'" in missing.stderr
    # Nothing of the program refers to it, not even an import made late.
    users = root.run(
        "grep -rlE 'edged[.]testing|from [.]+testing|import testing' "
        "/usr/lib/python3/dist-packages/edged"
    )
    assert users.stdout == "", users.stdout


SNAPSHOT = """\
import sys
from edged.media.sinks.snapshot import jpeg_from_frame
from edged.media.sources.testpattern import TestPatternRenderer

with open(sys.argv[1], "wb") as out:
    out.write(jpeg_from_frame(TestPatternRenderer(1280, 720).render(4321)))
"""


def test_a_snapshot_writes_nothing_to_the_journal_on_debians_pyav(root: Root) -> None:
    # What the daemon does for the MQTT snapshot camera, first at every start. Debian's
    # PyAV leaves FFmpeg's log on stderr, which the unit sends to the journal.
    (root.path / "tmp" / "snapshot.py").write_text(SNAPSHOT)
    result = root.run("python3 /tmp/snapshot.py /tmp/snapshot.jpg")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    data = (root.path / "tmp" / "snapshot.jpg").read_bytes()
    with av.open(io.BytesIO(data)) as container:
        picture = next(container.decode(video=0))
    assert (picture.width, picture.height) == (640, 360)
    code = decode(luma_plane(picture))
    assert code is not None
    assert code.sequence == 4321


CALL_CONFIG = """\
device: {{id: cam1, name: Camera one}}
room: {{server_url: "ws://127.0.0.1:{port}/ws", app_id: default, room_id: r1,
        app_secret_file: /tmp/call/secret}}
auto: {{login: true, publish: {{enabled: true, stream_id: cam1-cam}}}}
video: {{source: testpattern, width: 320, height: 240, fps: 15}}
audio: {{source: tone}}
mqtt: {{enabled: false}}
logging: {{level: INFO, journald: false}}
"""

CALL_DRIVER = """\
import asyncio, json, signal, socket, subprocess, sys, time
from edged.engine.config import EngineProfile
from edged.engine.engine import Engine
from edged.media.sinks.analysis import VideoCodeSink
from edged.model import User

PORT, SECRET = int(sys.argv[1]), open("/tmp/call/secret").read().strip()


class Sink:
    video = None
    kinds = []

    def attach(self, track):
        self.kinds.append(track.kind)
        if track.kind == "video":
            self.video = VideoCodeSink(track)
            self.video.start()

    async def close(self):
        if self.video is not None:
            await self.video.close()


def wait_port(port, deadline):
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit("the room server did not listen")


async def main():
    logs = {n: open(f"/tmp/call/{n}.log", "w") for n in ("server", "daemon")}
    server = subprocess.Popen(
        ["edged", "server", "--port", str(PORT), "--apps", "/tmp/call/apps.yaml"],
        stdout=logs["server"], stderr=subprocess.STDOUT)
    daemon = None
    result = {}
    try:
        wait_port(PORT, time.monotonic() + 30)
        daemon = subprocess.Popen(
            ["edged", "run", "--config", "/tmp/call/edged.yaml"],
            stdout=logs["daemon"], stderr=subprocess.STDOUT)
        viewer = Engine(EngineProfile("default", f"ws://127.0.0.1:{PORT}/ws", app_secret=SECRET))
        sink = Sink()
        await viewer.login_room("r1", User("viewer", "Viewer"))
        await viewer.start_playing("cam1-cam", sink)
        async with asyncio.timeout(60):
            while sink.video is None:
                if daemon.poll() is not None:
                    raise SystemExit(f"edged run exited with {daemon.returncode}")
                await asyncio.sleep(0.1)
            result["frames_ok"] = await sink.video.wait_for_codes(30)
        result["decoded"] = sink.video.decoded
        result["kinds"] = sorted(sink.kinds)
        await viewer.destroy()
        daemon.send_signal(signal.SIGTERM)
        result["daemon_exit"] = daemon.wait(20)
    finally:
        for p in (daemon, server):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    print(json.dumps(result))


asyncio.run(main())
"""


@pytest.mark.netns
def test_a_real_call_on_trixies_aiortc_and_pyav(root: Root) -> None:
    call = root.path / "tmp" / "call"
    call.mkdir(exist_ok=True)
    secret = root.ok("python3 -c 'import secrets; print(secrets.token_urlsafe(32))'").strip()
    (call / "secret").write_text(secret + "\n")
    (call / "apps.yaml").write_text(f'default: "{secret}"\n')
    port = 18790
    (call / "edged.yaml").write_text(CALL_CONFIG.format(port=port))
    (call / "driver.py").write_text(CALL_DRIVER)
    out = root.ok("edged check-config /tmp/call/edged.yaml")
    assert "video testpattern" in out
    start = time.monotonic()
    # Inside the test's network namespace: the peer connection never leaves this machine.
    result = root.run(f"cd /tmp/call && python3 driver.py {port}", timeout=150)
    _report("call", start)
    logs = "".join(
        f"\n--- {name}.log:\n{(call / f'{name}.log').read_text()[-3000:]}"
        for name in ("server", "daemon")
        if (call / f"{name}.log").exists()
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:] + logs
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["frames_ok"] is True, logs
    assert outcome["decoded"] >= 30
    assert outcome["kinds"] == ["audio", "video"]
    assert outcome["daemon_exit"] == 0, logs
    # SIGTERM (systemctl stop) logged the daemon out: the server was told, not left to
    # notice a heartbeat timeout.
    server_log = (call / "server.log").read_text()
    match = re.search(r"login app=default room=r1 user=cam1 session=(\w+)", server_log)
    assert match, server_log
    assert f"logout session={match.group(1)}" in server_log, server_log


def test_reinstall_keeps_local_edits_and_purge_removes_state(root: Root) -> None:
    conf = root.path / "etc" / "edged" / "edged.yaml"
    with conf.open("a") as f:
        f.write("# a local edit\n")
    apps_before = (root.path / "var" / "lib" / "edged" / "apps.yaml").read_text()
    root.ok(f"{INSTALL} --reinstall /tmp/{DEB_NAME}", timeout=300, network=True)
    assert conf.read_text().endswith("# a local edit\n")
    assert (root.path / "var" / "lib" / "edged" / "apps.yaml").read_text() == apps_before
    root.ok("apt-get purge -y -q edged", timeout=300)
    assert not (root.path / "var" / "lib" / "edged").exists()
    assert not conf.exists()
    assert not (root.path / "etc" / "edged").exists()
    assert not (root.path / "usr" / "bin" / "edged").exists()


@pytest.fixture(scope="module", autouse=True)
def _print_timings() -> Iterator[None]:
    yield
    with contextlib.suppress(Exception):
        total = sum(TIMINGS.values())
        print(f"test_deb: timings {TIMINGS} (total {total:.0f} s)", file=sys.stderr)
