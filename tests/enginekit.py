"""Helpers for engine tests: engines wired to the test server, event waiting."""

from __future__ import annotations

from typing import Any

from edged.engine.config import EngineProfile, EngineTimers, VideoConfig
from edged.engine.engine import Engine
from edged.engine.events import EventRecorder
from edged.media.sinks.analysis import AnalysisSink as AnalysisSink

from conftest import APP, SECRET, RunningServer

FAST = EngineTimers(
    request_timeout=5.0,
    connect_timeout=2.0,
    retry_min=0.1,
    retry_max=0.5,
    reconnect_give_up=10.0,
    play_retry=0.3,
    quality_interval=1.0,
)


def make_engine(srv: RunningServer, **profile: Any) -> tuple[Engine, EventRecorder]:
    rec = EventRecorder()
    fields: dict[str, Any] = {
        "app_id": APP,
        "server_url": srv.url,
        "app_secret": SECRET,
        "timers": FAST,
        "video": VideoConfig(320, 240, 30.0, 300_000),
    }
    fields.update(profile)
    return Engine(EngineProfile(**fields), rec), rec
