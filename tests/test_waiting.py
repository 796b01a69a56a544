"""The tests' one polling helper: what it returns, and what its failure says."""

from __future__ import annotations

import pytest

from edged.testing.waiting import until, until_blocking


async def test_until_returns_the_value_that_ended_the_wait() -> None:
    seen: list[int] = []

    def grows() -> list[int]:
        seen.append(len(seen))
        return seen[3:]

    assert await until(grows, 5, interval=0) == [3]


async def test_until_awaits_a_coroutine_check() -> None:
    calls = 0

    async def third_time() -> str | None:
        nonlocal calls
        calls += 1
        return "ready" if calls == 3 else None

    assert await until(third_time, 5, interval=0) == "ready"


async def test_a_timeout_names_the_condition_and_the_last_value() -> None:
    count = [0]
    with pytest.raises(AssertionError) as failed:
        await until(lambda: count[0] > 5, 0.05)
    assert str(failed.value) == "waited 0.05 s for count[0] > 5; the last value was False"
    with pytest.raises(AssertionError, match=r"waited 0.05 s for the count to grow; .* 0$"):
        await until(lambda: count[0], 0.05, "the count to grow")


def test_until_blocking_shares_the_deadline() -> None:
    assert until_blocking(lambda: "here", 1) == "here"
    with pytest.raises(AssertionError, match=r"waited 0.05 s for nothing; the last value was \[\]"):
        until_blocking(list, 0.05, "nothing")
