"""Quality reports: aiortc ``getStats()`` reports plus the engine's frame counters.

Every report period the engine samples each peer connection (``await pc.getStats()``)
and its own counters, and feeds them to a :class:`PublisherQualityMeter` (one report per
viewer link) or a :class:`PlayerQualityMeter` (the played stream's report). The meters
keep the previous samples and turn cumulative counters into rates and loss over the
period. Nothing here touches a peer connection, so everything is testable with
synthetic stats. docs/quality.md describes every field, unit and threshold.
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Hashable, Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..model import PlayQuality, PublishQuality, QualityLevel
from . import stats
from .stats import CounterDeltas, RateMeter, StatsReport, stat_value, stats_by_type

# Upper bounds of EXCELLENT, GOOD, MEDIUM and BAD; at or above the last one: DIE.
LOSS_THRESHOLDS = (0.01, 0.03, 0.08, 0.20)
RTT_THRESHOLDS_MS = (100.0, 200.0, 400.0, 800.0)
# Lower bounds (fps / target fps) of EXCELLENT, GOOD and MEDIUM; below the last: BAD.
FPS_RATIO_THRESHOLDS = (0.90, 0.75, 0.50)


def _grade(value: float, thresholds: tuple[float, ...]) -> int:
    return sum(1 for bound in thresholds if value >= bound)


def quality_level(
    rtt_ms: float | None, loss_rate: float, fps: float, target_fps: float, receiving: bool
) -> QualityLevel:
    """The level of one period: DIE when no media flowed, else the worst of three grades.

    * loss rate: below 1 % EXCELLENT, 3 % GOOD, 8 % MEDIUM, 20 % BAD, else DIE;
    * rtt (ignored while unknown): below 100 ms EXCELLENT, 200 GOOD, 400 MEDIUM,
      800 BAD, else DIE;
    * fps / target_fps (ignored when target_fps is 0): at least 0.9 EXCELLENT, 0.75
      GOOD, 0.5 MEDIUM, else BAD.
    """
    if not receiving:
        return QualityLevel.DIE
    loss = loss_rate if math.isfinite(loss_rate) else 1.0
    level = _grade(min(max(loss, 0.0), 1.0), LOSS_THRESHOLDS)
    if rtt_ms is not None and math.isfinite(rtt_ms):
        level = max(level, _grade(rtt_ms, RTT_THRESHOLDS_MS))
    if target_fps > 0:
        ratio = fps / target_fps
        level = max(level, sum(1 for bound in FPS_RATIO_THRESHOLDS if ratio < bound))
    return QualityLevel(level)


@dataclass(frozen=True, slots=True)
class PublishCounters:
    """What the publisher counts itself (getStats has no frames): cumulative counts.

    ``frames_sent`` counts frames handed to the viewers' senders once per frame, not
    once per viewer. ``target_fps`` 0 means the fps is not judged (audio only).
    """

    frames_captured: int = 0
    frames_encoded: int = 0
    frames_sent: int = 0
    width: int = 0
    height: int = 0
    codec: str = ""
    hardware_encode: bool = False
    target_fps: float = 0.0


class PublisherQualityMeter:
    """Owns one publisher's previous samples: its per-stream byte, packet and loss
    counters over every viewer link, the frame-rate meters and the running byte total.
    """

    def __init__(self) -> None:
        self._last: float | None = None
        self._bytes = CounterDeltas()
        self._packets = CounterDeltas()
        self._remote_received = CounterDeltas(signed=True)
        self._remote_lost = CounterDeltas(signed=True)
        self._trackers = (self._bytes, self._packets, self._remote_received, self._remote_lost)
        self._captured, self._encoded, self._sent = RateMeter(), RateMeter(), RateMeter()
        self.total_bytes_sent = 0

    def update(
        self, reports: Iterable[StatsReport], counters: PublishCounters, now: float | None = None
    ) -> PublishQuality:
        """One period's quality from one stats report per viewer link."""
        now = time.monotonic() if now is None else now
        seconds, self._last = stats.elapsed(self._last, now), now
        sent = {"video": 0.0, "audio": 0.0}
        packets = 0.0
        losses: list[float] = []
        rtts: list[float] = []
        reports = list(reports)
        for report in reports:
            grouped = stats_by_type(report)
            for stat in grouped.get("outbound-rtp", []):
                key = stats.stream_key(stat)
                delta = self._bytes.delta(key, stats.count(stat, "bytesSent"))
                kind = str(stat_value(stat, "kind", "video"))
                sent[kind] = sent.get(kind, 0.0) + delta
                self.total_bytes_sent += int(delta)
                packets += self._packets.delta(key, stats.count(stat, "packetsSent"))
            loss, rtt = self._viewer_loss_rtt(grouped.get("remote-inbound-rtp", []))
            if loss is not None:
                losses.append(loss)
            if rtt is not None:
                rtts.append(rtt)
        for tracker in self._trackers:
            tracker.prune()

        send_fps = stats.rate(self._sent, counters.frames_sent, now)
        rtt_ms, loss = (max(rtts) if rtts else None), (max(losses) if losses else 0.0)
        level = QualityLevel.UNKNOWN
        if seconds is not None and reports:
            level = quality_level(rtt_ms, loss, send_fps, counters.target_fps, packets > 0)
        return PublishQuality(
            capture_fps=stats.rate(self._captured, counters.frames_captured, now),
            encode_fps=stats.rate(self._encoded, counters.frames_encoded, now),
            send_fps=send_fps,
            video_kbps=stats.kbps(sent["video"], seconds),
            audio_kbps=stats.kbps(sent["audio"], seconds),
            rtt_ms=rtt_ms,
            packet_loss_rate=loss,
            level=level,
            hardware_encode=counters.hardware_encode,
            codec=counters.codec,
            total_bytes_sent=self.total_bytes_sent,
            width=counters.width,
            height=counters.height,
            viewers=len(reports),
        )

    def _viewer_loss_rtt(self, remote: list[Any]) -> tuple[float | None, float | None]:
        """One viewer's loss over the period and rtt (ms) from its receiver reports."""
        lost = received = 0.0
        fractions: list[float] = []
        rtts: list[float] = []
        for stat in remote:
            # Keyed by the sender alone: aiortc stores the reporting receiver's SSRC here.
            key = stats.owner(stat)
            lost += self._remote_lost.delta(key, stats.count(stat, "packetsLost"))
            received += self._remote_received.delta(key, stats.count(stat, "packetsReceived"))
            fraction = stats.number(stat, "fractionLost")
            if fraction is not None:
                fractions.append(fraction / 256)
            rtt = stats.number(stat, "roundTripTime")
            if rtt is not None:
                rtts.append(rtt * 1000)
        loss = stats.loss_rate(lost, received)
        if loss is None and fractions:
            loss = min(max(fractions), 1.0)
        return loss, (max(rtts) if rtts else None)


