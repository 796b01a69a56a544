"""A media file as a live video source, looped without a seam.

The file is read by the same :class:`~edged.media.sources.v4l2.CaptureTrack` as a camera, paced
by its timestamps on the monotonic clock. H.264 that viewers can take as it is (no
B-frames, within level 3.1) is passed through: converted from the MP4/Matroska form
(AVCC) to Annex-B by FFmpeg's ``h264_mp4toannexb`` filter, SPS/PPS in front of every IDR,
never decoded. Anything else is decoded and encoded once by the fan-out. At the end the
file is opened again and its timestamps continue one frame after the last.
"""

from __future__ import annotations

import os

from ...errors import EdgedError, ErrorCode
from ..device import DeviceCodes, ErrorCallback
from .capture_input import CaptureInput, Opener, open_input
from .orientation import Orientation
from .v4l2 import CaptureTrack

FILE_CODES = DeviceCodes(
    ErrorCode.MEDIA_FILE_NOT_FOUND, ErrorCode.MEDIA_FILE_UNSUPPORTED, ErrorCode.MEDIA_FILE_NOT_FOUND
)
"""A file that cannot be found (or vanished) and one that cannot be played."""


class FileVideoTrack(CaptureTrack):
    """A looping video track read from a media file; see :class:`CaptureTrack` for what
    it owns. A file that vanishes is reported (MEDIA_FILE_NOT_FOUND) and reopened with
    backoff; playing resumes when it is back. A file's reads do not stall the way a
    camera's do, and a still picture may last long in it: no stall watchdog unless
    ``stall_timeout`` is given."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        loop: bool = True,
        passthrough: bool = True,
        orientation: Orientation | None = None,
        on_error: ErrorCallback | None = None,
        opener: Opener = open_input,
        retry: tuple[float, float] = (0.5, 5.0),
        stall_timeout: float | None = None,
    ) -> None:
        self.path = os.fspath(path)
        super().__init__(
            CaptureInput(self.path, loop=loop),
            orientation=orientation,
            passthrough=passthrough,
            codes=FILE_CODES,
            on_error=on_error,
            opener=opener,
            retry=retry,
            stall_timeout=stall_timeout,
        )


def file_video_source(
    path: str | os.PathLike[str], orientation: Orientation | None = None
) -> FileVideoTrack:
    """A looping file track; raises ``EdgedError(MEDIA_FILE_NOT_FOUND)`` for a missing file.

    Bind it as ``EngineProfile.video_source`` with ``lambda config: file_video_source(p)``:
    a file plays at its own size and rate.
    """
    if not os.path.isfile(path):
        raise EdgedError(ErrorCode.MEDIA_FILE_NOT_FOUND, f"{os.fspath(path)}: no such file")
    return FileVideoTrack(path, orientation=orientation)
