"""Every use of aiortc's private API, in one place, with a check that it is still there.

edged sends already-encoded H.264/Opus through aiortc (``RTCRtpSender`` packs an
``av.Packet`` instead of encoding it), which leaves keyframe requests and bitrate
estimates unused. This module routes them to callbacks, forces the negotiated codec,
and can make receivers hand out encoded frames without decoding them.

What differs between the aiortc versions supported (1.11, the Debian 13 floor, to 1.16):

* ``RTCRtpSender._handle_rtcp_packet`` calls ``_send_keyframe()`` on PLI in both; 1.16
  does so on FIR too (``RTCP_PSFB_FIR``), 1.11 ignores FIR, so there the hook here turns
  a FIR into a keyframe request itself (:data:`SENDER_HANDLES_FIR`).
* The receiver's decoder thread (``rtcrtpreceiver.decoder_worker``) takes a decode-error
  event in 1.16 (it then sends a PLI) and not in 1.11; both look ``get_decoder`` up in
  their module globals, which is what :func:`passthrough_receivers` replaces.
* Both fix an answer's codecs in ``setRemoteDescription`` (``RTCRtpTransceiver._codecs``),
  before ``setCodecPreferences`` can be called on the transceiver the offer created.

:func:`verify` checks every piece, and raises :class:`AiortcInternalsError` naming the
aiortc version and what is missing.
"""

from __future__ import annotations

import fractions
import inspect
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

import aiortc
import av
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc import rtcrtpreceiver as _receiver_module
from aiortc import rtp as _rtp
from aiortc.codecs import h264 as _h264_codec
from aiortc.codecs import opus as _opus_codec
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters

logger = logging.getLogger(__name__)

AIORTC_VERSION: str = aiortc.__version__

RTCP_PSFB_PLI = 1
RTCP_PSFB_FIR = 4
RTCP_PSFB_APP = 15

_HOOK_ATTR = "_edged_sender_hook"
_GET_DECODER = "get_decoder"


class AiortcInternalsError(RuntimeError):
    """aiortc no longer has a private attribute or behaviour that edged relies on."""


def _code_names(func: object) -> tuple[str, ...]:
    code = getattr(func, "__code__", None)
    return tuple(code.co_names) if code is not None else ()


def _params(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)  # type: ignore[arg-type]


def _check_method(
    owner: type, name: str, params: Sequence[str], coroutine: bool = False
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
    return {
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


REQUIREMENTS: tuple[str, ...] = tuple(_requirements())
"""The names of everything :func:`verify` checks."""

SENDER_HANDLES_FIR: bool = "RTCP_PSFB_FIR" in _code_names(RTCRtpSender._handle_rtcp_packet)
"""Whether aiortc itself turns an RTCP FIR into ``_send_keyframe()`` (1.16 does, 1.11 not)."""


def problems() -> list[str]:
    """Every private piece that is missing or changed, as readable sentences."""
    found: list[str] = []
    for name, check in _requirements().items():
        try:
            problem = check()
        except Exception as exc:  # a changed signature may break inspection itself
            problem = f"{name}: cannot be inspected ({exc!r})"
        if problem:
            found.append(problem)
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
    """The feedback routed out of one ``RTCRtpSender``: keyframe requests and REMB."""

    sender: RTCRtpSender
    keyframe_requests: int = 0
    remb_bitrate: int | None = None
    remb_reports: int = 0
    _installed: dict[str, Any] = field(default_factory=dict, repr=False)

    def remove(self) -> None:
        """Give the sender back its own methods."""
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
    SSRC are read from the same RTCP stream. Callbacks run on the event loop.
    """
    if getattr(sender, _HOOK_ATTR, None) is not None:
        raise ValueError("this sender already has a hook")
    if not hasattr(sender, "_ssrc"):
        raise AiortcInternalsError(f"aiortc {AIORTC_VERSION}: RTCRtpSender has no _ssrc")
    hook = SenderHook(sender)
    send_keyframe: Callable[[], None] = sender._send_keyframe
    handle_rtcp: Callable[[Any], Any] = sender._handle_rtcp_packet

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

    hook._installed = {"_send_keyframe": keyframe_wanted, "_handle_rtcp_packet": handle_rtcp_packet}
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
