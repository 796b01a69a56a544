"""The picamera2 stand-in (tests/fake_picamera2) as a fixture: importable, its board reset."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

STAND_IN = Path(__file__).parent / "fake_picamera2"


@pytest.fixture
def board(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The stand-in picamera2 importable and its board reset; unimportable again after."""
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(STAND_IN))
    from picamera2._standin import BOARD

    BOARD.reset()
    yield BOARD
    for name in set(sys.modules) - before:
        if name.split(".")[0] in ("picamera2", "libcamera", "videodev2"):
            del sys.modules[name]
