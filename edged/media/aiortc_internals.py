"""Every use of aiortc's private API, in one place, with a check that it is still there.

edged sends already-encoded H.264/Opus through aiortc (``RTCRtpSender`` packs an
``av.Packet`` instead of encoding it), which leaves keyframe requests and bitrate
estimates unused. This module routes them to callbacks, forces the negotiated codec,
sends a fan-out's shared RTP payloads to established viewers without each sender's own
task (:class:`DirectSender`), and can make receivers hand out encoded frames without
decoding them. It is longer than edged's other modules on purpose: every private piece
lives here, next to the check that it is still there.

What differs between the aiortc versions supported (1.11, the Debian 13 floor, to 1.16):

* ``RTCRtpSender._handle_rtcp_packet`` calls ``_send_keyframe()`` on PLI in both; 1.16
  does so on FIR too (``RTCP_PSFB_FIR``), 1.11 ignores FIR, so there the hook here turns
  a FIR into a keyframe request itself (:data:`SENDER_HANDLES_FIR`).
* The receiver's decoder thread (``rtcrtpreceiver.decoder_worker``) takes a decode-error
  event in 1.16 (it then sends a PLI) and not in 1.11; both look ``get_decoder`` up in
  their module globals, which is what :func:`passthrough_receivers` replaces.
* Both fix an answer's codecs in ``setRemoteDescription`` (``RTCRtpTransceiver._codecs``),
  before ``setCodecPreferences`` can be called on the transceiver the offer created.
* 1.16 wraps the packet and octet counts of its sender reports at 32 bits; 1.11 puts
  the running totals in unwrapped, so after 4 GiB sent to one viewer (about 4.8 hours
  at 2 Mbit/s) ``struct.error`` ends that sender's RTCP task: no sender report again.
  Importing this module makes :class:`aiortc.rtp.RtcpSenderInfo` wrap them itself
  (:func:`wrap_sender_report_counters`), whatever the version.

:func:`verify` checks every piece, and raises :class:`AiortcInternalsError` naming the
aiortc version and what is missing. At run time a missing piece of the direct send path
only turns that path off (:func:`direct_send_problems`): viewers then go through aiortc's
own sender task, as before.
"""

from __future__ import annotations

import dataclasses
import fractions
import functools
import inspect
import logging
import secrets
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from types import ModuleType
from typing import Any

import aioice
import aiortc
import av
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc import codecs as _codecs
from aiortc import rtcdtlstransport as _dtls_module
from aiortc import rtcrtpreceiver as _receiver_module
from aiortc import rtp as _rtp
from aiortc.codecs import h264 as _h264_codec
from aiortc.codecs import opus as _opus_codec
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import convert_timebase
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtcrtpparameters import (
    RTCRtpCodecCapability,
    RTCRtpCodecParameters,
    RTCRtpSendParameters,
)

from .rtp_frames import Packer, RtpFrame
from .udp_batch import BatchSender

logger = logging.getLogger(__name__)

AIORTC_VERSION: str = aiortc.__version__

RTCP_PSFB_PLI = 1
RTCP_PSFB_FIR = 4
RTCP_PSFB_APP = 15

_HOOK_ATTR = "_edged_sender_hook"
_GET_DECODER = "get_decoder"

# name-mangled private attributes of aiortc's sender and DTLS transport
_SENDER_PACKETS = "_RTCRtpSender__packet_count"
_SENDER_OCTETS = "_RTCRtpSender__octet_count"
_SENDER_NTP = "_RTCRtpSender__ntp_timestamp"
_SENDER_RTP_TIMESTAMP = "_RTCRtpSender__rtp_timestamp"
_SENDER_HISTORY = "_RTCRtpSender__rtp_history"
_SENDER_COUNTERS = (_SENDER_PACKETS, _SENDER_OCTETS, _SENDER_NTP, _SENDER_RTP_TIMESTAMP)
_SENDER_ENCODER = "_RTCRtpSender__encoder"
_DTLS_TX_BYTES = "_RTCDtlsTransport__tx_bytes"
_DTLS_TX_PACKETS = "_RTCDtlsTransport__tx_packets"

