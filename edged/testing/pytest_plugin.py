"""pytest plugin: the whole test session runs inside a private network namespace.

Loaded by ``-p edged.testing.pytest_plugin`` (pyproject's addopts). As root, the main
thread moves at configure time, before any test thread or event loop exists, into a
namespace made for the session, so every socket of the tests (servers on 127.0.0.1
included) and of the brokers and browsers they start lives in it; it is deleted at
unconfigure. A session started inside a harness namespace already (a pytest run by a
test or benchmark) uses that one. Tests marked ``netns`` fail, rather than run on the
machine's real network, when the session is not inside a namespace.
"""

from __future__ import annotations

import atexit
import threading
from dataclasses import dataclass

import pytest

from . import netns

MARKER = "netns"
_MARKER_LINE = f"{MARKER}: makes peer connections; runs only inside the harness's namespace"


@dataclass
class _Session:
    """The namespace the session runs in (or why it has none), and the one it owns."""

    info: netns.NamespaceInfo | None = None
    owned: netns.TestNamespace | None = None
    problem: str | None = None
    outside_threads: tuple[str, ...] = ()


_KEY = pytest.StashKey[_Session]()


def _enter_session_namespace() -> _Session:
    name = netns.current_namespace()
    if name is not None:
        return _Session(info=netns.NamespaceInfo(name))
    others = tuple(t.name for t in threading.enumerate() if t is not threading.current_thread())
    try:
        owned = netns.TestNamespace()
    except netns.NamespaceError as exc:
        return _Session(problem=str(exc))
    atexit.register(owned.close)
    try:
        netns.enter(owned.name)
    except netns.NamespaceError as exc:
        owned.close()
        return _Session(problem=str(exc))
    return _Session(info=owned.info, owned=owned, outside_threads=others)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if not any(line.split(":")[0].strip() == MARKER for line in config.getini("markers")):
        config.addinivalue_line("markers", _MARKER_LINE)
    config.stash[_KEY] = _enter_session_namespace()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(_KEY, None)
    if session is None or session.owned is None:
        return
    netns.leave()
    session.owned.close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = config.stash.get(_KEY, None)
    if session is None:
        return []
    if session.info is None:
        return [f"network namespace: none ({session.problem}); tests marked netns will fail"]
    lines = [
        f"network namespace: {session.info.name} "
        f"(host {session.info.host_address}, {session.info.network})"
    ]
    if session.outside_threads:
        lines.append(
            "network namespace: threads started before it stay outside: "
            + ", ".join(session.outside_threads)
        )
    return lines


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker(MARKER) is None:
        return
    session = item.config.stash.get(_KEY, None)
    if session is None or session.info is None:
        problem = session.problem if session is not None else "the plugin is not configured"
        pytest.fail(
            "peer-connection tests (marked netns) must run as root inside the harness's "
            f"network namespace, never on the real network; none here: {problem}",
            pytrace=False,
        )
    if not netns.inside_test_namespace():
        pytest.fail(
            f"peer-connection tests (marked netns) must run inside {session.info.name}, "
            "but this thread has left it",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def test_namespace(request: pytest.FixtureRequest) -> netns.NamespaceInfo:
    """The namespace the session runs in: its name and addresses."""
    session = request.config.stash.get(_KEY, None)
    if session is None or session.info is None:
        problem = session.problem if session is not None else "the plugin is not configured"
        pytest.fail(f"the session runs in no network namespace: {problem}", pytrace=False)
    return session.info
