"""The network-namespace harness: the session runs in a private namespace, ICE stays in it.

Nothing here sends a packet to an address outside the namespace or 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import aioice
import pytest
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection

from edged.testing import netns
from edged.testing.waiting import until_blocking

NETWORK = ipaddress.ip_network(netns.NETWORK)
PLUGIN = "edged.testing.pytest_plugin"


def thread_namespace() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def run(
    *cmd: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, check=False, env=env, cwd=cwd, timeout=60
    )


def env_outside_harness() -> dict[str, str]:
    """The environment of a process that does not know it was started in a namespace."""
    return {k: v for k, v in os.environ.items() if k != netns.ENV_VAR}


def without_sys_admin(*cmd: str) -> list[str]:
    """``cmd`` run as root without CAP_SYS_ADMIN: it cannot make a namespace."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is missing")
    return ["setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin", *cmd]


def namespaces() -> set[str]:
    return set(os.listdir(netns.NETNS_DIR)) if os.path.isdir(netns.NETNS_DIR) else set()


# --- the session ------------------------------------------------------------------------


@pytest.mark.netns
def test_session_runs_inside_a_namespace_whose_only_interfaces_are_lo_v0_v1(
    test_namespace: netns.NamespaceInfo,
) -> None:
    assert netns.inside_test_namespace()
    assert netns.current_namespace() == test_namespace.name == os.environ[netns.ENV_VAR]
    assert {name for _, name in socket.if_nameindex()} == {"lo", "v0", "v1"}
    routes = run("ip", "route").stdout
    assert f"default via {netns.PEER_ADDRESS} dev v0" in routes


