"""The state of one published or played stream, and the one event each change makes."""

from __future__ import annotations

from typing import Generic, TypeVar

from ..model import PlayerState, PublisherState
from .events import Emit, Event

S = TypeVar("S", PublisherState, PlayerState)


class StreamState(Generic[S]):
    """Owns a stream's state and error code: :meth:`set_state` changes them and emits
    the state event (stream id, state, code, extra) once per change, never for a repeat."""

    stream_id: str
    state: S
    error_code: int
    _emit: Emit

    def _state_event(self, state: S, error_code: int) -> Event:
        """The event of this kind of stream (publisher or player) for a new state."""
        raise NotImplementedError

    def set_state(self, state: S, error_code: int = 0) -> None:
        if state == self.state and error_code == self.error_code:
            return
        self.state, self.error_code = state, error_code
        self._emit(self._state_event(state, error_code))
