"""Which board this is, and the video defaults that fit it.

The board is read from the device tree's model (``/proc/device-tree/model``, as the
Raspberry Pi firmware writes it: "Raspberry Pi 4 Model B Rev 1.4"); whether it encodes
H.264 in hardware is asked of the encoder itself (:func:`pick_h264_encoder` on the
board, a given answer in tests). :data:`BOARDS` is the documented table
(docs/configuration.md): per board, the published picture (size, rate, bitrate) with and
without the hardware encoder, and the peer-to-peer viewer cap. Any ``video.*`` or
``auto.publish.p2p_max_viewers`` key set in the configuration wins over the table.

Every default stays within H.264 level 3.1 (``42e01f``, what edged negotiates; the
encoders shrink a larger picture, :func:`edged.media.h264.fit_level_31`): 1280x720 at
30 fps at most.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MODEL_FILES = ("proc/device-tree/model", "sys/firmware/devicetree/base/model")


@dataclass(frozen=True, slots=True)
class Picture:
    """What is published: size, frame rate, bitrate."""

    width: int
    height: int
    fps: float
    bitrate: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}@{self.fps:g} {self.bitrate // 1000} kbit/s"


@dataclass(frozen=True, slots=True)
class BoardProfile:
    """One row of the table: how a board is recognised and what it publishes."""

    key: str
    name: str
    models: tuple[str, ...]
    """Substrings of the device-tree model that mean this board."""
    hardware: Picture | None
    """With the hardware H.264 encoder (None: the board has none)."""
    software: Picture
    """With libx264."""
    p2p_max_viewers: int
    p2p_max_viewers_software: int


BOARDS: tuple[BoardProfile, ...] = (
    BoardProfile(
        "zero2w",
        "Raspberry Pi Zero 2 W",
        ("Raspberry Pi Zero 2",),
        Picture(1280, 720, 30, 1_500_000),
        Picture(640, 360, 15, 400_000),
        2,
        1,
    ),
    BoardProfile(
        "pi3",
        "Raspberry Pi 3",
        ("Raspberry Pi 3", "Raspberry Pi Compute Module 3"),
        Picture(1280, 720, 30, 2_000_000),
        Picture(640, 480, 15, 600_000),
        3,
        2,
    ),
    BoardProfile(
        "pi4",
        "Raspberry Pi 4 / 400 / CM4",
        ("Raspberry Pi 4", "Raspberry Pi 400", "Raspberry Pi Compute Module 4"),
        Picture(1280, 720, 30, 2_500_000),
        Picture(640, 480, 30, 800_000),
        4,
        3,
    ),
    BoardProfile(
        "pi5",
        "Raspberry Pi 5 / 500 / CM5",
        ("Raspberry Pi 5", "Raspberry Pi 500", "Raspberry Pi Compute Module 5"),
        None,
        Picture(1280, 720, 30, 2_000_000),
        4,
        4,
    ),
)
OTHER = BoardProfile(
    "other",
    "another Debian machine",
    (),
    Picture(1280, 720, 30, 2_500_000),
    Picture(1280, 720, 30, 2_000_000),
    4,
    4,
)
SMALL_OTHER = Picture(640, 480, 30, 800_000)
"""Another machine with fewer than 4 cores and no hardware encoder."""


@dataclass(frozen=True, slots=True)
class Board:
    """This machine as found: its model text, its row of the table, its encoder."""

    model: str
    profile: BoardProfile
    hardware_encoder: bool
    cores: int


@dataclass(frozen=True, slots=True)
class BoardDefaults:
    """What the board's row gives: the picture, the encoder, the viewer cap, and why."""

    board: Board
    picture: Picture
    encoder: str
    p2p_max_viewers: int
    reasons: tuple[str, ...]


def read_model(root: Path = Path("/")) -> str:
    """The device-tree model, or "" on a machine without a device tree."""
    for name in MODEL_FILES:
        try:
            return (root / name).read_bytes().rstrip(b"\0").decode(errors="replace").strip()
        except OSError:
            continue
    return ""


def _hardware_encoder() -> bool:
    from .encoders.v4l2m2m import pick_h264_encoder

    return pick_h264_encoder().hardware


def detect_board(
    root: Path = Path("/"),
    *,
    hardware_encoder: Callable[[], bool] = _hardware_encoder,
    cores: int | None = None,
) -> Board:
    """This board: its model from ``root``'s device tree, its row, whether it has a
    working hardware H.264 encoder (never asked on a board that has none)."""
    model = read_model(root)
    profile = next((p for p in BOARDS if any(m in model for m in p.models)), OTHER)
    hardware = profile.hardware is not None and hardware_encoder()
    return Board(model, profile, hardware, cores if cores is not None else os.cpu_count() or 1)


def fits_level_31(width: int, height: int, fps: float) -> bool:
    """Whether the picture is within H.264 level 3.1 (the encoders would shrink it)."""
    from .h264 import fit_level_31

    return fit_level_31(width, height, math.ceil(fps)) == (width, height)


def board_defaults(board: Board) -> BoardDefaults:
    """The table's row for ``board``, and the reasons, one line each."""
    p = board.profile
    model = board.model or "no device-tree model"
    reasons = [f"board: {p.name} ({model})"]
    if board.hardware_encoder and p.hardware is not None:
        picture, encoder, viewers = p.hardware, "h264_v4l2m2m", p.p2p_max_viewers
        reasons.append("encoder: h264_v4l2m2m (the hardware H.264 encoder works)")
    else:
        picture, encoder, viewers = p.software, "libx264", p.p2p_max_viewers_software
        why = "the board has none" if p.hardware is None else "no working hardware encoder"
        reasons.append(f"encoder: libx264 ({why})")
        if p is OTHER and board.cores < 4:
            picture = SMALL_OTHER
            reasons.append(f"{board.cores} cores: the smaller picture")
    reasons.append(f"picture: {picture}; peer-to-peer viewers: {viewers}")
    return BoardDefaults(board, picture, encoder, viewers, tuple(reasons))


def board_text(defaults: BoardDefaults) -> str:
    """What ``edged devices`` prints of the board: its row and why."""
    return "\n".join(["BOARD", *(f"  {reason}" for reason in defaults.reasons)])


def board_json(defaults: BoardDefaults) -> dict[str, object]:
    """The same as JSON-ready data (``edged devices --json``)."""
    b, p = defaults.board, defaults.picture
    return {
        "model": b.model,
        "board": b.profile.key,
        "name": b.profile.name,
        "hardware_encoder": b.hardware_encoder,
        "encoder": defaults.encoder,
        "width": p.width,
        "height": p.height,
        "fps": p.fps,
        "bitrate": p.bitrate,
        "p2p_max_viewers": defaults.p2p_max_viewers,
        "reasons": list(defaults.reasons),
    }
