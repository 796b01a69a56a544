"""The configuration file: shipped examples, defaults, problems with their lines, secrets,
the mapping onto engine and server, and reload differences."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from edged.config.document import ConfigError
from edged.config.load import (
    changed_sections,
    check_config,
    check_config_command,
    load_config,
    parse_config,
)
from edged.config.model import Config, default_device_id
from edged.errors import EdgedError, ErrorCode

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cret-value-that-must-never-leak-0123456789"


def write(tmp_path: Path, text: str, name: str = "edged.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[tuple[str, int | None, ErrorCode]]:
    return [(p.key, p.line, p.code) for p in exc.value.problems]


# ---- the shipped files ---------------------------------------------------------------


def test_shipped_example_loads_with_the_fresh_install_behaviour() -> None:
    cfg = load_config(ROOT / "config" / "edged.yaml", env={})
    assert cfg.embedded_server and cfg.effective_server_url() == "ws://127.0.0.1:8790/ws"
    assert cfg.auto.login and cfg.auto.publish.enabled
    assert cfg.auto.publish.stream_id == f"{cfg.device.id}-cam"
    assert (cfg.video.source, cfg.audio.source) == ("auto", "auto")
    assert cfg.mqtt.enabled and (cfg.mqtt.host, cfg.mqtt.port) == ("localhost", 1883)
    assert cfg.mqtt.discovery and cfg.mqtt.discovery_prefix == "homeassistant"
    assert cfg.ice.servers == [] and cfg.warnings() == []


def test_shipped_demo_loads_without_broker_and_mints_its_own_tokens() -> None:
    cfg = load_config(ROOT / "config" / "demo.yaml", env={})
    assert cfg.embedded_server and cfg.server.host == "127.0.0.1" and not cfg.server.dev_mode
    assert cfg.room.token is None and cfg.room.app_secret is None  # read from the apps file
    assert (cfg.video.source, cfg.audio.source) == ("testpattern", "tone")
    assert not cfg.mqtt.enabled and cfg.server.print_join_info


def test_every_key_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()

    def keys(tp: Any, prefix: str) -> list[str]:
        if get_origin(tp) is list:
            return keys(get_args(tp)[0], prefix + "[]")
        if get_origin(tp) in (Union, UnionType):
            return [k for arg in get_args(tp) for k in keys(arg, prefix)]
        if not (isinstance(tp, type) and issubclass(tp, BaseModel)):
            return []
        out = []
        for name, field in tp.model_fields.items():
            key = f"{prefix}.{name}" if prefix else name
            out += [key, *keys(field.annotation, key)]
        return out

    every = keys(Config, "")
    assert "ice.servers[].urls" in every and "mqtt.tls.ca_file" in every
    assert [k for k in every if f"`{k}`" not in doc] == []


# ---- defaults ------------------------------------------------------------------------


def test_empty_file_loads_with_derived_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""), env={})
    dev = default_device_id()
    assert re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", dev) and dev == default_device_id()
    assert cfg.device.id == dev and cfg.room.user_id == dev and cfg.room.room_id == dev
    assert cfg.mqtt.client_id == dev and cfg.mqtt.base_topic == "edged"
    assert cfg.room.app_id == "default" and cfg.room.user_update
    assert cfg.auto.play == [] and not cfg.auto.play_video
    assert cfg == Config() and cfg == load_config(write(tmp_path, "room:\nvideo: ~\n"), env={})


def test_embedded_server_is_on_only_without_a_server_url(tmp_path: Path) -> None:
    remote = parse_config("room: {server_url: 'wss://rooms.example.org/ws', token: t}")
    assert not remote.embedded_server
    assert remote.effective_server_url() == "wss://rooms.example.org/ws"
    both = parse_config("room: {server_url: 'ws://a:1/ws'}\nserver: {enabled: true}")
    assert both.embedded_server
    wild = parse_config("server: {host: 0.0.0.0, port: 9000}")
    assert wild.effective_server_url() == "ws://127.0.0.1:9000/ws"
    with pytest.raises(ConfigError) as exc:
        parse_config("server:\n  enabled: false\n")
    assert problems(exc) == [("room.server_url", 1, ErrorCode.CONFIG_INVALID_VALUE)]


def test_shorthands_and_units() -> None:
    cfg = parse_config(
        """
        x-hd: &hd {width: 1280, height: 720, fps: 25}
        auto: {publish: false, play: all}
        video: {<<: *hd, source: off, bitrate: 1.5M, min_bitrate: 100k, max_bitrate: 3M, fps: 5}
        mqtt: {tls: true, protocol: 5, port: 8883}
        logging: {level: debug, journald: false}
        ice: {servers: [{urls: "stun:stun.example.org"}]}
        """.replace("        ", "")
    )
    assert (cfg.video.width, cfg.video.height, cfg.video.fps) == (1280, 720, 5)
    assert not cfg.auto.publish.enabled and cfg.auto.play == "all"
    assert cfg.video.source == "none" and cfg.video.bitrate == 1_500_000
    assert cfg.mqtt.tls is not None and cfg.mqtt.protocol_version == 5
    assert cfg.mqtt.tls.ssl_context().verify_mode == ssl.CERT_REQUIRED
    assert parse_config("mqtt: {protocol: '3.1.1'}").mqtt.protocol_version == 4
    assert cfg.logging.level == "DEBUG" and cfg.logging.journald is False
    assert cfg.ice.servers[0].urls == ["stun:stun.example.org"]
    assert not cfg.publish_config().video and cfg.publish_config().audio


# ---- problems, each with key and line -----------------------------------------------


def test_typo_key_is_refused_naming_the_key_and_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "device:\n  name: kitchen\nroom:\n  app_id: home\n  romo_id: porch\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert exc.value.code == ErrorCode.CONFIG_UNKNOWN_KEY
    assert problems(exc) == [("room.romo_id", 5, ErrorCode.CONFIG_UNKNOWN_KEY)]
    assert f"{path}, line 5, column 3: room.romo_id: unknown key" in exc.value.message
    assert "did you mean 'room_id'?" in exc.value.message
    assert isinstance(exc.value, EdgedError)


def test_wrong_type_names_key_problem_and_line() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config("video:\n  source: testpattern\n  fps: fast\n", source="x.yaml")
    assert exc.value.code == ErrorCode.CONFIG_INVALID_VALUE
    (p,) = exc.value.problems
    assert (p.key, p.line, p.column) == ("video.fps", 3, 8)
    assert "valid number" in p.message and "'fast'" in p.message
    assert exc.value.message.startswith("x.yaml, line 3, column 8: video.fps: ")


def test_every_problem_is_listed_in_file_order_with_the_first_ones_code() -> None:
    text = """
    mqtt:
      port: 99999
    room:
      user_id: "has space"
    video:
      width: 641
      rotaton: 90
    ice:
      servers:
        - username: x
    auto:
      play: 5
    """
    with pytest.raises(ConfigError) as exc:
        parse_config(textwrap.dedent(text).lstrip())
    assert problems(exc) == [
        ("mqtt.port", 2, ErrorCode.CONFIG_INVALID_VALUE),
        ("room.user_id", 4, ErrorCode.CONFIG_INVALID_VALUE),
        ("video.width", 6, ErrorCode.CONFIG_INVALID_VALUE),
        ("video.rotaton", 7, ErrorCode.CONFIG_UNKNOWN_KEY),
        ("ice.servers[0].urls", 10, ErrorCode.CONFIG_MISSING_KEY),
        ("auto.play", 12, ErrorCode.CONFIG_INVALID_VALUE),
    ]
    assert exc.value.code == ErrorCode.CONFIG_INVALID_VALUE
    assert len(exc.value.message.splitlines()) == 6


def test_keys_that_contradict_each_other_are_refused_together() -> None:
    text = "video: {bitrate: 5M}\ntimers: {retry_min_s: 9}\nserver: {heartbeat_timeout_s: 5}\n"
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    assert [k for k, _, _ in problems(exc)] == [
        "video.bitrate",
        "timers.retry_min_s",
        "server.heartbeat_timeout_s",
    ]


def test_yaml_syntax_error_gives_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, f"room:\n  app_secret: {SECRET}\n  room_id: [porch\nvideo: {{}}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert exc.value.code == ErrorCode.CONFIG_SYNTAX_ERROR
    assert exc.value.problems[0].line == 4
    assert SECRET not in exc.value.message  # no snippet of the file


def test_duplicate_key_is_a_syntax_error_with_both_lines() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config("mqtt:\n  port: 1884\n  host: b\n  port: 1885\n")
    assert problems(exc) == [("mqtt.port", 4, ErrorCode.CONFIG_SYNTAX_ERROR)]
    assert "first given on line 2" in exc.value.message


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("a: &a [*a]", ErrorCode.CONFIG_SYNTAX_ERROR),
        ("a: !!python/object:os.system {}", ErrorCode.CONFIG_SYNTAX_ERROR),
        ("a: 1\n---\nb: 2\n", ErrorCode.CONFIG_SYNTAX_ERROR),
        ("- room\n- video\n", ErrorCode.CONFIG_INVALID_VALUE),
        ("room: \x01", ErrorCode.CONFIG_SYNTAX_ERROR),
    ],
)
def test_odd_documents_are_refused_with_a_config_error(text: str, code: ErrorCode) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    assert exc.value.code == code


def test_alias_bomb_is_refused() -> None:
    lines = ["l0: &l0 [a, a, a, a, a, a, a, a, a]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    with pytest.raises(ConfigError) as exc:
        parse_config("\n".join(lines))
    assert "after expanding aliases" in exc.value.message


def test_file_level_problems_have_their_own_codes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "absent.yaml")
    assert exc.value.code == ErrorCode.CONFIG_FILE_NOT_FOUND
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path)
    assert exc.value.code == ErrorCode.CONFIG_UNREADABLE
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"device:\n  name: caf\xe9\n")
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    assert exc.value.code == ErrorCode.CONFIG_SYNTAX_ERROR and exc.value.problems[0].line == 2


def test_mqtt_tls_files_must_exist_and_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, "mqtt:\n  tls:\n    ca_file: ca.pem\n"), env={})
    assert problems(exc) == [("mqtt.tls.ca_file", 3, ErrorCode.CONFIG_INVALID_VALUE)]
    assert str(tmp_path / "ca.pem") in exc.value.message
    (tmp_path / "client.pem").write_text("not a certificate")
    (tmp_path / "client.key").write_text("not a key")
    text = "mqtt: {tls: {cert_file: client.pem, key_file: client.key, insecure: true}}"
    cfg = load_config(write(tmp_path, text), env={})
    assert cfg.mqtt.tls is not None and cfg.mqtt.tls.cert_file == tmp_path / "client.pem"
    assert cfg.warnings() == ["mqtt.tls.insecure: the broker's certificate is not verified"]
    with pytest.raises(EdgedError) as err:
        cfg.mqtt.tls.ssl_context()
    assert err.value.code == ErrorCode.TLS_CERTIFICATE_INVALID


# ---- secrets -------------------------------------------------------------------------


def test_secrets_come_from_a_file_relative_to_the_config_or_the_environment(
    tmp_path: Path,
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "app").write_text(f"\n{SECRET}\n")
    path = write(
        tmp_path,
        """
        room: {app_secret_file: secrets/app}
        mqtt: {username: u, password_env: MQTT_PW}
        ice: {servers: [{urls: "turn:t.example.org", username: u, credential: c}]}
        """,
    )
    cfg = load_config(path, env={"MQTT_PW": "pw-from-env"})
    assert cfg.room.app_secret is not None and cfg.room.app_secret.get_secret_value() == SECRET
    assert cfg.mqtt.password is not None and cfg.mqtt.password.get_secret_value() == "pw-from-env"
    assert cfg.ice_server_dicts()[0]["credential"] == "c"
    for text in (repr(cfg), str(cfg), cfg.summary(), repr(cfg.room)):
        assert SECRET not in text and "pw-from-env" not in text


def test_missing_secret_names_the_key_and_never_shows_a_secret(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        room:
          token: {SECRET}
          app_secret_file: /nonexistent/app_secret
        mqtt:
          password_env: EDGED_TEST_UNSET
          username: u
        ice:
          servers: [{{urls: "turn:x", credential: {SECRET}, credential_env: X}}]
        """,
    )
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert problems(exc) == [
        ("room.app_secret_file", 3, ErrorCode.SECRET_UNAVAILABLE),
        ("mqtt.password_env", 5, ErrorCode.SECRET_UNAVAILABLE),
        ("ice.servers[0].credential_env", 8, ErrorCode.CONFIG_INVALID_VALUE),
    ]
    assert exc.value.code == ErrorCode.SECRET_UNAVAILABLE
    assert "/nonexistent/app_secret" in exc.value.message
    assert "EDGED_TEST_UNSET" in exc.value.message
    assert SECRET not in str(exc.value) and SECRET not in repr(exc.value.problems)


