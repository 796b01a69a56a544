"""The web page's talk modes for intercom use: an open microphone, or hold to talk.

In Debian's Chromium with its fake camera and microphone (a beep): in hold-to-talk mode
an edged engine playing the page's stream hears silence until the button is held, the
beep while it is, silence again once it is released; meanwhile the page turns down the
sound it plays from the device.
"""

from __future__ import annotations

import numpy as np
import pytest
from browser import CallPage, Chromium

from edged.media.sinks.analysis import AudioToneSink
from edged.model import User
from edged.testing.waiting import until

from conftest import RunningServer
from enginekit import AnalysisSink, make_engine
from pagekit import joined_page, page_url

pytest_plugins = ["pagekit"]  # fixture `chromium`
pytestmark = pytest.mark.netns  # Chromium runs in the test namespace, like every page test

BUTTON = "#talk-button"
BEEP = 0.05
"""The fake microphone's beep peaks far above this (test_web_browser.py checks it);
a disabled track decodes to near zero."""
WINDOW_S = 2.5
"""Long enough to hold at least one of the fake microphone's beeps."""


def peak(audio: AudioToneSink, seconds: float = WINDOW_S) -> float:
    return float(np.abs(audio.samples(seconds)).max())


async def received_beyond(audio: AudioToneSink, mark: float, seconds: float) -> None:
    """Wait until ``seconds`` more audio than ``mark`` arrived."""
    await until(lambda: audio.seconds_received >= mark + seconds, 30)


async def talk_state(page: CallPage) -> dict[str, object]:
    return dict(
        await page.evaluate(
            """() => {
              const button = document.getElementById('talk-button');
              const tracks = window.edged.app.local?.media.getAudioTracks() ?? [];
              return {
                shown: !button.hidden,
                pressed: button.getAttribute('aria-pressed'),
                text: document.getElementById('talk-state').textContent,
                live: tracks.map((t) => t.enabled),
                volumes: [...document.querySelectorAll('#tiles .tile video')].map((v) => v.volume),
              };
            }"""
        )
    )


def shown(talking: bool, volume: float) -> dict[str, object]:
    """What the page shows and does in hold-to-talk mode, the button held or not."""
    return {
        "shown": True,
        "pressed": "true" if talking else "false",
        "text": "talking…" if talking else "microphone off: hold to talk",
        "live": [talking],
        "volumes": [volume],
    }


async def duck_volume(page: CallPage) -> float:
    return float(await page.evaluate("async () => (await import('/web/talk.js')).TALK_DUCK_VOLUME"))


async def test_hold_to_talk_opens_the_microphone_only_while_held_and_ducks_the_device(
    srv: RunningServer, chromium: Chromium
) -> None:
    engine, _ = make_engine(srv)
    async with engine:
        await engine.login_room("r1", User("device", "Front door"))
        await engine.start_publishing("door-cam")
        page = await joined_page(chromium, srv, "alice")
        await page.page.select_option("#talk", "hold")
        await page.publish("camera")
        await page.wait_playing("door-cam")
        assert await page.page.is_visible(BUTTON)
        sink = AnalysisSink()
        await engine.start_playing("alice-cam", sink)
        await until(lambda: sink.audio is not None, 30)
        assert sink.audio is not None
        audio = sink.audio

        await received_beyond(audio, 0.0, WINDOW_S + 0.5)
        assert peak(audio) < BEEP / 5, "the microphone must be silent until the button is held"
        idle = await talk_state(page)
        assert idle == shown(talking=False, volume=1), idle

        await page.page.hover(BUTTON)  # scrolled into view, the pointer over it
        await page.page.mouse.down()
        pressed_at = audio.seconds_received
        held = await talk_state(page)
        assert held == shown(talking=True, volume=await duck_volume(page)), held
        await received_beyond(audio, pressed_at, WINDOW_S + 0.5)
        assert peak(audio) > BEEP, "the beep must go out while the button is held"
        await page.screenshot("web-hold-to-talk.png")

        await page.page.mouse.up()
        released_at = audio.seconds_received
        released = await talk_state(page)
        assert released == shown(talking=False, volume=1), released
        await received_beyond(audio, released_at, WINDOW_S + 0.5)
        assert peak(audio) < BEEP / 5, "the microphone must be silent again once released"


async def test_the_space_bar_holds_to_talk_losing_focus_ends_it_and_the_mode_is_kept(
    srv: RunningServer, chromium: Chromium
) -> None:
    """No peer connection: the page publishes to a room nobody watches."""
    page = await joined_page(chromium, srv, "alice")
    await page.page.select_option("#talk", "hold")
    await page.publish("audio")
    button = page.page.locator(BUTTON)
    await button.focus()
    await page.page.keyboard.down(" ")
    assert (await talk_state(page))["pressed"] == "true"
    await page.page.keyboard.up(" ")
    assert (await talk_state(page))["live"] == [False]

    await page.page.keyboard.down(" ")
    assert (await talk_state(page))["live"] == [True]
    await page.evaluate("() => window.dispatchEvent(new Event('blur'))")  # another window
    state = await talk_state(page)
    assert (state["pressed"], state["live"]) == ("false", [False]), state
    await page.page.keyboard.up(" ")

    await page.page.select_option("#talk", "open")
    state = await talk_state(page)
    assert (state["shown"], state["live"]) == (False, [True]), state

    await page.page.select_option("#talk", "hold")
    await page.page.goto(page_url(srv))  # the same tab, later: the mode is remembered
    await page.page.wait_for_function("() => window.edged && window.edged.app")
    assert await page.page.input_value("#talk") == "hold"


async def test_sources_without_a_microphone_show_no_talk_button(
    srv: RunningServer, chromium: Chromium
) -> None:
    page = await joined_page(chromium, srv, "alice", talk="hold")
    assert await page.page.input_value("#talk") == "hold"  # from the join link
    await page.publish("camera-video")
    assert not await page.page.is_visible(BUTTON)
    await page.page.select_option("#source", "audio")  # switched while publishing
    await page.page.wait_for_selector(BUTTON, state="visible")
