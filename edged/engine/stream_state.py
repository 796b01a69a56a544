"""The state of one published or played stream, and the one event each change makes."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Generic, TypeVar

from ..model import PlayerState, PublisherState

S = TypeVar("S", PublisherState, PlayerState)


class StreamState(Generic[S]):
    """Owns a stream's state and error code: :meth:`set_state` changes them and emits
    ``STATE_EVENT`` (stream id, state, code, extra) once per change, never for a repeat."""

    STATE_EVENT: ClassVar[str]
    stream_id: str
    state: S
    error_code: int
    _emit: Callable[..., None]

    def set_state(self, state: S, error_code: int = 0) -> None:
        if state == self.state and error_code == self.error_code:
            return
        self.state, self.error_code = state, error_code
        self._emit(self.STATE_EVENT, self.stream_id, state, error_code, {})