def test_a_badly_typed_secret_is_not_echoed() -> None:
    for text in (f"room: {{token: [{SECRET}]}}", f"mqtt: {{password: {{a: {SECRET}}}}}"):
        with pytest.raises(ConfigError) as exc:
            parse_config(text)
        assert SECRET not in str(exc.value)


def test_empty_secret_file_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, "room: {token_file: empty}"), env={})
    assert problems(exc) == [("room.token_file", 1, ErrorCode.SECRET_UNAVAILABLE)]


# ---- mapping onto engine and server ---------------------------------------------------


def test_engine_profile_maps_video_audio_timers_and_credentials() -> None:
    from edged.engine.config import EngineTimers, VideoConfig
    from edged.model import Scenario

    cfg = parse_config(
        """
        room: {app_id: home, scenario: surveillance, app_secret: abc, token_ttl_s: 600}
        video: {width: 1920, height: 1080, bitrate: 3M, max_bitrate: 4M}
        audio: {sample_rate: 16000, channels: 2, bitrate: 24k}
        timers: {request_timeout_s: 2.5, reconnect_give_up_s: 30, token_renew_before_s: 20}
        ice: {servers: [{urls: [stun:a, stun:b]}]}
        """.replace("        ", "")
    )
    profile = cfg.engine_profile("ws://10.0.0.2:8790/ws")
    assert profile.server_url == "ws://10.0.0.2:8790/ws" and profile.app_id == "home"
    assert (profile.app_secret, profile.token, profile.token_ttl_s) == ("abc", None, 600)
    assert profile.scenario is Scenario.SURVEILLANCE
    assert profile.video == VideoConfig(1920, 1080, 15.0, 3_000_000, 150_000, 4_000_000, 4.0)
    assert (profile.audio.sample_rate, profile.audio.channels, profile.audio.bitrate) == (
        16000,
        2,
        24000,
    )
    assert profile.timers == dataclasses.replace(
        EngineTimers(), request_timeout=2.5, reconnect_give_up=30.0, token_renew_before=20.0
    )
    assert profile.ice_servers == [
        {"urls": ["stun:a", "stun:b"], "username": None, "credential": None}
    ]
    assert cfg.engine_profile().server_url == "ws://127.0.0.1:8790/ws"