# what aiortc's sender puts in each RTP packet, which DirectSender writes the same way
_SENT_AS_AIORTC = ("abs_send_time", "mid", "current_ntp_time", "serialize", "_send_rtp")
_NOT_MIRRORED = ("rtp_stream_id", "transmission_offset", "transport_sequence_number", "csrc")
_RTP_PACKET_PARAMS = [
    "self",
    "payload_type",
    "marker",
    "sequence_number",
    "timestamp",
    "ssrc",
    "payload",
]


class AiortcInternalsError(RuntimeError):
    """aiortc no longer has a private attribute or behaviour that edged relies on."""


def _code_names(func: object) -> tuple[str, ...]:
    code = getattr(func, "__code__", None)
    return tuple(code.co_names) if code is not None else ()


def _params(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)  # type: ignore[arg-type]


def _check_method(
    owner: type | ModuleType, name: str, params: Sequence[str], coroutine: bool = False
) -> str | None:
    func = inspect.getattr_static(owner, name, None)
    if func is None or not callable(func):
        return f"{owner.__name__}.{name} is missing"
    if list(params) != _params(func):
        return f"{owner.__name__}.{name} takes {_params(func)}, expected {list(params)}"
    if coroutine != inspect.iscoroutinefunction(func):
        kind = "a coroutine function" if coroutine else "a plain function"
        return f"{owner.__name__}.{name} is no longer {kind}"
    return None


def _check_calls(func: object, label: str, names: Sequence[str]) -> str | None:
    missing = [n for n in names if n not in _code_names(func)]
    return f"{label} no longer refers to {', '.join(missing)}" if missing else None


def _check_not_called(func: object, label: str, names: Sequence[str]) -> str | None:
    found = [n for n in names if n in _code_names(func)]
    return f"{label} now also sets {', '.join(found)}" if found else None


def _check_fields(cls: type, names: Sequence[str]) -> str | None:
    have = {f.name for f in fields(cls)}
    missing = [n for n in names if n not in have]
    return f"{cls.__name__} lacks fields {', '.join(missing)}" if missing else None


def _check_constant(module: Any, name: str, value: int) -> str | None:
    actual = getattr(module, name, None)
    return None if actual == value else f"aiortc.rtp.{name} is {actual!r}, expected {value}"


def _requirements() -> dict[str, Callable[[], str | None]]:
    """What edged relies on, by name, each with a check returning a problem or None."""
    sender = RTCRtpSender
    return _direct_requirements() | {
        "RTCRtpSender._send_keyframe": lambda: _check_method(sender, "_send_keyframe", ["self"]),
        "RTCRtpSender._handle_rtcp_packet": lambda: (
            _check_method(sender, "_handle_rtcp_packet", ["self", "packet"], coroutine=True)
            or _check_calls(
                sender._handle_rtcp_packet, "RTCRtpSender._handle_rtcp_packet", ["_send_keyframe"]
            )
        ),
        "RTCRtpSender._ssrc": lambda: _check_calls(
            sender.__init__, "RTCRtpSender.__init__", ["_ssrc"]
        ),
        "RTCRtpSender._next_encoded_frame packs av.Packet[Any]": lambda: _check_calls(
            sender._next_encoded_frame, "RTCRtpSender._next_encoded_frame", ["recv", "pack"]
        ),
        "RTCRtpSender.__encoder (made only when None)": lambda: (
            _check_calls(
                sender._next_encoded_frame, "RTCRtpSender._next_encoded_frame", [_SENDER_ENCODER]
            )
            or _check_calls(sender.__init__, "RTCRtpSender.__init__", [_SENDER_ENCODER])
        ),
        "RTCDtlsTransport._handle_rtcp_data": lambda: _check_calls(
            RTCDtlsTransport._handle_rtcp_data,
            "RTCDtlsTransport._handle_rtcp_data",
            ["_handle_rtcp_packet"],
        ),
        "H264Encoder.pack": lambda: _check_method(
            _h264_codec.H264Encoder, "pack", ["self", "packet"]
        ),
        "OpusEncoder.pack": lambda: _check_method(
            _opus_codec.OpusEncoder, "pack", ["self", "packet"]
        ),
        "aiortc.rtp.unpack_remb_fci": lambda: (
            None
            if callable(getattr(_rtp, "unpack_remb_fci", None))
            else "aiortc.rtp.unpack_remb_fci is missing"
        ),
        "aiortc.rtp.RtcpPsfbPacket": lambda: _check_fields(
            _rtp.RtcpPsfbPacket, ["fmt", "ssrc", "media_ssrc", "fci"]
        ),
        "aiortc.rtp.RtcpSenderInfo": lambda: _check_fields(
            _rtp.RtcpSenderInfo, ["ntp_timestamp", "rtp_timestamp", "packet_count", "octet_count"]
        ),
        "aiortc.rtp.RTCP_PSFB_PLI": lambda: _check_constant(_rtp, "RTCP_PSFB_PLI", RTCP_PSFB_PLI),
        "aiortc.rtp.RTCP_PSFB_APP": lambda: _check_constant(_rtp, "RTCP_PSFB_APP", RTCP_PSFB_APP),
        "RTCRtpReceiver._send_rtcp_pli": lambda: _check_method(
            RTCRtpReceiver, "_send_rtcp_pli", ["self", "media_ssrc"], coroutine=True
        ),
        "rtcrtpreceiver.get_decoder": lambda: (
            None
            if callable(getattr(_receiver_module, "get_decoder", None))
            else "aiortc.rtcrtpreceiver.get_decoder is missing"
        ),
        "rtcrtpreceiver.decoder_worker uses get_decoder": lambda: _check_calls(
            getattr(_receiver_module, "decoder_worker", None),
            "aiortc.rtcrtpreceiver.decoder_worker",
            ["get_decoder"],
        ),
        "RTCRtpTransceiver._codecs": lambda: _check_calls(
            RTCRtpTransceiver.__init__, "RTCRtpTransceiver.__init__", ["_codecs"]
        ),
        "JitterFrame(data, timestamp)": lambda: _check_method(
            JitterFrame, "__init__", ["self", "data", "timestamp"]
        ),
    }


