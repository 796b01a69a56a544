"""How a private piece of aiortc is checked: the helpers each module's ``REQUIREMENTS`` use.

Every module of :mod:`edged.media.aiortc` that touches aiortc's private API lists what it
relies on in a ``REQUIREMENTS`` table (a name, and a check returning a problem or None),
built from the helpers here; :mod:`edged.media.aiortc.verify` runs them all. A problem is
a readable sentence naming the missing or changed piece.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import fields
from types import ModuleType
from typing import Any

import aiortc

AIORTC_VERSION: str = aiortc.__version__

Checks = dict[str, Callable[[], str | None]]
"""What a module relies on, by name, each with a check returning a problem or None."""


class AiortcInternalsError(RuntimeError):
    """aiortc no longer has a private attribute or behaviour that edged relies on."""


def code_names(func: object) -> tuple[str, ...]:
    """The global and attribute names a function's code refers to."""
    code = getattr(func, "__code__", None)
    return tuple(code.co_names) if code is not None else ()


def _params(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)  # type: ignore[arg-type]


def check_method(
    owner: type | ModuleType, name: str, params: Sequence[str], coroutine: bool = False
) -> str | None:
    func = inspect.getattr_static(owner, name, None)
    if func is None or not callable(func):
        return f"{owner.__name__}.{name} is missing"
    if list(params) != _params(func):
        return f"{owner.__name__}.{name} takes {_params(func)}, expected {list(params)}"
    if coroutine != inspect.iscoroutinefunction(func):
        kind = "a coroutine function" if coroutine else "a plain function"
        return f"{owner.__name__}.{name} is no longer {kind}"
    return None


def check_calls(func: object, label: str, names: Sequence[str]) -> str | None:
    missing = [n for n in names if n not in code_names(func)]
    return f"{label} no longer refers to {', '.join(missing)}" if missing else None


def check_not_called(func: object, label: str, names: Sequence[str]) -> str | None:
    found = [n for n in names if n in code_names(func)]
    return f"{label} now also sets {', '.join(found)}" if found else None


def check_fields(cls: type, names: Sequence[str]) -> str | None:
    have = {f.name for f in fields(cls)}
    missing = [n for n in names if n not in have]
    return f"{cls.__name__} lacks fields {', '.join(missing)}" if missing else None


def check_constant(module: Any, name: str, value: int) -> str | None:
    actual = getattr(module, name, None)
    return None if actual == value else f"aiortc.rtp.{name} is {actual!r}, expected {value}"


def check_callable(module: ModuleType, name: str) -> str | None:
    if callable(getattr(module, name, None)):
        return None
    return f"{module.__name__}.{name} is missing"


def run_checks(checks: Checks) -> list[str]:
    """The problems the checks find; a check that cannot inspect counts as one."""
    found: list[str] = []
    for name, check in checks.items():
        try:
            problem = check()
        except Exception as exc:  # a changed signature may break inspection itself
            problem = f"{name}: cannot be inspected ({exc!r})"
        if problem:
            found.append(problem)
    return found
