"""Runs of datagrams sent with UDP segmentation offload arrive as the datagrams sent."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import pytest

from edged.media.send.udp_batch import MAX_BYTES, MAX_SEGMENTS, BatchSender, runs

SO_NO_CHECK = 11
"""A socket option with which Linux refuses segmented sends (EINVAL): no UDP checksums."""


def check_runs(sizes: list[int]) -> list[tuple[int, int]]:
    datagrams = [bytes(size) for size in sizes]
    found = list(runs(datagrams))
    assert [i for run in found for i in range(*run)] == list(range(len(sizes)))
    for start, end in found:
        first = sizes[start]
        assert all(size == first for size in sizes[start : end - 1])
        assert sizes[end - 1] <= first
        assert end - start <= MAX_SEGMENTS
        assert end - start == 1 or sum(sizes[start:end]) <= MAX_BYTES
    return found


def test_runs_split_where_a_segmented_send_cannot_go_on() -> None:
    # aiortc's FU-A fragments: a few one byte longer, then the rest, then the next NAL
    sizes = [709, *[1163] * 9, *[1263] * 2, *[1262] * 15, 40]
    assert check_runs(sizes) == [(0, 1), (1, 10), (10, 13), (13, 28)]
    assert check_runs([1000] * 130) == [(0, 64), (64, 128), (128, 130)]
    assert check_runs([1400] * 50) == [(0, 46), (46, 50)]  # 46 x 1400 bytes fit in 65000
    assert check_runs([]) == []


def test_runs_hold_for_any_sizes() -> None:
    rng = random.Random(4)
    for _ in range(300):
        sizes = [rng.choice([rng.randint(1, 1300), 1200, 1201]) for _ in range(rng.randint(1, 90))]
        check_runs(sizes)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sender, receiver:
        sender.bind(("127.0.0.1", 0))
        receiver.bind(("127.0.0.1", 0))
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        receiver.settimeout(5)
        yield sender, receiver


def frames() -> list[list[bytes]]:
    """Access units as the fan-out sends them: mixed sizes, distinct contents."""
    rng = random.Random(7)
    units = []
    for n in range(20):
        sizes = [rng.randint(30, 900), *[1201] * rng.randint(0, 12), *[1200] * rng.randint(1, 9)]
        units.append([bytes([n, i]) + rng.randbytes(size - 2) for i, size in enumerate(sizes)])
    units.append([bytes([99, i]) * 600 for i in range(100)])  # a large keyframe
    return units


def receive(receiver: socket.socket, count: int) -> list[tuple[bytes, tuple[str, int]]]:
    return [receiver.recvfrom(2048) for _ in range(count)]


def test_the_receiver_gets_every_datagram_in_order_from_the_same_port(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = pair
    fallback: list[bytes] = []
    batch = BatchSender(sender, lambda data, address: fallback.append(data))
    units = frames()
    sent = [datagram for unit in units for datagram in unit]
    for unit in units:
        batch.send(unit, receiver.getsockname())
    got = receive(receiver, len(sent))
    assert [data for data, _ in got] == sent
    assert {source for _, source in got} == {sender.getsockname()}
    assert batch.segmenting and not fallback
    assert batch.calls < len(sent) / 3  # runs went down in one call each
    batch.close()
    sender.sendto(b"still open", receiver.getsockname())  # the original socket is untouched
    assert receiver.recv(64) == b"still open"


def test_without_segmentation_every_datagram_still_arrives(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = pair
    sender.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
    batch = BatchSender(sender, lambda data, address: None)
    units = frames()
    sent = [datagram for unit in units for datagram in unit]
    for unit in units:
        batch.send(unit, receiver.getsockname())
    assert [data for data, _ in receive(receiver, len(sent))] == sent
    assert not batch.segmenting
    assert batch.calls == len(sent)
    batch.close()
