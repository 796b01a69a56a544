"""systemd integration in pure Python: sd_notify, the watchdog, journald logging.

Nothing here needs python3-systemd. With ``Type=notify-reload`` the daemon sends
``READY=1`` once its configuration is loaded and the control channel is up,
``STATUS=`` with a one-line summary, ``RELOADING=1`` (with ``MONOTONIC_USEC``) when
SIGHUP starts a reload and ``READY=1`` again when it is applied, and ``STOPPING=1`` on
SIGTERM. :class:`Watchdog` pings ``WATCHDOG=1`` only while the event loop keeps time,
so systemd restarts a wedged daemon. :class:`JournalHandler` sends log records to
journald with their structured fields; :func:`setup_logging` uses it when the process
was started by systemd and logs plain lines to stderr otherwise.

Outside systemd (no ``$NOTIFY_SOCKET``) every notification is a no-op returning False.
"""

from __future__ import annotations

import array
import asyncio
import errno
import fcntl
import json
import logging
import os
import re
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..logs import setup_plain_logging
from ..tasks import cancel_and_wait

log = logging.getLogger("edged.daemon.systemd")

JOURNAL_SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "edged"

# ---- sd_notify -------------------------------------------------------------------


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def notify_address(value: str | None) -> str | bytes | None:
    """The AF_UNIX address named by ``$NOTIFY_SOCKET`` (``@name`` is abstract)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock: and other transports are not supported


def sd_notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (newline-separated ``KEY=VALUE`` lines) to systemd.

    Returns True when the datagram was sent, False outside systemd or on an error
    (which is logged at debug level: a notification never stops the daemon).
    """
    address = notify_address(_environ(environ).get("NOTIFY_SOCKET"))
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(state.encode(), address)
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc)
        return False
    return True


