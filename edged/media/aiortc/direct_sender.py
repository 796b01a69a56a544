"""Sending a fan-out's shared RTP payloads to an established viewer without aiortc's task.

:class:`DirectSender` writes each payload's RTP header (:mod:`.rtp_header`), protects it
with the DTLS transport's SRTP session and hands it to the nominated ICE pair's socket,
then updates the name-mangled counters aiortc's sender reports and ``getStats`` read. It
mirrors what ``RTCRtpSender._run_rtp`` sends, which :data:`DIRECT_REQUIREMENTS` checks. At
run time a missing piece only turns the path off (:func:`direct_send_problems`): viewers
then go through aiortc's own sender task.
"""

from __future__ import annotations

import functools
import logging
import secrets
import struct
from collections.abc import Callable
from typing import Any

import aioice
from aiortc import RTCRtpSender
from aiortc import rtcdtlstransport as _dtls_module
from aiortc import rtp as _rtp
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtcrtpparameters import RTCRtpSendParameters

from ..send.rtp_frames import RtpFrame
from ..send.udp_batch import BatchSender
from . import packers, rtp_header
from .checks import AIORTC_VERSION, Checks, check_calls, check_method, check_not_called, run_checks
from .rtp_header import RtpHeaderTemplate
from .sender_hook import SENDER_HISTORY, SenderHook

logger = logging.getLogger(__name__)

# name-mangled private attributes of aiortc's sender and DTLS transport
_SENDER_PACKETS = "_RTCRtpSender__packet_count"
_SENDER_OCTETS = "_RTCRtpSender__octet_count"
_SENDER_NTP = "_RTCRtpSender__ntp_timestamp"
_SENDER_RTP_TIMESTAMP = "_RTCRtpSender__rtp_timestamp"
_SENDER_COUNTERS = (_SENDER_PACKETS, _SENDER_OCTETS, _SENDER_NTP, _SENDER_RTP_TIMESTAMP)
_DTLS_TX_BYTES = "_RTCDtlsTransport__tx_bytes"
_DTLS_TX_PACKETS = "_RTCDtlsTransport__tx_packets"

# what aiortc's sender puts in each RTP packet, which DirectSender writes the same way
_SENT_AS_AIORTC = ("abs_send_time", "mid", "current_ntp_time", "serialize", "_send_rtp")
_NOT_MIRRORED = ("rtp_stream_id", "transmission_offset", "transport_sequence_number", "csrc")

_sender, _dtls = RTCRtpSender, RTCDtlsTransport
_connection, _stun = aioice.Connection, aioice.ice.StunProtocol

DIRECT_REQUIREMENTS: Checks = (
    {
        "RTCRtpSender.send(parameters)": lambda: check_method(
            _sender, "send", ["self", "parameters"], coroutine=True
        ),
        "RTCRtpSender._retransmit": lambda: (
            check_method(_sender, "_retransmit", ["self", "sequence_number"], coroutine=True)
            or check_calls(_sender._retransmit, "RTCRtpSender._retransmit", [SENDER_HISTORY])
            or check_calls(
                _sender._handle_rtcp_packet, "RTCRtpSender._handle_rtcp_packet", ["_retransmit"]
            )
        ),
        "RTCRtpSender counters and history": lambda: (
            check_calls(
                _sender.__init__, "RTCRtpSender.__init__", [*_SENDER_COUNTERS, SENDER_HISTORY]
            )
            or check_calls(_sender._run_rtcp, "RTCRtpSender._run_rtcp", _SENDER_COUNTERS)
            or check_calls(_sender.getStats, "RTCRtpSender.getStats", _SENDER_COUNTERS[:2])
        ),
        "RTCRtpSender._run_rtp sends what DirectSender mirrors": lambda: (
            check_calls(_sender._run_rtp, "RTCRtpSender._run_rtp", _SENT_AS_AIORTC)
            or check_not_called(_sender._run_rtp, "RTCRtpSender._run_rtp", _NOT_MIRRORED)
            or check_calls(
                _sender._next_encoded_frame, "RTCRtpSender._next_encoded_frame", ["_enabled"]
            )
        ),
        "RTCDtlsTransport SRTP, state and counters": lambda: (
            check_calls(
                _dtls.__init__,
                "RTCDtlsTransport.__init__",
                ["_state", "_tx_srtp", _DTLS_TX_BYTES, _DTLS_TX_PACKETS],
            )
            or check_calls(
                _dtls._send_rtp, "RTCDtlsTransport._send_rtp", ["_tx_srtp", "protect", "_send"]
            )
            or (None if hasattr(_dtls_module.State, "CONNECTED") else "State.CONNECTED is gone")
        ),
        "RTCIceTransport._connection": lambda: check_calls(
            RTCIceTransport.__init__, "RTCIceTransport.__init__", ["_connection"]
        ),
        "aioice Connection._nominated": lambda: (
            check_calls(_connection.__init__, "aioice.Connection.__init__", ["_nominated"])
            or check_calls(
                _connection.sendto,
                "aioice.Connection.sendto",
                ["_nominated", "protocol", "send_data", "remote_addr"],
            )
        ),
        "aioice StunProtocol.send_data": lambda: check_calls(
            _stun.send_data, "aioice.StunProtocol.send_data", ["transport", "sendto"]
        ),
    }
    | rtp_header.REQUIREMENTS
    | packers.GET_ENCODER
)
"""What :class:`DirectSender` relies on."""


@functools.cache
def direct_send_problems() -> tuple[str, ...]:
    """What the direct send path misses in this aiortc (checked once); empty when usable."""
    found = tuple(run_checks(DIRECT_REQUIREMENTS))
    if found:
        logger.warning("aiortc %s: sending through each sender's task (%s)", AIORTC_VERSION, found)
    return found


RTP_HISTORY_SIZE: int = _rtp.RTP_HISTORY_SIZE
"""How many packets aiortc keeps per sender for retransmissions."""

_CONNECTED = _dtls_module.State.CONNECTED
_RTP_HEADER = struct.Struct("!BBH")


class DirectSender:
    """Sends one aiortc sender's RTP straight from a fan-out, bypassing the sender's task.

    Owns that sender's RTP sequence numbers and timestamp origin while it is used, and
    the mapping from them to the fan-out's shared payloads (for NACKs). Per access unit
    it writes each payload's header, protects it with the DTLS transport's SRTP session
    and hands the access unit's packets to the nominated ICE pair's socket in as few
    calls as it can (:class:`~edged.media.send.udp_batch.BatchSender`), then updates the
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
