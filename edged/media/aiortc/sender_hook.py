"""The feedback routed out of one ``RTCRtpSender``: keyframe requests, REMB, NACK answers.

edged sends already-encoded H.264/Opus through aiortc (``RTCRtpSender`` packs an
``av.Packet`` instead of encoding it), which leaves keyframe requests and bitrate
estimates unused. :func:`hook_sender` routes them to callbacks, keeps the parameters the
sender was started with, and lets a :class:`~edged.media.aiortc.direct_sender.DirectSender`
answer NACKs from the fan-out's shared payloads.

``RTCRtpSender._handle_rtcp_packet`` calls ``_send_keyframe()`` on PLI in every supported
aiortc version (1.11, the Debian 13 floor, to 1.16); 1.16 does so on FIR too
(``RTCP_PSFB_FIR``), 1.11 ignores FIR, so there the hook turns a FIR into a keyframe
request itself (:data:`SENDER_HANDLES_FIR`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCRtpSender
from aiortc import rtp as _rtp
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpSendParameters

from .checks import (
    AIORTC_VERSION,
    AiortcInternalsError,
    Checks,
    check_callable,
    check_calls,
    check_constant,
    check_fields,
    check_method,
    code_names,
)

logger = logging.getLogger(__name__)

RTCP_PSFB_PLI = 1
RTCP_PSFB_FIR = 4
RTCP_PSFB_APP = 15

SENDER_HISTORY = "_RTCRtpSender__rtp_history"
"""aiortc's name-mangled history of sent packets, which NACKs are answered from."""

_HOOK_ATTR = "_edged_sender_hook"

REQUIREMENTS: Checks = {
    "RTCRtpSender._send_keyframe": lambda: check_method(RTCRtpSender, "_send_keyframe", ["self"]),
    "RTCRtpSender._handle_rtcp_packet": lambda: (
        check_method(RTCRtpSender, "_handle_rtcp_packet", ["self", "packet"], coroutine=True)
        or check_calls(
            RTCRtpSender._handle_rtcp_packet,
            "RTCRtpSender._handle_rtcp_packet",
            ["_send_keyframe"],
        )
    ),
    "RTCRtpSender._ssrc": lambda: check_calls(
        RTCRtpSender.__init__, "RTCRtpSender.__init__", ["_ssrc"]
    ),
    "RTCDtlsTransport._handle_rtcp_data": lambda: check_calls(
        RTCDtlsTransport._handle_rtcp_data,
        "RTCDtlsTransport._handle_rtcp_data",
        ["_handle_rtcp_packet"],
    ),
    "aiortc.rtp.unpack_remb_fci": lambda: check_callable(_rtp, "unpack_remb_fci"),
    "aiortc.rtp.RtcpPsfbPacket": lambda: check_fields(
        _rtp.RtcpPsfbPacket, ["fmt", "ssrc", "media_ssrc", "fci"]
    ),
    "aiortc.rtp.RTCP_PSFB_PLI": lambda: check_constant(_rtp, "RTCP_PSFB_PLI", RTCP_PSFB_PLI),
    "aiortc.rtp.RTCP_PSFB_APP": lambda: check_constant(_rtp, "RTCP_PSFB_APP", RTCP_PSFB_APP),
}

SENDER_HANDLES_FIR: bool = "RTCP_PSFB_FIR" in code_names(RTCRtpSender._handle_rtcp_packet)
"""Whether aiortc itself turns an RTCP FIR into ``_send_keyframe()`` (1.16 does, 1.11 not)."""


@dataclass
class SenderHook:
    """The feedback routed out of one ``RTCRtpSender``: keyframe requests and REMB.

    It also keeps the parameters the sender was started with and, while a
    :class:`~edged.media.aiortc.direct_sender.DirectSender` sends for it, answers NACKs
    from that sender's history (``retransmits`` counts the packets it supplied).
    """

    sender: RTCRtpSender
    keyframe_requests: int = 0
    remb_bitrate: int | None = None
    remb_reports: int = 0
    parameters: RTCRtpSendParameters | None = None
    retransmit_source: Callable[[int], _rtp.RtpPacket | None] | None = None
    retransmits: int = 0
    _installed: dict[str, Any] = field(default_factory=dict, repr=False)

    def remove(self) -> None:
        """Give the sender back its own methods."""
        self.retransmit_source = None
        for name in self._installed:
            if name in vars(self.sender):
                delattr(self.sender, name)
        self._installed.clear()


