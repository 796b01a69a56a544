"""The edged command line: one program, one sub-command per job."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .cli_help import (
    CHECK_DESCRIPTION,
    DESCRIPTION,
    DEVICES_DESCRIPTION,
    EPILOG,
    RUN_DESCRIPTION,
    SERVER_DESCRIPTION,
    TOKEN_DESCRIPTION,
)
from .errors import EdgedError, ErrorCode
from .logs import setup_plain_logging
from .userfiles import check_apps_file, check_config_file, read_secret_file

DEFAULT_CONFIG = "/etc/edged/edged.yaml"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8790
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Plain paragraphs as written, options in a wide enough column."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"not a port number (1 to 65535): {port}")
    return port


def _network(text: str) -> str:
    from .server.forwarded import trusted_networks

    try:
        trusted_networks([text])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


class _Refused(Exception):
    """A plain error message for the user, one that has no error code of its own."""


def _server(args: argparse.Namespace) -> int:
    from .server.apps import load_apps
    from .server.cluster import cluster_settings
    from .server.forwarded import trusted_networks
    from .server.run import run_server
    from .server.settings import ServerSettings, SfuSettings
    from .server.tls import certificate_files, fingerprint
    from .server.turn import TurnSettings
    from .server.webapp import guest_join_url, page_url

    apps_path = Path(args.apps)
    if os.path.exists(apps_path):
        check_apps_file(apps_path)
    try:
        apps = load_apps(apps_path, create_app=args.app)
    except OSError as exc:
        raise EdgedError(
            ErrorCode.SECRET_UNAVAILABLE, f"cannot create apps file {apps_path}: {exc.strerror}"
        ) from None
    if args.relay not in (None, "p2p") and not args.sfu:
        raise _Refused(f"--relay {args.relay} needs an SFU: give --sfu URL")
    sfu = None
    if args.sfu:
        secret = read_secret_file(Path(args.sfu_secret_file)) if args.sfu_secret_file else None
        relay = args.relay or "sfu"
        sfu = SfuSettings(args.sfu, secret, relay=relay, p2p_max_viewers=args.p2p_max_viewers)
    turn = None
    if args.turn:
        if not args.turn_secret_file:
            raise _Refused("--turn needs the TURN server's shared secret: give --turn-secret-file")
        turn_secret = read_secret_file(Path(args.turn_secret_file))
        turn = TurnSettings(args.turn, turn_secret, min_ttl_s=args.turn_min_ttl)
    cert, key = certificate_files(
        args.tls_cert, args.tls_key, args.self_signed, apps_path.parent, args.host
    )
    secret_file = args.cluster_secret_file
    cluster = cluster_settings(
        args.store,
        host=args.host,
        port=args.port,
        https=cert is not None,
        secret=read_secret_file(Path(secret_file)) if secret_file else None,
        node_id=args.node_id,
        advertise_url=args.advertise,
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
        sfu=sfu,
        turn=turn,
        cluster=cluster,
        trusted_proxies=trusted_networks(args.trusted_proxy),
    )
    base = page_url(args.host, args.port, https=cert is not None)
    ws = base.replace("http", "ws", 1)
    print(f"edged room server on {ws}/ws (apps file {args.apps})", file=sys.stderr)
    if cert is not None:
        print(f"HTTPS certificate {cert}, SHA-256 {fingerprint(cert)}", file=sys.stderr)
    link = guest_join_url(base, args.app, apps[args.app], "demo", 3600)
    print(f"web page: {base}/\njoin link (user guest, token valid 1 h): {link}", file=sys.stderr)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_server(settings))
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        reason = os.strerror(exc.errno).lower()
        raise _Refused(f"cannot listen on {args.host}:{args.port}: {reason}") from None
    return 0


def _run(args: argparse.Namespace) -> int:
    from .config.load import load_config
    from .daemon.service import run_daemon
    from .daemon.systemd import setup_logging

    path = Path(args.config)
    check_config_file(path)
    config = load_config(path)
    level = args.log_level or config.logging.level
    if config.logging.journald is False:
        setup_plain_logging(level)
    else:
        setup_logging(level)
    logging.getLogger().setLevel(level)
    print(f"edged {__version__}: {config.summary()}", file=sys.stderr)
    return asyncio.run(run_daemon(path, config))


def _check_config(args: argparse.Namespace) -> int:
    from .config.load import check_config_command

    check_config_file(Path(args.file))
    return check_config_command(args.file)


def _devices(args: argparse.Namespace) -> int:
    from .media.inventory import devices_command

    return devices_command(args.json)


def _token(args: argparse.Namespace) -> int:
    from .server.apps import load_apps
    from .tokens import mint

    secret = os.environ.get("EDGED_APP_SECRET")
    if args.secret_file:
        secret = read_secret_file(Path(args.secret_file))
    if not secret:
        apps_path = Path(args.apps)
        check_apps_file(
            apps_path, " (edged server creates it; or give --secret-file FILE or $EDGED_APP_SECRET)"
        )
        apps = load_apps(apps_path)
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
            relays=args.relay or None,
        )
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .server.apps import default_apps_path
    from .server.settings import RELAY_POLICIES

    parser = argparse.ArgumentParser(
        prog="edged", description=DESCRIPTION, epilog=EPILOG, formatter_class=_Formatter
    )
    parser.add_argument("--version", action="version", version=f"edged {__version__}")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL (default: INFO; for run, the "
        "configuration file's logging.level)",
    )
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    apps_default = str(default_apps_path())

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=summary, description=description, formatter_class=_Formatter
        )

    run = command("run", "run the daemon (what the edged service starts)", RUN_DESCRIPTION)
    run.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help="the YAML configuration file (default: %(default)s)",
    )
    run.set_defaults(func=_run)

    chk = command("check-config", "check a configuration file", CHECK_DESCRIPTION)
    chk.add_argument(
        "file",
        nargs="?",
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help="the YAML configuration file (default: %(default)s)",
    )
    chk.set_defaults(func=_check_config)

    dev = command("devices", "list cameras and sound cards", DEVICES_DESCRIPTION)
    dev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    dev.set_defaults(func=_devices)

    srv = command("server", "run the room server alone", SERVER_DESCRIPTION)
    srv.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to listen on; 0.0.0.0 for every interface (default: %(default)s)",
    )
    srv.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help="TCP port (default: %(default)s)"
    )
    srv.add_argument(
        "--apps",
        default=apps_default,
        metavar="FILE",
        help="apps file (app_id: secret), created if absent (default here: %(default)s)",
    )
    srv.add_argument(
        "--app",
        default="default",
        metavar="APP",
        help="app to create in the apps file if absent (default: %(default)r)",
    )
    srv.add_argument(
        "--dev",
        action="store_true",
        help="accept logins without a token (a local test room only)",
    )
    srv.add_argument(
        "--heartbeat-interval",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds between the heartbeats clients send (default: %(default)g)",
    )
    srv.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds without a heartbeat before a client is dropped (default: %(default)g)",
    )
    srv.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="serve HTTPS with this PEM certificate (default: plain HTTP)",
    )
    srv.add_argument("--tls-key", metavar="FILE", help="the certificate's private key, PEM")
    srv.add_argument(
        "--self-signed",
        action="store_true",
        help="serve HTTPS with a certificate made on first start in tls/ next to the apps file",
    )
    srv.add_argument(
        "--sfu",
        action="append",
        default=[],
        metavar="URL",
        help="relay streams through this Janus (its WebSocket API, e.g. ws://10.0.0.5:8188/;"
        " repeat for several: each room uses one of them)",
    )
    srv.add_argument(
        "--sfu-secret-file",
        metavar="FILE",
        help="the Janus API secret (janus.jcfg's api_secret), read from FILE",
    )
    srv.add_argument(
        "--relay",
        choices=RELAY_POLICIES,
        help="which viewers go through Janus: sfu (all), auto (those past"
        " --p2p-max-viewers), p2p (none) (default: sfu with --sfu, else p2p)",
    )
    srv.add_argument(
        "--p2p-max-viewers",
        type=int,
        default=4,
        metavar="N",
        help="with --relay auto: viewers of a stream played peer to peer (default: %(default)s)",
    )
    srv.add_argument(
        "--turn",
        action="append",
        default=[],
        metavar="URL",
        help="hand every client time-limited credentials for this TURN server (e.g."
        " turn:turn.example.net:3478; repeat for more URLs of servers sharing the secret)",
    )
    srv.add_argument(
        "--turn-secret-file",
        metavar="FILE",
        help="the TURN servers' shared secret (coturn's static-auth-secret), read from FILE",
    )
    srv.add_argument(
        "--turn-min-ttl",
        type=float,
        default=3600.0,
        metavar="S",
        help="TURN credentials last as long as the client's token, and at least S seconds"
        " (default: %(default)g)",
    )
    srv.add_argument(
        "--store",
        default="memory",
        metavar="URL",
        help="where rooms are shared: memory (this process alone) or redis://HOST:PORT/DB,"
        " which makes this server one node of several behind a load balancer"
        " (default: %(default)s)",
    )
    srv.add_argument(
        "--node-id",
        metavar="ID",
        help="this node's name among the nodes (default: HOSTNAME-PORT)",
    )
    srv.add_argument(
        "--advertise",
        metavar="URL",
        help="the base URL other nodes reach this one at (default: http://HOST:PORT,"
        " with the host name when listening on every address)",
    )
    srv.add_argument(
        "--cluster-secret-file",
        metavar="FILE",
        help="with --store redis://: the secret every node shares, read from FILE",
    )
    srv.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        type=_network,
        metavar="ADDR",
        help="a load balancer or proxy (address or network, e.g. 10.0.0.0/24) whose"
        " X-Forwarded-For names the client, for the per-address limits; repeat for more"
        " (default: none, the header is ignored)",
    )
    srv.set_defaults(func=_server)

    tok = command("token", "mint a login token", TOKEN_DESCRIPTION)
    tok.add_argument("--user", required=True, metavar="ID", help="user id (required)")
    tok.add_argument(
        "--app", default="default", metavar="APP", help="app id (default: %(default)r)"
    )
    tok.add_argument(
        "--ttl",
        type=float,
        default=3600.0,
        metavar="S",
        help="seconds the token is valid (default: %(default)g)",
    )
    tok.add_argument("--room", metavar="ROOM", help="valid for this room only (default: any room)")
    tok.add_argument("--no-publish", action="store_true", help="deny the publish privilege")
    tok.add_argument(
        "--stream",
        action="append",
        metavar="ID",
        help="may publish only this stream id; repeat for more (default: any)",
    )
    tok.add_argument(
        "--relay",
        action="append",
        choices=("p2p", "sfu", "auto"),
        help="may ask only for this relay policy on publish; repeat for more (default: any;"
        " the server's own policy always applies)",
    )
    tok.add_argument(
        "--apps",
        default=apps_default,
        metavar="FILE",
        help="apps file to read the secret from (default here: %(default)s)",
    )
    tok.add_argument(
        "--secret-file",
        metavar="FILE",
        help="file holding the app secret; wins over $EDGED_APP_SECRET and --apps",
    )
    tok.set_defaults(func=_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_plain_logging(args.log_level or "INFO")
    try:
        return int(args.func(args))
    except EdgedError as exc:
        print(f"edged: error {int(exc.code)} {exc.code.name}: {exc.message}", file=sys.stderr)
        return 2
    except _Refused as exc:
        print(f"edged: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
