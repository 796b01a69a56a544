"""Several datagrams to one address in one system call, with Linux UDP segmentation offload.

An access unit of 720p H.264 at 2 Mbit/s is 5 to 50 RTP packets; sent one ``sendto`` at a
time, each pays a system call and a trip through the IP stack. With ``UDP_SEGMENT``
(Linux 4.18) a run of equal-sized datagrams (the last may be shorter) goes down as one
buffer and the kernel, or the network card, cuts it into the same datagrams on the way
out: the receiver sees exactly what one ``sendto`` per datagram would have sent.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
from asyncio.trsock import TransportSocket
from collections.abc import Callable, Iterator, Sequence

logger = logging.getLogger(__name__)

UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
"""The socket option (level ``SOL_UDP``) giving a send's segment size (linux/udp.h)."""
MAX_SEGMENTS = 64
"""Datagrams per call: the kernel's limit (``UDP_MAX_SEGMENTS``) before Linux 6.4."""
MAX_BYTES = 65_000
"""Bytes per call: one IP datagram's worth, with room for the headers."""

_SEGMENT_SIZE = struct.Struct("=H")

Address = tuple[str, int]


def runs(datagrams: Sequence[bytes]) -> Iterator[tuple[int, int]]:
    """Split ``datagrams`` into ``[start, end)`` runs that one segmented send can carry:
    every datagram of a run as long as its first, except the last, which may be shorter."""
    count, start = len(datagrams), 0
    while start < count:
        size = total = len(datagrams[start])
        end = start + 1
        while end < count and end - start < MAX_SEGMENTS:
            length = len(datagrams[end])
            if length > size or total + length > MAX_BYTES:
                break
            total += length
            end += 1
            if length < size:  # a shorter datagram ends the run
                break
        yield start, end
        start = end


class BatchSender:
    """Owns a duplicate of one datagram socket and sends runs of datagrams through it.

    The duplicate shares the original's port (it is the same socket), so the datagrams
    leave from the address the remote end expects. When the kernel refuses segmentation
    (older kernels, a device or a route without it), the sender says so once and falls
    back to one ``sendto`` per datagram for good; when the socket's buffer is full, what
    is left goes through ``fallback`` (the asyncio transport, which queues it).
    """

    def __init__(
        self,
        sock: socket.socket | TransportSocket,
        fallback: Callable[[bytes, Address], None],
    ) -> None:
        self._sock = socket.fromfd(sock.fileno(), sock.family, sock.type, sock.proto)
        self._sock.setblocking(False)
        self._fallback = fallback
        self.segmenting = True
        self.calls = 0

    def send(self, datagrams: Sequence[bytes], address: Address) -> None:
        """Send ``datagrams`` in order to ``address``; never blocks."""
        sock = self._sock
        for start, end in runs(datagrams) if self.segmenting else _singles(datagrams):
            try:
                if end - start == 1:
                    sock.sendto(datagrams[start], address)
                else:
                    sock.sendmsg(
                        [b"".join(datagrams[start:end])],
                        [(socket.SOL_UDP, UDP_SEGMENT, _SEGMENT_SIZE.pack(len(datagrams[start])))],
                        0,
                        address,
                    )
                self.calls += 1
            except (BlockingIOError, InterruptedError):
                for datagram in datagrams[start:]:
                    self._fallback(datagram, address)
                return
            except OSError as exc:
                if end - start > 1 and self._refused(exc):
                    self.send(datagrams[start:], address)  # now one datagram per call
                    return
                # otherwise as a datagram transport does: the loss is the network's

    def close(self) -> None:
        """Close the duplicate (the original socket stays open)."""
        self._sock.close()

    def _refused(self, exc: OSError) -> bool:
        """Whether ``exc`` says segmentation is unavailable here (then stop using it)."""
        if exc.errno not in (errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP):
            return False
        logger.info("UDP segmentation offload unavailable (%s): one datagram per send", exc)
        self.segmenting = False
        return True


def _singles(datagrams: Sequence[bytes]) -> Iterator[tuple[int, int]]:
    return ((i, i + 1) for i in range(len(datagrams)))
