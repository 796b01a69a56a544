"""Private network namespaces for tests and benchmarks that make peer connections.

ICE (aioice, Chromium) never uses loopback, so a "local" call would run over the
machine's real interface. Everything that makes peer connections runs instead inside
a namespace made here: a veth pair whose two ends both live inside it, addresses from
the benchmarking range 198.18.0.0/24, and a default route into the other end (Chromium
gathers no host candidate without one). No packet can leave the namespace.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator
from itertools import count

CLONE_NEWNET = 0x40000000
HOST_ADDRESS = "198.18.0.1"
PEER_ADDRESS = "198.18.0.2"
PREFIX = 24
ENV_VAR = "EDGED_NETNS"

_counter = count()


class NamespaceError(RuntimeError):
    """The namespace could not be made or entered (not root, no ``ip``, ...)."""


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NamespaceError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NamespaceError(f"setns failed: {os.strerror(err)}")


class TestNamespace:
    """Owns one network namespace: its veth pair, addresses and default route."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, name: str | None = None) -> None:
        if os.geteuid() != 0:
            raise NamespaceError("network namespaces need root")
        if shutil.which("ip") is None:
            raise NamespaceError("the ip command (iproute2) is missing")
        self.name = name or f"edged-{os.getpid()}-{next(_counter)}"
        self._closed = False
        _ip("netns", "add", self.name)
        try:
            n = ["-n", self.name]
            _ip(*n, "link", "set", "lo", "up")
            _ip(*n, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
            _ip(*n, "addr", "add", f"{HOST_ADDRESS}/{PREFIX}", "dev", "v0")
            _ip(*n, "addr", "add", f"{PEER_ADDRESS}/{PREFIX}", "dev", "v1")
            _ip(*n, "link", "set", "v0", "up")
            _ip(*n, "link", "set", "v1", "up")
            _ip(*n, "route", "add", "default", "via", PEER_ADDRESS, "dev", "v0")
        except NamespaceError:
            self.close()
            raise

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def close(self) -> None:
        """Delete the namespace (processes still inside keep it alive until they end)."""
        if not self._closed:
            self._closed = True
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)

    def __enter__(self) -> TestNamespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_host_fd: int | None = None


def enter(name: str) -> None:
    """Move the calling thread into namespace ``name``.

    Threads and processes started afterwards inherit it, so call this before any
    thread exists. The original namespace is remembered for :func:`host_network`.
    """
    global _host_fd
    if _host_fd is None:
        _host_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(fd)
    finally:
        os.close(fd)
    os.environ[ENV_VAR] = name


def inside_test_namespace() -> bool:
    """Whether this process was moved into a namespace made here."""
    name = os.environ.get(ENV_VAR)
    if not name or not os.path.exists(f"/run/netns/{name}"):
        return False
    return os.stat(f"/run/netns/{name}").st_ino == os.stat("/proc/thread-self/ns/net").st_ino


@contextlib.contextmanager
def host_network() -> Iterator[None]:
    """Run the calling thread in the machine's own namespace for a while (e.g. apt)."""
    name = os.environ.get(ENV_VAR)
    if _host_fd is None or not name:
        yield
        return
    _setns(_host_fd)
    try:
        yield
    finally:
        enter(name)


def enter_test_namespace() -> TestNamespace:
    """For benchmarks: make a namespace, enter it, and delete it at exit.

    Call it first thing in ``main()``, before any thread or event loop exists.
    """
    try:
        ns = TestNamespace()
        enter(ns.name)
    except NamespaceError as exc:
        raise SystemExit(f"cannot run peer connections in a private namespace: {exc}") from None
    atexit.register(ns.close)
    return ns
