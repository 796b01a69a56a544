"""Small helpers on decoded frames that several roles share (sources, sinks, analysis)."""

from __future__ import annotations

import functools
from typing import Any, cast

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


@functools.cache
def _graph_options() -> dict[str, int]:
    """``{"threads": 1}`` where PyAV's resampler takes it (19 on), else nothing: asked once."""
    make = cast(Any, av.AudioResampler)
    try:
        make(format="s16", layout="mono", rate=8000, threads=1)
    except TypeError:  # before PyAV 19
        return {}
    return {"threads": 1}


def audio_resampler(
    format: str, layout: str, rate: int, frame_size: int | None = None
) -> av.AudioResampler:
    """An audio resampler whose filter graph runs on the caller's thread.

    PyAV's resampler is a filter graph with, by default, a thread per core. From PyAV 19
    the graph sits in a reference cycle, so those threads outlive the resampler until the
    garbage collector reaches it: a daemon that publishes again kept two more threads
    each time. PyAV 19 takes ``threads=1`` (no worker thread: 20 ms of audio needs none);
    older releases have no such option and free their graph with the resampler.
    """
    options: dict[str, Any] = {"format": format, "layout": layout, "rate": rate}
    if frame_size is not None:
        options["frame_size"] = frame_size
    return cast(av.AudioResampler, cast(Any, av.AudioResampler)(**options, **_graph_options()))
