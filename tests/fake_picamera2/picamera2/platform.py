"""Which Raspberry Pi platform this is: VC4 (Pi 4 and older) or PISP (Pi 5).

Real picamera2 probes /dev/video* once at import; the stand-in starts as VC4 and a test
sets ``_platform`` (the same module variable) to model a Pi 5.
"""

from enum import Enum


class Platform(Enum):
    VC4 = 0
    PISP = 1


_platform = Platform.VC4


def get_platform() -> Platform:
    return _platform
