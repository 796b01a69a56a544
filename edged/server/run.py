"""Running a room server: its process's garbage collector, its listening socket, its life.

``edged server`` calls :func:`run_server`; the daemon's embedded server, the tests and the
benchmarks call :func:`start_server` and stop the runner themselves.
"""

from __future__ import annotations

import asyncio
import gc
import logging

from aiohttp import web

from ..logs import log_event
from .app import RoomServer
from .settings import ServerSettings
from .tls import server_ssl_context

log = logging.getLogger("edged.server")

# Allocations (less deallocations) between two young-generation collections.
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Make the cyclic garbage collector's full collections rarer in this process.

    Every WebSocket keeps about 85 objects the collector tracks (aiohttp's request,
    protocol, reader, writer and tasks; the session), so at 5,000 users a full
    collection walks some 450,000 objects: about 0.2 s during which no message
    moves. Python runs a full collection only after ten middle-generation ones,
    which come after ten young ones each; at the default 700 allocations per young
    collection, a server taking 1,000 logins/s ran one every second or so while it
    grew. At 10,000, young collections stay short (a few milliseconds) and the
    full ones come about fourteen times less often. A higher setting is kept.
    """
    gen0, gen1, gen2 = gc.get_threshold()
    if 0 < gen0 < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, gen1, gen2)


async def start_server(settings: ServerSettings) -> web.AppRunner:
    """A room server listening on ``settings.host``/``port`` (HTTPS when the settings name a
    certificate); ``runner.cleanup()`` stops it."""
    tls = server_ssl_context(settings)
    runner = web.AppRunner(RoomServer(settings).make_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port, ssl_context=tls).start()
    return runner


async def run_server(settings: ServerSettings) -> None:
    """Serve until cancelled."""
    tune_gc()
    runner = await start_server(settings)
    log_event(
        log,
        logging.INFO,
        "server_started",
        host=settings.host,
        port=settings.port,
        apps=",".join(sorted(settings.apps)),
        dev_mode=settings.dev_mode,
    )
    if settings.dev_mode:
        log.warning("DEVELOPMENT MODE: logins without a token are accepted")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