@pytest.mark.netns
def test_namespace_fixture_gives_the_name_and_the_host_address(
    test_namespace: netns.NamespaceInfo,
) -> None:
    assert re.fullmatch(r"edged-\d+-\d+", test_namespace.name)
    assert test_namespace.host_address == netns.HOST_ADDRESS == "198.18.0.1"
    assert Path(test_namespace.path).exists()
    with socket.create_server((test_namespace.host_address, 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection((test_namespace.host_address, port), timeout=5) as c:
            peer, _ = server.accept()
            with peer:
                c.sendall(b"x")
                assert peer.recv(1) == b"x"


@pytest.mark.netns
def test_subprocess_started_by_a_test_sees_the_same_namespace() -> None:
    addresses = run("ip", "-o", "addr").stdout
    assert f"inet {netns.HOST_ADDRESS}/24" in addresses
    assert f"inet {netns.PEER_ADDRESS}/24" in addresses
    check = "from edged.testing import netns; print(netns.current_namespace())"
    assert run(sys.executable, "-c", check).stdout.strip() == netns.current_namespace()


@pytest.mark.netns
async def test_threads_started_during_the_session_are_inside() -> None:
    inside = thread_namespace()
    seen: list[int] = []
    worker = threading.Thread(target=lambda: seen.append(thread_namespace()))
    worker.start()
    worker.join()
    assert seen == [inside]
    assert await asyncio.to_thread(thread_namespace) == inside
    assert await asyncio.to_thread(netns.inside_test_namespace)


@pytest.mark.netns
def test_host_network_switches_to_the_host_and_back() -> None:
    inside = thread_namespace()
    with netns.host_network():
        host = thread_namespace()
        assert host != inside
        assert not netns.inside_test_namespace()
        assert "v0" not in {name for _, name in socket.if_nameindex()}
        with netns.host_network():
            assert thread_namespace() == host
        assert thread_namespace() == host
    assert thread_namespace() == inside
    assert netns.inside_test_namespace()


@pytest.mark.netns
def test_host_network_moves_only_the_calling_thread() -> None:
    inside = thread_namespace()
    seen: dict[str, int] = {}
    with netns.host_network():
        other = threading.Thread(target=lambda: seen.setdefault("other", thread_namespace()))
        other.start()
        other.join()
        seen["self"] = thread_namespace()
    assert seen["self"] != inside
    assert seen["other"] == seen["self"]
    assert thread_namespace() == inside


# --- ICE --------------------------------------------------------------------------------


@pytest.mark.netns
async def test_aioice_gathers_host_candidates_only_from_the_namespace_network() -> None:
    connection = aioice.Connection(ice_controlling=True, components=1, stun_server=None)
    try:
        await connection.gather_candidates()
        candidates = connection.local_candidates
        assert candidates
        assert {c.type for c in candidates} == {"host"}
        assert all(ipaddress.ip_address(c.host) in NETWORK for c in candidates), candidates
        assert {c.host for c in candidates} == {netns.HOST_ADDRESS, netns.PEER_ADDRESS}
    finally:
        await connection.close()


def selected_pair(pc: RTCPeerConnection) -> tuple[str, str]:
    """Local and remote host of the ICE pair the connection nominated (aioice internals)."""
    assert pc.sctp is not None
    ice = pc.sctp.transport.transport
    pairs: dict[int, Any] = ice._connection._nominated
    assert pairs, "no nominated candidate pair"
    pair = pairs[1]
    return pair.local_candidate.host, pair.remote_candidate.host


@pytest.mark.netns
async def test_two_aiortc_peers_connect_over_namespace_addresses_and_round_trip_a_message() -> None:
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[str] = loop.create_future()
    channel = offerer.createDataChannel("echo")

    @answerer.on("datachannel")
    def on_datachannel(remote: RTCDataChannel) -> None:
        @remote.on("message")
        def echo(message: str) -> None:
            remote.send(f"echo {message}")

    @channel.on("open")
    def on_open() -> None:
        channel.send("ping")

    @channel.on("message")
    def on_message(message: str) -> None:
        if not reply.done():
            reply.set_result(message)

    try:
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(answerer.localDescription)
        assert await asyncio.wait_for(reply, 15) == "echo ping"

        for pc in (offerer, answerer):
            local, remote = selected_pair(pc)
            assert ipaddress.ip_address(local) in NETWORK
            assert ipaddress.ip_address(remote) in NETWORK
            sdp = pc.localDescription.sdp
            hosts = [line.split()[4] for line in sdp.splitlines() if "candidate:" in line]
            assert hosts and all(ipaddress.ip_address(h) in NETWORK for h in hosts), hosts
    finally:
        await offerer.close()
        await answerer.close()


# --- making and deleting namespaces -----------------------------------------------------


@pytest.mark.netns
def test_test_namespace_is_made_by_the_recipe_and_deleted_on_close() -> None:
    with netns.TestNamespace() as ns:
        assert re.fullmatch(rf"edged-{os.getpid()}-\d+", ns.name)
        assert ns.name in namespaces()
        addresses = run("ip", "-n", ns.name, "-o", "-4", "addr").stdout
        assert re.search(rf"v0\s+inet {netns.HOST_ADDRESS}/24", addresses)
        assert re.search(rf"v1\s+inet {netns.PEER_ADDRESS}/24", addresses)
        assert re.search(r"lo\s+inet 127\.0\.0\.1/8", addresses)
        links = run("ip", "-n", ns.name, "-o", "link").stdout
        assert all("state DOWN" not in line for line in links.splitlines()), links
        routes = run("ip", "-n", ns.name, "route").stdout
        assert f"default via {netns.PEER_ADDRESS} dev v0" in routes
    assert ns.name not in namespaces()
    ns.close()


@pytest.mark.netns
def test_namespaces_made_by_one_process_get_unique_names() -> None:
    with netns.TestNamespace() as a, netns.TestNamespace() as b:
        assert a.name != b.name
        assert {a.name, b.name} <= namespaces()


@pytest.mark.netns
def test_stale_namespaces_of_dead_or_killed_processes_are_removed() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    killed = subprocess.Popen(["sleep", "60"])
    killed.kill()
    state = Path(f"/proc/{killed.pid}/stat")
    until_blocking(lambda: state.read_text().rpartition(")")[2].startswith(" Z"))  # a zombie
    stale = {f"edged-{dead.pid}-0", f"edged-{killed.pid}-0"}
    live = f"edged-{os.getpid()}-999999"
    for name in (*stale, live):
        run("ip", "netns", "add", name)
    try:
        assert {*stale, live} <= namespaces()
        netns.remove_stale_namespaces()
        assert not stale & namespaces()
        assert live in namespaces()
    finally:
        killed.wait()
        for name in (*stale, live):
            run("ip", "netns", "del", name)


# --- pytest sessions and benchmarks started from here ------------------------------------

INNER_TESTS = """
import pytest
from edged.testing import netns

@pytest.mark.netns
def test_inside(test_namespace):
    assert netns.current_namespace() == test_namespace.name

def test_fails():
    assert False
"""


def inner_pytest(tmp_path: Path, env: dict[str, str], *prefix: str) -> tuple[int, str]:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER_TESTS))
    cmd = [
        *prefix,
        sys.executable,
        "-m",
        "pytest",
        "-p",
        PLUGIN,
        "-p",
        "no:cacheprovider",
        "-p",
        "no:asyncio",
        "-rA",
        "-c",
        os.devnull,
        "--rootdir",
        str(tmp_path),
        "test_inner.py",
    ]
    result = run(*cmd, env=env, cwd=tmp_path)
    return result.returncode, result.stdout + result.stderr


