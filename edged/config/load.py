"""Turning configuration text into a :class:`~.model.Config`, and ``edged check-config``.

Parse the YAML (keeping every key's line), validate every section, read the secrets
given as ``*_file`` / ``*_env``, then check what involves more than one key; every
problem found on the way is reported at once, each with its key and line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from ..errors import ErrorCode
from .document import (
    ConfigError,
    ConfigProblem,
    Document,
    KeyPath,
    parse_yaml,
    problem_at,
    problems_from_validation,
    read_text,
)
from .model import Config
from .sections import Section

S = TypeVar("S", bound=Section)


def _resolve_secrets(
    cfg: Config, doc: Document, env: Mapping[str, str], problems: list[ConfigProblem]
) -> Config:
    """Every ``*_file`` and ``*_env`` secret read into its inline key."""

    def read(path: KeyPath, section: S) -> S:
        return section.with_secrets(path, doc, env, problems)

    servers = [read(("ice", "servers", i), s) for i, s in enumerate(cfg.ice.servers)]
    update = {"room": read(("room",), cfg.room), "mqtt": read(("mqtt",), cfg.mqtt)}
    server: dict[str, Section | None] = {}
    if cfg.server.sfu is not None:
        server["sfu"] = read(("server", "sfu"), cfg.server.sfu)
    if cfg.server.turn is not None:
        server["turn"] = read(("server", "turn"), cfg.server.turn)
    if cfg.server.cluster is not None:
        server["cluster"] = read(("server", "cluster"), cfg.server.cluster)
    if server:
        update["server"] = cfg.server.model_copy(update=server)
    publish = cfg.auto.publish
    if publish.targets:
        targets = [
            read(("auto", "publish", "targets", i), t) for i, t in enumerate(publish.targets)
        ]
        publish = publish.model_copy(update={"targets": targets})
        update["auto"] = cfg.auto.model_copy(update={"publish": publish})
    return cfg.model_copy(update={**update, "ice": cfg.ice.model_copy(update={"servers": servers})})


def _cross_checks(cfg: Config) -> list[tuple[KeyPath, str]]:
    """Problems that involve more than one key."""
    out: list[tuple[KeyPath, str]] = []
    r, v, t, s, m = cfg.room, cfg.video, cfg.timers, cfg.server, cfg.mqtt
    if s.turn is not None and s.turn.secret is None:
        out.append((("server", "turn"), "needs its shared secret: secret_file, secret_env, secret"))
    if s.store != "memory" and (s.cluster is None or s.cluster.secret is None):
        text = "a Redis store needs server.cluster's secret: secret_file, secret_env, secret"
        out.append((("server", "store"), text))
    if s.turn is not None and s.turn.min_ttl_s > s.turn.max_ttl_s:
        out.append((("server", "turn", "min_ttl_s"), "must not be over max_ttl_s"))
    if not r.server_url and not s.enabled:
        out.append((("room", "server_url"), "empty while server.enabled is false: no server"))
    if r.token_ttl_s <= t.token_renew_before_s:
        out.append((("room", "token_ttl_s"), "must be longer than timers.token_renew_before_s"))
    vc = cfg.video_config()
    if not vc.min_bitrate <= vc.bitrate <= vc.max_bitrate:
        key = "bitrate" if v.bitrate is not None else "min_bitrate"
        text = f"need min_bitrate <= bitrate <= max_bitrate, have {vc.min_bitrate} {vc.bitrate}"
        out.append((("video", key), f"{text} {vc.max_bitrate} (unset: the scenario's)"))
    if v.source == "file" and not v.device:
        out.append((("video", "device"), "the file to play is needed when source is file"))
    if t.retry_min_s > t.retry_max_s:
        out.append((("timers", "retry_min_s"), "must not be greater than retry_max_s"))
    if s.heartbeat_timeout_s <= s.heartbeat_interval_s:
        out.append((("server", "heartbeat_timeout_s"), "must be longer than heartbeat_interval_s"))
    if m.password is not None and not m.username:
        out.append((("mqtt", "password"), "a password needs a username"))
    if m.tls and bool(m.tls.cert_file) != bool(m.tls.key_file):
        out.append((("mqtt", "tls"), "cert_file and key_file go together"))
    return out


def _build(
    data: Any, doc: Document, source: str, env: Mapping[str, str] | None, base_dir: Path | None
) -> Config:
    problems = list(doc.problems)
    if isinstance(data, dict):  # top-level x-... keys hold YAML anchors for merge keys
        data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    try:
        cfg = Config.model_validate({} if data is None else data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(source, problems + problems_from_validation(exc, doc, Config)) from None
    cfg = _resolve_secrets(cfg, doc, os.environ if env is None else env, problems)
    for path, text in _cross_checks(cfg):
        problems.append(problem_at(doc, path, ErrorCode.CONFIG_INVALID_VALUE, text))
    if problems:
        raise ConfigError(source, problems)
    return cfg


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    env: Mapping[str, str] | None = None,
    base_dir: str | Path | None = None,
) -> Config:
    """Parse and validate configuration text; raises ConfigError listing every problem.

    ``env`` (default ``os.environ``) gives ``*_env`` secrets; relative paths in the text
    are taken relative to ``base_dir``.
    """
    doc = parse_yaml(text, source)
    return _build(doc.data, doc, source, env, Path(base_dir) if base_dir is not None else None)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate the file at ``path`` (relative paths in it are relative
    to its directory); raises ConfigError listing every problem with its line."""
    p = Path(path)
    return parse_config(read_text(p), source=str(p), env=env, base_dir=p.absolute().parent)


def changed_sections(old: Config, new: Config) -> set[str]:
    """The top-level sections whose values differ (secrets compared by value)."""
    return {name for name in Config.model_fields if getattr(old, name) != getattr(new, name)}


def check_config(path: str | Path, env: Mapping[str, str] | None = None) -> list[str]:
    """The file's problems as lines ``FILE, line L, column C: key: problem [code]``."""
    try:
        load_config(path, env)
    except ConfigError as exc:
        return [f"{p.describe(exc.source)} [{int(p.code)} {p.code.name}]" for p in exc.problems]
    return []


def check_config_command(path: str) -> int:
    """``edged check-config FILE``: print ``ok: <summary>`` and warnings (0), or the
    problems on stderr (2)."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        for p in exc.problems:
            print(f"{p.describe(exc.source)} [{int(p.code)} {p.code.name}]", file=sys.stderr)
        n = len(exc.problems)
        print(f"{path}: invalid, {n} problem{'s' if n > 1 else ''}", file=sys.stderr)
        return 2
    for text in cfg.warnings():
        print(f"{path}: warning: {text}", file=sys.stderr)
    print(f"ok: {path}: {cfg.summary()}")
    return 0