def _direct_requirements() -> dict[str, Callable[[], str | None]]:
    """What :class:`DirectSender` relies on (a subset of :func:`_requirements`)."""
    sender, dtls = RTCRtpSender, RTCDtlsTransport
    connection, stun = aioice.Connection, aioice.ice.StunProtocol
    return {
        "RTCRtpSender.send(parameters)": lambda: _check_method(
            sender, "send", ["self", "parameters"], coroutine=True
        ),
        "RTCRtpSender._retransmit": lambda: (
            _check_method(sender, "_retransmit", ["self", "sequence_number"], coroutine=True)
            or _check_calls(sender._retransmit, "RTCRtpSender._retransmit", [_SENDER_HISTORY])
            or _check_calls(
                sender._handle_rtcp_packet, "RTCRtpSender._handle_rtcp_packet", ["_retransmit"]
            )
        ),
        "RTCRtpSender counters and history": lambda: (
            _check_calls(
                sender.__init__, "RTCRtpSender.__init__", [*_SENDER_COUNTERS, _SENDER_HISTORY]
            )
            or _check_calls(sender._run_rtcp, "RTCRtpSender._run_rtcp", _SENDER_COUNTERS)
            or _check_calls(sender.getStats, "RTCRtpSender.getStats", _SENDER_COUNTERS[:2])
        ),
        "RTCRtpSender._run_rtp sends what DirectSender mirrors": lambda: (
            _check_calls(sender._run_rtp, "RTCRtpSender._run_rtp", _SENT_AS_AIORTC)
            or _check_not_called(sender._run_rtp, "RTCRtpSender._run_rtp", _NOT_MIRRORED)
            or _check_calls(
                sender._next_encoded_frame, "RTCRtpSender._next_encoded_frame", ["_enabled"]
            )
        ),
        "RTCDtlsTransport SRTP, state and counters": lambda: (
            _check_calls(
                dtls.__init__,
                "RTCDtlsTransport.__init__",
                ["_state", "_tx_srtp", _DTLS_TX_BYTES, _DTLS_TX_PACKETS],
            )
            or _check_calls(
                dtls._send_rtp, "RTCDtlsTransport._send_rtp", ["_tx_srtp", "protect", "_send"]
            )
            or (None if hasattr(_dtls_module.State, "CONNECTED") else "State.CONNECTED is gone")
        ),
        "RTCIceTransport._connection": lambda: _check_calls(
            RTCIceTransport.__init__, "RTCIceTransport.__init__", ["_connection"]
        ),
        "aioice Connection._nominated": lambda: (
            _check_calls(connection.__init__, "aioice.Connection.__init__", ["_nominated"])
            or _check_calls(
                connection.sendto,
                "aioice.Connection.sendto",
                ["_nominated", "protocol", "send_data", "remote_addr"],
            )
        ),
        "aioice StunProtocol.send_data": lambda: _check_calls(
            stun.send_data, "aioice.StunProtocol.send_data", ["transport", "sendto"]
        ),
        "aiortc.rtp RtpPacket and HeaderExtensionsMap": lambda: (
            _check_method(_rtp.RtpPacket, "__init__", _RTP_PACKET_PARAMS)
            or _check_method(_rtp.HeaderExtensionsMap, "configure", ["self", "parameters"])
            or (None if _rtp.RTP_HISTORY_SIZE > 0 else "aiortc.rtp.RTP_HISTORY_SIZE is gone")
        ),
        "aiortc.codecs.get_encoder": lambda: _check_method(_codecs, "get_encoder", ["codec"]),
    }


