"""The front end <-> worker IPC: length-prefixed messages on a
``socketpair`` (AF_UNIX, SOCK_STREAM), file descriptors alongside.

A frame is a 6-byte header (``<IBB``: payload length, number of fds passed
with it, codec) and one message. fds travel as SCM_RIGHTS ancillary data on
the frame's ``sendmsg``, and the receiver takes them in order. The codec is
marshal (format 4, read alike by CPython 3.11 and PyPy 3.9) for messages of
plain values, which the hot calls are (ONE_REG requests and replies, run
requests, MP state, kicks), and pickle (protocol 5) for the rest (exits,
profiles), so that the two sides share one vocabulary
(``rvkvm.server.kvm.exits``). Measured by ``bench/workers.py``: marshal
is 1.5-6x faster than pickle on these messages in CPython and about 10x in
PyPy (1.6 against 16 us for a ONE_REG reply).

Messages are tuples:

- request, front end -> worker: ``(rid, op, target, args)``; ``target`` is
  None (the worker), a VM handle, or ``(vm handle, vcpu id)``;
- reply, worker -> front end: ``(rid, True, value)`` or
  ``(rid, False, error)``, ``error`` as ``error_tuple`` makes it;
- event, worker -> front end: ``(0, name, payload)`` (``WAKE``: a vCPU
  woke, payload ``(vm handle, vcpu id)``; ``LOG``: ``(level, text)``).

Python 3.9 (the worker may be Debian's PyPy).
"""

from __future__ import annotations

import array
import marshal
import pickle
import socket
import struct
import threading
from collections import deque
from typing import Any, Deque, List, Sequence, Tuple

from rvkvm.server.kvm.errors import KvmError

PROTOCOL = 5
MARSHAL_VERSION = 4
HEADER = struct.Struct("<IBB")
MARSHAL, PICKLE = 0, 1
MAX_FDS = 8
RECV_SIZE = 1 << 16

EVENT = 0
WAKE = "wake"
LOG = "log"

# error kinds of a reply
KVM, VALUE, OTHER = "kvm", "value", "other"


class ChannelClosed(Exception):
    """The other side closed the channel (or died)."""


class Channel:
    """One end of a socketpair. ``send`` from any thread; ``recv`` from one."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        self._buf = bytearray()
        self._fds: Deque[int] = deque()
        self._fd_space = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)

    def send(self, message: Any, fds: Sequence[int] = ()) -> None:
        try:
            payload, codec = marshal.dumps(message, MARSHAL_VERSION), MARSHAL
        except ValueError:  # not only plain values
            payload, codec = pickle.dumps(message, PROTOCOL), PICKLE
        frame = HEADER.pack(len(payload), len(fds), codec) + payload
        with self._send_lock:
            try:
                if fds:
                    self.sock.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                 array.array("i", fds).tobytes())])
                else:
                    self.sock.sendall(frame)
            except OSError as err:  # EPIPE, ECONNRESET: the peer is gone
                raise ChannelClosed(str(err)) from None

    def recv(self) -> Tuple[Any, List[int]]:
        """The next message and the fds that came with it."""
        while True:
            if len(self._buf) >= HEADER.size:
                length, nfds, codec = HEADER.unpack_from(self._buf)
                end = HEADER.size + length
                if len(self._buf) >= end and len(self._fds) >= nfds:
                    payload = bytes(memoryview(self._buf)[HEADER.size:end])
                    message = (marshal.loads(payload) if codec == MARSHAL
                               else pickle.loads(payload))
                    del self._buf[:end]
                    return message, [self._fds.popleft() for _ in range(nfds)]
            self._fill()

    def poll(self) -> List[Any]:
        """The messages that have arrived, without waiting (one read of what
        is there; fds are not expected): for a reader on an event loop."""
        try:
            data = self.sock.recv(RECV_SIZE, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError as err:
            raise ChannelClosed(str(err)) from None
        if data is not None:
            if not data:
                raise ChannelClosed("end of file")
            self._buf += data
        messages = []
        while len(self._buf) >= HEADER.size:
            length, _, codec = HEADER.unpack_from(self._buf)
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            payload = bytes(memoryview(self._buf)[HEADER.size:end])
            messages.append(marshal.loads(payload) if codec == MARSHAL else pickle.loads(payload))
            del self._buf[:end]
        return messages

    def _fill(self) -> None:
        try:
            data, ancdata, _, _ = self.sock.recvmsg(RECV_SIZE, self._fd_space)
        except OSError as err:
            raise ChannelClosed(str(err)) from None
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(cdata[:len(cdata) - len(cdata) % fds.itemsize])
                self._fds.extend(fds)
        if not data:
            raise ChannelClosed("end of file")
        self._buf += data

    def close(self) -> None:
        self.sock.close()


def error_tuple(exc: BaseException) -> Tuple[Any, ...]:
    """How an exception crosses: a KvmError keeps errno, message and extras."""
    if isinstance(exc, KvmError):
        return (KVM, exc.errno, exc.message, exc.count, exc.exit_seq)
    if isinstance(exc, ValueError):
        return (VALUE, str(exc))
    return (OTHER, f"{type(exc).__name__}: {exc}")


def error_from(error: Tuple[Any, ...]) -> Exception:
    kind = error[0]
    if kind == KVM:
        return KvmError(error[1], error[2], count=error[3], exit_seq=error[4])
    if kind == VALUE:
        return ValueError(error[1])
    return RuntimeError(f"in the worker: {error[1]}")
