"""Network faults inside the harness's namespace: partitions, packet loss, delay.

The kernel here has no ``netem`` qdisc, so faults are made with netfilter:

* partitions and random loss are iptables DROP rules (``-m statistic`` for loss);
* delay is an NFQUEUE rule and a small user-space queue (:class:`DelayQueue`) that holds
  every queued packet for the given time before letting it through. It speaks the
  nfnetlink_queue protocol directly over a netlink socket: no library needed.

All rules live in one chain of their own, jumped to first from INPUT. Every packet
between two addresses of the namespace (the veth ends, loopback) is delivered locally
and so crosses INPUT exactly once: a rule there acts on each direction of a flow once.
While faults are set up, loopback cuts segmented sends (UDP segmentation offload,
:mod:`edged.media.send.udp_batch`) into datagrams on the way out, as a real network card
does, so that a rule sees, drops and delays each datagram, not a run of them.

Typical use, inside the namespace (a test marked ``netns``)::

    with NetworkFaults() as faults:
        faults.partition(udp=True, tcp_ports=[server_port])
        ...
        faults.heal()
        faults.loss(0.10)
        faults.delay(0.200)
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import select
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterable
from types import TracebackType

from . import netns

CHAIN = "EDGED-FAULTS"

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = (NFNL_SUBSYS_QUEUE << 8) | 0
NFQNL_MSG_VERDICT = (NFNL_SUBSYS_QUEUE << 8) | 1
NFQNL_MSG_CONFIG = (NFNL_SUBSYS_QUEUE << 8) | 2
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_META = 1
NF_ACCEPT = 1
_NLMSGHDR = struct.Struct("=IHHII")
_NLATTR = struct.Struct("=HH")


class FaultError(RuntimeError):
    """A fault could not be set up (not root, no iptables, not in a namespace, ...)."""


def _attr(kind: int, data: bytes) -> bytes:
    length = _NLATTR.size + len(data)
    return _NLATTR.pack(length, kind) + data + b"\0" * (-length % 4)


def _message(kind: int, flags: int, queue: int, attrs: Iterable[bytes], seq: int = 0) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attrs)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def _packet_ids(data: bytes) -> list[int]:
    """The packet ids of the NFQNL_MSG_PACKET messages in one netlink read."""
    ids = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind = _NLMSGHDR.unpack_from(data, offset)[:2]
        if length < _NLMSGHDR.size:
            break
        if kind == NFQNL_MSG_PACKET:
            pos = offset + _NLMSGHDR.size + 4  # after nfgenmsg
            while pos + _NLATTR.size <= offset + length:
                attr_len, attr_kind = _NLATTR.unpack_from(data, pos)
                if attr_len < _NLATTR.size:
                    break
                if attr_kind & 0x7FFF == NFQA_PACKET_HDR:
                    ids.append(struct.unpack_from("!I", data, pos + _NLATTR.size)[0])
                pos += (attr_len + 3) & ~3
        offset += (length + 3) & ~3
    return ids


class DelayQueue:
    """Owns one nfnetlink queue and the thread that holds its packets for ``delay`` s.

    Packets arrive (metadata only) in order; each gets its ACCEPT verdict ``delay``
    seconds after it arrived, so order is kept and the added latency is constant.
    :meth:`close` lets every held packet through at once.
    """

    def __init__(self, queue: int, delay: float, max_len: int = 8192) -> None:
        self.queue = queue
        self.delay = delay
        self.passed = 0
        self._held: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._seq = 0
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self._sock.bind((0, 0))
            self._configure(_attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)))
            self._configure(_attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)))
            self._configure(_attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", max_len)))
        except OSError as exc:
            self._sock.close()
            raise FaultError(f"nfnetlink queue {queue}: {exc}") from None
        self._thread = threading.Thread(target=self._run, name=f"delay-queue-{queue}", daemon=True)
        self._thread.start()

    def _configure(self, attr: bytes) -> None:
        self._seq += 1
        self._sock.send(
            _message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, self.queue, [attr], self._seq)
        )
        reply = self._sock.recv(4096)
        kind = _NLMSGHDR.unpack_from(reply)[1]
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", reply, _NLMSGHDR.size)
            if code != 0:
                raise OSError(-code, errno.errorcode.get(-code, str(code)))

    def _accept(self, packet_id: int) -> None:
        attr = _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id))
        self.passed += 1  # first: the packet may be read before send() returns here
        self._sock.send(_message(NFQNL_MSG_VERDICT, NLM_F_REQUEST, self.queue, [attr]))

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            while self._held and self._held[0][0] <= now:
                self._accept(heapq.heappop(self._held)[1])
            wait = min(self._held[0][0] - now, 0.05) if self._held else 0.05
            readable, _, _ = select.select([self._sock], [], [], max(wait, 0.0))
            if not readable:
                continue
            try:
                data = self._sock.recv(1 << 16)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel dropped some: they are lost
                    continue
                raise
            due = time.monotonic() + self.delay
            for packet_id in _packet_ids(data):
                heapq.heappush(self._held, (due, packet_id))

    def close(self) -> None:
        """Stop delaying: every held packet is let through now, the queue is unbound."""
        self._stop.set()
        self._thread.join()
        for _, packet_id in self._held:
            self._accept(packet_id)
        self._held.clear()
        with contextlib.suppress(OSError):
            self._configure(_attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_UNBIND, 0)))
        self._sock.close()


class NetworkFaults:
    """Owns the chain of fault rules in the caller's namespace and the delay queue.

    Drops (partitions, loss) come first in the chain, then the delay, whatever the order
    of the calls, so they combine: loss and delay model a bad link. Only
    inside a harness namespace: it never touches the machine's own firewall.
    """

    def __init__(self, queue: int = 7) -> None:
        if not netns.inside_test_namespace():
            raise FaultError("network faults are made only inside the harness's namespace")
        if shutil.which("iptables") is None:
            raise FaultError("the iptables command is missing: apt-get install iptables")
        self.queue = queue
        self._delay: DelayQueue | None = None
        self._iptables("-N", CHAIN)
        self._iptables("-I", "INPUT", "1", "-j", CHAIN)
        netns.ip("link", "set", "dev", "lo", "gso_max_segs", "1")

    @staticmethod
    def _iptables(*args: str) -> None:
        result = subprocess.run(
            ["iptables", "-w", *args], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise FaultError(f"iptables {' '.join(args)}: {result.stderr.strip()}")

    def _drop(self, *match: str) -> None:
        # First in the chain: a packet the delay queue lets through skips later rules.
        self._iptables("-I", CHAIN, "1", *match, "-j", "DROP")

    def partition(self, *, udp: bool = True, tcp_ports: Iterable[int] = ()) -> None:
        """Drop all UDP (the media path) and TCP to or from the given ports."""
        if udp:
            self._drop("-p", "udp")
        for port in tcp_ports:
            self._drop("-p", "tcp", "--dport", str(port))
            self._drop("-p", "tcp", "--sport", str(port))

    def only_through(self, address: str, *ports: tuple[int, int]) -> None:
        """Drop UDP unless it goes to or comes from ``address`` on one of the ``ports``
        ranges (a TURN server's listening and relay ports): peers then reach each other
        only through the TURN server's relay candidates, as on two networks with no
        route between them."""
        self._drop("-p", "udp")
        for low, high in ports:
            for side in (("-d", address, "--dport"), ("-s", address, "--sport")):
                self._iptables(
                    "-I", CHAIN, "1", "-p", "udp", *side, f"{low}:{high}", "-j", "ACCEPT"
                )

    def loss(self, probability: float) -> None:
        """Drop each UDP packet with the given probability (each direction)."""
        if not 0.0 < probability < 1.0:
            raise ValueError(f"loss probability must be in (0, 1): {probability}")
        self._drop("-p", "udp", "-m", "statistic", "--mode", "random",
                   "--probability", f"{probability:.4f}")  # fmt: skip

    def delay(self, seconds: float) -> DelayQueue:
        """Hold every UDP packet for ``seconds`` (each direction) before delivering it."""
        if self._delay is not None:
            raise FaultError("a delay is already set: heal() first")
        self._delay = DelayQueue(self.queue, seconds)
        try:
            self._iptables(
                "-A", CHAIN, "-p", "udp", "-j", "NFQUEUE", "--queue-num", str(self.queue)
            )  # fmt: skip
        except FaultError:
            self._delay.close()
            self._delay = None
            raise
        return self._delay

    def heal(self) -> None:
        """Remove every fault: rules flushed, delayed packets let through."""
        self._iptables("-F", CHAIN)
        if self._delay is not None:
            self._delay.close()
            self._delay = None

    def close(self) -> None:
        """Heal and remove the chain."""
        self.heal()
        self._iptables("-D", "INPUT", "-j", CHAIN)
        self._iptables("-X", CHAIN)
        netns.ip("link", "set", "dev", "lo", "gso_max_segs", str(netns.GSO_MAX_SEGS))

    def __enter__(self) -> NetworkFaults:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
