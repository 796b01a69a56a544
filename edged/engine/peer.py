"""Building peer connections and translating between aiortc and protocol messages."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransport,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from ..logs import log_event
from ..protocol import IceCandidate, SessionDescription
from . import mdns

log = logging.getLogger("edged.engine")


def make_peer_connection(ice_servers: list[dict[str, Any]]) -> RTCPeerConnection:
    """A peer connection with an explicit ICE configuration.

    The list is empty unless configured: aiortc must never fall back to a public STUN
    server of its own choosing, so the configuration is always given.
    """
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in ice_servers
    ]
    return RTCPeerConnection(RTCConfiguration(iceServers=servers))


def watch_ice(pc: RTCPeerConnection) -> Callable[[], bool]:
    """A function telling whether an ICE transport of ``pc`` has failed so far.

    Call it once ``pc`` has its transceivers. When ICE consent expires (about 30 s
    without an answer to the consent checks) aiortc closes the DTLS transport, then sets
    ICE to ``failed`` and, in aiortc 1.11, at once to ``closed``: by the time a
    connection-state handler runs, the failure may no longer show, so it is recorded as
    it happens.
    """
    failed = False

    def changed(ice: RTCIceTransport) -> None:
        nonlocal failed
        if ice.state == "failed":
            failed = True

    seen: set[int] = set()
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        if dtls is not None and id(dtls.transport) not in seen:
            seen.add(id(dtls.transport))
            dtls.transport.on("statechange", functools.partial(changed, dtls.transport))
    return lambda: failed


def connection_ended(pc: RTCPeerConnection, ice_failed: Callable[[], bool] | None) -> bool:
    """Whether ``pc`` stopped carrying media by itself: ``failed``, or ``closed`` after its
    ICE transport failed (consent expiry: aiortc then reports ``closed``, never
    ``failed``). A peer that hangs up (DTLS close) leaves ICE as it was: that end is told
    by signaling, in order. Callers check that ``pc`` is still the one they use, since
    closing it themselves also makes it ``closed``."""
    if pc.connectionState == "failed":
        return True
    return pc.connectionState == "closed" and ice_failed is not None and ice_failed()


def relay_missing(pc: RTCPeerConnection, ice_servers: list[dict[str, Any]]) -> bool:
    """True when TURN servers were given but gathering got no relay candidate from any:
    the TURN server refused the credentials or did not answer (aioice says nothing)."""
    wants_turn = any(
        str(url).startswith(("turn:", "turns:"))
        for server in ice_servers
        for url in ([server["urls"]] if isinstance(server["urls"], str) else server["urls"])
    )
    local = pc.localDescription
    return wants_turn and local is not None and " typ relay" not in local.sdp


def local_description(pc: RTCPeerConnection) -> SessionDescription:
    desc = pc.localDescription
    return SessionDescription(type=desc.type, sdp=desc.sdp)


def to_rtc(desc: SessionDescription) -> RTCSessionDescription:
    return RTCSessionDescription(sdp=desc.sdp, type=desc.type)


async def set_remote_description(pc: RTCPeerConnection, desc: SessionDescription) -> bool:
    """Apply the other end's offer or answer; False when it is unusable.

    The description comes from another member of the room, so anything may arrive:
    aiortc's parser then raises any of several exception types. The caller drops the
    link; nothing else is affected.
    """
    try:
        await pc.setRemoteDescription(to_rtc(desc))
    except Exception as exc:  # untrusted input: whatever aiortc's parser raises
        log_event(log, logging.WARNING, "bad_remote_description", error=type(exc).__name__)
        return False
    return True


async def add_remote_candidate(pc: RTCPeerConnection, cand: IceCandidate) -> None:
    """Add a trickled candidate (browsers trickle; aiortc sends all in its SDP).

    An empty candidate marks the end of gathering. An mDNS ``.local`` host name (what
    a browser without camera permission sends) is resolved here (:mod:`.mdns`); when
    nobody answers, aioice is given the name and tries itself.
    """
    text = cand.candidate.strip()
    if not text:
        return
    if text.startswith("candidate:"):
        text = text[len("candidate:") :]
    try:
        candidate = candidate_from_sdp(text)
    except (ValueError, IndexError, AssertionError):  # aiortc asserts on too few fields
        log.warning("ignoring a malformed remote ICE candidate")
        return
    candidate.sdpMid = cand.sdpMid
    candidate.sdpMLineIndex = cand.sdpMLineIndex
    if mdns.is_mdns_name(candidate.ip):
        address = await mdns.resolve(candidate.ip)
        if address is None:
            log.info("mDNS: no answer for a remote candidate's .local name")
        else:
            candidate.ip = address
    try:
        await pc.addIceCandidate(candidate)
    except Exception as exc:  # untrusted input, as in set_remote_description
        log_event(log, logging.WARNING, "bad_remote_candidate", error=type(exc).__name__)


def remote_host_addresses(pc: RTCPeerConnection) -> tuple[str, ...]:
    """The remote side's host addresses from its ICE candidates (mDNS names resolved)."""
    addresses: list[str] = []
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        ice = dtls.transport if dtls is not None else None
        for candidate in ice.getRemoteCandidates() if ice is not None else ():
            if candidate.type == "host" and candidate.ip not in addresses:
                addresses.append(candidate.ip)
    return tuple(addresses)