def header_namespace(output: str) -> str:
    match = re.search(r"^network namespace: (\S+)", output, re.MULTILINE)
    assert match, output
    return match.group(1)


@pytest.mark.netns
def test_a_pytest_run_started_inside_the_namespace_reuses_it(
    tmp_path: Path, test_namespace: netns.NamespaceInfo
) -> None:
    code, output = inner_pytest(tmp_path, dict(os.environ))
    assert code == 1, output
    assert header_namespace(output) == test_namespace.name
    assert "PASSED test_inner.py::test_inside" in output
    assert Path(test_namespace.path).exists()


@pytest.mark.netns
def test_a_session_deletes_its_namespace_at_the_end_even_when_tests_fail(
    tmp_path: Path, test_namespace: netns.NamespaceInfo
) -> None:
    code, output = inner_pytest(tmp_path, env_outside_harness())
    name = header_namespace(output)
    assert code == 1, output
    assert name != test_namespace.name
    assert "PASSED test_inner.py::test_inside" in output
    assert "FAILED test_inner.py::test_fails" in output
    assert name not in namespaces()


@pytest.mark.netns
def test_netns_tests_fail_rather_than_skip_when_the_session_has_no_namespace(
    tmp_path: Path,
) -> None:
    code, output = inner_pytest(tmp_path, env_outside_harness(), *without_sys_admin())
    assert code == 1, output
    assert "network namespace: none (" in output
    assert "must run as root inside the harness's network namespace" in output
    assert "ERROR test_inner.py::test_inside" in output
    assert "SKIPPED" not in output


@pytest.mark.netns
def test_enter_test_namespace_moves_a_benchmark_in_and_deletes_the_namespace_at_exit() -> None:
    script = textwrap.dedent("""
        import subprocess
        from edged.testing import netns
        info = netns.enter_test_namespace()
        assert netns.inside_test_namespace()
        out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
        assert "inet 198.18.0.1/24" in out
        print(info.name)
    """)
    result = run(sys.executable, "-c", script, env=env_outside_harness())
    assert result.returncode == 0, result.stderr
    name = result.stdout.strip()
    assert re.fullmatch(r"edged-\d+-\d+", name)
    assert name not in namespaces()


@pytest.mark.netns
def test_enter_test_namespace_says_in_one_line_why_it_cannot_make_a_namespace() -> None:
    script = "from edged.testing import netns; netns.enter_test_namespace(); print('ran')"
    result = run(*without_sys_admin(sys.executable, "-c", script), env=env_outside_harness())
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("peer connections run only inside a private network")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.netns
def test_enter_test_namespace_refuses_once_threads_are_running() -> None:
    script = textwrap.dedent("""
        import threading
        from edged.testing import netns
        stop = threading.Event()
        threading.Thread(target=stop.wait, name="early", daemon=True).start()
        netns.enter_test_namespace()
    """)
    result = run(sys.executable, "-c", script, env=env_outside_harness())
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "before any thread starts" in result.stderr and "early" in result.stderr


@pytest.mark.netns
def test_host_network_refuses_in_a_process_that_was_started_inside() -> None:
    script = textwrap.dedent("""
        from edged.testing import netns
        try:
            with netns.host_network():
                print("left")
        except netns.NamespaceError as exc:
            print("refused:", exc)
    """)
    result = run(sys.executable, "-c", script)
    assert result.stdout.startswith("refused: this process was started inside"), result
