"""Talking back: the audio a viewer sends on a link it offered itself (WHEP).

A WHEP player may offer its audio ``sendrecv`` with its microphone on it (Home
Assistant's player does when its microphone is turned on). The engine's owner decides
where that audio goes with a :data:`TalkbackSinks` (``Engine.talkback``): given the
viewer's user id, a :class:`~edged.engine.player.MediaSink` that gets the received
track, or None to decline. Whatever a viewer sends that no sink takes is declined in the
answer (the direction loses its receiving half), so that nothing arrives that would be
decoded and queued for no one.
"""

from __future__ import annotations

from collections.abc import Callable

from aiortc import RTCPeerConnection

from .player import MediaSink

TalkbackSinks = Callable[[str], MediaSink | None]
"""The viewer's user id -> where its audio goes (None: declined)."""

SEND_ONLY = {"sendrecv": "sendonly", "recvonly": "inactive"}
"""A transceiver's direction without its receiving half."""


def receive_talkback(
    pc: RTCPeerConnection, user_id: str, sinks: TalkbackSinks | None
) -> MediaSink | None:
    """With the viewer's offer set and our tracks added to ``pc``: hand the first audio
    the viewer sends to a sink of ``sinks``, decline the rest; the sink, if one took it.
    The caller closes the sink when the link closes."""
    taken: MediaSink | None = None
    for transceiver in pc.getTransceivers():
        track = transceiver.receiver.track
        if track is None:  # the viewer sends nothing on it
            continue
        if transceiver.kind == "audio" and taken is None and sinks is not None:
            taken = sinks(user_id)
            if taken is not None:
                taken.attach(track)
                continue
        transceiver.direction = SEND_ONLY.get(transceiver.direction, transceiver.direction)
    return taken