def _one_line(text: str) -> str:
    return " ".join(text.split())


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd compares reloads against."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def ready(status: str | None = None) -> bool:
    """``READY=1``: start-up (or a reload) is complete."""
    return sd_notify("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))


def status(text: str) -> bool:
    """``STATUS=<text>``, shown by ``systemctl status``; newlines become spaces."""
    return sd_notify(f"STATUS={_one_line(text)}")


def watchdog() -> bool:
    """``WATCHDOG=1``: one keep-alive ping."""
    return sd_notify("WATCHDOG=1")


def stopping(status: str | None = None) -> bool:
    """``STOPPING=1``: shutdown has begun."""
    return sd_notify("STOPPING=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))


def reloading(status: str | None = None) -> bool:
    """``RELOADING=1`` with ``MONOTONIC_USEC`` (Type=notify-reload); send
    :func:`ready` when the new configuration is applied."""
    msg = f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec()}"
    return sd_notify(msg + (f"\nSTATUS={_one_line(status)}" if status else ""))


def extend_timeout(seconds: float) -> bool:
    """``EXTEND_TIMEOUT_USEC``: ask for more time to start, reload or stop."""
    return sd_notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout in seconds from ``$WATCHDOG_USEC``, or None when it is
    unset, invalid, or meant for another process (``$WATCHDOG_PID``)."""
    env = _environ(environ)
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None


# ---- watchdog --------------------------------------------------------------------


class Watchdog:
    """Owns the asyncio task that pings systemd's watchdog while the loop is healthy.

    ``interval`` defaults to ``$WATCHDOG_USEC`` (no interval: :meth:`start` does
    nothing). The task wakes every ``tick`` (default min(1 s, interval / 8)) and
    measures how late each wake-up was, the loop's lag. Every ``interval / 2`` it pings,
    unless the worst lag since the last decision exceeded ``max_lag`` (default
    min(5 s, interval / 4)) or a check in ``checks`` failed: then it skips that ping,
    and systemd restarts the daemon unless the loop recovers in time. A loop blocked
    outright runs no task at all, so it sends nothing either.
    """

    def __init__(
        self,
        interval: float | None = None,
        *,
        max_lag: float | None = None,
        tick: float | None = None,
        checks: Iterable[Callable[[], bool]] = (),
        send: Callable[[], bool] = watchdog,
    ) -> None:
        self.interval = watchdog_interval() if interval is None else interval
        self.period = self.interval / 2 if self.interval else 0.0
        self.tick = tick if tick is not None else min(1.0, self.period / 4)
        self.max_lag = max_lag if max_lag is not None else min(5.0, (self.interval or 0) / 4)
        self.checks = list(checks)
        self._send = send
        self.pings = 0
        self.skips = 0
        self.last_lag = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.interval and self.interval > 0)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> bool:
        """Start pinging (from within the running loop); False when not enabled."""
        if not self.enabled:
            return False
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="edged-watchdog")
        return True

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def healthy(self, lag: float) -> bool:
        """Whether a ping may be sent after a period whose worst lag was ``lag``."""
        if lag > self.max_lag:
            log.warning("watchdog ping skipped: event loop lag %.3f s", lag)
            return False
        for check in self.checks:
            try:
                ok = check()
            except Exception:
                log.exception("watchdog health check raised")
                ok = False
            if not ok:
                log.warning("watchdog ping skipped: health check %r failed", check)
                return False
        return True

    def _decide(self, lag: float) -> None:
        self.last_lag = lag
        if self.healthy(lag):
            if self._send():
                self.pings += 1
        else:
            self.skips += 1

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self._decide(0.0)
        period_start = loop.time()
        worst = 0.0
        while True:
            before = loop.time()
            await asyncio.sleep(self.tick)
            now = loop.time()
            worst = max(worst, now - before - self.tick)
            if now - period_start >= self.period:
                period_start = now
                self._decide(worst)
                worst = 0.0


# ---- journald --------------------------------------------------------------------

_FIELD_BAD = re.compile(r"[^A-Z0-9_]")


def journal_field_name(key: str, prefix: str = "EDGED_") -> str:
    """``key`` as a journal field name: upper case, [A-Z0-9_], prefixed, <= 64."""
    name = _FIELD_BAD.sub("_", f"{prefix}{key}".upper()).lstrip("_")
    return name[:64] or "EDGED_FIELD"


def _value_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str).encode()
    return str(value).encode("utf-8", "replace")


def encode_journal_fields(fields: Iterable[tuple[str, Any]]) -> bytes:
    """journald's native protocol: ``NAME=value\\n``, or for a value with a newline
    ``NAME\\n`` + 64-bit little-endian length + value + ``\\n``."""
    out = bytearray()
    for name, value in fields:
        data = _value_bytes(value)
        key = name.encode("ascii")
        if b"\n" in data:
            out += key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key + b"=" + data + b"\n"
    return bytes(out)


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level (journald's PRIORITY field)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class JournalHandler(logging.Handler):
    """Owns a datagram socket to journald and sends each record as journal fields.

    Fields: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, CODE_FILE, CODE_LINE, CODE_FUNC,
    LOGGER, THREAD_NAME, EDGED_EVENT and one ``EDGED_<KEY>`` per entry of the record's
    ``edged_fields`` (see :mod:`edged.logs`). A record too large for one datagram goes
    in a sealed memfd, as journald accepts. When journald cannot be reached the record
    is written to stderr instead.
    """

    def __init__(
        self, level: int = logging.NOTSET, identifier: str = IDENTIFIER, path: str = JOURNAL_SOCKET
    ) -> None:
        super().__init__(level)
        self.identifier = identifier
        self.path = path
        self.dropped = 0
        self._sock: socket.socket | None = None
        self.setFormatter(logging.Formatter("%(message)s"))

    def record_fields(self, record: logging.LogRecord) -> list[tuple[str, Any]]:
        fields: list[tuple[str, Any]] = [
            ("MESSAGE", self.format(record)),
            ("PRIORITY", syslog_priority(record.levelno)),
            ("SYSLOG_IDENTIFIER", self.identifier),
            ("CODE_FILE", record.pathname),
            ("CODE_LINE", record.lineno),
            ("CODE_FUNC", record.funcName),
            ("LOGGER", record.name),
            ("THREAD_NAME", record.threadName),
        ]
        event = getattr(record, "edged_event", None)
        if event is not None:
            fields.append(("EDGED_EVENT", event))
        extra = getattr(record, "edged_fields", None)
        if isinstance(extra, Mapping):
            fields += [(journal_field_name(str(k)), v) for k, v in extra.items() if v is not None]
        return fields

    def _socket(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)
        return self._sock

    def _send_memfd(self, data: bytes) -> None:
        fd = os.memfd_create("edged-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.write(fd, data)
            seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
            self._socket().sendmsg([], rights, 0, self.path)
        finally:
            os.close(fd)

    def send(self, data: bytes) -> None:
        try:
            self._socket().sendto(data, self.path)
        except OSError as exc:
            if exc.errno != errno.EMSGSIZE:
                raise
            self._send_memfd(data)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = encode_journal_fields(self.record_fields(record))
            try:
                self.send(data)
            except BlockingIOError:
                self.dropped += 1
            except OSError:
                sys.stderr.write(self.format(record) + "\n")
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.acquire()
        try:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
        finally:
            self.release()
        super().close()


def journal_stream_is_stderr(environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """Whether ``$JOURNAL_STREAM`` (``device:inode``) names this process's stderr."""
    value = _environ(environ).get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(part) for part in value.split(":"))
        st = os.fstat(fd)
    except (ValueError, OSError):
        return False
    return st.st_dev == dev and st.st_ino == ino


def running_under_systemd(environ: Mapping[str, str] | None = None) -> bool:
    """Whether systemd started this process (``$INVOCATION_ID``, or stderr is the
    journal stream systemd named in ``$JOURNAL_STREAM``)."""
    return bool(_environ(environ).get("INVOCATION_ID")) or journal_stream_is_stderr(environ)


def setup_logging(
    level: str | int = "INFO",
    identifier: str = IDENTIFIER,
    journal_path: str = JOURNAL_SOCKET,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Log to journald when started by systemd (and its socket exists), else plain
    lines to stderr. Returns ``"journal"`` or ``"stderr"``."""
    if running_under_systemd(environ) and os.path.exists(journal_path):
        root = logging.getLogger()
        for old in root.handlers[:]:
            root.removeHandler(old)
        root.addHandler(JournalHandler(identifier=identifier, path=journal_path))
        root.setLevel(level)
        return "journal"
    setup_plain_logging(level)
    return "stderr"
