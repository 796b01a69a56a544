"""The daemon gives its free C heap back to the system (glibc's malloc_trim)."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import weakref

import pytest

from edged.daemon.memory import Trimmer
from edged.testing.waiting import until


def test_trim_gives_freed_heap_back() -> None:
    trimmer = Trimmer()
    if not trimmer.available:
        pytest.skip("this C library has no malloc_trim")
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    # many small blocks under the mmap threshold, every other one kept: the freed ones
    # sit between live ones, where only a trim can give their pages back
    blocks = [libc.malloc(64 * 1024) for _ in range(400)]
    for block in blocks[::2]:
        libc.free(block)
    try:
        assert trimmer.trim()
        assert trimmer.trims == 1 and trimmer.released == 1
        assert trimmer.longest_s < 1.0
    finally:
        for block in blocks[1::2]:
            libc.free(block)


async def test_run_trims_every_interval() -> None:
    trimmer = Trimmer(every=0.01)
    if not trimmer.available:
        pytest.skip("this C library has no malloc_trim")
    task = asyncio.create_task(trimmer.run())
    await until(lambda: trimmer.trims >= 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert trimmer.trims >= 3


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_trim_frees_cyclic_garbage_between_full_collections() -> None:
    trimmer = Trimmer()
    gc.disable()  # as between CPython's own full collections, which come rarely
    try:
        node = Node()
        alive = weakref.ref(node)
        del node
        assert alive() is not None
        trimmer.trim()
        assert alive() is None
        assert trimmer.collected >= 1
    finally:
        gc.enable()
