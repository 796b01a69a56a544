"""A capture-time code drawn into video frames as a band of large black/white cells.

The layout is specified in ``docs/timecode.md``; this module is the reference
implementation. All geometry is a fraction of the frame's width and height, so a
frame that was scaled (by a decoder, a browser or a benchmark) decodes the same way.

Layout summary: the top ``ROWS / BAND_DIVISOR`` of the frame is a grid of
``ROWS x COLUMNS`` cells, read row by row, left to right, most significant bit
first. White is 1, black is 0. The 96 cells hold an 8-bit sync pattern, the 48-bit
capture time (milliseconds since the Unix epoch, ``time.time()``), a 24-bit
sequence number and a CRC-16/CCITT-FALSE over the 9 payload bytes.
"""

from __future__ import annotations

import binascii
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

COLUMNS = 16
"""Cells per row."""
ROWS = 6
"""Rows of cells."""
BAND_DIVISOR = 30
"""Each row is ``height / BAND_DIVISOR`` tall; the band covers ``ROWS / BAND_DIVISOR``."""
SYNC = 0b10110010
"""The 8 start cells that open every code."""
SYNC_BITS = 8
TIME_BITS = 48
SEQUENCE_BITS = 24
CRC_BITS = 16
TOTAL_BITS = SYNC_BITS + TIME_BITS + SEQUENCE_BITS + CRC_BITS
SEQUENCE_MODULO = 1 << SEQUENCE_BITS
TIME_MODULO = 1 << TIME_BITS

BLACK = 16
"""Luma drawn for a 0 cell (video range black)."""
WHITE = 235
"""Luma drawn for a 1 cell (video range white)."""
THRESHOLD = 128.0
"""A cell whose sampled mean luma is at or above this reads as 1."""
SAMPLE_MARGIN = 0.25
"""The sampled region of a cell excludes this fraction of the cell on every side."""

MIN_WIDTH = COLUMNS * 2
MIN_HEIGHT = BAND_DIVISOR * 2

assert ROWS * COLUMNS == TOTAL_BITS

Luma = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class TimeCode:
    """One frame's code: when it was captured and its place in the stream.

    ``capture_ms`` is ``time.time()`` at capture in whole milliseconds (the clock a
    browser's ``Date.now()`` reads); ``sequence`` counts frames produced by the
    source, modulo ``2**24``.
    """

    capture_ms: int
    sequence: int

    def __post_init__(self) -> None:
        if not 0 <= self.capture_ms < TIME_MODULO:
            raise ValueError(f"capture_ms out of range: {self.capture_ms}")
        if not 0 <= self.sequence < SEQUENCE_MODULO:
            raise ValueError(f"sequence out of range: {self.sequence}")

    @classmethod
    def now(cls, sequence: int) -> TimeCode:
        """A code stamped with the current wall-clock time; ``sequence`` wraps at 2**24."""
        return cls(capture_ms=wall_clock_ms(), sequence=sequence % SEQUENCE_MODULO)


def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch from ``time.time()``, rounded down."""
    return time.time_ns() // 1_000_000


def sequence_gap(previous: int, current: int) -> int:
    """Frames missing between two received sequence numbers (0 when consecutive).

    Works across the 2**24 wrap. A repeated or older frame gives a negative number:
    -1 for a duplicate, less for a frame that arrived out of order.
    """
    delta = (current - previous) % SEQUENCE_MODULO
    if delta >= SEQUENCE_MODULO // 2:
        delta -= SEQUENCE_MODULO
    return delta - 1


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no reflection."""
    return binascii.crc_hqx(data, 0xFFFF)


def _word(code: TimeCode) -> bytes:
    payload = code.capture_ms.to_bytes(6, "big") + code.sequence.to_bytes(3, "big")
    return bytes([SYNC]) + payload + crc16(payload).to_bytes(2, "big")


def to_bits(code: TimeCode) -> list[int]:
    """The 96 cell values (1 = white) of ``code`` in reading order."""
    bits: list[int] = _bit_array(code).tolist()
    return bits