def test_defaults_match_the_engines() -> None:
    from edged.engine.config import AudioConfig, EngineTimers, PublishConfig, RoomConfig
    from edged.server.settings import ServerSettings

    cfg = Config()
    assert cfg.engine_profile(apps={"default": "x"}).timers == EngineTimers()
    assert cfg.audio_config() == AudioConfig()
    assert cfg.room_config() == RoomConfig(user_update=True)
    assert cfg.publish_config() == PublishConfig()
    s = cfg.server_settings(apps={"default": "x"})
    d = ServerSettings()
    assert (s.host, s.port, s.heartbeat_interval_s, s.heartbeat_timeout_s, s.dev_mode) == (
        d.host,
        d.port,
        d.heartbeat_interval_s,
        d.heartbeat_timeout_s,
        d.dev_mode,
    )


def test_embedded_server_creates_the_app_secret_the_engine_then_uses(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "server: {apps_file: state/apps.yaml}"), env={})
    settings = cfg.server_settings()
    apps_file = tmp_path / "state" / "apps.yaml"
    assert apps_file.stat().st_mode & 0o777 == 0o600
    secret = settings.apps["default"]
    assert cfg.engine_profile().app_secret == secret  # read back from the file
    assert cfg.engine_profile(apps=settings.apps).app_secret == secret
    inline = parse_config(f"room: {{app_secret: {SECRET}}}")
    assert inline.server_settings(apps={"default": "old"}).apps == {"default": SECRET}


