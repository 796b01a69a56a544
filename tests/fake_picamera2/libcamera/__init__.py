"""Stand-in for libcamera's Python bindings: the names picamera2 and edged use."""

from __future__ import annotations


class Transform:
    """An image transform: ``Transform(rotation=0, hflip=False, vflip=False, transpose=False)``."""

    def __init__(
        self, rotation: int = 0, hflip: bool = False, vflip: bool = False, transpose: bool = False
    ) -> None:
        # libcamera: Rot90 = VFlip | Transpose, Rot180 = HFlip | VFlip, Rot270 = HFlip | Transpose
        rotate = {0: (0, 0, 0), 90: (0, 1, 1), 180: (1, 1, 0), 270: (1, 0, 1)}[rotation % 360]
        hflip, vflip, transpose = (
            bool(a) != bool(b) for a, b in zip((hflip, vflip, transpose), rotate, strict=True)
        )
        self.hflip = bool(hflip)
        self.vflip = bool(vflip)
        self.transpose = bool(transpose)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Transform) and (self.hflip, self.vflip, self.transpose) == (
            other.hflip,
            other.vflip,
            other.transpose,
        )

    def __hash__(self) -> int:
        return hash((self.hflip, self.vflip, self.transpose))

    def __repr__(self) -> str:
        return f"<libcamera.Transform hflip={self.hflip} vflip={self.vflip} t={self.transpose}>"


class controls:
    """Control ids: only the one picamera2's encoders read."""

    SensorTimestamp = "SensorTimestamp"
