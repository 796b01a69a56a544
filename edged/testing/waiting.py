"""Waiting for a condition in tests and test harnesses: the one polling helper.

Wait for an event when there is one (a queue, a future, a reply, a process's exit). Poll
only for a state that announces itself nowhere (a file appears, a port listens, a counter
grows): :func:`until` from a coroutine, :func:`until_blocking` from plain code. Both
share :class:`Deadline`, so both fail the same way: an ``AssertionError`` that says what
was awaited, for how long, and the last value seen.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")

INTERVAL = 0.02


def describe(check: Callable[..., object]) -> str:
    """What ``check`` waits for, in words a failing test can show: a lambda's body as
    written, or a function's name."""
    name = getattr(check, "__qualname__", repr(check))
    if name.endswith("<lambda>"):
        try:
            source = " ".join(inspect.getsource(check).split())
        except (OSError, TypeError):
            return name
        found = re.search(r"lambda[^:]*:(.*)", source)
        if found:
            return _up_to_the_end_of_the_expression(found.group(1)).strip() or name
    return name


def _up_to_the_end_of_the_expression(text: str) -> str:
    """``text`` up to the first comma, comment or closing bracket outside brackets and
    strings: where a lambda passed as an argument ends."""
    depth = 0
    quote = ""
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}" and depth:
            depth -= 1
        elif char in ")]},#":
            return text[:i]
    return text


class Deadline:
    """``timeout`` seconds from now, and the failure that ends the wait for ``what``."""

    def __init__(self, timeout: float, what: str) -> None:
        self.timeout = timeout
        self.what = what
        self.at = time.monotonic() + timeout

    def check(self, last: object) -> None:
        """Fail the test if the deadline has passed; ``last`` is the last value seen."""
        if time.monotonic() >= self.at:
            raise AssertionError(
                f"waited {self.timeout:g} s for {self.what}; the last value was {last!r}"
            )


@overload
async def until(
    check: Callable[[], Awaitable[T]],
    timeout: float = ...,
    what: str | None = ...,
    interval: float = ...,
) -> T: ...


@overload
async def until(
    check: Callable[[], T],
    timeout: float = ...,
    what: str | None = ...,
    interval: float = ...,
) -> T: ...


async def until(
    check: Callable[[], object],
    timeout: float = 20.0,
    what: str | None = None,
    interval: float = INTERVAL,
) -> object:
    """Call ``check()`` (awaiting it if it is a coroutine function) until its value is
    true, and return that value; fail after ``timeout`` seconds, naming ``what`` (by
    default the check itself)."""
    deadline = Deadline(timeout, what or describe(check))
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        deadline.check(value)
        await asyncio.sleep(interval)


def until_blocking(
    check: Callable[[], T],
    timeout: float = 20.0,
    what: str | None = None,
    interval: float = INTERVAL,
) -> T:
    """:func:`until` for code outside an event loop: blocks the calling thread."""
    deadline = Deadline(timeout, what or describe(check))
    while True:
        value = check()
        if value:
            return value
        deadline.check(value)
        time.sleep(interval)
