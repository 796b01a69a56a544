"""Debian's own WHIP peers, ``simple-whip-client`` and ``simple-whip-server``, for the tests.

Debian 12's client cannot run (it links libsoup 2 while GStreamer's webrtcbin links
libsoup 3, and GLib aborts) and its server cannot be installed beside a newer Node.js;
Debian 13 has both in working order but no Janus, which they need on the other side.
So the tests run Debian 13's peers from a root of their own (``scripts/trixie-root
peers``, made by ``scripts/setup --test`` wherever Janus is installed), chrooted, in the
harness's network namespace (a chroot keeps the caller's), against the host's Janus.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("EDGED_CI_CACHE", "/var/cache/edged-ci")) / "peers"


def present() -> bool:
    return (ROOT / "usr/bin/whip-client").exists() and (
        ROOT / "usr/share/simple-whip-server/src/server.js"
    ).exists()


requires_peers = pytest.mark.skipif(
    not present(),
    reason=f"no root of Debian 13's WHIP peers at {ROOT}: scripts/setup --test makes it "
    "(as root, where Janus is installed)",
)


def in_root(
    *argv: str, binds: dict[Path, str] | None = None, env: dict[str, str] | None = None
) -> list[str]:
    """``argv`` run chrooted in the peers' root with /proc and /dev/shm mounted for it, and
    each host file of ``binds`` over its path in the root (for this call only), as one
    process (each step execs the next), so that signalling it signals the program."""
    variables = [f"{k}={v}" for k, v in (env or {}).items()]
    mounts = "".join(
        f'mount --bind "{host}" "$0{inside}" && ' for host, inside in (binds or {}).items()
    )
    script = (
        'mount -t proc proc "$0/proc" && mount -t tmpfs -o mode=1777 tmpfs "$0/dev/shm" && '
        f"{mounts}"
        'exec chroot "$0" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"'
    )
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
        str(ROOT),
        *variables,
        *argv,
    ]


def version(package: str) -> str:
    """The Debian version of ``package`` in the peers' root (for the test's messages)."""
    return subprocess.run(
        ["dpkg-query", f"--admindir={ROOT}/var/lib/dpkg", "-W", "-f=${Version}", package],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
