"""The worker IPC on its own: frames, fds alongside, errors that keep their
errno, and the worker loop driven directly (no gRPC, no front end)."""

from __future__ import annotations

import errno
import mmap
import os
import socket
import threading
from typing import Any, Tuple

import pytest

from rvkvm.server.kvm import KvmError
from rvkvm.server.kvm import exits as X
from rvkvm.server.worker.main import Worker, answer_of, apply_answer
from rvkvm.server.worker.protocol import (
    EVENT,
    HEADER,
    MARSHAL,
    PICKLE,
    WAKE,
    Channel,
    ChannelClosed,
    error_from,
    error_tuple,
)


def _pair() -> Tuple[Channel, Channel]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return Channel(a), Channel(b)


def test_poll_returns_the_messages_that_arrived_without_waiting():
    left, right = _pair()
    assert right.poll() == []  # nothing there: no wait
    left.send((1, True, b"\x00" * 8))
    left.send((2, False, ("value", "bad")))
    frame = HEADER.pack(5, 0, MARSHAL) + b"\x00" * 5
    left.sock.sendall(frame[:3])  # a frame cut in two reads
    assert right.poll() == [(1, True, b"\x00" * 8), (2, False, ("value", "bad"))]
    left.sock.sendall(frame[3:8])
    assert right.poll() == []
    left.close()
    with pytest.raises(ChannelClosed):
        right.poll()


def test_a_worker_answers_its_control_channel_there():
    """Requests on the control channel are answered on it, while the
    channel's own requests are answered on the channel."""
    (front, theirs), (control, their_control) = _pair(), _pair()
    worker = Worker(theirs, their_control)
    thread = threading.Thread(target=worker.serve, daemon=True)
    thread.start()
    control.send((7, "create_vm", None, (0, "latest")))
    (rid, ok, handle), _ = control.recv()
    assert (rid, ok) == (7, True)
    front.send((8, "ping", None, ()))
    control.send((9, "check_extension", handle, (0,)))
    assert control.recv()[0][:2] == (9, True)
    assert front.recv()[0] == (8, True, os.getpid())
    front.close()
    thread.join(5)
    assert not thread.is_alive()


def test_messages_cross_in_order_with_their_fds():
    left, right = _pair()
    fd = os.memfd_create("t")
    os.write(fd, b"shared")
    big = bytes(range(256)) * 4096  # more than the socket buffers: several reads

    def send() -> None:
        left.send((1, "a", None, ()))
        left.send((2, "b", 7, (big,)), [fd])
        left.send((3, "c", (7, 0), (X.MmioExit(0x1000, 4, True, 0xAB),)))
        os.close(fd)

    sender = threading.Thread(target=send)
    sender.start()
    assert right.recv() == ((1, "a", None, ()), [])
    message, fds = right.recv()
    assert message == (2, "b", 7, (big,)) and len(fds) == 1
    assert os.pread(fds[0], 6, 0) == b"shared"
    os.close(fds[0])
    (rid, op, target, (exit_,)), _ = right.recv()
    assert (rid, op, target) == (3, "c", (7, 0))
    assert isinstance(exit_, X.MmioExit) and exit_.data[:4] == b"\xab\0\0\0"
    sender.join()
    left.close()
    with pytest.raises(ChannelClosed):
        right.recv()


def test_plain_values_travel_by_marshal_and_objects_by_pickle():
    left, right = _pair()
    plain = (5, "get_one_reg", (1, 0), (0x8030_0000_0200_0000, b"\x01", None, [1, 2]))
    left.send(plain)
    header = right.sock.recv(HEADER.size, socket.MSG_PEEK)
    assert HEADER.unpack(header)[2] == MARSHAL
    assert right.recv() == (plain, [])
    left.send((6, True, X.SbiExit(1, 2, [3])))
    assert HEADER.unpack(right.sock.recv(HEADER.size, socket.MSG_PEEK))[2] == PICKLE
    (_, _, exit_), _ = right.recv()
    assert isinstance(exit_, X.SbiExit) and exit_.args == [3]


def test_a_kvm_error_keeps_errno_message_and_extras():
    err = error_from(error_tuple(KvmError(errno.E2BIG, "too small", count=42, exit_seq=3)))
    assert isinstance(err, KvmError)
    assert (err.errno, err.message, err.count, err.exit_seq) == (errno.E2BIG, "too small", 42, 3)
    assert isinstance(error_from(error_tuple(ValueError("bad profile"))), ValueError)
    assert "ZeroDivisionError" in str(error_from(error_tuple(ZeroDivisionError("x"))))


def test_answers_travel_to_the_exit_the_completion_reads():
    sbi = X.SbiExit(0x10, 3, [0] * 6)
    sbi.ret = [0, 99]
    assert answer_of(sbi) == [0, 99] and answer_of(X.IntrExit(X.INTR_KICK)) is None


