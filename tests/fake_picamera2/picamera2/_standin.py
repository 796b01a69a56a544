"""The test's view of the stand-in board: what exists, and what the stand-in did."""

from __future__ import annotations

import collections
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from . import platform

PI4_CAMERA = {
    "Model": "imx708",
    "Location": 2,
    "Rotation": 180,
    "Id": "/base/soc/i2c0mux/i2c@1/imx708@1a",
    "Num": 0,
}
PI5_CAMERA = PI4_CAMERA | {"Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a"}


@dataclass
class StandInBoard:
    """Cameras present, whether ``/dev/video11`` (the H.264 encoder) exists, and counters.

    ``encodes`` counts frames encoded by the stand-in's own encoder: with it, a test can
    tell the camera's encodes from any that the code under test would make.
    """

    cameras: list[dict[str, Any]] = field(default_factory=lambda: [dict(PI4_CAMERA)])
    hardware_encoder: bool = True
    open_cameras: set[int] = field(default_factory=set)
    stalled: bool = False
    """While set, every sensor completes no requests: no frame reaches an encoder or a
    capture, and nothing raises (a sensor or CSI-2 link that stopped). A camera stopped
    and started again stays stalled until this is cleared."""
    camera_starts: int = 0
    frames_rendered: int = 0
    encodes: int = 0
    encoder_starts: int = 0
    encoder_stops: int = 0
    keyframes_forced: int = 0
    bitrates: list[int] = field(default_factory=list)
    """The bitrate of every encoder start, in order."""
    controls: dict[int, int] = field(default_factory=dict)
    """The V4L2 controls of the last encoder start (id -> value)."""
    configurations: list[dict[str, Any]] = field(default_factory=list)
    units: collections.deque[bytes] = field(default_factory=lambda: collections.deque(maxlen=900))
    """The newest access units the encoder emitted, as bytes."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reset(self) -> None:
        """A Pi 4 with one camera and nothing done yet."""
        fresh = StandInBoard()
        for name in self.__dataclass_fields__:
            if name != "lock":
                setattr(self, name, getattr(fresh, name))
        platform._platform = platform.Platform.VC4

    def make_pi5(self) -> None:
        """A Pi 5: the PiSP platform, its camera behind RP1, no H.264 encoder."""
        platform._platform = platform.Platform.PISP
        self.cameras = [dict(PI5_CAMERA)]
        self.hardware_encoder = False


BOARD = StandInBoard()
if os.environ.get("EDGED_STANDIN_BOARD") == "pi5":  # a process of its own (bench/board.py)
    BOARD.make_pi5()
