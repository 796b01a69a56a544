"""Playwright fixtures: Debian's Chromium, headless, driving the web client page.

No browser is ever downloaded: Playwright launches ``/usr/bin/chromium`` (apt package
``chromium``) with a fresh profile per launch. Camera and microphone are Chromium's
fake devices (a test picture and a beep). The session runs inside the harness's network
namespace, so the browser's peer connections never leave the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.async_api import (
    BrowserContext,
    Page,
    Playwright,
    async_playwright,
)

from edged.testing.waiting import until

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

BASE_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAKE_MEDIA_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


class CallPage:
    """One tab showing the web client, with what a test asks of it."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda msg: (
                self.problems.append(f"console: {msg.text}") if msg.type == "error" else None
            ),
        )

    async def open(self, base_url: str, **query: str) -> CallPage:
        """Open the page with the join link's query (app, room, user, token, ...)."""
        await self.page.goto(f"{base_url}/?{urlencode(query)}")
        await self.page.wait_for_function("() => window.edged && window.edged.app")
        return self

    async def join(self) -> None:
        await self.page.click("#join")

    async def leave(self) -> None:
        await self.page.click("#leave")

    async def publish(self, source: str = "camera") -> None:
        await self.page.select_option("#source", source)
        await self.page.click("#publish")
        await self.wait_text("#publisher-state", "publishing", attribute_state="PUBLISHING")

    async def room_state(self) -> dict[str, str]:
        return dict(
            await self.page.eval_on_selector(
                "#room-state",
                "e => ({state: e.dataset.state, reason: e.dataset.reason, code: e.dataset.code,"
                " text: e.textContent, detail: document.getElementById('room-detail').textContent,"
                " message: document.getElementById('message').hidden ? ''"
                " : document.getElementById('message').textContent})",
            )
        )

    async def wait_room(self, state: str, reason: str | None = None, timeout: float = 20) -> None:
        condition = "e.dataset.state === state && (reason === null || e.dataset.reason === reason)"
        await self.page.wait_for_function(
            f"([state, reason]) => {{ const e = document.getElementById('room-state');"
            f" return {condition}; }}",
            arg=[state, reason],
            timeout=timeout * 1000,
        )

    async def wait_text(
        self, selector: str, text: str, attribute_state: str | None = None, timeout: float = 20
    ) -> None:
        await self.page.wait_for_function(
            "([sel, text, state]) => { const e = document.querySelector(sel);"
            " return e && e.textContent.includes(text)"
            " && (state === null || e.dataset.state === state); }",
            arg=[selector, text, attribute_state],
            timeout=timeout * 1000,
        )

    async def list_ids(self, list_id: str, attribute: str) -> list[str]:
        ids = await self.page.eval_on_selector_all(
            f"#{list_id} li", f"items => items.map(li => li.getAttribute('{attribute}'))"
        )
        return [str(i) for i in ids]

    async def wait_list(
        self, list_id: str, attribute: str, present: str, timeout: float = 20
    ) -> None:
        await self.page.wait_for_selector(
            f"#{list_id} li[{attribute}='{present}']", state="attached", timeout=timeout * 1000
        )

    async def wait_list_without(
        self, list_id: str, attribute: str, absent: str, timeout: float = 20
    ) -> None:
        await self.page.wait_for_selector(
            f"#{list_id} li[{attribute}='{absent}']", state="detached", timeout=timeout * 1000
        )

    async def wait_playing(self, stream_id: str, timeout: float = 30) -> None:
        await self.page.wait_for_selector(
            f".tile[data-stream-id='{stream_id}'] .player-state[data-state='PLAYING']",
            timeout=timeout * 1000,
        )

    async def video_frames(self, stream_id: str) -> int:
        """Frames the tile's <video> has presented so far."""
        return int(
            await self.page.eval_on_selector(
                f".tile[data-stream-id='{stream_id}'] video",
                "v => v.getVideoPlaybackQuality().totalVideoFrames",
            )
        )

    async def read_time_code(self, stream_id: str) -> dict[str, Any] | None:
        """Draw the tile's current video frame on a canvas, read its time code, note the time."""
        result = await self.page.evaluate(
            """async (streamId) => {
              const { decodeTimeCode } = await import('/web/timecode.js');
              const video = document.querySelector(`.tile[data-stream-id='${streamId}'] video`);
              const W = video.videoWidth, H = video.videoHeight;
              if (!W || !H) return null;
              const canvas = document.createElement('canvas');
              canvas.width = W; canvas.height = H;
              const ctx = canvas.getContext('2d', { willReadFrequently: true });
              ctx.drawImage(video, 0, 0, W, H);
              const code = decodeTimeCode(ctx, W, H);
              return code && { ...code, now: Date.now(), width: W, height: H };
            }""",
            stream_id,
        )
        return dict(result) if result else None

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    async def evaluate(self, script: str, arg: Any = None) -> Any:
        return await self.page.evaluate(script, arg)


class Chromium:
    """Launches Chromium contexts (one profile each) and closes them all at the end."""

    def __init__(self, playwright: Playwright, profiles: Path) -> None:
        self.playwright = playwright
        self.profiles = profiles
        self.contexts: list[BrowserContext] = []
        self.pages: list[CallPage] = []

    async def page(
        self,
        *,
        fake_media: bool = True,
        extra_args: tuple[str, ...] = (),
        viewport: dict[str, int] | None = None,
    ) -> CallPage:
        """A tab in a new browser (its own profile, its own network stack)."""
        profile = self.profiles / f"profile-{len(self.contexts)}"
        args = BASE_ARGS + (FAKE_MEDIA_ARGS if fake_media else []) + list(extra_args)
        context = await self.playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=args,
            viewport=viewport or {"width": 1280, "height": 900},
        )
        self.contexts.append(context)
        page = CallPage(context.pages[0] if context.pages else await context.new_page())
        self.pages.append(page)
        return page

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()

    def problems(self) -> list[str]:
        return [p for page in self.pages for p in page.problems]


async def network_settled(timeout: float = 10.0) -> None:
    """Wait until no IPv6 address is tentative (duplicate address detection running).

    A namespace made a moment ago finishes DAD on its link-local addresses about two
    seconds later; Chromium sees that as a network change and aborts the page's loads
    (net::ERR_NETWORK_CHANGED).
    """

    async def settled() -> bool:
        shown = await asyncio.create_subprocess_exec(
            "ip", "-6", "addr", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        out, _ = await shown.communicate()
        return b"tentative" not in out

    await until(settled, timeout, "no tentative IPv6 address (DAD done)", interval=0.1)


@contextlib.asynccontextmanager
async def chromium_browsers(profiles: Path) -> AsyncIterator[Chromium]:
    """Debian's Chromium under Playwright, profiles under ``profiles``; closed on exit.

    Fails (never skips) when Chromium is missing. Test modules wrap it in a fixture.
    """
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 (one stat before anything runs)
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium", pytrace=False)
    await network_settled()
    async with async_playwright() as playwright:
        browsers = Chromium(playwright, profiles)
        try:
            yield browsers
        finally:
            for problem in browsers.problems():
                print(problem)
            await browsers.close()