class _Front:
    """The front end's end of a worker driven in a thread."""

    def __init__(self) -> None:
        self.channel, theirs = _pair()
        self.worker = Worker(theirs)
        self.thread = threading.Thread(target=self.worker.serve, daemon=True)
        self.thread.start()
        self.rid = 0
        self.events: list = []

    def call(self, op: str, target: Any = None, *args: Any, fds: Any = ()) -> Any:
        self.rid += 1
        self.channel.send((self.rid, op, target, args), fds)
        while True:
            (rid, ok, value), _ = self.channel.recv()
            if rid == EVENT:
                self.events.append((ok, value))
                continue
            assert rid == self.rid
            if not ok:
                raise error_from(value)
            return value


def test_the_worker_runs_a_vm_on_shared_memory():
    front = _Front()
    front.call("init", None, None, "fast", None)
    vm = front.call("create_vm", None, 0, "latest")
    size = 1 << 16
    fd = os.memfd_create("ram")
    os.ftruncate(fd, size)
    slots = front.call("set_user_memory_region", vm, 0, 0, 0x8000_0000, size, 0, fds=[fd])
    assert slots == [(0, 0, 0x8000_0000, size)]
    ram = mmap.mmap(fd, size)
    os.close(fd)
    ram[0:4] = (0x0000006F).to_bytes(4, "little")  # j .: written here, run there
    front.call("host_wrote", vm, 0x8000_0000, 4)
    front.call("create_vcpu", vm, 0)
    pc = 0x8030_0000_0200_0000
    front.call("set_one_reg", (vm, 0), pc, (0x8000_0000).to_bytes(8, "little"))
    exit_, insns, instret, drained = front.call("run", (vm, 0), 1000, 0.0, None, None)
    assert isinstance(exit_, X.IntrExit) and exit_.why == X.INTR_BUDGET and insns == 1000
    assert drained == []  # a budget exit, the ring empty: nothing for the session to drain
    with pytest.raises(KvmError) as info:
        front.call("get_one_reg", (vm, 5), pc)
    assert info.value.errno == errno.EBADF
    front.events.clear()
    front.call("interrupt", (vm, 0), 0xFFFFFFFF)  # the wake event comes before the reply
    assert front.events == [(WAKE, (vm, 0))]
    front.channel.close()
    front.thread.join(5)


def test_a_budget_exit_says_whether_the_ring_holds_coalesced_writes():
    """A slice that ends on its budget leaves the ring alone (the session
    drains it only if it records the exit), and says whether it is empty:
    ``[]``, or None when a coalesced write waits there."""
    front = _Front()
    vm = front.call("create_vm", None, 0, "latest")
    size = 1 << 16
    fd = os.memfd_create("ram")
    os.ftruncate(fd, size)
    front.call("set_user_memory_region", vm, 0, 0, 0x8000_0000, size, 0, fds=[fd])
    ram = mmap.mmap(fd, size)
    os.close(fd)
    # lui t0, 0x10000; sw zero, 0(t0); j .
    for i, word in enumerate((0x100002B7, 0x0002A023, 0x0000006F)):
        ram[4 * i:4 * i + 4] = word.to_bytes(4, "little")
    front.call("host_wrote", vm, 0x8000_0000, 12)
    front.call("register_coalesced_mmio", vm, 0x1000_0000, 8, 0)
    front.call("create_vcpu", vm, 0)
    pc = 0x8030_0000_0200_0000
    front.call("set_one_reg", (vm, 0), pc, (0x8000_0000).to_bytes(8, "little"))
    exit_, insns, _, drained = front.call("run", (vm, 0), 1000, 0.0, None, None)
    assert exit_.why == X.INTR_BUDGET and insns == 1000
    assert drained is None
    assert [e.phys_addr for e in front.call("drain_coalesced_mmio", vm)] == [0x1000_0000]
    exit_, _, _, drained = front.call("run", (vm, 0), 1000, 0.0, 0.5, None)
    assert exit_.why == X.INTR_BUDGET and drained == []
    front.channel.close()
    front.thread.join(5)


def test_a_slot_without_shared_memory_is_enomem():
    front = _Front()
    vm = front.call("create_vm", None, 0, "latest")
    with pytest.raises(KvmError) as info:
        front.call("set_user_memory_region", vm, 0, 0, 0x8000_0000, 1 << 16, 0)
    assert info.value.errno == errno.ENOMEM
    front.channel.close()


def test_apply_answer_fills_the_pending_exit_only():
    front = _Front()
    vm = front.call("create_vm", None, 0, "latest")
    front.call("create_vcpu", vm, 0)
    vcpu = front.worker.vms[vm].find_vcpu(0)
    apply_answer(vcpu, [0, 1])  # nothing pending: ignored
    assert vcpu.pending_exit is None
    front.channel.close()
