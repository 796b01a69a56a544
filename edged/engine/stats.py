"""Reading aiortc ``getStats()`` reports: fields by name, cumulative counters as deltas
and rates.

aiortc's stats objects are dataclasses with W3C (camelCase) names; tests pass plain
mappings. Counters are cumulative and may wrap (RTCP's 32-bit ones) or restart (a new
RTP stream); the meters here keep the previous sample so that each report period gets
its own increase. Nothing here knows what a quality level is (:mod:`.quality`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

# RTCP sender reports carry 32-bit packet and octet counts (aiortc masks them).
RTCP_COUNTER_WRAP = 1 << 32
# RTP clock rates for jitter: aiortc's video codecs all use 90 kHz, Opus 48 kHz.
CLOCK_RATES = {"video": 90_000, "audio": 48_000}

StatsReport = Mapping[str, Any]


def stat_value(stat: Any, name: str, default: Any = None) -> Any:
    """One field of a stats object, whether an aiortc dataclass or a plain mapping.

    Looks up the camelCase name of the W3C dictionaries aiortc uses, then its
    snake_case spelling; ``default`` when absent or None.
    """
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
    for key in (name, snake):
        value = stat.get(key) if isinstance(stat, Mapping) else getattr(stat, key, None)
        if value is not None:
            return value
    return default


def stats_by_type(report: StatsReport | Iterable[Any]) -> dict[str, list[Any]]:
    """Group a report's stats objects by their ``type`` ("outbound-rtp", ...)."""
    items: Iterable[Any] = report.values() if isinstance(report, Mapping) else report
    grouped: dict[str, list[Any]] = {}
    for stat in items:
        kind = stat_value(stat, "type")
        if isinstance(kind, str):
            grouped.setdefault(kind, []).append(stat)
    return grouped


def number(stat: Any, name: str) -> float | None:
    value = stat_value(stat, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def count(stat: Any, name: str) -> float:
    return number(stat, name) or 0.0


def stream_key(stat: Any) -> tuple[str, int]:
    return str(stat_value(stat, "id", "")), int(stat_value(stat, "ssrc", 0))


def owner(stat: Any) -> str:
    """The ``id(sender or receiver)`` suffix aiortc puts in every stats id it makes."""
    return str(stat_value(stat, "id", "")).rpartition("_")[2]


def elapsed(previous: float | None, now: float) -> float | None:
    return now - previous if previous is not None and now > previous else None


def counter_delta(previous: float, current: float, wrap: int | None = None) -> float:
    """The increase of a cumulative counter between two samples.

    A decrease means the counter wrapped (when ``wrap`` is given) or restarted from
    zero, so the increase is then the current value.
    """
    if current >= previous:
        return current - previous
    if wrap is not None and previous < wrap:
        return current + wrap - previous
    return current


class RateMeter:
    """Owns the last sample of one cumulative counter; gives its rate per second."""

    def __init__(self, wrap: int | None = None) -> None:
        self.wrap = wrap
        self._value: float | None = None
        self._time: float | None = None

    def update(self, value: float, now: float) -> float | None:
        """The rate since the previous sample; None for the first one or if no time passed."""
        previous, self._value = self._value, value
        seconds, self._time = elapsed(self._time, now), now
        if previous is None or seconds is None:
            return None
        return counter_delta(previous, value, self.wrap) / seconds


class CounterDeltas:
    """Owns the last value of keyed cumulative counters (one key per RTP stream).

    A key seen for the first time started within the period, so its whole value is the
    increase. ``signed`` counters (packets lost) may legitimately go down and are then
    differenced as they are. :meth:`prune` forgets keys not seen since the last prune.
    """

    def __init__(self, wrap: int | None = None, signed: bool = False) -> None:
        self.wrap = wrap
        self.signed = signed
        self._last: dict[Hashable, float] = {}
        self._seen: set[Hashable] = set()

    def delta(self, key: Hashable, value: float) -> float:
        previous = self._last.get(key, 0.0)
        self._last[key] = value
        self._seen.add(key)
        if self.signed:
            return value - previous
        return counter_delta(previous, value, self.wrap)

    def prune(self) -> None:
        self._last = {k: v for k, v in self._last.items() if k in self._seen}
        self._seen = set()


def kbps(byte_count: float, seconds: float | None) -> float:
    return byte_count * 8 / 1000 / seconds if seconds else 0.0


def rate(meter: RateMeter, value: float, now: float) -> float:
    return meter.update(value, now) or 0.0


def loss_rate(lost: float, received: float) -> float | None:
    expected = lost + received
    if expected <= 0:
        return None
    return min(max(lost / expected, 0.0), 1.0)
