"""Small helpers on decoded frames that several roles share (sources, sinks, analysis)."""

from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt

Plane = npt.NDArray[np.uint8]
"""One plane of a planar 8-bit frame, as a ``(height, width)`` array."""


def plane_view(frame: av.VideoFrame, index: int) -> Plane:
    """A writable ``(height, width)`` numpy view of one plane of a planar 8-bit frame."""
    plane = frame.planes[index]
    rows = frame.height if index == 0 else (frame.height + 1) // 2
    cols = frame.width if index == 0 else (frame.width + 1) // 2
    flat: Plane = np.frombuffer(memoryview(plane), dtype=np.uint8)
    return flat.reshape(rows, plane.line_size)[:, :cols]