REQUIREMENTS: tuple[str, ...] = tuple(_requirements())
"""The names of everything :func:`verify` checks."""

SENDER_HANDLES_FIR: bool = "RTCP_PSFB_FIR" in _code_names(RTCRtpSender._handle_rtcp_packet)
"""Whether aiortc itself turns an RTCP FIR into ``_send_keyframe()`` (1.16 does, 1.11 not)."""


def _run_checks(checks: dict[str, Callable[[], str | None]]) -> list[str]:
    found: list[str] = []
    for name, check in checks.items():
        try:
            problem = check()
        except Exception as exc:  # a changed signature may break inspection itself
            problem = f"{name}: cannot be inspected ({exc!r})"
        if problem:
            found.append(problem)
    return found


def problems() -> list[str]:
    """Every private piece that is missing or changed, as readable sentences."""
    return _run_checks(_requirements())


@functools.cache
def direct_send_problems() -> tuple[str, ...]:
    """What the direct send path misses in this aiortc (checked once); empty when usable."""
    found = tuple(_run_checks(_direct_requirements()))
    if found:
        logger.warning("aiortc %s: sending through each sender's task (%s)", AIORTC_VERSION, found)
    return found


def verify() -> None:
    """Raise :class:`AiortcInternalsError` unless every private piece used is present."""
    found = problems()
    if found:
        lines = "\n".join(f"  - {p}" for p in found)
        raise AiortcInternalsError(
            f"aiortc {AIORTC_VERSION} lacks private API that edged.media relies on:\n{lines}\n"
            "Update edged/media/aiortc_internals.py for this aiortc release."
        )


# -- sender reports ------------------------------------------------------------------

_UINT32_MASK = 0xFFFFFFFF


def wrap_sender_report_counters() -> None:
    """Serialize sender reports with their packet and octet counts wrapped at 32 bits, as
    RFC 3550 counts them on the wire (getStats keeps the full totals). Idempotent."""
    info = _rtp.RtcpSenderInfo
    if getattr(info.__bytes__, "_edged_wraps", False):
        return
    unwrapped = info.__bytes__

    def wrapped(self: Any) -> bytes:
        if self.packet_count <= _UINT32_MASK and self.octet_count <= _UINT32_MASK:
            return unwrapped(self)
        return unwrapped(
            dataclasses.replace(
                self,
                packet_count=self.packet_count & _UINT32_MASK,
                octet_count=self.octet_count & _UINT32_MASK,
            )
        )

    wrapped._edged_wraps = True  # type: ignore[attr-defined]
    info.__bytes__ = wrapped  # type: ignore[method-assign]


wrap_sender_report_counters()


# -- codec choice --------------------------------------------------------------------


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


# -- sender feedback -----------------------------------------------------------------


