"""Which tests need Janus, where they may skip for want of it, and a VideoRoom subscriber."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from edged.server.janus import JanusHandle
from edged.testing.janus import installed


def _release() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return ""
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return fields.get("VERSION_CODENAME", "").strip('"')


requires_janus = pytest.mark.skipif(
    not installed() and _release() == "trixie",
    reason="Debian 13 has no janus package (Debian 12 and 14 have): these tests run in the "
    "host pass; on Debian 13 Janus runs on another machine (docs/scaling.md)",
)
"""Mark for tests that start Janus: skipped only where the release cannot have it; a
missing janus anywhere else fails the test (scripts/setup --test installs it)."""


async def subscribe(
    handle: JanusHandle, room: str, pc: RTCPeerConnection, feed: str = "cam"
) -> None:
    """Subscribe ``pc`` to every stream of ``feed`` in a VideoRoom: Janus offers, ``pc``
    answers."""
    reply = await handle.message(
        {"request": "join", "ptype": "subscriber", "room": room, "streams": [{"feed": feed}]}
    )
    assert reply.data["videoroom"] == "attached" and reply.jsep is not None
    await pc.setRemoteDescription(RTCSessionDescription(reply.jsep["sdp"], "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    started = await handle.message(
        {"request": "start"}, {"type": "answer", "sdp": pc.localDescription.sdp}
    )
    assert started.data.get("started") == "ok"
