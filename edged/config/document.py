"""Reading a configuration file: YAML that remembers where every key is, and problems.

The YAML is composed into nodes (the safe loader: plain data only) so that every key
and value keeps the line and column it came from. Validation errors are mapped back
onto those positions, so that each problem names the dotted key, what is wrong and the
line. No problem message ever carries the value of a secret.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import EdgedError, ErrorCode

MAX_FILE_BYTES = 1 << 20
MAX_NODES = 20_000
SECRET_KEYS = frozenset({"token", "app_secret", "password", "credential"})
MERGE_TAG = "tag:yaml.org,2002:merge"

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a configuration: its code, dotted key, message and position."""

    code: ErrorCode
    key: str
    message: str
    line: int | None = None
    column: int | None = None

    def describe(self, source: str) -> str:
        where = source
        if self.line is not None:
            where += f", line {self.line}, column {self.column}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(EdgedError):
    """A configuration that cannot be used; ``problems`` lists everything wrong with it.

    The code is the first problem's (in file order); the message has one line per problem.
    """

    def __init__(self, source: str, problems: Iterable[ConfigProblem]) -> None:
        ordered = sorted(problems, key=lambda p: (p.line or 0, p.column or 0))
        if not ordered:
            ordered = [ConfigProblem(ErrorCode.CONFIG_INVALID_VALUE, "", "invalid")]
        self.source = source
        self.problems: tuple[ConfigProblem, ...] = tuple(ordered)
        super().__init__(ordered[0].code, "\n".join(p.describe(source) for p in ordered))


def format_key(path: Sequence[str | int]) -> str:
    """``("ice", "servers", 0, "urls")`` as ``ice.servers[0].urls``."""
    out = ""
    for el in path:
        out += f"[{el}]" if isinstance(el, int) else (f".{el}" if out else str(el))
    return out


@dataclass(slots=True)
class Document:
    """A parsed YAML document: its data and where each key and value starts (1-based)."""

    data: Any = None
    keys: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    values: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    scalars: set[KeyPath] = field(default_factory=set)
    problems: list[ConfigProblem] = field(default_factory=list)

    def resolve(self, loc: Sequence[Any], keep_last: bool = False) -> KeyPath:
        """A validation error's location as a key path of this document.

        Elements that are not keys of the document (union members, validator names)
        are dropped; with ``keep_last`` a final absent key is kept (a missing key).
        """
        path: KeyPath = ()
        for i, el in enumerate(loc):
            if isinstance(el, int) and not isinstance(el, bool) and (*path, el) in self.values:
                path += (el,)
            elif (*path, str(el)) in self.values:
                path += (str(el),)
            elif keep_last and i == len(loc) - 1:
                path += (el if isinstance(el, int) and not isinstance(el, bool) else str(el),)
        return path

    def value_at(self, path: KeyPath, default: Any) -> Any:
        """The value as written at ``path`` (before any conversion), else ``default``."""
        value = self.data
        for el in path:
            in_list = isinstance(value, list) and isinstance(el, int) and 0 <= el < len(value)
            if not (in_list or (isinstance(value, dict) and el in value)):
                return default
            value = value[el]
        return value

    def position(self, path: KeyPath, at_value: bool) -> tuple[int | None, int | None]:
        """Where to point for ``path``: its value, its key, or its nearest ancestor's key."""
        for n in range(len(path), 0, -1):
            p = path[:n]
            if n == len(path) and p in self.values and (at_value and p in self.scalars):
                return self.values[p]
            if p in self.keys:
                return self.keys[p]
            if p in self.values:
                return self.values[p]
        if () in self.values:
            return self.values[()]
        return None, None


