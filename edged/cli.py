"""The ``edged`` command line: one program, one sub-command per job."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path

from . import __version__
from .errors import EdgedError, ErrorCode
from .logs import setup_plain_logging

DEFAULT_CONFIG = "/etc/edged/edged.yaml"


def _server(args: argparse.Namespace) -> int:
    from .server.app import run_server
    from .server.apps import load_apps
    from .server.settings import ServerSettings
    from .server.tls import certificate_files, fingerprint
    from .server.webapp import guest_join_url, page_url

    apps = load_apps(Path(args.apps), create_app=args.app)
    cert, key = certificate_files(
        args.tls_cert, args.tls_key, args.self_signed, Path(args.apps).parent, args.host
    )
    settings = ServerSettings(
        apps=apps,
        host=args.host,
        port=args.port,
        dev_mode=args.dev,
        heartbeat_interval_s=args.heartbeat_interval,
        heartbeat_timeout_s=args.heartbeat_timeout,
        cert_file=cert,
        key_file=key,
    )
    base = page_url(args.host, args.port, https=cert is not None)
    ws = base.replace("http", "ws", 1)
    print(f"edged room server on {ws}/ws (apps file {args.apps})", file=sys.stderr)
    if cert is not None:
        print(f"HTTPS certificate {cert}, SHA-256 {fingerprint(cert)}", file=sys.stderr)
    link = guest_join_url(base, args.app, apps[args.app], "demo", 3600)
    print(f"web page: {base}/\njoin link (user guest, token valid 1 h): {link}", file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_server(settings))
    return 0


def _run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .daemon.service import run_daemon
    from .daemon.systemd import setup_logging

    path = Path(args.config)
    config = load_config(path)
    if config.logging.journald is False:
        setup_plain_logging(config.logging.level)
    else:
        setup_logging(config.logging.level)
    print(f"edged {__version__}: {config.summary()}", file=sys.stderr)
    return asyncio.run(run_daemon(path, config))


def _check_config(args: argparse.Namespace) -> int:
    from .config import check_config_command

    return check_config_command(args.file)


def _devices(args: argparse.Namespace) -> int:
    from .media.devices import devices_command

    return devices_command(args.json)


def _token(args: argparse.Namespace) -> int:
    from .server.apps import load_apps
    from .tokens import mint

    secret = os.environ.get("EDGED_APP_SECRET")
    if args.secret_file:
        try:
            secret = Path(args.secret_file).read_text().strip()
        except OSError as exc:
            raise EdgedError(ErrorCode.SECRET_UNAVAILABLE, str(exc)) from None
    if not secret:
        apps = load_apps(Path(args.apps))
        if args.app not in apps:
            raise EdgedError(ErrorCode.APP_UNKNOWN, f"no app {args.app!r} in {args.apps}")
        secret = apps[args.app]
    print(
        mint(
            secret,
            args.app,
            args.user,
            args.ttl,
            room_id=args.room,
            can_publish=not args.no_publish,
            stream_ids=args.stream or None,
        )
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .server.apps import default_apps_path

    parser = argparse.ArgumentParser(prog="edged", description=__doc__)
    parser.add_argument("--version", action="version", version=f"edged {__version__}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True)
    apps_default = str(default_apps_path())

    run = sub.add_parser("run", help="run the daemon (what the systemd unit starts)")
    run.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML file ({DEFAULT_CONFIG})")
    run.set_defaults(func=_run)

    chk = sub.add_parser("check-config", help="validate a configuration file")
    chk.add_argument("file", nargs="?", default=DEFAULT_CONFIG)
    chk.set_defaults(func=_check_config)

    dev = sub.add_parser("devices", help="list cameras and sound cards")
    dev.add_argument("--json", action="store_true", help="as JSON")
    dev.set_defaults(func=_devices)

    srv = sub.add_parser("server", help="run the room server")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on")
    srv.add_argument("--port", type=int, default=8790)
    srv.add_argument("--apps", default=apps_default, help="apps file (app_id: secret)")
    srv.add_argument("--app", default="default", help="app to create in the apps file if absent")
    srv.add_argument("--dev", action="store_true", help="accept logins without a token")
    srv.add_argument("--heartbeat-interval", type=float, default=10.0, metavar="S")
    srv.add_argument("--heartbeat-timeout", type=float, default=30.0, metavar="S")
    srv.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    srv.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    srv.add_argument(
        "--self-signed",
        action="store_true",
        help="serve HTTPS with a certificate made on first start next to the apps file",
    )
    srv.set_defaults(func=_server)

    tok = sub.add_parser("token", help="mint a token")
    tok.add_argument("--app", default="default", help="app id")
    tok.add_argument("--user", required=True, help="user id")
    tok.add_argument("--ttl", type=float, default=3600.0, help="seconds until expiry")
    tok.add_argument("--room", help="restrict to this room")
    tok.add_argument("--no-publish", action="store_true", help="deny the publish privilege")
    tok.add_argument("--stream", action="append", help="allow only this stream id (repeat)")
    tok.add_argument("--apps", default=apps_default, help="apps file to read the secret from")
    tok.add_argument("--secret-file", help="file holding the app secret")
    tok.set_defaults(func=_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_plain_logging(args.log_level)
    try:
        return int(args.func(args))
    except EdgedError as exc:
        print(f"edged: error {int(exc.code)} {exc.code.name}: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
