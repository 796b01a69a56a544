"""Output frames from encoder (picamera2 0.3.38's base class)."""

from __future__ import annotations

from typing import Any


class Output:
    """Handles output functionality of encoders."""

    def __init__(self, pts: Any = None) -> None:
        self.recording = False
        self.ptsoutput = pts
        self.needs_pacing = False
        self.needs_add_stream = False

    def start(self) -> None:
        self.recording = True

    def stop(self) -> None:
        self.recording = False

    def outputframe(
        self,
        frame: Any,
        keyframe: bool = True,
        timestamp: int | None = None,
        packet: Any = None,
        audio: bool = False,
    ) -> None:
        """Receives one encoded frame; ``timestamp`` is in microseconds."""

    def outputtimestamp(self, timestamp: int | None) -> None:
        if self.ptsoutput is not None and timestamp is not None:
            print(f"{timestamp // 1000}.{timestamp % 1000:03}", file=self.ptsoutput, flush=True)

    @property
    def ptsoutput(self) -> Any:
        return self._ptsoutput

    @ptsoutput.setter
    def ptsoutput(self, file: Any) -> None:
        self._ptsoutput = open(file, "w") if isinstance(file, str) else file  # noqa: SIM115

    def _add_stream(self, encoder_stream: Any, *args: Any, **kwargs: Any) -> None:
        """Some outputs need to know about an encoder's streams."""
