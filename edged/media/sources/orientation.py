"""Turning captured frames: mirrored, upside down, rotated by quarter turns."""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

from ..frames import plane_view


@dataclass(frozen=True)
class Orientation:
    """How captured frames are turned: mirrored (``hflip``), upside down (``vflip``), then
    rotated clockwise by ``rotation`` degrees. Owns nothing; :meth:`apply` copies planes."""

    rotation: int = 0
    hflip: bool = False
    vflip: bool = False

    def __post_init__(self) -> None:
        if self.rotation not in (0, 90, 180, 270):
            raise ValueError(f"rotation must be 0, 90, 180 or 270, not {self.rotation}")

    @property
    def identity(self) -> bool:
        return self.rotation == 0 and not self.hflip and not self.vflip

    def apply(self, frame: av.VideoFrame) -> av.VideoFrame:
        """The frame turned (yuv420p, even sizes), same timestamps; itself when unturned."""
        if self.identity:
            return frame
        width, height = frame.width & ~1, frame.height & ~1
        if frame.format.name != "yuv420p" or (width, height) != (frame.width, frame.height):
            frame = frame.reformat(width=width, height=height, format="yuv420p")
        # 180 degrees is both flips; 270 is both flips and a quarter turn.
        half = self.rotation >= 180
        hflip, vflip, quarter = self.hflip != half, self.vflip != half, self.rotation % 180
        out = (
            av.VideoFrame(height, width, "yuv420p")
            if quarter
            else av.VideoFrame(width, height, "yuv420p")
        )
        for index in range(3):
            plane = plane_view(frame, index)
            if hflip:
                plane = plane[:, ::-1]
            if vflip:
                plane = plane[::-1]
            plane_view(out, index)[...] = np.rot90(plane, -1) if quarter else plane
        out.pts, out.time_base = frame.pts, frame.time_base
        return out
