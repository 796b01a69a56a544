"""pytest plugin: the whole test session runs inside a private network namespace.

Loaded by ``-p edged.testing.pytest_plugin`` (pyproject's addopts). As root, the session
moves into a namespace made at start-up (before any thread exists), so every socket of
the tests, and of the brokers and browsers they start, lives in it. Tests marked
``netns`` fail, rather than run on the machine's real network, when that was not
possible.
"""

from __future__ import annotations

import pytest

from . import netns

_namespace: netns.TestNamespace | None = None
_problem: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _namespace, _problem
    config.addinivalue_line("markers", "netns: makes peer connections (needs the namespace)")
    if hasattr(config, "workerinput"):
        return
    try:
        _namespace = netns.TestNamespace()
        netns.enter(_namespace.name)
    except netns.NamespaceError as exc:
        _problem = str(exc)
        if _namespace is not None:
            _namespace.close()
            _namespace = None


def pytest_unconfigure(config: pytest.Config) -> None:
    global _namespace
    if _namespace is not None:
        _namespace.close()
        _namespace = None


def pytest_report_header(config: pytest.Config) -> str:
    if _namespace is not None:
        return f"network namespace: {_namespace.name} (host {netns.HOST_ADDRESS})"
    return f"network namespace: none ({_problem}); tests marked netns will fail"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("netns") is not None and _namespace is None:
        pytest.fail(
            "this test makes peer connections and must run as root inside the harness's "
            f"network namespace: {_problem}",
            pytrace=False,
        )


@pytest.fixture
def test_namespace() -> netns.TestNamespace:
    """The namespace the session runs in."""
    if _namespace is None:
        pytest.fail(f"no test namespace: {_problem}", pytrace=False)
    return _namespace
