"""Completed camera requests: each holds one frame of every configured stream."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np


class CompletedRequest:
    """One sensor frame: a buffer per stream and the request's metadata."""

    def __init__(self, buffers: dict[str, np.ndarray], config: dict[str, Any], sensor_ns: int):
        self.buffers = buffers
        self.config = config
        self.request = SimpleNamespace(metadata={"SensorTimestamp": sensor_ns})
        self.stream_map = {name: name for name in buffers}

    def acquire(self) -> None:
        """The real one counts references to the camera buffer."""

    def release(self) -> None:
        """The real one returns the buffer to the camera."""

    def get_metadata(self) -> dict[str, Any]:
        return dict(self.request.metadata)

    def make_array(self, name: str) -> np.ndarray:
        """A copy of the stream's buffer; YUV420 is ``(height * 3 // 2, stride)``."""
        config = self.config[name]
        height = config["size"][1]
        return np.copy(self.buffers[name]).reshape(height * 3 // 2, config["stride"])


class _MappedBuffer:
    """The stream's buffer, mapped for the duration of a ``with`` block."""

    def __init__(self, request: CompletedRequest, stream: str, write: bool = True) -> None:
        self._buffer = request.buffers[request.stream_map[stream]]

    def __enter__(self) -> memoryview:
        return memoryview(self._buffer)

    def __exit__(self, *exc: object) -> None:
        pass


class MappedArray:
    """The stream's buffer as a numpy array for the duration of a ``with`` block."""

    def __init__(
        self, request: CompletedRequest, stream: str, reshape: bool = True, write: bool = True
    ):
        self.array = request.make_array(stream)

    def __enter__(self) -> MappedArray:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
