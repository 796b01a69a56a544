"""Debian's Firefox ESR (``firefox-esr``, stock: no OpenH264), headless, driven by
Marionette (``marionette_driver``), showing the web client page.

Never a downloaded build: the browser is the apt package. Each launch has a fresh
profile; camera and microphone are Firefox's fake devices. The session runs inside the
harness's network namespace, so Firefox's peer connections never leave the machine.
Marionette's client is blocking: every call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

FIREFOX = shutil.which("firefox-esr") or "/usr/bin/firefox-esr"
FAKE_MEDIA = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
}
H264_THROUGH_FFMPEG = {
    # Debian's Firefox decodes H.264 with the system's FFmpeg when told to (it still
    # cannot send it: no OpenH264).
    "media.webrtc.hw.h264.enabled": True,
    "gfx.blacklist.webrtc.hw.acceleration.h264": 1,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Firefox:
    """One Firefox with one tab; ``page(js, *args)`` runs ``js`` in the page itself."""

    @staticmethod
    def installed() -> bool:
        try:
            import marionette_driver  # noqa: F401
        except ImportError:
            return False
        return Path(FIREFOX).exists()

    def __init__(self, workdir: Path, prefs: dict[str, Any]) -> None:
        from marionette_driver.marionette import Marionette

        self.client = Marionette(
            host="127.0.0.1",
            port=_free_port(),
            bin=FIREFOX,
            headless=True,
            prefs={**FAKE_MEDIA, **prefs},
            gecko_log=str(workdir / "gecko.log"),
        )

    async def start(self) -> None:
        await asyncio.to_thread(self.client.start_session)

    async def close(self) -> None:
        def stop() -> None:
            try:
                self.client.delete_session()
            finally:
                self.client.cleanup()

        await asyncio.to_thread(stop)

    async def open(self, base_url: str, **query: str) -> None:
        url = f"{base_url}/?{urlencode(query)}"
        await asyncio.to_thread(self.client.navigate, url)

    async def page(self, body: str, *args: Any) -> Any:
        """Run ``body`` (an async function's body, ``args`` as ``args``) in the page's
        own scope (its modules, ``window.edged``) and return its JSON-able result."""
        script = f"""
          const done = arguments[arguments.length - 1];
          const args = JSON.parse(arguments[0]);
          (async () => {{{body}}})().then(
            (value) => done(JSON.stringify(value ?? null)),
            (error) => done(JSON.stringify({{ "__error__": String(error) }})));
        """
        text = await asyncio.to_thread(
            self.client.execute_async_script, script, [json.dumps(list(args))], True, None, 30000
        )
        result = json.loads(text)
        if isinstance(result, dict) and "__error__" in result:
            raise AssertionError(f"in Firefox: {result['__error__']}")
        return result


@pytest.fixture
async def firefox_factory(tmp_path: Path) -> AsyncIterator[Any]:
    """``await firefox_factory(**prefs)``: a started Firefox, closed after the test."""
    started: list[Firefox] = []

    async def make(**prefs: Any) -> Firefox:
        browser = Firefox(tmp_path, prefs)
        await browser.start()
        started.append(browser)
        return browser

    yield make
    for browser in started:
        await browser.close()
