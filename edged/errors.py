"""The error-code table of edged: every code, its meaning and what to do about it.

Codes are stable numbers grouped by area (product contract, "Error codes"):

* 1000xxx common (protocol, limits, internal)
* 1001xxx engine
* 1002xxx room and tokens
* 1003xxx publisher
* 1004xxx player
* 1005xxx devices and media
* 1006xxx control channel (MQTT)
* 1007xxx configuration

Where the original SDK had a code for the same situation, its number is kept.
``python -m edged.errors`` prints the table as Markdown (``docs/errors.md``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import IntEnum


class ErrorCode(IntEnum):
    """Every error code edged reports. Numbers never change once released."""

    # 1000xxx common
    INVALID_PARAMETER = 1000001
    NOT_LOGGED_IN = 1000002
    MALFORMED_MESSAGE = 1000003
    UNKNOWN_MESSAGE = 1000004
    MESSAGE_TOO_LARGE = 1000005
    RATE_LIMITED = 1000006
    TOO_MANY_CONNECTIONS = 1000007
    SLOW_CONSUMER = 1000008
    REQUEST_TIMEOUT = 1000009
    PROTOCOL_VERSION_UNSUPPORTED = 1000010
    OUT_OF_ORDER = 1000011
    SERVER_SHUTTING_DOWN = 1000012
    NOT_SUPPORTED = 1000013
    INTERNAL_ERROR = 1000099

    # 1001xxx engine
    ENGINE_NOT_CREATED = 1001001
    APP_ID_INVALID = 1001002
    CREDENTIALS_MISSING = 1001003
    SCENARIO_INVALID = 1001004
    ENGINE_DESTROYED = 1001005
    MEDIA_STACK_UNAVAILABLE = 1001006
    AIORTC_UNSUPPORTED = 1001007

    # 1002xxx room and tokens
    ROOM_COUNT_EXCEEDED = 1002001
    ROOM_ID_INVALID = 1002002
    USER_ID_INVALID = 1002005
    USER_NAME_INVALID = 1002008
    CONNECT_FAILED = 1002030
    LOGIN_TIMEOUT = 1002031
    ALREADY_LOGGED_IN = 1002032
    AUTHENTICATION_FAILED = 1002033
    ROOM_FULL = 1002034
    ROOM_STATE_UNAVAILABLE = 1002035
    APP_UNKNOWN = 1002037
    TOKEN_APP_MISMATCH = 1002038
    TOKEN_USER_MISMATCH = 1002039
    TOKEN_ROOM_MISMATCH = 1002040
    TOKEN_NO_LOGIN_PRIVILEGE = 1002041
    TOKEN_EXPIRED = 1002042
    TOKEN_MISSING = 1002043
    ROOM_MESSAGE_INVALID = 1002044
    USER_NOT_IN_ROOM = 1002045
    KICKED_OUT = 1002050
    NETWORK_INTERRUPTED = 1002051
    KICKED_OUT_BY_SERVER = 1002052
    RECONNECT_GAVE_UP = 1002053
    RESUME_FAILED = 1002054
    HEARTBEAT_TIMEOUT = 1002055
    TOKEN_EXPIRED_KICKED_OUT = 1002056
    LOGOUT_FAILED = 1002057

    # 1003xxx publisher
    PUBLISH_FAILED = 1003001
    STREAM_ID_INVALID = 1003002
    NO_PUBLISH_PRIVILEGE = 1003010
    STREAM_ID_NOT_ALLOWED = 1003011
    RELAY_NOT_ALLOWED = 1003012
    PUBLISH_NETWORK_INTERRUPTED = 1003023
    PUBLISH_RELAY_LOST = 1003024
    STREAM_ID_ALREADY_PUBLISHED = 1003028
    STREAM_EXTRA_INFO_TOO_LONG = 1003029
    ALREADY_PUBLISHING = 1003030
    NOT_PUBLISHING = 1003031
    ENCODER_FAILED = 1003040
    VIEWER_CONNECTION_FAILED = 1003050

    # 1004xxx player
    PLAYER_COUNT_EXCEEDED = 1004001
    STREAM_NOT_FOUND = 1004002
    VIEWER_LIMIT_REACHED = 1004020
    ALREADY_PLAYING = 1004021
    NOT_PLAYING = 1004022
    PLAY_CONNECTION_FAILED = 1004030
    PLAY_NETWORK_INTERRUPTED = 1004031
    DECODER_FAILED = 1004040
    LINK_NOT_FOUND = 1004050
    RELAY_UNAVAILABLE = 1004051
    RELAY_REFUSED = 1004052
    TURN_UNAVAILABLE = 1004053

    # 1005xxx devices and media
    CAMERA_NOT_FOUND = 1005001
    CAMERA_OPEN_FAILED = 1005002
    CAMERA_LOST = 1005003
    PICAMERA2_UNAVAILABLE = 1005004
    CAMERA_FORMAT_UNSUPPORTED = 1005005
    MICROPHONE_NOT_FOUND = 1005010
    MICROPHONE_OPEN_FAILED = 1005011
    MICROPHONE_LOST = 1005012
    SPEAKER_NOT_FOUND = 1005020
    SPEAKER_OPEN_FAILED = 1005021
    SPEAKER_LOST = 1005022
    ECHO_CANCELLER_UNAVAILABLE = 1005023
    MEDIA_FILE_NOT_FOUND = 1005030
    MEDIA_FILE_UNSUPPORTED = 1005031
    HARDWARE_ENCODER_UNAVAILABLE = 1005040
    ENCODER_OPEN_FAILED = 1005041
    RECORDER_FAILED = 1005050
    SNAPSHOT_FAILED = 1005051

    # 1006xxx control channel (MQTT)
    BROKER_UNREACHABLE = 1006001
    BROKER_AUTH_FAILED = 1006002
    BROKER_TLS_FAILED = 1006003
    BROKER_CONNECTION_LOST = 1006004
    COMMAND_MALFORMED = 1006010
    COMMAND_UNKNOWN = 1006011
    COMMAND_INVALID_ARGUMENTS = 1006012
    COMMAND_PAYLOAD_TOO_LARGE = 1006013
    COMMAND_RATE_LIMITED = 1006014

    # 1007xxx configuration
    CONFIG_FILE_NOT_FOUND = 1007001
    CONFIG_UNREADABLE = 1007002
    CONFIG_SYNTAX_ERROR = 1007003
    CONFIG_INVALID_VALUE = 1007004
    CONFIG_UNKNOWN_KEY = 1007005
    CONFIG_MISSING_KEY = 1007006
    SECRET_UNAVAILABLE = 1007007
    CONFIG_RELOAD_FAILED = 1007008
    TLS_CERTIFICATE_INVALID = 1007009


AREAS: dict[int, str] = {
    1000: "Common",
    1001: "Engine",
    1002: "Room and tokens",
    1003: "Publisher",
    1004: "Player",
    1005: "Devices and media",
    1006: "Control channel (MQTT)",
    1007: "Configuration",
}


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What one error code means and what the user should do about it."""

    code: ErrorCode
    meaning: str
    remedy: str

    @property
    def area(self) -> str:
        return AREAS[int(self.code) // 1000]


E = ErrorCode
_TABLE: dict[ErrorCode, tuple[str, str]] = {
    E.INVALID_PARAMETER: (
        "A call or message argument is missing or out of range.",
        "Check the argument against the API or protocol documentation.",
    ),
    E.NOT_LOGGED_IN: (
        "The operation needs a logged-in room session.",
        "Call login_room first and wait for room state CONNECTED.",
    ),
    E.MALFORMED_MESSAGE: (
        "A signaling message is not valid JSON or does not match its schema.",
        "Fix the client; see docs/protocol.md for the message's fields.",
    ),
    E.UNKNOWN_MESSAGE: (
        "A signaling message has an unknown type.",
        "Use a message type listed in docs/protocol.md; upgrade client or server.",
    ),
    E.MESSAGE_TOO_LARGE: (
        "A signaling message is over the server's size limit.",
        "Send smaller messages (large SDP: fewer codecs; extra info: shorten it).",
    ),
    E.RATE_LIMITED: (
        "Too many messages or connections from this connection or address.",
        "Slow down; the message was dropped and may be sent again later.",
    ),
    E.TOO_MANY_CONNECTIONS: (
        "The server or this address has reached its connection limit.",
        "Close unused connections or raise the server's limits.",
    ),
    E.SLOW_CONSUMER: (
        "The client read its messages too slowly and its queue overflowed.",
        "Reconnect (resume); check the client's network and CPU load.",
    ),
    E.REQUEST_TIMEOUT: (
        "The other side did not answer a request in time.",
        "Retry; check the network path to the room server.",
    ),
    E.PROTOCOL_VERSION_UNSUPPORTED: (
        "The client speaks a protocol version the server does not support.",
        "Upgrade the older of client and server.",
    ),
    E.OUT_OF_ORDER: (
        "A message arrived in a state where it is not allowed (e.g. login twice).",
        "Follow the message order in docs/protocol.md.",
    ),
    E.SERVER_SHUTTING_DOWN: (
        "The room server is stopping.",
        "Nothing: the client reconnects by itself when the server is back.",
    ),
    E.NOT_SUPPORTED: (
        "The operation is not supported on this platform or build.",
        "Check the documentation for the platform's features.",
    ),
    E.INTERNAL_ERROR: (
        "An unexpected internal error.",
        "Report it with the log around the time it happened.",
    ),
    E.ENGINE_NOT_CREATED: (
        "The engine has not been created.",
        "Create the engine before calling it.",
    ),
    E.APP_ID_INVALID: (
        "The app id is empty or malformed.",
        "Use the app id configured on the room server.",
    ),
    E.CREDENTIALS_MISSING: (
        "Neither a token nor an app secret to mint one was given.",
        "Configure a token, or the app secret on a trusted device.",
    ),
    E.SCENARIO_INVALID: (
        "The scenario is not one of the known scenarios.",
        "Use a scenario listed in docs/api.md.",
    ),
    E.ENGINE_DESTROYED: (
        "The engine was destroyed; no call is possible on it.",
        "Create a new engine.",
    ),
    E.MEDIA_STACK_UNAVAILABLE: (
        "aiortc or PyAV is not installed or failed to import.",
        "Install python3-aiortc and python3-av (or pip install 'edged[media]').",
    ),
    E.AIORTC_UNSUPPORTED: (
        "The installed aiortc lacks an internal edged relies on.",
        "Install an aiortc version listed as supported in the README.",
    ),
    E.ROOM_COUNT_EXCEEDED: (
        "The engine is already logged into a room.",
        "Log out of the current room first.",
    ),
    E.ROOM_ID_INVALID: (
        "The room id is empty, too long or has characters outside [A-Za-z0-9_.-].",
        "Use 1 to 128 characters from [A-Za-z0-9_.-].",
    ),
    E.USER_ID_INVALID: (
        "The user id is empty, too long or has characters outside [A-Za-z0-9_.-].",
        "Use 1 to 64 characters from [A-Za-z0-9_.-]; the empty user is refused.",
    ),
    E.USER_NAME_INVALID: (
        "The user name is too long.",
        "Use at most 256 characters.",
    ),
    E.CONNECT_FAILED: (
        "The room server could not be reached.",
        "Check the server URL and the network; the engine retries by itself.",
    ),
    E.LOGIN_TIMEOUT: (
        "The room server did not answer the login in time.",
        "Check the server's health and the network; retry.",
    ),
    E.ALREADY_LOGGED_IN: (
        "This connection is already logged in.",
        "Log out before logging in again on the same connection.",
    ),
    E.AUTHENTICATION_FAILED: (
        "The token is malformed or its signature does not match the app secret.",
        "Mint a new token with the app's current secret.",
    ),
    E.ROOM_FULL: (
        "The room has reached its member limit.",
        "Try later, or raise the room's member limit on the server.",
    ),
    E.ROOM_STATE_UNAVAILABLE: (
        "The room server's shared room state (Redis, with several nodes) cannot be reached:"
        " new logins are refused; sessions already running go on.",
        "Retry (the engine does, with backoff); check Redis and the node's --store URL.",
    ),
    E.APP_UNKNOWN: (
        "The room server has no app with this app id.",
        "Use an app id configured on the server (edged server --app).",
    ),
    E.TOKEN_APP_MISMATCH: (
        "The token was issued for another app.",
        "Mint a token for this app.",
    ),
    E.TOKEN_USER_MISMATCH: (
        "The token was issued for another user id.",
        "Mint a token for the user id that logs in.",
    ),
    E.TOKEN_ROOM_MISMATCH: (
        "The token is restricted to another room.",
        "Mint a token for this room, or one without a room restriction.",
    ),
    E.TOKEN_NO_LOGIN_PRIVILEGE: (
        "The token does not grant the login privilege.",
        "Mint a token with the login privilege.",
    ),
    E.TOKEN_EXPIRED: (
        "The token has expired.",
        "Mint a new token; renew tokens before they expire.",
    ),
    E.TOKEN_MISSING: (
        "No token was given and the server is not in development mode.",
        "Pass a token minted with the app secret (edged token).",
    ),
    E.ROOM_MESSAGE_INVALID: (
        "A broadcast or custom message is empty or too long.",
        "Send 1 to 1024 characters.",
    ),
    E.USER_NOT_IN_ROOM: (
        "A custom message names users who are not in the room.",
        "Send only to users listed in the room.",
    ),
    E.KICKED_OUT: (
        "The same user id logged in elsewhere, which ended this session.",
        "Use a distinct user id per device or browser.",
    ),
    E.NETWORK_INTERRUPTED: (
        "The connection to the room server was lost; reconnecting.",
        "Nothing: wait for RECONNECTED or RECONNECT_FAILED.",
    ),
    E.KICKED_OUT_BY_SERVER: (
        "The server ended the session (abuse limits or shutdown of the session).",
        "Check the server log; log in again.",
    ),
    E.RECONNECT_GAVE_UP: (
        "Reconnecting did not succeed within the give-up time.",
        "Check the network and server; log in again.",
    ),
    E.RESUME_FAILED: (
        "The session could not be resumed (unknown or expired resume token).",
        "Nothing: the engine logs in afresh and the others see a new login.",
    ),
    E.HEARTBEAT_TIMEOUT: (
        "The session sent no heartbeat within the timeout and was removed.",
        "Check the network; the engine logs in again by itself.",
    ),
    E.TOKEN_EXPIRED_KICKED_OUT: (
        "The session's token expired without renewal.",
        "Renew the token when room_token_will_expire fires.",
    ),
    E.LOGOUT_FAILED: (
        "The logout could not be confirmed by the server.",
        "Nothing: the server removes the session after the heartbeat timeout.",
    ),
    E.PUBLISH_FAILED: (
        "Publishing failed for a reason not covered by another code.",
        "Check the log; retry publishing.",
    ),
    E.STREAM_ID_INVALID: (
        "The stream id is empty, too long or has characters outside [A-Za-z0-9_.-].",
        "Use 1 to 128 characters from [A-Za-z0-9_.-].",
    ),
    E.NO_PUBLISH_PRIVILEGE: (
        "The token does not grant the publish privilege.",
        "Mint a token with the publish privilege.",
    ),
    E.STREAM_ID_NOT_ALLOWED: (
        "The token restricts the stream ids this user may publish.",
        "Publish one of the token's stream ids, or mint a token for this one.",
    ),
    E.RELAY_NOT_ALLOWED: (
        "The token restricts the relay policies this user may ask for on publish.",
        "Publish without a relay policy (the server's), ask one the token allows, or mint "
        "a token that allows it.",
    ),
    E.PUBLISH_NETWORK_INTERRUPTED: (
        "Publishing was interrupted by a network loss; retrying.",
        "Nothing: wait for PUBLISHING again.",
    ),
    E.PUBLISH_RELAY_LOST: (
        "The stream's link to the room's SFU (Janus) was lost or refused: its relayed "
        "viewers get nothing until it is back (peer-to-peer viewers still do).",
        "Nothing: the link opens again with the next relayed viewer; if it persists, check "
        "the room server's Janus (docs/scaling.md).",
    ),
    E.STREAM_ID_ALREADY_PUBLISHED: (
        "Another publisher already publishes this stream id in this app.",
        "Use another stream id.",
    ),
    E.STREAM_EXTRA_INFO_TOO_LONG: (
        "The stream's extra info is too long.",
        "Use at most 1024 characters.",
    ),
    E.ALREADY_PUBLISHING: (
        "This engine already publishes this stream id.",
        "Stop publishing it first, or use another stream id.",
    ),
    E.NOT_PUBLISHING: (
        "This session does not publish that stream id.",
        "Use a stream id this session published.",
    ),
    E.ENCODER_FAILED: (
        "The video or audio encoder failed.",
        "Check the log; lower resolution or bitrate; report if it persists.",
    ),
    E.VIEWER_CONNECTION_FAILED: (
        "The media connection to one viewer failed.",
        "Check firewalls between the peers; configure a TURN server for other networks.",
    ),
    E.PLAYER_COUNT_EXCEEDED: (
        "This engine plays as many streams as it may.",
        "Stop playing another stream first.",
    ),
    E.STREAM_NOT_FOUND: (
        "The stream does not exist in this room (yet).",
        "Nothing: the player waits in PLAY_REQUESTING until it appears.",
    ),
    E.VIEWER_LIMIT_REACHED: (
        "The publisher already has as many viewers as its max_viewers allows.",
        "Try later, or raise the publisher's max_viewers.",
    ),
    E.ALREADY_PLAYING: (
        "This session already plays the stream.",
        "Stop playing it first.",
    ),
    E.NOT_PLAYING: (
        "This session does not play that stream.",
        "Use a stream id this session plays.",
    ),
    E.PLAY_CONNECTION_FAILED: (
        "The media connection to the publisher could not be established.",
        "Check firewalls between the peers; configure a TURN server for other networks.",
    ),
    E.PLAY_NETWORK_INTERRUPTED: (
        "Playing was interrupted by a network loss; retrying.",
        "Nothing: wait for PLAYING again.",
    ),
    E.DECODER_FAILED: (
        "The received media could not be decoded.",
        "Check the publisher's codec settings; report if it persists.",
    ),
    E.LINK_NOT_FOUND: (
        "A signaling message names a media link that does not exist (any more).",
        "Nothing: the link ended; a new play request builds a new one.",
    ),
    E.RELAY_UNAVAILABLE: (
        "The stream is relayed through the room's SFU (Janus), which could not be reached "
        "or was lost.",
        "Nothing: the player plays again by itself; if it persists, check the room "
        "server's Janus (docs/scaling.md).",
    ),
    E.RELAY_REFUSED: (
        "The stream is relayed through the room's SFU (Janus), which refused the link (a "
        "wrong API secret, no room for more): the room server's log has Janus's code.",
        "The player tries again by itself; the room server's operator fixes its --sfu "
        "settings or the Janus (docs/scaling.md).",
    ),
    E.TURN_UNAVAILABLE: (
        "The peer connection failed with no TURN relay to fall back on: the TURN server "
        "refused the credentials (expired, or minted with another shared secret) or could "
        "not be reached.",
        "Nothing while the player retries; if it persists, check the room server's --turn "
        "settings against the TURN server's shared secret, and that it is reachable.",
    ),
    E.CAMERA_NOT_FOUND: (
        "No camera was found.",
        "Connect and enable the camera; see `edged devices`.",
    ),
    E.CAMERA_OPEN_FAILED: (
        "The camera exists but could not be opened (busy or no permission).",
        "Stop other programs using it; check the service user is in group video.",
    ),
    E.CAMERA_LOST: (
        "The camera stopped delivering frames (unplugged, failed, or silent for "
        "video.stall_timeout_s).",
        "Nothing: edged retries with backoff; check the cable or module.",
    ),
    E.PICAMERA2_UNAVAILABLE: (
        "picamera2 is not installed (it exists only on Raspberry Pi OS).",
        "apt install python3-picamera2, or choose another video source.",
    ),
    E.CAMERA_FORMAT_UNSUPPORTED: (
        "The camera cannot deliver the requested size, rate or format.",
        "Pick one of the formats `edged devices` lists.",
    ),
    E.MICROPHONE_NOT_FOUND: (
        "The ALSA capture device was not found.",
        "Check the device name against `edged devices`.",
    ),
    E.MICROPHONE_OPEN_FAILED: (
        "The ALSA capture device could not be opened (busy or no permission).",
        "Stop other users of it; check the service user is in group audio.",
    ),
    E.MICROPHONE_LOST: (
        "The ALSA capture device failed or disappeared.",
        "Nothing: edged retries with backoff; check the device.",
    ),
    E.SPEAKER_NOT_FOUND: (
        "The ALSA playback device was not found.",
        "Check the device name against `edged devices`.",
    ),
    E.SPEAKER_OPEN_FAILED: (
        "The ALSA playback device could not be opened (busy or no permission).",
        "Stop other users of it; check the service user is in group audio.",
    ),
    E.SPEAKER_LOST: (
        "The ALSA playback device failed or disappeared.",
        "Nothing: edged retries with backoff; check the device.",
    ),
    E.ECHO_CANCELLER_UNAVAILABLE: (
        "Echo cancellation is asked for but the canceller's library is not installed"
        " (libspeexdsp for speexdsp, PipeWire's plugin for webrtc); the microphone is sent"
        " without it.",
        "apt install libspeexdsp1 (or libspa-0.2-modules), or set audio.echo_cancellation to off.",
    ),
    E.MEDIA_FILE_NOT_FOUND: (
        "The media file to play as a source does not exist.",
        "Check the path.",
    ),
    E.MEDIA_FILE_UNSUPPORTED: (
        "The media file has no stream edged can use.",
        "Use a file with H.264 or another video FFmpeg decodes.",
    ),
    E.HARDWARE_ENCODER_UNAVAILABLE: (
        "No hardware H.264 encoder; a software encoder is used instead.",
        "Nothing, unless the CPU load is too high: lower resolution or fps.",
    ),
    E.ENCODER_OPEN_FAILED: (
        "The encoder could not be opened with the requested settings.",
        "Lower resolution, fps or bitrate.",
    ),
    E.RECORDER_FAILED: (
        "The recorder could not write its file.",
        "Check the path, free space and permissions.",
    ),
    E.SNAPSHOT_FAILED: (
        "No snapshot could be made (no frame or keyframe available).",
        "Retry once the stream is publishing.",
    ),
    E.BROKER_UNREACHABLE: (
        "The MQTT broker could not be reached.",
        "Check host and port; the daemon retries with backoff.",
    ),
    E.BROKER_AUTH_FAILED: (
        "The MQTT broker refused the credentials.",
        "Check mqtt.username and the password in the secrets file.",
    ),
    E.BROKER_TLS_FAILED: (
        "The TLS handshake with the MQTT broker failed.",
        "Check the CA file and the broker's certificate name.",
    ),
    E.BROKER_CONNECTION_LOST: (
        "The connection to the MQTT broker was lost; reconnecting.",
        "Nothing: the daemon republishes its state when back.",
    ),
    E.COMMAND_MALFORMED: (
        "The command payload is not a JSON object.",
        'Send a JSON object with a "command" field; see docs/mqtt.md.',
    ),
    E.COMMAND_UNKNOWN: (
        "The command name is unknown.",
        "Use one of the commands listed in docs/mqtt.md.",
    ),
    E.COMMAND_INVALID_ARGUMENTS: (
        "The command's arguments do not match its schema.",
        "Check the argument names and types in docs/mqtt.md.",
    ),
    E.COMMAND_PAYLOAD_TOO_LARGE: (
        "The command payload is over the size limit.",
        "Send a smaller payload.",
    ),
    E.COMMAND_RATE_LIMITED: (
        "Too many commands in a short time.",
        "Slow down; the command was not run.",
    ),
    E.CONFIG_FILE_NOT_FOUND: (
        "The configuration file does not exist.",
        "Create it from config/edged.yaml or pass --config.",
    ),
    E.CONFIG_UNREADABLE: (
        "The configuration file cannot be read.",
        "Check its permissions.",
    ),
    E.CONFIG_SYNTAX_ERROR: (
        "The configuration file is not valid YAML.",
        "Fix the YAML at the line named in the message.",
    ),
    E.CONFIG_INVALID_VALUE: (
        "A configuration value has the wrong type or is out of range.",
        "Fix the key named in the message; `edged check-config` shows all problems.",
    ),
    E.CONFIG_UNKNOWN_KEY: (
        "The configuration has a key edged does not know (often a typo).",
        "Fix or remove the key named in the message.",
    ),
    E.CONFIG_MISSING_KEY: (
        "A required configuration key is missing.",
        "Add the key named in the message.",
    ),
    E.SECRET_UNAVAILABLE: (
        "A secret file or environment variable named by the configuration is missing.",
        "Create the file (readable by the service user) or set the variable.",
    ),
    E.CONFIG_RELOAD_FAILED: (
        "A reload (SIGHUP) found an invalid configuration; the old one stays in force.",
        "Fix the file and reload again.",
    ),
    E.TLS_CERTIFICATE_INVALID: (
        "A TLS certificate or key could not be loaded.",
        "Check the paths and that the key matches the certificate.",
    ),
}
del E

ERRORS: dict[ErrorCode, ErrorInfo] = {
    code: ErrorInfo(code, meaning, remedy) for code, (meaning, remedy) in _TABLE.items()
}


def describe(code: int) -> ErrorInfo:
    """The table entry for ``code``; unknown numbers describe as INTERNAL_ERROR."""
    try:
        return ERRORS[ErrorCode(code)]
    except ValueError:
        return ERRORS[ErrorCode.INTERNAL_ERROR]


class EdgedError(Exception):
    """An error with one of the table's codes and a human message."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        self.code = code
        self.message = message or ERRORS[code].meaning
        super().__init__(f"{int(code)} {code.name}: {self.message}")


def markdown() -> str:
    """The whole table as the Markdown page ``docs/errors.md``."""
    lines = [
        "# Error codes",
        "",
        "Generated by `python -m edged.errors` from `edged/errors.py`; do not edit by hand.",
        "Numbers are stable. Where the original SDK had a code for the same situation,",
        "its number is kept.",
    ]
    area = None
    for code in ErrorCode:
        info = ERRORS[code]
        if info.area != area:
            area = info.area
            lines += ["", f"## {int(code) // 1000}xxx {area}", ""]
            lines += ["| code | name | meaning | what to do |", "|---|---|---|---|"]
        lines.append(f"| {int(code)} | `{code.name}` | {info.meaning} | {info.remedy} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
