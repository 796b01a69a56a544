"""Private network namespaces for tests and benchmarks that make peer connections.

ICE (aioice, Chromium) never uses loopback, so a "local" call would run over the
machine's real interface. Everything that makes peer connections runs instead inside
a namespace made here: a veth pair whose two ends both live inside it, addresses from
the benchmarking range 198.18.0.0/24, and a default route into the other end (Chromium
gathers no host candidate without one). IP forwarding is off in a new namespace and no
interface in it reaches the machine's own network, so no packet can leave.

Unlike ``ip netns exec``, :func:`enter` does not remount /sys: /sys/class/net still lists
the machine's interfaces. Ask netlink (``ip``, ifaddr, ``socket.if_nameindex()``) instead.

Typical use:

* pytest: the plugin :mod:`edged.testing.pytest_plugin` moves the whole session in.
* a benchmark: call :func:`enter_test_namespace` first thing in ``main()``.
* a step that needs the real network (apt in a chroot, ...): ``with host_network():``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from types import TracebackType

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
ENV_VAR = "EDGED_NETNS"
"""Set to the namespace's name by :func:`enter`; subprocesses inherit it."""

NETWORK = "198.18.0.0/24"
PREFIX_LENGTH = 24
HOST_INTERFACE = "v0"
HOST_ADDRESS = "198.18.0.1"
"""This machine's address inside the namespace (on ``v0``, which has the default route)."""
PEER_INTERFACE = "v1"
PEER_ADDRESS = "198.18.0.2"
"""A second local address (on ``v1``, the other end of the veth pair)."""

NAME_PREFIX = "edged"
_NAME_RE = re.compile(rf"^{NAME_PREFIX}-(\d+)-\d+$")
_counter = count()


class NamespaceError(RuntimeError):
    """A namespace could not be made, entered or left (not root, no ``ip``, ...)."""


@dataclass(frozen=True)
class NamespaceInfo:
    """What a test or benchmark needs to know about the namespace it runs in."""

    name: str
    host_address: str = HOST_ADDRESS
    peer_address: str = PEER_ADDRESS
    network: str = NETWORK

    @property
    def path(self) -> str:
        return f"{NETNS_DIR}/{self.name}"


GSO_MAX_SEGS = 65535
"""The kernel's default limit of segments in one offloaded send, on every device."""


