"""The texts ``edged --help`` and each sub-command's ``--help`` print: plain paragraphs
that say what a command does, its defaults and where its secrets come from."""

DESCRIPTION = """\
edged makes a board with a camera and a microphone a headless participant of
video-call rooms, commanded over MQTT, and runs the room server those rooms
live on."""

EPILOG = """\
files:
  /etc/edged/edged.yaml     the daemon's configuration (run, check-config)
  /var/lib/edged/apps.yaml  the room server's app ids and secrets (as root;
                            otherwise ~/.local/state/edged/apps.yaml)

environment:
  EDGED_APPS_FILE   the apps file to use instead of the default
  EDGED_APP_SECRET  the app secret edged token signs with

Run "edged COMMAND --help" for a command's options and defaults."""

RUN_DESCRIPTION = """\
Run the daemon (what the edged systemd service starts): it reads its
configuration file, logs into its room, publishes the camera and microphone,
plays what it is told to and takes commands over MQTT. SIGHUP reads the file
again; SIGTERM or Ctrl-C logs out and exits.

Secrets (app secret, token, MQTT password, TURN credentials) are given in the
configuration file: inline, from a *_file or from a *_env variable. With the
embedded room server and no credentials there, the app secret is read from
the server's apps file (server.apps_file; default: $EDGED_APPS_FILE if set,
else /var/lib/edged/apps.yaml as root, else ~/.local/state/edged/apps.yaml).
The log level is the file's logging.level unless --log-level is given."""

CHECK_DESCRIPTION = """\
Check a configuration file without starting anything. Prints
"ok: FILE: summary" and any warnings and exits 0, or prints every problem
with its line and exits 2. The secrets the file names are read to check
them, and never printed."""

DEVICES_DESCRIPTION = """\
List the cameras (camera modules, USB cameras) and the sound cards (ALSA)
this machine has, with the device names the configuration file accepts, and the
board it is with the video defaults that board gets (docs/configuration.md)."""

SERVER_DESCRIPTION = """\
Run the room server alone (what the edged-server systemd service starts;
edged run embeds one by default). Clients connect to ws://HOST:PORT/ws, the web client
is at http://HOST:PORT/ and GET /healthz reports rooms, users and streams.
At start it prints a join link (user guest, room demo, a one-hour token).

Secrets: on first start the app named by --app gets a random secret in the
apps file, which is made readable only by its owner. The apps file is
$EDGED_APPS_FILE if set, else /var/lib/edged/apps.yaml as root, else
~/.local/state/edged/apps.yaml (under $XDG_STATE_HOME if set), or --apps FILE.
Logins need a token signed with the app's secret (edged token) unless --dev
is given. Secrets are never logged.

Relaying: with --sfu URL the server drives that Janus (its VideoRoom plugin) and
relays streams through it, so a publisher sends each stream once whatever the
audience (--relay sfu), or only past its first --p2p-max-viewers viewers (--relay
auto). Clients never talk to Janus; its API secret comes from --sfu-secret-file.

Several nodes: with --store redis://HOST:PORT/DB this server is one node of
several sharing that Redis behind any load balancer. Each room runs on one node;
a client that reaches another is carried there. The nodes share the secret in
--cluster-secret-file and reach each other at their --advertise URL. Behind a
balancer, --trusted-proxy ADDR makes the per-address limits count each client by
the balancer's X-Forwarded-For. See docs/scaling.md."""

TOKEN_DESCRIPTION = """\
Mint a login token (a JWT signed with HS256) and print it on stdout.

The app secret comes from the first of these that is given:
  --secret-file FILE  the file's contents, without surrounding whitespace
  $EDGED_APP_SECRET   the environment variable, if set and not empty
  --apps FILE         the entry for --app in the apps file; by default
                      $EDGED_APPS_FILE if set, else /var/lib/edged/apps.yaml
                      as root, else ~/.local/state/edged/apps.yaml (under
                      $XDG_STATE_HOME if set)"""
