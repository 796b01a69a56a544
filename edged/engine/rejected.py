"""An answer that rejects a media section, made acceptable to aiortc, so the rest of the
call goes on.

A browser that cannot take one of the offered sections answers it with port 0 (stock
Firefox without H.264: ``m=video 0 UDP/TLS/RTP/SAVPF 120``, no ICE credentials, out of
the BUNDLE group). aiortc refuses such an answer as a whole ("ICE username fragment or
password is missing"), and the viewer loses its audio too. :func:`accept_rejected`
rewrites each rejected section as the inactive section it means: the codecs we offered
for it, ``a=inactive``, the transport of the section the answer did accept, and a place
in its BUNDLE group. aiortc then negotiates that transceiver inactive and sends nothing
on it; the other sections play as answered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TRANSPORT = ("a=ice-ufrag:", "a=ice-pwd:", "a=setup:", "a=fingerprint:", "a=rtcp-mux")
_CODEC = ("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")


@dataclass(frozen=True, slots=True)
class Accepted:
    """The answer to give aiortc, and the kinds of the sections the remote rejected."""

    sdp: str
    rejected: tuple[str, ...]


def _sections(sdp: str) -> tuple[list[str], list[list[str]]]:
    """The session-level lines, and each media section's lines (``m=`` first)."""
    lines = [line for line in re.split(r"\r?\n", sdp.strip()) if line]
    head: list[str] = []
    media: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            media.append([line])
        elif media:
            media[-1].append(line)
        else:
            head.append(line)
    return head, media


def _mid(section: list[str]) -> str | None:
    return next((line[6:] for line in section if line.startswith("a=mid:")), None)


def accept_rejected(answer: str, offer: str) -> Accepted:
    """``answer`` with its rejected sections rewritten as inactive ones (see module)."""
    head, media = _sections(answer)
    rejected = [s for s in media if s[0].split()[1] == "0"]
    accepted = [s for s in media if s[0].split()[1] != "0"]
    if not rejected or not accepted:
        return Accepted(answer, ())
    offered = {_mid(s): s for s in _sections(offer)[1]}
    transport = [line for line in accepted[0] if line.startswith(_TRANSPORT)]
    kinds: list[str] = []
    for section in rejected:
        mid = _mid(section)
        ours = offered.get(mid)
        if mid is None or ours is None:
            return Accepted(answer, ())  # not ours to mend: aiortc says what is wrong
        kind, _port, proto, *_pts = ours[0][2:].split(" ")
        payloads = " ".join(ours[0].split(" ")[3:])
        section[:] = [
            f"m={kind} 9 {proto} {payloads}",
            "c=IN IP4 0.0.0.0",
            "a=inactive",
            f"a=mid:{mid}",
            *[line for line in ours if line.startswith(_CODEC)],
            *transport,
        ]
        kinds.append(kind)
    mids = [_mid(s) for s in media]
    head = [
        "a=group:BUNDLE " + " ".join(m for m in mids if m)
        if line.startswith("a=group:BUNDLE")
        else line
        for line in head
    ]
    lines = head + [line for section in media for line in section]
    return Accepted("\r\n".join(lines) + "\r\n", tuple(kinds))
