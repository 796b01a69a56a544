"""What every source shares: the video it is made for, and what it can do.

:class:`VideoSettings` is the video a source is made for. :class:`SourceTrack` is the base
of edged's sources: it declares its :class:`Capabilities` (keyframe on request, bitrate
control, hardware encode, a snapshot of its own, device errors reported) and, for what
it cannot do, a harmless default. The tap, the fan-out, the engine and the daemon read
the capabilities instead of probing a source's attributes; a track that is not a
:class:`SourceTrack` can do none of it (:func:`capabilities_of`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiortc.mediastreams import MediaStreamTrack

from ..device import ErrorCallback
from ..encoders.libx264 import VideoRates


class VideoSettings(VideoRates, Protocol):
    """The video a source is made for (the engine's ``VideoConfig`` has these): its size,
    and the rates it is encoded at."""

    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...


@dataclass(frozen=True)
class Capabilities:
    """What a source can do besides yielding frames or packets."""

    keyframe_on_request: bool = False
    """:meth:`SourceTrack.request_keyframe` makes its next access unit an IDR (it encodes)."""
    bitrate_control: bool = False
    """:meth:`SourceTrack.set_bitrate` retargets its own encoder."""
    hardware_encode: bool = False
    """The board's hardware encoder makes its packets (none made by the fan-out)."""
    snapshot: bool = False
    """:meth:`SourceTrack.snapshot_jpeg` makes a JPEG from a stream of its own."""
    device_errors: bool = False
    """It reports a failing device through :attr:`SourceTrack.on_error`."""


NOTHING = Capabilities()
"""What a plain track can do beyond yielding frames."""


class SourceTrack(MediaStreamTrack):
    """A source track of edged's: its :attr:`capabilities`, and a default for each one.

    A subclass that can do something declares it in :attr:`capabilities` and overrides
    the method; callers call the method when the capability says so, or at any time where
    the default (nothing happens) is what they want.
    """

    on_error: ErrorCallback | None = None
    """Called on the event loop with a device error code, 0 when it works again (with
    ``device_errors``)."""

    @property
    def capabilities(self) -> Capabilities:
        return NOTHING

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """The size of the pictures it yields, once known."""
        return None

    def request_keyframe(self) -> None:
        """Make the next access unit an IDR (with ``keyframe_on_request``)."""

    def set_bitrate(self, bitrate: int) -> int:
        """Retarget its own encoder (with ``bitrate_control``); returns the bitrate taken."""
        return bitrate

    def snapshot_jpeg(self, max_width: int = 640) -> bytes:
        """A JPEG from a stream of its own (with ``snapshot``)."""
        raise NotImplementedError(f"{type(self).__name__} makes no snapshot of its own")


def capabilities_of(track: object) -> Capabilities:
    """What ``track`` can do: a :class:`SourceTrack`'s capabilities, else nothing."""
    return track.capabilities if isinstance(track, SourceTrack) else NOTHING
