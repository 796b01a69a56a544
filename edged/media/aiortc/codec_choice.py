"""Negotiating one codec on a transceiver, also when answering a remote offer.

aiortc packs an ``av.Packet`` with the negotiated codec's packer whatever it holds, so a
pre-encoded stream must never be negotiated as anything else. Both supported aiortc
versions fix an answer's codecs in ``setRemoteDescription`` (``RTCRtpTransceiver._codecs``),
before ``setCodecPreferences`` can be called on the transceiver the offer created, so
:func:`prefer_codec` narrows that private list too.
"""

from __future__ import annotations

from aiortc import RTCRtpSender, RTCRtpTransceiver
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters

from .checks import AIORTC_VERSION, AiortcInternalsError, Checks, check_calls

REQUIREMENTS: Checks = {
    "RTCRtpTransceiver._codecs": lambda: check_calls(
        RTCRtpTransceiver.__init__, "RTCRtpTransceiver.__init__", ["_codecs"]
    ),
}


def codec_capabilities(mime_type: str) -> list[RTCRtpCodecCapability]:
    """aiortc's capabilities for one codec (every profile it offers), then RTX for video."""
    kind = mime_type.split("/")[0].lower()
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for c in codecs if c.mimeType.lower() == mime_type.lower()]
    if not chosen:
        raise AiortcInternalsError(f"aiortc {AIORTC_VERSION} does not offer {mime_type}")
    return chosen + [c for c in codecs if c.mimeType.lower() == f"{kind}/rtx"]


def prefer_codec(transceiver: RTCRtpTransceiver, mime_type: str) -> None:
    """Negotiate only ``mime_type`` (e.g. ``"video/H264"``, ``"audio/opus"``) on a transceiver.

    aiortc packs an ``av.Packet`` with the negotiated codec's packer whatever it holds,
    so a pre-encoded stream must never be negotiated as anything else. Works before an
    offer and also when answering: aiortc fixes an answer's codecs in
    ``setRemoteDescription`` (``transceiver._codecs``), so those are narrowed here too.
    """
    transceiver.setCodecPreferences(codec_capabilities(mime_type))
    negotiated: list[RTCRtpCodecParameters] = transceiver._codecs
    if not negotiated:
        return
    kept = [c for c in negotiated if c.mimeType.lower() == mime_type.lower()]
    if not kept:
        raise ValueError(f"the remote description does not offer {mime_type}")
    payload_types = {c.payloadType for c in kept}
    transceiver._codecs = [
        c
        for c in negotiated
        if c in kept or (c.name.lower() == "rtx" and c.parameters.get("apt") in payload_types)
    ]


def negotiable(transceiver: RTCRtpTransceiver, mime_type: str) -> bool:
    """Whether the remote offer a transceiver was made from offers ``mime_type``."""
    offered: list[RTCRtpCodecParameters] = transceiver._codecs
    return any(c.mimeType.lower() == mime_type.lower() for c in offered)