def ip(*args: str) -> None:
    """Run ``ip`` with ``args`` (in the caller's namespace); :class:`NamespaceError` on failure."""
    try:
        result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise NamespaceError("the ip command (iproute2) is missing") from None
    if result.returncode != 0:
        raise NamespaceError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _check_can_create() -> None:
    if os.geteuid() != 0:
        raise NamespaceError("making a network namespace needs root")
    if shutil.which("ip") is None:
        raise NamespaceError("the ip command (iproute2) is missing: apt-get install iproute2")


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (killed, not yet reaped) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X", "x")


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces named here whose creating process no longer exists.

    They are what a run killed by SIGKILL or SIGTERM leaves behind. Returns their names.
    """
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    stale = []
    for name in names:
        match = _NAME_RE.match(name)
        if match and not _pid_alive(int(match.group(1))):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
            stale.append(name)
    return stale


class TestNamespace:
    """Owns one network namespace named ``edged-<pid>-<n>``: its loopback, the veth
    pair v0/v1 inside it with HOST_ADDRESS and PEER_ADDRESS, and the default route via
    v0. :meth:`close` deletes it; it is also a context manager.

    Making it does not move anything into it: see :func:`enter`.
    """

    __test__ = False

    def __init__(self) -> None:
        _check_can_create()
        remove_stale_namespaces()
        self._closed = False
        self.name = self._add()
        try:
            n = ("-n", self.name)
            ip(*n, "link", "set", "lo", "up")
            ip(*n, "link", "add", HOST_INTERFACE, "type", "veth", "peer", "name", PEER_INTERFACE)
            ip(*n, "addr", "add", f"{HOST_ADDRESS}/{PREFIX_LENGTH}", "dev", HOST_INTERFACE)
            ip(*n, "addr", "add", f"{PEER_ADDRESS}/{PREFIX_LENGTH}", "dev", PEER_INTERFACE)
            ip(*n, "link", "set", HOST_INTERFACE, "up")
            ip(*n, "link", "set", PEER_INTERFACE, "up")
            ip(*n, "route", "add", "default", "via", PEER_ADDRESS, "dev", HOST_INTERFACE)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _add() -> str:
        last_error = ""
        for _ in range(100):
            name = f"{NAME_PREFIX}-{os.getpid()}-{next(_counter)}"
            if os.path.exists(f"{NETNS_DIR}/{name}"):
                continue
            try:
                ip("netns", "add", name)
            except NamespaceError as exc:
                last_error = str(exc)
                if os.path.exists(f"{NETNS_DIR}/{name}"):
                    continue
                raise
            return name
        raise NamespaceError(f"no free namespace name: {last_error}")

    @property
    def info(self) -> NamespaceInfo:
        return NamespaceInfo(self.name)

    @property
    def path(self) -> str:
        return f"{NETNS_DIR}/{self.name}"

    def close(self) -> None:
        """Delete the namespace; idempotent.

        Processes and sockets still inside keep it alive, nameless, until they end.
        """
        if not self._closed:
            self._closed = True
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)

    def __enter__(self) -> TestNamespace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TestNamespace({self.name!r}{', closed' if self._closed else ''})"


_libc: ctypes.CDLL | None = None
_host_fd: int | None = None
_lock = threading.Lock()


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
        _libc.setns.restype = ctypes.c_int
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NamespaceError(f"setns(CLONE_NEWNET): {os.strerror(err)}")


def _setns_path(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise NamespaceError(f"cannot open {path}: {exc.strerror}") from None
    try:
        _setns(fd)
    finally:
        os.close(fd)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _thread_namespace() -> tuple[int, int] | None:
    return _identity("/proc/thread-self/ns/net")


def enter(name: str) -> None:
    """Move the calling thread into namespace ``name`` and set ``EDGED_NETNS=<name>``.

    Only the calling thread moves: threads and subprocesses it starts afterwards are
    inside too, threads that already exist are not. The namespace the thread was in
    before the first call is remembered for :func:`host_network` and :func:`leave`.
    """
    global _host_fd
    with _lock:
        if _host_fd is None:
            _host_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    _setns_path(f"{NETNS_DIR}/{name}")
    os.environ[ENV_VAR] = name


def leave() -> None:
    """Move the calling thread back to the network it was in before :func:`enter`,
    and unset ``EDGED_NETNS``. Does nothing if :func:`enter` was never called."""
    if _host_fd is None:
        return
    _setns(_host_fd)
    os.environ.pop(ENV_VAR, None)


def current_namespace() -> str | None:
    """The name of the harness namespace the calling thread is in, or None."""
    name = os.environ.get(ENV_VAR)
    if not name:
        return None
    here = _thread_namespace()
    if here is None or _identity(f"{NETNS_DIR}/{name}") != here:
        return None
    return name


def inside_test_namespace() -> bool:
    """Whether the calling thread is inside a namespace made by this module.

    Works in subprocesses too: they inherit ``EDGED_NETNS`` and the namespace.
    """
    return current_namespace() is not None


@contextlib.contextmanager
def host_network() -> Iterator[None]:
    """Run the calling thread in the machine's own network for the ``with`` block.

    For the few steps that need it (e.g. apt inside a chroot); afterwards the thread
    returns to the namespace it was in. Other threads are not affected. Outside any
    harness namespace this does nothing.
    """
    if _host_fd is None:
        if inside_test_namespace():
            raise NamespaceError(
                "this process was started inside the test namespace and cannot reach "
                "the host network; call host_network() in the process that entered it"
            )
        yield
        return
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(_host_fd)
        try:
            yield
        finally:
            _setns(back)
    finally:
        os.close(back)


def enter_test_namespace() -> NamespaceInfo:
    """For benchmarks: make a namespace, move the process in, delete it at exit.

    Call it first thing in ``main()``, before any thread or event loop exists. When
    this process already runs in a harness namespace (started by a test), that one is
    used. Exits with a one-line message when the namespace cannot be made (not root,
    no ``ip``).
    """
    name = current_namespace()
    if name is not None:
        return NamespaceInfo(name)
    others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    if others:
        raise SystemExit(
            "enter_test_namespace() must run before any thread starts; "
            f"these would stay on the real network: {', '.join(others)}"
        )
    try:
        ns = TestNamespace()
    except NamespaceError as exc:
        raise SystemExit(
            f"peer connections run only inside a private network namespace: {exc}"
        ) from None
    atexit.register(ns.close)
    try:
        enter(ns.name)
    except NamespaceError as exc:
        ns.close()
        raise SystemExit(f"cannot enter network namespace {ns.name}: {exc}") from None
    return ns.info
