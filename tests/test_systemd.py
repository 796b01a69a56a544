"""sd_notify, the watchdog and the journald handler against real datagram sockets.

systemd is not PID 1 here: the tests bind AF_UNIX datagram sockets in tmp_path (or
in the abstract namespace) and point ``$NOTIFY_SOCKET`` / the handler at them.
"""

from __future__ import annotations

import fcntl
import inspect
import logging
import os
import re
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.daemon import systemd
from edged.daemon.systemd import JournalHandler, Watchdog
from edged.logs import log_event
from edged.testing.waiting import until

BIG = 4 * 1024 * 1024


def bind_dgram(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BIG)
    sock.bind(address)
    sock.setblocking(False)
    return sock


def drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(BIG))
        except BlockingIOError:
            return out


def recv_one(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    try:
        return sock.recv(BIG)
    finally:
        sock.setblocking(False)


@pytest.fixture
def notify_sock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = str(tmp_path / "notify.sock")
    sock = bind_dgram(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


# ---- sd_notify -------------------------------------------------------------------


def test_notifications_arrive(notify_sock: socket.socket) -> None:
    assert systemd.ready()
    assert recv_one(notify_sock) == b"READY=1"
    assert systemd.status("room CONNECTED\npublishing, 2 viewers")
    assert recv_one(notify_sock) == b"STATUS=room CONNECTED publishing, 2 viewers"
    assert systemd.watchdog()
    assert recv_one(notify_sock) == b"WATCHDOG=1"
    assert systemd.stopping("logging out")
    assert recv_one(notify_sock) == b"STOPPING=1\nSTATUS=logging out"
    assert systemd.extend_timeout(7.5)
    assert recv_one(notify_sock) == b"EXTEND_TIMEOUT_USEC=7500000"
    assert systemd.ready(status="room CONNECTED")
    assert recv_one(notify_sock) == b"READY=1\nSTATUS=room CONNECTED"


def test_reloading_carries_monotonic_usec(notify_sock: socket.socket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert systemd.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = recv_one(notify_sock).decode().split("\n")
    assert lines[0] == "RELOADING=1"
    key, value = lines[1].split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_abstract_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"edged-test-{uuid.uuid4().hex}"
    sock = bind_dgram(b"\0" + name.encode())
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.ready()
        assert recv_one(sock) == b"READY=1"
    finally:
        sock.close()


@pytest.mark.parametrize("value", [None, "", "vsock:2:1234", "relative/path"])
def test_no_usable_notify_socket(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert systemd.ready() is False
    assert systemd.watchdog() is False


def test_notify_socket_that_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert systemd.ready() is False


def test_watchdog_interval() -> None:
    assert systemd.watchdog_interval({}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    own = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert systemd.watchdog_interval(own) == 2.0
    other = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert systemd.watchdog_interval(other) is None


# ---- the watchdog ----------------------------------------------------------------


async def test_watchdog_disabled_without_interval(notify_sock: socket.socket) -> None:
    wd = Watchdog()
    assert not wd.enabled
    assert wd.start() is False
    await wd.stop()


async def test_watchdog_interval_from_environment(
    notify_sock: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "8000000")
    wd = Watchdog()
    assert wd.interval == 8.0 and wd.period == 4.0
    assert wd.tick == 1.0 and wd.max_lag == 2.0


async def test_watchdog_skips_pings_while_the_loop_is_blocked(
    notify_sock: socket.socket,
) -> None:
    wd = Watchdog(interval=1.0, tick=0.05, max_lag=0.2)
    assert wd.start()
    received: list[bytes] = []
    try:
        # healthy: pings every half interval
        await until(lambda: received.extend(drain(notify_sock)) or len(received) >= 2)
        assert set(received) == {b"WATCHDOG=1"}
        drain(notify_sock)
        pings, skips = wd.pings, wd.skips

        # block the event loop for longer than a ping period
        time.sleep(0.7)  # noqa: ASYNC251
        assert drain(notify_sock) == []  # nothing was sent while blocked

        # the first decision after the stall is a skip, not a late ping
        await until(lambda: wd.skips > skips)
        assert wd.pings == pings
        assert drain(notify_sock) == []
        assert wd.last_lag > 0.2

        # and pings resume once the loop keeps time again
        await until(lambda: wd.pings > pings)
        assert recv_one(notify_sock) == b"WATCHDOG=1"
    finally:
        await wd.stop()
    assert not wd.running


async def test_watchdog_health_check_failing(notify_sock: socket.socket) -> None:
    calls = []

    def engine_alive() -> bool:
        calls.append(1)
        return False

    wd = Watchdog(interval=0.4, tick=0.02, checks=[engine_alive])
    wd.start()
    try:
        await until(lambda: wd.skips >= 2)
    finally:
        await wd.stop()
    assert wd.pings == 0 and calls
    assert drain(notify_sock) == []


# ---- journald ----------------------------------------------------------------------

FIELD_NAME = re.compile(r"[A-Z0-9][A-Z0-9_]{0,63}")


def parse_native(data: bytes) -> dict[str, bytes]:
    """journald's native protocol, both the ``NAME=value`` and the binary form."""
    fields: dict[str, bytes] = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            name, value = line.split(b"=", 1)
            i = nl + 1
        else:
            name = line
            (size,) = struct.unpack("<Q", data[nl + 1 : nl + 9])
            value = data[nl + 9 : nl + 9 + size]
            assert data[nl + 9 + size : nl + 10 + size] == b"\n"
            i = nl + 10 + size
        assert FIELD_NAME.fullmatch(name.decode()), name
        fields[name.decode()] = value
    return fields


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[tuple[socket.socket, logging.Logger, JournalHandler]]:
    path = str(tmp_path / "journal.sock")
    sock = bind_dgram(path)
    handler = JournalHandler(path=path)
    logger = logging.getLogger(f"edged.test.journal.{uuid.uuid4().hex[:8]}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield sock, logger, handler
    logger.removeHandler(handler)
    handler.close()
    sock.close()


def test_journal_record_fields(
    journal: tuple[socket.socket, logging.Logger, JournalHandler],
) -> None:
    sock, logger, _ = journal
    line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    logger.warning("camera %s lost", "csi0")
    fields = parse_native(recv_one(sock))
    assert fields["MESSAGE"] == b"camera csi0 lost"
    assert fields["PRIORITY"] == b"4"
    assert fields["SYSLOG_IDENTIFIER"] == b"edged"
    assert fields["CODE_FILE"] == __file__.encode()
    assert fields["CODE_LINE"] == str(line).encode()
    assert fields["CODE_FUNC"] == b"test_journal_record_fields"
    assert fields["LOGGER"] == logger.name.encode()


def test_journal_structured_fields(
    journal: tuple[socket.socket, logging.Logger, JournalHandler],
) -> None:
    sock, logger, _ = journal
    log_event(
        logger,
        logging.INFO,
        "stream_published",
        stream_id="dev-cam",
        viewers=2,
        **{"bad-key": "x y", "nested": {"a": 1}, "skipped": None},
    )
    fields = parse_native(recv_one(sock))
    assert fields["PRIORITY"] == b"6"
    assert fields["MESSAGE"].startswith(b"stream_published stream_id=dev-cam viewers=2")
    assert fields["EDGED_EVENT"] == b"stream_published"
    assert fields["EDGED_STREAM_ID"] == b"dev-cam"
    assert fields["EDGED_VIEWERS"] == b"2"
    assert fields["EDGED_BAD_KEY"] == b"x y"
    assert fields["EDGED_NESTED"] == b'{"a": 1}'
    assert "EDGED_SKIPPED" not in fields


def test_journal_multiline_message_and_traceback(
    journal: tuple[socket.socket, logging.Logger, JournalHandler],
) -> None:
    sock, logger, _ = journal
    logger.error("first line\nsecond line")
    data = recv_one(sock)
    assert b"MESSAGE\n" + struct.pack("<Q", 22) + b"first line\nsecond line\n" in data
    fields = parse_native(data)
    assert fields["MESSAGE"] == b"first line\nsecond line"
    assert fields["PRIORITY"] == b"3"
    try:
        raise ValueError("boom")
    except ValueError:
        logger.critical("failed", exc_info=True)
    fields = parse_native(recv_one(sock))
    assert fields["PRIORITY"] == b"2"
    assert fields["MESSAGE"].startswith(b"failed\nTraceback")
    assert b"ValueError: boom" in fields["MESSAGE"]


def test_journal_record_too_big_for_a_datagram_goes_in_a_sealed_memfd(
    journal: tuple[socket.socket, logging.Logger, JournalHandler],
) -> None:
    sock, logger, _ = journal
    text = "x" * (2 * 1024 * 1024)
    logger.info(text)
    sock.settimeout(5)
    data, ancdata, _, _ = sock.recvmsg(BIG, socket.CMSG_SPACE(4))
    assert data == b""
    (level, kind, raw) = ancdata[0]
    assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
    fd = struct.unpack("i", raw[:4])[0]
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, BIG):
            chunks.append(chunk)
    finally:
        os.close(fd)
    fields = parse_native(b"".join(chunks))
    assert fields["MESSAGE"] == text.encode()


def test_journal_unreachable_falls_back_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = JournalHandler(path=str(tmp_path / "no-journal.sock"))
    logger = logging.getLogger("edged.test.journal.gone")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("still visible")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert "still visible" in capsys.readouterr().err


def test_field_names() -> None:
    assert systemd.journal_field_name("room_id") == "EDGED_ROOM_ID"
    assert systemd.journal_field_name("a.b-c") == "EDGED_A_B_C"
    assert len(systemd.journal_field_name("k" * 100)) == 64


# ---- where logs go -----------------------------------------------------------------


def test_running_under_systemd() -> None:
    assert not systemd.running_under_systemd({})
    assert systemd.running_under_systemd({"INVOCATION_ID": "0123abcd"})
    st = os.fstat(2)
    assert systemd.running_under_systemd({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert not systemd.running_under_systemd({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
    assert not systemd.running_under_systemd({"JOURNAL_STREAM": "garbage"})


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)


def test_setup_logging_picks_journal_under_systemd(
    tmp_path: Path, root_logger: logging.Logger
) -> None:
    path = str(tmp_path / "journal.sock")
    sock = bind_dgram(path)
    try:
        env = {"INVOCATION_ID": "0123abcd"}
        assert systemd.setup_logging("DEBUG", journal_path=path, environ=env) == "journal"
        assert [type(h) for h in root_logger.handlers] == [JournalHandler]
        logging.getLogger("edged.test.setup").info("hello journal")
        assert parse_native(recv_one(sock))["MESSAGE"] == b"hello journal"
    finally:
        sock.close()


def test_setup_logging_plain_otherwise(tmp_path: Path, root_logger: logging.Logger) -> None:
    assert systemd.setup_logging("INFO", journal_path=str(tmp_path / "x"), environ={}) == "stderr"
    env = {"INVOCATION_ID": "0123abcd"}  # under systemd, but no journal socket
    assert systemd.setup_logging("INFO", journal_path=str(tmp_path / "x"), environ=env) == "stderr"
