"""What every video source is made for: the :class:`VideoSettings` of a configured video."""

from __future__ import annotations

from typing import Protocol

from ..encoders.libx264 import VideoRates


class VideoSettings(VideoRates, Protocol):
    """The video a source is made for (the engine's ``VideoConfig`` has these): its size,
    and the rates it is encoded at."""

    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