@dataclass
class SenderHook:
    """The feedback routed out of one ``RTCRtpSender``: keyframe requests and REMB.

    It also keeps the parameters the sender was started with and, while a
    :class:`DirectSender` sends for it, answers NACKs from that sender's history
    (``retransmits`` counts the packets it supplied).
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
    history: dict[int, _rtp.RtpPacket] | None = vars(sender).get(_SENDER_HISTORY)

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


async def send_pli(receiver: RTCRtpReceiver) -> int:
    """Ask the remote sender(s) of a receiver for a keyframe; returns how many SSRCs were asked.

    Only SSRCs heard from in the last 10 s are known; before the first packet this is 0.
    """
    sources = receiver.getSynchronizationSources()
    for source in sources:
        await receiver._send_rtcp_pli(source.source)
    return len(sources)


# -- sending without each sender's task ---------------------------------------------

RTP_HISTORY_SIZE: int = _rtp.RTP_HISTORY_SIZE
"""How many packets aiortc keeps per sender for retransmissions."""

_CONNECTED = _dtls_module.State.CONNECTED
_RTP_HEADER = struct.Struct("!BBH")
_UINT32 = struct.Struct("!I")


class OpusPacker:
    """What aiortc's ``OpusEncoder.pack`` does (an Opus packet is one RTP payload), without
    the libopus context and the resampler aiortc's encoder opens on creation: that
    resampler is a filter graph with a thread per core, for every audio viewer."""

    def pack(self, packet: av.Packet[Any]) -> tuple[list[bytes], int]:
        if packet.pts is None or packet.time_base is None:
            raise ValueError("an Opus packet without pts or time base")
        return [bytes(packet)], convert_timebase(packet.pts, packet.time_base, _OPUS_TIME_BASE)


_OPUS_TIME_BASE = fractions.Fraction(1, 48000)


def spare_audio_encoder(sender: RTCRtpSender) -> None:
    """Give an audio sender whose track yields Opus packets our :class:`OpusPacker`, so
    aiortc never opens an encoder it would only use to pack them (it makes one only
    while its own is None)."""
    if sender.kind == "audio" and vars(sender).get(_SENDER_ENCODER) is None:
        setattr(sender, _SENDER_ENCODER, OpusPacker())


def packer_for(mime_type: str) -> Packer:
    """The packer each ``RTCRtpSender`` would use for a codec: aiortc's own, except for
    Opus (:class:`OpusPacker`, the same packing without an encoder behind it)."""
    if mime_type.lower() == "audio/opus":
        return OpusPacker()
    capability = codec_capabilities(mime_type)[0]
    codec = RTCRtpCodecParameters(
        mimeType=capability.mimeType,
        clockRate=capability.clockRate,
        channels=capability.channels,
        payloadType=0,
    )
    packer: Packer = _codecs.get_encoder(codec)
    return packer


class RtpHeaderTemplate:
    """The RTP header aiortc's sender puts in front of each payload, made once per sender.

    aiortc serializes a template packet (its SSRC, the negotiated codec's payload type,
    ``mid`` and abs-send-time extensions as negotiated); per packet only the marker,
    sequence number, timestamp and abs-send-time are written into it.
    """

    def __init__(self, ssrc: int, parameters: RTCRtpSendParameters) -> None:
        payload_type = parameters.codecs[0].payloadType
        if payload_type is None:
            raise ValueError("the sender's codec has no payload type")
        extensions = _rtp.HeaderExtensionsMap()
        extensions.configure(parameters)

        def serialized(abs_send_time: int) -> bytes:
            packet = _rtp.RtpPacket(payload_type=payload_type, ssrc=ssrc)
            packet.extensions.mid = parameters.muxId
            packet.extensions.abs_send_time = abs_send_time
            return packet.serialize(extensions)

        low, high = serialized(0), serialized(0xFFFFFF)
        moved = [i for i, (a, b) in enumerate(zip(low, high, strict=True)) if a != b]
        if moved and moved != list(range(moved[0], moved[0] + 3)):
            raise AiortcInternalsError(f"aiortc {AIORTC_VERSION}: unexpected abs-send-time layout")
        at = moved[0] if moved else len(low)
        self.first_byte = low[0]
        self.payload_type = payload_type
        self._before, self._after = low[8:at], low[at + 3 :]
        self._has_abs_send_time = bool(moved)

    def tail(self, timestamp: int, abs_send_time: int) -> bytes:
        """The header from its timestamp on: timestamp, SSRC, header extensions."""
        if not self._has_abs_send_time:
            return _UINT32.pack(timestamp) + self._before
        return (
            _UINT32.pack(timestamp) + self._before + _UINT32.pack(abs_send_time)[1:] + self._after
        )


class DirectSender:
    """Sends one aiortc sender's RTP straight from a fan-out, bypassing the sender's task.

    Owns that sender's RTP sequence numbers and timestamp origin while it is used, and
    the mapping from them to the fan-out's shared payloads (for NACKs). Per access unit
    it writes each payload's header, protects it with the DTLS transport's SRTP session
    and hands the access unit's packets to the nominated ICE pair's socket in as few
    calls as it can (:class:`~edged.media.udp_batch.BatchSender`), then updates the
    counters aiortc's sender reports and ``getStats`` read. RTCP stays aiortc's: sender
    reports, PLI/FIR and REMB as before; NACKs are answered through the hook's
    ``retransmit_source`` and aiortc's own RTX path.

    Made by :meth:`open` once the sender has started (DTLS connected, its task reading
    the track); :meth:`send` returns False when the connection is no longer usable, and
    the caller then hands the access unit to aiortc's path instead.
    """

    def __init__(
        self,
        hook: SenderHook,
        parameters: RTCRtpSendParameters,
        find: Callable[[int], tuple[RtpFrame, int] | None],
    ) -> None:
        sender = hook.sender
        self._hook = hook
        self._sender = sender
        self._dtls = sender.transport
        self._nominated: dict[int, Any] = self._dtls.transport._connection._nominated
        self._protect: Callable[[bytes], bytes] = self._dtls._tx_srtp.protect
        self._sender_counters: dict[str, Any] = vars(sender)
        self._dtls_counters: dict[str, Any] = vars(self._dtls)
        self._find = find
        self._mid = parameters.muxId
        self._template = RtpHeaderTemplate(sender._ssrc, parameters)
        self._pair: Any = None
        self._batch: BatchSender | None = None
        self._address: tuple[str, int] = ("", 0)
        self._sequence = secrets.randbits(15)  # lower half, as aiortc: no early wraparound
        self._origin = secrets.randbits(32)
        self._run_start: int | None = None  # payload index where the current run began
        self._next_index = -1
        self.packets_sent = 0
        hook.retransmit_source = self.retransmission

    @classmethod
    def open(
        cls,
        hook: SenderHook,
        mime_type: str,
        find: Callable[[int], tuple[RtpFrame, int] | None],
    ) -> DirectSender | None:
        """A direct sender for a started sender of ``mime_type``, or None to keep aiortc's."""
        parameters = hook.parameters
        if direct_send_problems() or parameters is None or not parameters.codecs:
            return None
        codec = parameters.codecs[0]
        if codec.mimeType.lower() != mime_type.lower() or codec.payloadType is None:
            return None
        dtls = hook.sender.transport
        if dtls._state is not _CONNECTED or dtls._tx_srtp is None:
            return None
        direct = cls(hook, parameters, find)
        if not direct._follow(direct._nominated.get(1)):
            direct.close()
            return None
        return direct

    def send(self, frame: RtpFrame) -> bool:
        """Send one access unit's payloads; False when aiortc's path must take over."""
        if self._dtls._state is not _CONNECTED:
            return False
        pair = self._nominated.get(1)
        if pair is not self._pair and not self._follow(pair):
            return False
        if not self._sender._enabled:  # inactive: aiortc reads and drops, and so do we
            return True
        sequence = self._sequence
        if frame.first_index != self._next_index:  # not right after the last one sent
            self._run_start = frame.first_index
        timestamp = (self._origin + frame.timestamp) & 0xFFFFFFFF
        protect, template = self._protect, self._template
        tail = template.tail(timestamp, frame.abs_send_time)
        header, first_byte = _RTP_HEADER.pack, template.first_byte
        payload_type = template.payload_type
        payloads = frame.payloads
        last = len(payloads) - 1
        datagrams: list[bytes] = []
        octets = 0
        for position, payload in enumerate(payloads):
            if position == last:
                payload_type |= 0x80  # the marker: the access unit's last packet
            datagrams.append(protect(header(first_byte, payload_type, sequence) + tail + payload))
            octets += len(payload)
            sequence = (sequence + 1) & 0xFFFF
        if self._batch is not None:
            self._batch.send(datagrams, self._address)
        wire = sum(map(len, datagrams))
        self._sequence = sequence
        self._next_index = frame.end_index
        counters, count = self._sender_counters, last + 1
        counters[_SENDER_PACKETS] += count
        counters[_SENDER_OCTETS] += octets
        counters[_SENDER_NTP] = frame.ntp_time
        counters[_SENDER_RTP_TIMESTAMP] = timestamp
        self._dtls_counters[_DTLS_TX_BYTES] += wire
        self._dtls_counters[_DTLS_TX_PACKETS] += count
        self.packets_sent += count
        return True

    def retransmission(self, sequence_number: int) -> _rtp.RtpPacket | None:
        """The packet sent with ``sequence_number``, rebuilt from the shared payloads."""
        if self._run_start is None:
            return None
        back = (self._sequence - 1 - sequence_number) & 0xFFFF  # 0: the last one sent
        index = self._next_index - 1 - back
        if back >= RTP_HISTORY_SIZE or index < self._run_start:
            return None  # as aiortc: only the last RTP_HISTORY_SIZE packets are kept
        found = self._find(index)
        if found is None:
            return None
        frame, position = found
        packet = _rtp.RtpPacket(
            payload_type=self._template.payload_type,
            marker=int(position == len(frame.payloads) - 1),
            sequence_number=sequence_number,
            timestamp=(self._origin + frame.timestamp) & 0xFFFFFFFF,
            ssrc=self._sender._ssrc,
            payload=frame.payloads[position],
        )
        packet.extensions.mid = self._mid
        packet.extensions.abs_send_time = frame.abs_send_time
        return packet

    def close(self) -> None:
        """Stop answering NACKs for this sender and sending through its socket."""
        if self._hook.retransmit_source == self.retransmission:
            self._hook.retransmit_source = None
        self._use(None, None)

    def _follow(self, pair: Any) -> bool:
        """Send through ``pair`` from now on, if it is the plain datagram path aioice uses."""
        protocol = getattr(pair, "protocol", None)
        if getattr(type(protocol), "send_data", None) is not aioice.ice.StunProtocol.send_data:
            return False
        transport = getattr(protocol, "transport", None)
        if transport is None or (sock := transport.get_extra_info("socket")) is None:
            return False
        self._use(pair, BatchSender(sock, transport.sendto))
        self._address = pair.remote_addr
        return True

    def _use(self, pair: Any, batch: BatchSender | None) -> None:
        if self._batch is not None:
            self._batch.close()
        self._pair, self._batch = pair, batch


