"""The files a command line names: refused with one plain sentence when they cannot be read.

A missing file, a directory, a file without read permission and an empty secret each get
their own message and the error code of what the file was for (the configuration, the
apps file, a secret), so that ``edged`` never answers a typo with a traceback.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import EdgedError, ErrorCode


def check_file(
    path: Path, what: str, missing: ErrorCode, unreadable: ErrorCode, hint: str = ""
) -> None:
    """Refuse, with one plain sentence, a file that is absent, a directory or unreadable."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise EdgedError(missing, f"{what} {path} does not exist{hint}") from None
    except OSError as exc:
        raise EdgedError(unreadable, f"cannot read {what} {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise EdgedError(unreadable, f"{what} {path} is a directory, not a file")
    if not os.access(path, os.R_OK):
        raise EdgedError(unreadable, f"cannot read {what} {path}: permission denied")


def check_config_file(path: Path) -> None:
    check_file(
        path, "configuration file", ErrorCode.CONFIG_FILE_NOT_FOUND, ErrorCode.CONFIG_UNREADABLE
    )


def check_apps_file(path: Path, hint: str = "") -> None:
    code = ErrorCode.SECRET_UNAVAILABLE
    check_file(path, "apps file", code, code, hint)


def read_secret_file(path: Path) -> str:
    """The secret in ``path`` (surrounding white space stripped); refused if absent or empty."""
    code = ErrorCode.SECRET_UNAVAILABLE
    try:
        secret = path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        raise EdgedError(code, f"secret file {path} does not exist") from None
    except IsADirectoryError:
        raise EdgedError(code, f"secret file {path} is a directory, not a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise EdgedError(code, f"cannot read secret file {path}: {reason}") from None
    if not secret:
        raise EdgedError(code, f"secret file {path} is empty")
    return secret
