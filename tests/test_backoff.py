"""The one backoff every retry loop of edged waits by."""

from __future__ import annotations

import pytest

from edged.backoff import Backoff


def test_delays_double_up_to_the_maximum_and_start_again_after_a_success() -> None:
    backoff = Backoff(0.5, 5.0)
    assert backoff.delay == 0.5
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.delay == 5.0
    backoff.reset()
    assert [backoff.next() for _ in range(2)] == [0.5, 1.0]


@pytest.mark.parametrize(("first", "maximum"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_a_backoff_that_could_never_wait_or_never_grow_is_refused(
    first: float, maximum: float
) -> None:
    with pytest.raises(ValueError, match="0 < first <= maximum"):
        Backoff(first, maximum)