# ---- reload --------------------------------------------------------------------------


def test_changed_sections_detects_a_room_id_change(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("one")
    text = "room: {room_id: porch}\nmqtt: {username: u, password_file: pw}\n"
    old = load_config(write(tmp_path, text), env={})
    assert changed_sections(old, load_config(write(tmp_path, text), env={})) == set()
    new = load_config(write(tmp_path, text.replace("porch", "garden")), env={})
    assert changed_sections(old, new) == {"room"}
    (tmp_path / "pw").write_text("two")
    assert changed_sections(old, load_config(write(tmp_path, text), env={})) == {"mqtt"}


# ---- check-config --------------------------------------------------------------------


def test_check_config_command_prints_ok_or_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path, "room: {room_id: porch}", "good.yaml")
    assert check_config_command(str(good)) == 0
    out = capsys.readouterr()
    assert out.out.startswith(f"ok: {good}: device ") and "room porch" in out.out
    bad = write(tmp_path, "room:\n  romo_id: x\nvideo:\n  fps: 0\n", "bad.yaml")
    assert check_config_command(str(bad)) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        f"{bad}, line 2, column 3: room.romo_id: unknown key (did you mean 'room_id'?)"
        " [1007005 CONFIG_UNKNOWN_KEY]"
    )
    assert err[1].startswith(f"{bad}, line 4, column 8: video.fps: ")
    assert err[2] == f"{bad}: invalid, 2 problems"
    assert check_config(good) == [] and len(check_config(bad)) == 2