# -- receivers that do not decode ----------------------------------------------------


@dataclass
class PassthroughCounter:
    """Encoded frames handed out by receivers under :func:`passthrough_receivers`."""

    frames: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, kind: str, size: int) -> None:
        with self._lock:
            self.frames[kind] = self.frames.get(kind, 0) + 1
            self.bytes += size


class PassthroughDecoder:
    """A stand-in decoder: turns each reassembled frame back into an ``av.Packet``."""

    def __init__(self, codec: RTCRtpCodecParameters, counter: PassthroughCounter) -> None:
        self.kind = codec.mimeType.split("/")[0].lower()
        self.time_base = fractions.Fraction(1, codec.clockRate)
        self.counter = counter

    def decode(self, encoded_frame: JitterFrame) -> list[av.Packet[Any]]:
        packet = av.Packet(encoded_frame.data)
        packet.pts = encoded_frame.timestamp
        packet.time_base = self.time_base
        self.counter.add(self.kind, len(encoded_frame.data))
        return [packet]


_passthrough_lock = threading.Lock()


@contextmanager
def passthrough_receivers(kinds: Sequence[str] = ("video",)) -> Iterator[PassthroughCounter]:
    """Inside this block, receivers of ``kinds`` yield ``av.Packet`` instead of decoded frames.

    For benchmarks and relays whose viewers must not spend CPU on decoding. The patch is
    process-wide and taken when a receiver's decoder thread sees its first frame, so keep
    the block open for the receivers' whole life. Not reentrant.
    """
    if not _passthrough_lock.acquire(blocking=False):
        raise RuntimeError("passthrough_receivers() is already active")
    counter = PassthroughCounter()
    original: Callable[[RTCRtpCodecParameters], Any] = getattr(_receiver_module, _GET_DECODER)
    wanted = {k.lower() for k in kinds}

    def get_decoder(codec: RTCRtpCodecParameters) -> Any:
        if codec.mimeType.split("/")[0].lower() in wanted:
            return PassthroughDecoder(codec, counter)
        return original(codec)

    setattr(_receiver_module, _GET_DECODER, get_decoder)
    try:
        yield counter
    finally:
        setattr(_receiver_module, _GET_DECODER, original)
        _passthrough_lock.release()
