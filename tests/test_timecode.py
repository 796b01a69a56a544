"""The frame time code: round trips, survives H.264 and scaling, rejects damage."""

from __future__ import annotations

import fractions
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.media.sinks.analysis import luma_plane
from edged.media.sources import timecode
from edged.media.sources.testpattern import TestPatternRenderer
from edged.media.sources.timecode import TimeCode, decode, encode_into, sequence_gap

DOC = Path(__file__).resolve().parents[1] / "docs" / "timecode.md"
CAPTURE_BASE_MS = 1_700_000_000_000


def blank(width: int, height: int, value: int = 90) -> np.ndarray:
    return np.full((height, width), value, dtype=np.uint8)


def h264_round_trip(
    frames: list[av.VideoFrame], width: int, height: int, bit_rate: int
) -> list[av.VideoFrame]:
    """Encode with libx264 (ultrafast, zerolatency) at ``bit_rate`` and decode again."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width = width
    encoder.height = height
    encoder.pix_fmt = "yuv420p"
    encoder.bit_rate = bit_rate
    encoder.time_base = fractions.Fraction(1, 90_000)
    encoder.framerate = fractions.Fraction(30, 1)
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency"}
    decoder = av.CodecContext.create("h264", "r")
    decoded: list[av.VideoFrame] = []
    for frame in [*frames, None]:
        for packet in encoder.encode(frame):
            decoded.extend(decoder.decode(packet))
    decoded.extend(decoder.decode(None))
    return decoded


def pattern_frames(count: int, width: int = 640, height: int = 480) -> list[av.VideoFrame]:
    renderer = TestPatternRenderer(width, height, 30)
    return [renderer.render(n, CAPTURE_BASE_MS + n * 33) for n in range(count)]


def read_back(frames: list[av.VideoFrame]) -> tuple[int, int]:
    """(correct, wrong) codes among decoded frames numbered from 0."""
    correct = wrong = 0
    for n, frame in enumerate(frames):
        code = decode(luma_plane(frame))
        if code is None:
            continue
        if code == TimeCode(CAPTURE_BASE_MS + n * 33, n):
            correct += 1
        else:
            wrong += 1
    return correct, wrong


@settings(max_examples=60, deadline=None)
@given(
    capture_ms=st.integers(0, timecode.TIME_MODULO - 1),
    sequence=st.integers(0, timecode.SEQUENCE_MODULO - 1),
    width=st.integers(timecode.MIN_WIDTH, 2000),
    height=st.integers(timecode.MIN_HEIGHT, 1200),
)
def test_code_round_trips_on_raw_frames_of_any_size(
    capture_ms: int, sequence: int, width: int, height: int
) -> None:
    luma = np.random.default_rng(sequence).integers(0, 256, (height, width), dtype=np.uint8)
    code = TimeCode(capture_ms, sequence)
    encode_into(luma, code)
    assert decode(luma) == code


def test_code_only_touches_the_top_fifth_of_the_frame() -> None:
    luma = blank(640, 480)
    encode_into(luma, TimeCode(CAPTURE_BASE_MS, 7))
    assert timecode.band_height(480) == 96
    assert (luma[96:] == 90).all()
    assert set(np.unique(luma[:96]).tolist()) == {timecode.BLACK, timecode.WHITE}


def test_documented_test_vector_matches_the_encoder() -> None:
    rows = [
        "1011001000000001",
        "1000101111001111",
        "1110010101101000",
        "0000000000000000",
        "0000000000000001",
        "1110011101101010",
    ]
    text = DOC.read_text()
    assert "b2 01 8b cf e5 68 00 00 00 01 e7 6a" in text
    assert all(row in text for row in rows)
    bits = timecode.to_bits(TimeCode(1_700_000_000_000, 1))
    assert "".join(map(str, bits)) == "".join(rows)


def test_crc_is_ccitt_false() -> None:
    assert timecode.crc16(b"123456789") == 0x29B1


def test_now_is_wall_clock_milliseconds() -> None:
    before = int(time.time() * 1000)
    code = TimeCode.now(sequence=timecode.SEQUENCE_MODULO + 5)
    after = int(time.time() * 1000)
    assert before - 1 <= code.capture_ms <= after + 1
    assert code.sequence == 5


def test_out_of_range_values_are_refused() -> None:
    with pytest.raises(ValueError):
        TimeCode(-1, 0)
    with pytest.raises(ValueError):
        TimeCode(0, timecode.SEQUENCE_MODULO)


def test_code_survives_h264_at_300_kbits_640x480() -> None:
    decoded = h264_round_trip(pattern_frames(60), 640, 480, 300_000)
    assert len(decoded) == 60
    correct, wrong = read_back(decoded)
    assert wrong == 0
    assert correct >= 57


# Odd widths are scaled straight to a format without subsampled chroma: PyAV 14.2
# corrupts the heap when an odd-width yuv420p frame made by reformat is converted again.
@pytest.mark.parametrize(
    ("width", "height", "pixel_format"),
    [(320, 240, "yuv420p"), (1920, 1080, "yuv420p"), (853, 480, "gray"), (427, 320, "rgb24")],
)
def test_code_survives_h264_then_scaling(width: int, height: int, pixel_format: str) -> None:
    decoded = h264_round_trip(pattern_frames(30), 640, 480, 300_000)
    scaled = [frame.reformat(width=width, height=height, format=pixel_format) for frame in decoded]
    assert (scaled[0].width, scaled[0].height) == (width, height)
    correct, wrong = read_back(scaled)
    assert wrong == 0
    assert correct >= 28


def test_code_is_read_from_rgb_luma_like_a_canvas() -> None:
    decoded = h264_round_trip(pattern_frames(10), 640, 480, 300_000)
    rgb = decoded[-1].reformat(width=801, height=450, format="rgb24").to_ndarray().astype(float)
    canvas_luma = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    code = decode(np.clip(np.round(canvas_luma), 0, 255).astype(np.uint8))
    assert code == TimeCode(CAPTURE_BASE_MS + 9 * 33, 9)


def test_every_single_damaged_cell_is_rejected() -> None:
    luma = blank(640, 480)
    encode_into(luma, TimeCode(CAPTURE_BASE_MS, 123_456))
    x_edges = [c * 640 // timecode.COLUMNS for c in range(timecode.COLUMNS + 1)]
    y_edges = [r * 480 // timecode.BAND_DIVISOR for r in range(timecode.ROWS + 1)]
    for row in range(timecode.ROWS):
        for column in range(timecode.COLUMNS):
            damaged = luma.copy()
            cell = damaged[y_edges[row] : y_edges[row + 1], x_edges[column] : x_edges[column + 1]]
            cell[...] = 255 - cell
            assert decode(damaged) is None, (row, column)


@settings(max_examples=200, deadline=None)
@given(flips=st.sets(st.integers(0, timecode.TOTAL_BITS - 1), min_size=1, max_size=2))
def test_one_or_two_misread_bits_never_give_a_value(flips: set[int]) -> None:
    bits = timecode.to_bits(TimeCode(CAPTURE_BASE_MS, 99))
    for index in flips:
        bits[index] ^= 1
    assert timecode.from_bits(bits) is None


def test_frames_without_a_code_decode_to_none() -> None:
    rng = np.random.default_rng(1)
    assert decode(blank(640, 480, 0)) is None
    assert decode(blank(640, 480, 255)) is None
    noise_hits = sum(
        decode(rng.integers(0, 256, (240, 320), dtype=np.uint8)) is not None for _ in range(200)
    )
    assert noise_hits == 0
    assert decode(blank(timecode.MIN_WIDTH - 1, 480)) is None
    assert decode(blank(640, timecode.MIN_HEIGHT - 1)) is None


def test_sequence_gap_counts_missing_frames_across_the_wrap() -> None:
    top = timecode.SEQUENCE_MODULO - 1
    assert sequence_gap(4, 5) == 0
    assert sequence_gap(4, 8) == 3
    assert sequence_gap(top, 0) == 0
    assert sequence_gap(top - 1, 1) == 2
    assert sequence_gap(5, 5) == -1
    assert sequence_gap(5, 3) == -3


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_documented_javascript_decoder_agrees(tmp_path: Path) -> None:
    snippet = re.search(r"```js\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert snippet is not None
    width, height = 853, 480
    frame = h264_round_trip(pattern_frames(5), 640, 480, 300_000)[-1]
    rgba = frame.reformat(width=width, height=height, format="rgba").to_ndarray()
    (tmp_path / "frame.rgba").write_bytes(rgba.tobytes())
    script = snippet.group(1) + (
        "const fs = require('fs');\n"
        "const data = new Uint8ClampedArray(fs.readFileSync(process.argv[2]));\n"
        f"const W = {width}, H = {height};\n"
        "const ctx = { getImageData: (x, y, w, h) => ({ data: data.subarray(0, w * h * 4) }) };\n"
        "console.log(JSON.stringify(decodeTimeCode(ctx, W, H)));\n"
    )
    (tmp_path / "decode.js").write_text(script)
    result = subprocess.run(
        ["node", str(tmp_path / "decode.js"), str(tmp_path / "frame.rgba")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(result.stdout) == {"captureMs": CAPTURE_BASE_MS + 4 * 33, "sequence": 4}