def test_importing_the_config_does_not_import_the_media_stack() -> None:
    code = (
        "import sys, edged.config.load; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiortc', 'av', 'aiohttp')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- fuzz ----------------------------------------------------------------------------

SECTIONS = {name: list(f.annotation.model_fields) for name, f in Config.model_fields.items()}  # type: ignore[union-attr]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["auto", "all", "none", "3.1.1", "800k", "ws://h:1/ws", "stun:x", ""]),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
sections = st.dictionaries(
    st.sampled_from(list(SECTIONS)),
    st.one_of(
        values,
        st.sampled_from(list(SECTIONS)).flatmap(
            lambda s: st.dictionaries(st.sampled_from(SECTIONS[s] + ["typo"]), values, max_size=6)
        ),
    ),
    max_size=6,
)


def _load_or_refuse(text: str) -> None:
    try:
        cfg = parse_config(text, env={})
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p.key, str) for p in exc.problems)
        assert exc.code in {p.code for p in exc.problems}
    else:
        assert isinstance(cfg, Config)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sections)
def test_fuzz_structured_documents_load_or_raise_config_error(doc: dict[str, Any]) -> None:
    _load_or_refuse(yaml.safe_dump(doc))


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("room:video: -[]{}&*!|>'\"#,?\n\t abc15.%@`~")), max_size=80
    )
)
def test_fuzz_yaml_ish_text_loads_or_raises_config_error(text: str) -> None:
    _load_or_refuse(text)


def test_the_sfu_section_reaches_the_embedded_server_with_its_secret_from_a_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "janus-secret").write_text(SECRET + "\n")
    path = write(
        tmp_path,
        """
        server:
          sfu:
            urls: [ws://10.0.0.5:8188/]
            api_secret_file: janus-secret
            relay: auto
            p2p_max_viewers: 2
        auto:
          publish:
            relay: auto
            p2p_max_viewers: 1
        """,
    )
    cfg = load_config(path)
    sfu = cfg.server_settings(apps={"default": SECRET}).sfu
    assert sfu is not None
    assert (sfu.urls, sfu.api_secret, sfu.relay, sfu.p2p_max_viewers) == (
        ["ws://10.0.0.5:8188/"],
        SECRET,
        "auto",
        2,
    )
    publish = cfg.publish_config()
    assert (publish.relay, publish.p2p_max_viewers) == ("auto", 1)
    bad = write(tmp_path, "server:\n  sfu:\n    urls: []\n    relay: sometimes\n", "bad.yaml")
    with pytest.raises(ConfigError) as refused:
        load_config(bad)
    assert [(p.key, p.line) for p in refused.value.problems] == [
        ("server.sfu.urls", 3),
        ("server.sfu.relay", 4),
    ]
    assert SECRET not in str(refused.value)


