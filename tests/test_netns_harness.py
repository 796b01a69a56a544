"""The harness: the session runs in a private namespace and ICE stays inside it."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import subprocess

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from edged.testing import netns

pytestmark = pytest.mark.netns
INSIDE = ipaddress.ip_network("198.18.0.0/24")


def test_session_runs_inside_a_namespace_with_only_its_veth_pair(
    test_namespace: netns.TestNamespace,
) -> None:
    assert netns.inside_test_namespace()
    out = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True)
    links = {link["ifname"] for link in json.loads(out.stdout)}
    assert {"lo", "v0", "v1"} <= links and links <= {"lo", "v0", "v1", "sit0", "tunl0"}
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True)
    assert f"default via {netns.PEER_ADDRESS} dev v0" in routes.stdout


async def test_peer_connections_use_only_namespace_addresses() -> None:
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    channel = offerer.createDataChannel("ping")
    got: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    @answerer.on("datachannel")
    def _on_channel(ch: object) -> None:
        @ch.on("message")  # type: ignore[attr-defined]
        def _on_message(message: str) -> None:
            if not got.done():
                got.set_result(message)

    @channel.on("open")
    def _on_open() -> None:
        channel.send("hello")

    try:
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(answerer.localDescription)
        assert await asyncio.wait_for(got, 10) == "hello"
        for sdp in (offerer.localDescription.sdp, answerer.localDescription.sdp):
            hosts = [line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate")]
            assert hosts and all(ipaddress.ip_address(h) in INSIDE for h in hosts), hosts
    finally:
        await offerer.close()
        await answerer.close()


def test_host_network_switches_back_and_returns() -> None:
    def current() -> int:
        return os.stat("/proc/thread-self/ns/net").st_ino

    inside = current()
    with netns.host_network():
        assert current() != inside
        assert not netns.inside_test_namespace()
    assert current() == inside
    assert netns.inside_test_namespace()
