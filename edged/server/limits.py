"""Rate limiting: token buckets per connection and per client address."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """Allows ``rate`` events per second on average and ``burst`` at once."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, now: float | None = None) -> bool:
        t = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (t - self.stamp) * self.rate)
        self.stamp = t
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def is_full(self, now: float) -> bool:
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


@dataclass(slots=True)
class AddressState:
    """What the server tracks about one client address."""

    connections: int
    messages: TokenBucket
    connects: TokenBucket


class AddressLimiter:
    """Per-address connection counts and message/connect rates."""

    def __init__(
        self,
        max_connections: int,
        messages_per_s: float,
        message_burst: float,
        connects_per_s: float,
        connect_burst: float,
    ) -> None:
        self._max = max_connections
        self._msg = (messages_per_s, message_burst)
        self._conn = (connects_per_s, connect_burst)
        self._addresses: dict[str, AddressState] = {}

    def _state(self, address: str) -> AddressState:
        state = self._addresses.get(address)
        if state is None:
            state = AddressState(0, TokenBucket(*self._msg), TokenBucket(*self._conn))
            self._addresses[address] = state
        return state

    def connect(self, address: str) -> bool:
        """Count a new connection; False (and nothing counted) when over a limit."""
        state = self._state(address)
        if state.connections >= self._max or not state.connects.take():
            return False
        state.connections += 1
        return True

    def disconnect(self, address: str) -> None:
        state = self._addresses.get(address)
        if state is not None:
            state.connections = max(0, state.connections - 1)

    def message(self, address: str) -> bool:
        return self._state(address).messages.take()

    def prune(self, now: float | None = None) -> None:
        """Forget idle addresses whose buckets have refilled."""
        t = time.monotonic() if now is None else now
        idle = [
            a
            for a, s in self._addresses.items()
            if s.connections == 0 and s.messages.is_full(t) and s.connects.is_full(t)
        ]
        for address in idle:
            del self._addresses[address]