def _safe_call(callback: Callable[..., object] | None, *args: object) -> None:
    if callback is None:
        return
    try:
        callback(*args)
    except Exception:
        logger.exception("sender feedback callback failed")


def hook_sender(
    sender: RTCRtpSender,
    on_keyframe_request: Callable[[], object] | None = None,
    on_remb: Callable[[int], object] | None = None,
) -> SenderHook:
    """Route a sender's PLI/FIR to ``on_keyframe_request`` and its REMB to ``on_remb``.

    aiortc calls ``_send_keyframe()`` on PLI (and on FIR in 1.16), which only flags its
    own encoder: useless when the track yields ``av.Packet``. The hook keeps aiortc's
    behaviour and calls ours too. REMB estimates (bits per second) for this sender's
    SSRC are read from the same RTCP stream. Callbacks run on the event loop. The
    parameters given to ``send()`` are kept in ``hook.parameters``; a NACKed sequence
    number that ``hook.retransmit_source`` knows is put in the sender's history before
    aiortc retransmits it (wrapped in RTX when negotiated).
    """
    if getattr(sender, _HOOK_ATTR, None) is not None:
        raise ValueError("this sender already has a hook")
    if not hasattr(sender, "_ssrc"):
        raise AiortcInternalsError(f"aiortc {AIORTC_VERSION}: RTCRtpSender has no _ssrc")
    hook = SenderHook(sender)
    send_keyframe: Callable[[], None] = sender._send_keyframe
    handle_rtcp: Callable[[Any], Any] = sender._handle_rtcp_packet
    send: Callable[[RTCRtpSendParameters], Any] = sender.send
    retransmit: Callable[[int], Any] = sender._retransmit
    history: dict[int, _rtp.RtpPacket] | None = vars(sender).get(SENDER_HISTORY)

    def keyframe_wanted() -> None:
        send_keyframe()
        hook.keyframe_requests += 1
        _safe_call(on_keyframe_request)

    async def handle_rtcp_packet(packet: Any) -> None:
        if isinstance(packet, _rtp.RtcpPsfbPacket):
            if packet.fmt == RTCP_PSFB_FIR and not SENDER_HANDLES_FIR:
                keyframe_wanted()
            elif packet.fmt == RTCP_PSFB_APP:
                _read_remb(hook, packet.fci, on_remb)
        await handle_rtcp(packet)

    async def send_started(parameters: RTCRtpSendParameters) -> None:
        hook.parameters = parameters
        await send(parameters)

    async def retransmit_from_source(sequence_number: int) -> None:
        source = hook.retransmit_source
        packet = source(sequence_number) if source is not None else None
        if packet is not None and history is not None:
            history[sequence_number % _rtp.RTP_HISTORY_SIZE] = packet
            hook.retransmits += 1
        await retransmit(sequence_number)

    hook._installed = {
        "_send_keyframe": keyframe_wanted,
        "_handle_rtcp_packet": handle_rtcp_packet,
        "send": send_started,
        "_retransmit": retransmit_from_source,
    }
    for name, value in hook._installed.items():
        setattr(sender, name, value)
    setattr(sender, _HOOK_ATTR, hook)
    hook._installed[_HOOK_ATTR] = hook
    return hook


def _read_remb(hook: SenderHook, fci: bytes, on_remb: Callable[[int], object] | None) -> None:
    try:
        bitrate, ssrcs = _rtp.unpack_remb_fci(fci)
    except ValueError:
        return
    if hook.sender._ssrc in ssrcs:
        hook.remb_bitrate = bitrate
        hook.remb_reports += 1
        _safe_call(on_remb, bitrate)
