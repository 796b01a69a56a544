"""Encoder base class (picamera2 0.3.38): hands each camera buffer to its outputs."""

from __future__ import annotations

import threading
from enum import Enum
from typing import Any

from libcamera import controls

from ..outputs import Output
from ..request import _MappedBuffer


class Quality(Enum):
    """The quality wanted from an encoder when no bitrate is given."""

    VERY_LOW = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    VERY_HIGH = 4


class Encoder:
    """Base class for encoders; by itself it outputs the raw buffers (keyframe=True)."""

    def __init__(self, framerate: float = 30) -> None:
        self._width = 0
        self._height = 0
        self._stride = 0
        self._format: str | None = None
        self._output: list[Output] = []
        self._running = False
        self._name: str | None = None
        self._framerate = framerate
        self._lock = threading.Lock()
        self.firsttimestamp: int | None = None
        self.frame_skip_count = 1
        self._skip_count = 0
        self._output_lock = threading.Lock()
        self.audio = False
        self.frames_encoded = 0
        self.sync_enable = False

    @property
    def running(self) -> bool:
        return self._running

    @property
    def width(self) -> int:
        return self._width

    @width.setter
    def width(self, value: int) -> None:
        if not isinstance(value, int):
            raise RuntimeError("Width must be integer")
        self._width = value

    @property
    def height(self) -> int:
        return self._height

    @height.setter
    def height(self, value: int) -> None:
        if not isinstance(value, int):
            raise RuntimeError("Height must be integer")
        self._height = value

    @property
    def size(self) -> tuple[int, int]:
        return (self._width, self._height)

    @property
    def stride(self) -> int:
        return self._stride

    @stride.setter
    def stride(self, value: int) -> None:
        if not isinstance(value, int):
            raise RuntimeError("Stride must be integer")
        self._stride = value

    @property
    def format(self) -> str | None:
        return self._format

    @format.setter
    def format(self, value: str) -> None:
        self._format = value

    @property
    def output(self) -> Any:
        return self._output[0] if len(self._output) == 1 else self._output

    @output.setter
    def output(self, value: Any) -> None:
        if isinstance(value, list):
            for out in value:
                if not isinstance(out, Output):
                    raise RuntimeError("Must pass Output")
        elif isinstance(value, Output):
            value = [value]
        else:
            raise RuntimeError("Must pass Output")
        for out in value:
            if self._running and out not in self._output:
                self._send_streams(out)
        self._output = value

    @property
    def name(self) -> str | None:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        if not isinstance(value, str):
            raise RuntimeError("Name must be string")
        self._name = value

    def encode(self, stream: Any, request: Any) -> None:
        if self._skip_count == 0:
            with self._lock:
                if not self._running:
                    return
                self._encode(stream, request)
        self._skip_count = (self._skip_count + 1) % self.frame_skip_count
        self.frames_encoded += 1

    def _encode(self, stream: Any, request: Any) -> None:
        timestamp_us = self._timestamp(request)
        with _MappedBuffer(request, stream) as b:
            self.outputframe(b, keyframe=True, timestamp=timestamp_us)

    def _send_streams(self, output: Output) -> None:
        output._add_stream("video", "rawvideo", width=self._width, height=self._height)

    def start(self, quality: Quality | None = None) -> None:
        with self._lock:
            if self._running:
                raise RuntimeError("Encoder already running")
            self.frames_encoded = 0
            self._setup(quality)
            self._running = True
            self.firsttimestamp = None
            for out in self._output:
                out.start()
            self._start()

    def _start(self) -> None:
        for out in self._output:
            self._send_streams(out)

    def stop(self) -> None:
        with self._lock:
            if not self._running:
                raise RuntimeError("Encoder already stopped")
            self._running = False
            self._stop()
            for out in self._output:
                out.stop()

    def _stop(self) -> None:
        pass

    def outputframe(
        self,
        frame: Any,
        keyframe: bool = True,
        timestamp: int | None = None,
        packet: Any = None,
        audio: bool = False,
    ) -> None:
        with self._output_lock:
            for out in self._output:
                out.outputframe(frame, keyframe, timestamp, packet, audio)

    def _setup(self, quality: Quality | None) -> None:
        pass

    def _timestamp(self, request: Any) -> int:
        """Microseconds since this encoder's first frame, from the sensor timestamp."""
        ts = int(request.request.metadata[controls.SensorTimestamp] / 1000)
        if self.firsttimestamp is None:
            self.firsttimestamp = ts
            return 0
        return ts - self.firsttimestamp
