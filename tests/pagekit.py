"""Debian's Chromium as a fixture, and the steps every page test takes: open the web
client on a running room server, join, and read a fresh time code off a played stream.

Test modules load it with ``pytest_plugins = ["pagekit"]`` (fixture ``chromium``) and
import the helpers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from browser import CallPage, Chromium, chromium_browsers

from edged.testing.waiting import until

from conftest import APP, RunningServer


@pytest.fixture
async def chromium(tmp_path: Path) -> AsyncIterator[Chromium]:
    async with chromium_browsers(tmp_path / "profiles") as browsers:
        yield browsers


def page_url(srv: RunningServer) -> str:
    return srv.url.replace("ws://", "http://").removesuffix("/ws")


def join_query(srv: RunningServer, user: str, room: str = "r1", **extra: str) -> dict[str, str]:
    return {"app": APP, "room": room, "user": user, "token": srv.token(user), **extra}


async def joined_page(
    chromium: Chromium, srv: RunningServer, user: str, fake_media: bool = True, **query: str
) -> CallPage:
    page = await (await chromium.page(fake_media=fake_media)).open(
        page_url(srv), **join_query(srv, user, **query)
    )
    await page.join()
    await page.wait_room("CONNECTED", "LOGINED")
    return page


async def frames_at_least(page: CallPage, stream_id: str, count: int) -> bool:
    return await page.video_frames(stream_id) >= count


async def fresh_time_code(page: CallPage, stream_id: str) -> dict[str, Any]:
    """The page plays the stream, 30 more frames show, and the time code on screen was
    captured a moment ago (same machine, same clock)."""
    await page.wait_playing(stream_id)
    shown = await page.video_frames(stream_id)
    await until(lambda: frames_at_least(page, stream_id, shown + 30), timeout=30)
    code: dict[str, Any] = await until(lambda: page.read_time_code(stream_id))
    assert -50 <= code["now"] - code["captureMs"] < 3000, code
    return code
