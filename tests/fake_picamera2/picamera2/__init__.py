"""Stand-in for picamera2 0.3.x: the part of its API that edged uses (see ../README.md)."""

from .picamera2 import Picamera2
from .platform import Platform, get_platform
from .request import CompletedRequest, MappedArray

__all__ = ["CompletedRequest", "MappedArray", "Picamera2", "Platform", "get_platform"]
