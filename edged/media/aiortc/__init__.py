"""Every use of aiortc's private API, one module per piece, each beside its own check.

edged sends already-encoded H.264/Opus through aiortc, which its public API does not
cover. The pieces, by module:

* :mod:`.checks`: how a piece is checked (the helpers of every ``REQUIREMENTS`` table).
* :mod:`.verify`: :func:`~.verify.verify` runs every module's checks at once.
* :mod:`.sender_reports`: sender reports with counts wrapped at 32 bits; a process-wide
  patch applied by an explicit call (:func:`~.sender_reports.wrap_sender_report_counters`)
  where the engine starts, never on import.
* :mod:`.codec_choice`: one codec negotiated on a transceiver, also when answering.
* :mod:`.sender_hook`: PLI/FIR and REMB of one sender routed to callbacks, NACK answers.
* :mod:`.packers`: how a sender packs an ``av.Packet``; the Opus packer without an encoder.
* :mod:`.rtp_header` and :mod:`.direct_sender`: a fan-out's shared payloads sent to an
  established viewer without the sender's own task.
* :mod:`.receivers`: keyframe requests from a receiver; decoders never handed an empty
  frame (:func:`~.receivers.guard_empty_frames`, applied where the engine starts);
  receivers that do not decode (benchmarks and tests).

Supported: aiortc 1.11 (the Debian 13 floor) to 1.16; each module says what differs.
"""