def test_the_turn_section_gives_the_embedded_server_its_shared_secret(tmp_path: Path) -> None:
    (tmp_path / "turn-secret").write_text(SECRET + "\n")
    path = write(
        tmp_path,
        """
        server:
          turn:
            urls: turn:turn.example.net:3478
            secret_file: turn-secret
            min_ttl_s: 600
        """,
    )
    turn = load_config(path).server_settings(apps={"default": SECRET}).turn
    assert turn is not None
    assert (turn.urls, turn.secret, turn.min_ttl_s) == (["turn:turn.example.net:3478"], SECRET, 600)
    for text, key in [
        ("server:\n  turn:\n    urls: [stun:x.example:3478]\n", "server.turn.urls[0]"),
        ("server:\n  turn:\n    urls: [turn:x.example:3478]\n", "server.turn"),  # no secret
    ]:
        with pytest.raises(ConfigError) as refused:
            load_config(write(tmp_path, text, "bad.yaml"))
        assert [p.key for p in refused.value.problems] == [key]


def test_whip_targets_reach_the_published_stream_with_their_tokens(tmp_path: Path) -> None:
    (tmp_path / "whip-token").write_text("bearer-of-mediamtx\n")
    path = write(
        tmp_path,
        """
        auto:
          publish:
            targets:
              - url: https://media.example.net/door/whip
                token_file: whip-token
              - url: http://10.0.0.9:8889/cam/whip
        """,
    )
    targets = load_config(path).publish_config().targets
    assert [(t.url, t.token) for t in targets] == [
        ("https://media.example.net/door/whip", "bearer-of-mediamtx"),
        ("http://10.0.0.9:8889/cam/whip", None),
    ]
    bad = "auto:\n  publish:\n    targets:\n      - url: ftp://x\n"
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, bad, "bad.yaml"))
    assert [p.key for p in refused.value.problems] == ["auto.publish.targets[0].url"]


def test_the_embedded_server_as_one_node_of_several(tmp_path: Path) -> None:
    secret = tmp_path / "cluster-secret"
    secret.write_text("nodes-share-this\n")
    secret.chmod(0o600)
    text = (
        "server:\n  apps_file: state/apps.yaml\n  host: 10.0.0.7\n  port: 8791\n"
        "  store: redis://10.0.0.2:6379/0\n"
        f"  cluster: {{node_id: door-node, secret_file: {secret}}}\n"
    )
    cluster = load_config(write(tmp_path, text), env={}).server_settings().cluster
    assert cluster is not None
    assert (cluster.store_url, cluster.node_id) == ("redis://10.0.0.2:6379/0", "door-node")
    assert (cluster.advertise_url, cluster.secret) == ("http://10.0.0.7:8791", "nodes-share-this")
    assert load_config(write(tmp_path, "server: {}"), env={}).server_settings().cluster is None
    for wrong in ("server: {store: 'redis://r:6379/0'}", "server: {store: 'mysql://db'}"):
        with pytest.raises(ConfigError) as exc:
            parse_config(wrong)
        assert [p[0] for p in problems(exc)] == ["server.store"], wrong


def test_the_trusted_proxies_reach_the_embedded_server(tmp_path: Path) -> None:
    text = "server:\n  trusted_proxies: [10.0.0.5, 'fd00::/8']\n"
    settings = load_config(write(tmp_path, text), env={}).server_settings(apps={"default": "x"})
    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.5/32"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert (
        load_config(write(tmp_path, "server: {}"), env={})
        .server_settings(apps={"default": "x"})
        .trusted_proxies
        == ()
    )
    with pytest.raises(ConfigError) as exc:
        parse_config("server: {trusted_proxies: [10.0.0.5, 10.0.0.300]}")
    assert [p[0] for p in problems(exc)] == ["server.trusted_proxies[1]"]
