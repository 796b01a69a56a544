"""A node's Redis commands in batches (edged/server/redis_batch.py), against a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import ResponseError

from edged.server.cluster import as_hash
from edged.server.redis_batch import Batcher
from edged.testing.redis import RedisServer

INCREMENT = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def batcher(redis: RedisServer) -> AsyncIterator[Batcher]:
    batch = Batcher(redis.url, 2.0)
    try:
        yield batch
    finally:
        await batch.close()


async def test_what_one_turn_asks_goes_as_one_pipeline_each_with_its_own_reply(
    batcher: Batcher,
) -> None:
    replies: list[asyncio.Future[Any]] = [
        batcher.command("SET", "k", "v1"),
        batcher.command("SET", "k", "v2", "GET"),
        batcher.command("INCR", "k"),  # not a number: this one fails, the others do not
        batcher.command("GET", "k"),
        batcher.command("HSET", "h", "a", "1"),
        batcher.command("HGETALL", "h"),
    ]
    results = await asyncio.gather(*replies, return_exceptions=True)
    assert results[:2] == ["OK", "v1"]
    assert isinstance(results[2], ResponseError)
    assert results[3:5] == ["v2", 1]
    assert as_hash(await replies[5]) == {"a": "1"}
    assert (batcher.batches, batcher.commands) == (1, 6)


async def test_writes_nobody_waits_for_reach_redis_in_the_order_they_were_made(
    batcher: Batcher,
) -> None:
    for n in range(50):  # saved, dropped, saved again: a session's record
        batcher.fire("HSET", "members", "s1", f"record {n}")
        batcher.fire("HDEL", "members", "s1")
    batcher.fire("HSET", "members", "s1", "last")
    assert as_hash(await batcher.command("HGETALL", "members")) == {"s1": "last"}
    assert batcher.batches == 1


async def test_a_script_redis_forgot_is_sent_again(redis: RedisServer, batcher: Batcher) -> None:
    sha = batcher.script(INCREMENT)
    assert await batcher.run_script(sha, ["n"], ["2"]) == 2
    async with redis.client() as other:
        await other.script_flush()
    assert await batcher.run_script(sha, ["n"], ["3"]) == 5
    assert await batcher.run_script(sha, ["n"], ["1"]) == 6


async def test_while_redis_is_down_commands_fail_and_work_again_when_it_is_back(
    redis: RedisServer, batcher: Batcher
) -> None:
    await batcher.command("SET", "k", "before")
    await redis.kill()
    failed = await asyncio.gather(
        batcher.command("GET", "k"), batcher.command("SET", "k", "x"), return_exceptions=True
    )
    assert all(isinstance(reply, Exception) for reply in failed), failed
    await redis.start()  # empty, as a Redis that lost its memory
    assert await batcher.command("GET", "k") is None
    assert await batcher.command("SET", "k", "after") == "OK"
    assert await batcher.command("GET", "k") == "after"


async def test_replies_longer_than_one_read_arrive_whole(batcher: Batcher) -> None:
    fields = {f"field{n}": f"{n:05d}" * 40 for n in range(3000)}  # 600 kB of replies
    big = "é" * 500_000
    for field, value in fields.items():
        batcher.fire("HSET", "h", field, value)
    assert await batcher.command("SET", "big", big) == "OK"
    got = await asyncio.gather(batcher.command("HGETALL", "h"), batcher.command("GET", "big"))
    assert as_hash(got[0]) == fields
    assert got[1] == big


async def test_an_argument_redis_cannot_take_is_refused_when_asked(batcher: Batcher) -> None:
    with pytest.raises(TypeError, match=r"1\.5"):
        batcher.command("SET", "k", 1.5)  # type: ignore[arg-type]
    assert await batcher.command("SET", "k", 7) == "OK"
    assert await batcher.command("INCR", "k") == 8


async def test_a_redis_that_stops_answering_fails_its_batch_within_the_timeout(
    redis: RedisServer,
) -> None:
    batch = Batcher(redis.url, 0.5)
    try:
        assert await batch.command("SET", "k", "v") == "OK"
        redis.pause()
        try:
            started = asyncio.get_running_loop().time()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(batch.command("GET", "k"), 10)
            assert asyncio.get_running_loop().time() - started < 5
        finally:
            redis.pause(False)
        assert await batch.command("GET", "k") == "v"  # on a new connection
    finally:
        await batch.close()


async def test_the_urls_password_and_database_are_used(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, password="s3cret")
    await server.start()
    try:
        batch = Batcher(server.url.removesuffix("/0") + "/3", 2.0)
        wrong = Batcher(server.url.replace("s3cret", "wrong"), 2.0)
        try:
            assert await batch.command("SET", "k", "in three") == "OK"
            with pytest.raises(ResponseError, match=r"WRONGPASS|invalid password"):
                await wrong.command("GET", "k")
        finally:
            await batch.close()
            await wrong.close()
        async with server.client(db=3) as three, server.client() as zero:
            assert await three.get("k") == "in three"
            assert await zero.get("k") is None
    finally:
        await server.stop()