def _bit_array(code: TimeCode) -> npt.NDArray[np.uint8]:
    return np.unpackbits(np.frombuffer(_word(code), dtype=np.uint8))


def from_bits(bits: list[int]) -> TimeCode | None:
    """The code carried by 96 cell values, or None if the sync or the CRC is wrong."""
    if len(bits) != TOTAL_BITS:
        return None
    word = 0
    for bit in bits:
        word = (word << 1) | (1 if bit else 0)
    if word >> (TOTAL_BITS - SYNC_BITS) != SYNC:
        return None
    payload = ((word >> CRC_BITS) & ((1 << (TIME_BITS + SEQUENCE_BITS)) - 1)).to_bytes(9, "big")
    if crc16(payload) != word & 0xFFFF:
        return None
    return TimeCode(
        capture_ms=int.from_bytes(payload[:6], "big"),
        sequence=int.from_bytes(payload[6:], "big"),
    )


def band_height(height: int) -> int:
    """Rows of pixels, from the top, that the code band covers in a frame this tall."""
    return ROWS * height // BAND_DIVISOR


def _cell_edges(size: int, count: int) -> list[int]:
    return [i * size // count for i in range(count + 1)]


def _sample_ranges(size: int, count: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    # start = floor((i + m) * size / count), end = max(start + 1, floor((i + 1 - m) * size / count))
    index = np.arange(count, dtype=np.float64)
    start = np.floor((index + SAMPLE_MARGIN) * size / count).astype(np.intp)
    end = np.floor((index + 1.0 - SAMPLE_MARGIN) * size / count).astype(np.intp)
    return start, np.maximum(end, start + 1)


def encode_into(luma: Luma, code: TimeCode) -> None:
    """Draw ``code`` into the top band of a luma plane (2-D uint8, modified in place)."""
    height, width = _check_plane(luma)
    cells = _bit_array(code).reshape(ROWS, COLUMNS) * np.uint8(WHITE - BLACK) + np.uint8(BLACK)
    column_widths = np.diff(_cell_edges(width, COLUMNS))
    row_heights = np.diff(_cell_edges(height, BAND_DIVISOR)[: ROWS + 1])
    band = np.repeat(np.repeat(cells, column_widths, axis=1), row_heights, axis=0)
    luma[: band.shape[0], :] = band


def read_cells(luma: Luma) -> npt.NDArray[np.float64]:
    """Mean luma of each cell's sampled centre region, shape ``(ROWS, COLUMNS)``."""
    height, width = _check_plane(luma)
    x0, x1 = _sample_ranges(width, COLUMNS)
    y0, y1 = _sample_ranges(height, BAND_DIVISOR)
    means = np.empty((ROWS, COLUMNS), dtype=np.float64)
    for row in range(ROWS):
        profile = luma[y0[row] : y1[row], :].sum(axis=0, dtype=np.uint64)
        cumulative = np.concatenate((np.zeros(1, np.uint64), np.cumsum(profile, dtype=np.uint64)))
        sums = cumulative[x1] - cumulative[x0]
        means[row] = sums / ((x1 - x0) * (y1[row] - y0[row]))
    return means


def decode(luma: Luma) -> TimeCode | None:
    """The code in a luma plane of any size, or None if there is none or it is damaged."""
    if luma.ndim != 2 or luma.shape[0] < MIN_HEIGHT or luma.shape[1] < MIN_WIDTH:
        return None
    cells = read_cells(luma)
    bits = (cells >= THRESHOLD).astype(np.uint8).ravel().tolist()
    return from_bits(bits)


def _check_plane(luma: Luma) -> tuple[int, int]:
    if luma.ndim != 2 or luma.dtype != np.uint8:
        raise ValueError("expected a 2-D uint8 luma plane")
    height, width = luma.shape
    if height < MIN_HEIGHT or width < MIN_WIDTH:
        raise ValueError(f"plane {width}x{height} is smaller than {MIN_WIDTH}x{MIN_HEIGHT}")
    return int(height), int(width)