def _pos(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _yaml_problem(exc: yaml.YAMLError, text: str) -> ConfigProblem:
    """A YAML error as a problem, from its parts: never the snippet of the offending line."""
    code = ErrorCode.CONFIG_SYNTAX_ERROR
    if isinstance(exc, yaml.MarkedYAMLError):
        what = exc.problem or type(exc).__name__
        mark, start = exc.problem_mark or exc.context_mark, exc.context_mark
        if exc.context:
            since = (
                f" on line {start.line + 1}" if start and mark and start.line != mark.line else ""
            )
            what += f" ({exc.context}{since})"
        if mark is not None:
            return ConfigProblem(code, "", what, mark.line + 1, mark.column + 1)
        return ConfigProblem(code, "", what)
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
        what = f"character #x{exc.character:04x} is not allowed ({exc.reason})"
        return ConfigProblem(code, "", what, line, column)
    return ConfigProblem(code, "", type(exc).__name__)


class _TooBig(Exception):
    pass


class _Loader(yaml.SafeLoader):
    """The safe loader, walked by hand to record positions and duplicate keys."""

    def walk(self, node: Node, path: KeyPath, doc: Document, budget: list[int]) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise _TooBig(f"more than {MAX_NODES} values (after expanding aliases)")
        doc.values.setdefault(path, _pos(node))
        if isinstance(node, ScalarNode):
            doc.scalars.add(path)
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                self.walk(item, (*path, i), doc, budget)
        elif isinstance(node, MappingNode):
            seen: dict[tuple[str, str], Node] = {}
            for key, _ in node.value:
                if isinstance(key, ScalarNode) and key.tag != MERGE_TAG:
                    first = seen.setdefault((key.tag, key.value), key)
                    if first is not key:
                        doc.problems.append(
                            ConfigProblem(
                                ErrorCode.CONFIG_SYNTAX_ERROR,
                                format_key((*path, key.value)),
                                f"duplicate key (first given on line {_pos(first)[0]})",
                                *_pos(key),
                            )
                        )
            self.flatten_mapping(node)
            for key, value in node.value:
                if isinstance(key, ScalarNode):
                    sub = (*path, str(key.value))
                    doc.keys.setdefault(sub, _pos(key))
                    self.walk(value, sub, doc, budget)


def parse_yaml(text: str, source: str) -> Document:
    """Parse one YAML document with positions; raises ConfigError (CONFIG_SYNTAX_ERROR)."""
    doc = Document()
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is not None:
            loader.walk(node, (), doc, [MAX_NODES])
            doc.data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [_yaml_problem(exc, text)]) from None
    except (ValueError, TypeError, OverflowError) as exc:
        problem = ConfigProblem(ErrorCode.CONFIG_SYNTAX_ERROR, "", f"unreadable value: {exc}")
        raise ConfigError(source, [problem]) from None
    except _TooBig as exc:
        problem = ConfigProblem(ErrorCode.CONFIG_SYNTAX_ERROR, "", str(exc))
        raise ConfigError(source, [problem]) from None
    except RecursionError:
        raise ConfigError(
            source, [ConfigProblem(ErrorCode.CONFIG_SYNTAX_ERROR, "", "nested too deeply")]
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    return doc


def read_text(path: Path) -> str:
    """The file's text; ConfigError when absent, unreadable, too large or not UTF-8."""
    source = str(path)

    def fail(code: ErrorCode, text: str, line: int | None = None) -> ConfigError:
        return ConfigError(source, [ConfigProblem(code, "", text, line, 1 if line else None)])

    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):
        raise fail(ErrorCode.CONFIG_FILE_NOT_FOUND, "no such file") from None
    except IsADirectoryError:
        raise fail(ErrorCode.CONFIG_UNREADABLE, "is a directory, not a file") from None
    except OSError as exc:
        raise fail(ErrorCode.CONFIG_UNREADABLE, exc.strerror or type(exc).__name__) from None
    if len(raw) > MAX_FILE_BYTES:
        raise fail(ErrorCode.CONFIG_UNREADABLE, f"larger than {MAX_FILE_BYTES} bytes")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise fail(ErrorCode.CONFIG_SYNTAX_ERROR, "not valid UTF-8", line) from None


def _strip(tp: Any) -> Any:
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif get_origin(tp) in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def known_keys(model: type[BaseModel], path: Sequence[str | int]) -> list[str]:
    """The keys the model allows at ``path`` (empty when ``path`` is not a mapping)."""
    tp: Any = model
    for el in path:
        tp = _strip(tp)
        if isinstance(el, int):
            if get_origin(tp) not in (list, tuple):
                return []
            tp = get_args(tp)[0]
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and el in tp.model_fields:
            tp = tp.model_fields[el].annotation
        else:
            return []
    tp = _strip(tp)
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _shown(value: Any) -> str:
    if isinstance(value, bool | int | float) or value is None:
        return f" (got {value!r})"
    if isinstance(value, str):
        return f" (got {value[:40] + '...' if len(value) > 40 else value!r})"
    return ""


_CODES = {
    "extra_forbidden": ErrorCode.CONFIG_UNKNOWN_KEY,
    "invalid_key": ErrorCode.CONFIG_UNKNOWN_KEY,
    "missing": ErrorCode.CONFIG_MISSING_KEY,
}


def problems_from_validation(
    exc: ValidationError, doc: Document, model: type[BaseModel]
) -> list[ConfigProblem]:
    """Each pydantic error as a problem with its dotted key, message and line."""
    out: list[ConfigProblem] = []
    for err in exc.errors(include_url=False):
        typ = err["type"]
        code = _CODES.get(typ, ErrorCode.CONFIG_INVALID_VALUE)
        path = doc.resolve(err["loc"], keep_last=code != ErrorCode.CONFIG_INVALID_VALUE)
        key = format_key(path)
        if code == ErrorCode.CONFIG_UNKNOWN_KEY:
            text = "unknown key"
            allowed = known_keys(model, path[:-1])
            near = difflib.get_close_matches(str(path[-1]) if path else "", allowed)
            if near:
                text += f" (did you mean {near[0]!r}?)"
        elif code == ErrorCode.CONFIG_MISSING_KEY:
            text = "required key is missing"
        else:
            text = err["msg"].removeprefix("Value error, ")
            ctx = err.get("ctx") or {}
            if typ == "string_pattern_mismatch" and "A-Za-z0-9_." in str(ctx.get("pattern")):
                text = "may use only the characters A-Z a-z 0-9 _ . -"
            if not path:
                text = "the file must hold a mapping of sections (device, room, auto, ...)"
            elif not SECRET_KEYS & {str(p) for p in path}:
                text += _shown(doc.value_at(path, err.get("input")))
        line, column = doc.position(path, at_value=code == ErrorCode.CONFIG_INVALID_VALUE)
        problem = ConfigProblem(code, key, text, line, column)
        if problem not in out:
            out.append(problem)
    return out


def problem_at(
    doc: Document, path: KeyPath, code: ErrorCode, message: str, at_value: bool = True
) -> ConfigProblem:
    """A problem found after validation, placed at ``path`` (or its nearest ancestor)."""
    line, column = doc.position(path, at_value)
    return ConfigProblem(code, format_key(path), message, line, column)