@dataclass(frozen=True, slots=True)
class PlayCounters:
    """What the player counts itself: cumulative frame counts, the picture, the delay.

    ``video_bytes``/``audio_bytes``, when the engine counts received payload bytes
    itself, replace the publisher's sender-report counts for the bitrates and total.
    ``target_fps`` 0 means the fps is not judged.
    """

    frames_received: int = 0
    frames_decoded: int = 0
    width: int = 0
    height: int = 0
    codec: str = ""
    delay_ms: float | None = None
    target_fps: float = 0.0
    video_bytes: int | None = None
    audio_bytes: int | None = None


class PlayerQualityMeter:
    """Owns one played stream's previous samples: per-stream packet, loss and sender-
    report counters, the frame-rate and byte meters and the running byte total.
    """

    def __init__(self) -> None:
        self._last: float | None = None
        self._received = CounterDeltas()
        self._lost = CounterDeltas(signed=True)
        self._sr_bytes = CounterDeltas(wrap=stats.RTCP_COUNTER_WRAP)
        self._sr_times: dict[Hashable, float] = {}
        self._engine_bytes = {"video": CounterDeltas(), "audio": CounterDeltas()}
        self._frames_in, self._decoded = RateMeter(), RateMeter()
        self.total_bytes_received = 0

    def update(
        self, report: StatsReport, counters: PlayCounters, now: float | None = None
    ) -> PlayQuality:
        """One period's quality from the player's peer-connection stats report."""
        now = time.monotonic() if now is None else now
        seconds, self._last = stats.elapsed(self._last, now), now
        grouped = stats_by_type(report)
        sr_ssrc = {
            stats.owner(s): stat_value(s, "ssrc") for s in grouped.get("remote-outbound-rtp", [])
        }
        lost = received = packets = 0.0
        extra: dict[str, float] = {}
        for stat in grouped.get("inbound-rtp", []):
            key = stats.stream_key(stat)
            got = self._received.delta(key, stats.count(stat, "packetsReceived"))
            packets += got
            if sr_ssrc.get(stats.owner(stat), key[1]) != key[1]:
                continue  # aiortc shows the RTX stream here once a packet was resent
            received += got
            lost += self._lost.delta(key, stats.count(stat, "packetsLost"))
            kind = str(stat_value(stat, "kind", "video"))
            jitter = stats.number(stat, "jitter")
            if jitter is not None and kind in stats.CLOCK_RATES:
                extra[f"{kind}_jitter_ms"] = jitter * 1000 / stats.CLOCK_RATES[kind]
        kbps = self._bitrates(grouped.get("remote-outbound-rtp", []), counters, seconds)
        rtts = [stats.number(s, "roundTripTime") for s in grouped.get("remote-inbound-rtp", [])]
        rtt_values = [r * 1000 for r in rtts if r is not None]
        for tracker in (self._received, self._lost, self._sr_bytes):
            tracker.prune()

        recv_fps = stats.rate(self._frames_in, counters.frames_received, now)
        decode_fps = stats.rate(self._decoded, counters.frames_decoded, now)
        rtt_ms, loss = (
            (max(rtt_values) if rtt_values else None),
            stats.loss_rate(lost, received) or 0.0,
        )
        level = QualityLevel.UNKNOWN
        if seconds is not None:
            flowing = packets > 0 or recv_fps > 0
            level = quality_level(rtt_ms, loss, decode_fps, counters.target_fps, flowing)
        return PlayQuality(
            recv_fps=recv_fps,
            decode_fps=decode_fps,
            video_kbps=kbps["video"],
            audio_kbps=kbps["audio"],
            rtt_ms=rtt_ms,
            packet_loss_rate=loss,
            delay_ms=counters.delay_ms,
            level=level,
            codec=counters.codec,
            total_bytes_received=self.total_bytes_received,
            width=counters.width,
            height=counters.height,
            extra=extra,
        )

    def _bitrates(
        self, sender_reports: list[Any], counters: PlayCounters, seconds: float | None
    ) -> dict[str, float]:
        """kbps per kind: the engine's byte counts if given, else the sender reports'."""
        per_kind = {"video": 0.0, "audio": 0.0}
        times: dict[Hashable, float] = {}
        own = {"video": counters.video_bytes, "audio": counters.audio_bytes}
        for kind, value in own.items():
            if value is not None:
                delta = self._engine_bytes[kind].delta(kind, value)
                self.total_bytes_received += int(delta)
                per_kind[kind] = stats.kbps(delta, seconds)
        for stat in sender_reports:
            kind = str(stat_value(stat, "kind", "video"))
            if own.get(kind) is not None:
                continue
            key = stats.stream_key(stat)
            delta = self._sr_bytes.delta(key, stats.count(stat, "bytesSent"))
            self.total_bytes_received += int(delta)
            # The sender's own clock spans its reports exactly; the period does not.
            sent_at = stat_value(stat, "remoteTimestamp") or stat_value(stat, "timestamp")
            if isinstance(sent_at, datetime.datetime):
                times[key] = sent_at.timestamp()
            span = stats.elapsed(self._sr_times.get(key), times.get(key, 0.0))
            per_kind[kind] = per_kind.get(kind, 0.0) + stats.kbps(delta, span or seconds)
        self._sr_times = times
        return per_kind


def quality_to_dict(quality: PublishQuality | PlayQuality) -> dict[str, Any]:
    """A JSON-ready dict of a quality record: ``level`` as its number plus
    ``level_name``, unknown values (rtt, delay) as None, floats rounded to 3 places.
    """
    out: dict[str, Any] = {}
    for f in fields(quality):
        value = getattr(quality, f.name)
        if isinstance(value, QualityLevel):
            out[f.name] = int(value)
            out["level_name"] = value.name.lower()
        elif isinstance(value, float):
            out[f.name] = round(value, 3) if math.isfinite(value) else None
        elif isinstance(value, dict):
            out[f.name] = {k: round(v, 3) for k, v in value.items() if math.isfinite(v)}
        elif isinstance(value, tuple):  # the WHIP targets, their state by name as on MQTT
            out[f.name] = [{**asdict(t), "state": t.state.name} for t in value]
        else:
            out[f.name] = value
    return out
