"""The front end's side of the worker processes (``--workers N``).

``WorkerPool`` starts N workers (``rvkvm.server.worker.main``, on PyPy when
``pypy3`` is on PATH, see ``default_worker_python``) and places each new VM
on the least loaded one (fewest busy vCPUs, then fewest VMs); all of a
VM's vCPUs live in its worker, with its RAM, code caches and TLB
shootdowns. ``VmProxy`` and ``VcpuProxy`` have the methods of the KVM
model's ``Vm`` and ``Vcpu`` that the registry and the servicer call, and
forward them to the worker (``WorkerClient.call``; ``.aio`` of a method is
the same call awaited on the event loop without a thread). Guest RAM is a
memfd per memory slot that both processes map: ``read_memory`` and
``write_memory`` touch it here, and a write tells the worker which range to
drop translated code and log dirty pages for. Each worker has its own
``FairScheduler`` (one thread: slices of that worker's vCPUs, fair by
owner) whose thread waits for the slice's reply without the GIL.

A worker that dies (EOF on its socket) or stops answering (no heartbeat
reply within ``timeout`` seconds, or a run slice ``timeout`` seconds past
its wall-time bound) is killed and replaced; every call on its VMs answers
``EHOSTDOWN`` (UNAVAILABLE) saying the VM was lost and why, until the VM
is destroyed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import mmap
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import structlog

from rvkvm.bootstrap import PURE_PACKAGES, python_command
from rvkvm.server.kvm import HostProfile, KvmError
from rvkvm.server.kvm import exits as X
from rvkvm.server.kvm.clock import GuestClock
from rvkvm.server.kvm.coalesced_mmio import CoalescedMmio
from rvkvm.server.kvm.vm import slot_spans
from rvkvm.server.worker.main import answer_of, launch_code, raise_fd_limit
from rvkvm.server.worker.protocol import EVENT, LOG, WAKE, Channel, ChannelClosed, error_from

from .scheduler import FairScheduler

WORKER_PACKAGES = PURE_PACKAGES + ("rvkvm.server.worker",)
PAGE_SIZE = 4096
BUSY_WINDOW = 1.0  # a vCPU that ran a slice this recently counts as busy
# Slices a worker's scheduler keeps in flight: the worker runs one at a time
# (one run thread), the other waits there, so that the run thread starts the
# next slice at once instead of idling for a round trip through this
# process (two thread hand-offs, each waiting for its interpreter lock).
SLICES_IN_FLIGHT = 2


def default_worker_python() -> str:
    """``pypy3`` from PATH if present, else this interpreter."""
    return shutil.which("pypy3") or sys.executable


def lost_vm(reason: str) -> KvmError:
    return KvmError(errno.EHOSTDOWN, f"VM lost: {reason}")


class _Waiter:
    """One request's reply, for a thread (``wait``) or a coroutine (``future``)."""

    __slots__ = ("op", "deadline", "_event", "_value", "_error", "_future", "_loop")

    def __init__(self, op: str, deadline: Optional[float] = None,
                 loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        self.op = op
        self.deadline = deadline
        self._event: Optional[threading.Event] = None if loop else threading.Event()
        self._loop = loop
        self._future: Optional[asyncio.Future] = loop.create_future() if loop else None
        self._value: Any = None
        self._error: Optional[BaseException] = None

    def resolve_here(self, value: Any, error: Optional[BaseException]) -> None:
        """``resolve`` on the waiting coroutine's own loop."""
        self._set_future(value, error)

    def resolve(self, value: Any, error: Optional[BaseException]) -> None:
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._set_future, value, error)
            except RuntimeError:  # the loop closed: nobody waits
                pass
            return
        self._value, self._error = value, error
        assert self._event is not None
        self._event.set()

    def _set_future(self, value: Any, error: Optional[BaseException]) -> None:
        assert self._future is not None
        if self._future.done():
            return
        if error is not None:
            self._future.set_exception(error)
        else:
            self._future.set_result(value)

    def wait(self) -> Any:
        assert self._event is not None
        self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value

    def wait_for(self, timeout: float) -> bool:
        assert self._event is not None
        return self._event.wait(timeout)

    @property
    def future(self) -> asyncio.Future:
        assert self._future is not None
        return self._future


class WorkerClient:
    """One worker process and its channel: requests out, replies matched by id."""

    def __init__(self, index: int, python: str, host: Optional[HostProfile], engine: str,
                 clock: Optional[GuestClock], on_death: Callable[[WorkerClient], None]) -> None:
        self.index = index
        self.python = python
        self._on_death = on_death
        self._log = structlog.get_logger("rvkvm.worker")
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cmd = python_command(python, launch_code(), [str(child.fileno()), str(theirs.fileno())],
                             WORKER_PACKAGES)
        self.process = subprocess.Popen(cmd, pass_fds=(child.fileno(), theirs.fileno()),
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        child.close()
        theirs.close()
        self.pid = self.process.pid
        self.channel = Channel(parent)
        # The control channel: the calls the event loop awaits, whose
        # replies the loop reads itself (no reader thread to wake, no
        # call_soon_threadsafe): ONE_REG, MP state, inline runs, ...
        self.control = Channel(ours)
        self._control_fd = ours.fileno()
        self._control_loop: Optional[asyncio.AbstractEventLoop] = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: Dict[int, _Waiter] = {}
        self.dead: Optional[KvmError] = None
        # die() is finding out why: calls made meanwhile wait in _pending
        # and get the reason with the others (not a vaguer one first)
        self._dying = False
        self.vms: Dict[int, VmProxy] = {}
        self.vcpus: Dict[Tuple[int, int], VcpuProxy] = {}
        self.restarts = 0
        self._reader = threading.Thread(target=self._read, name=f"rvkvm-worker-{index}",
                                        daemon=True)
        self._reader.start()
        self.call(None, "init", host, engine, clock)

    # -- requests -------------------------------------------------------

    def _register(self, waiter: _Waiter) -> int:
        with self._lock:
            if self.dead is not None:
                raise self.dead
            rid = next(self._ids)
            self._pending[rid] = waiter
            return rid

    def _send(self, rid: int, op: str, target: Any, args: Tuple[Any, ...],
              fds: Sequence[int]) -> None:
        try:
            self.channel.send((rid, op, target, args), fds)
        except ChannelClosed:
            self.die(f"worker {self.index} (pid {self.pid}) closed its channel")

    def call(self, target: Any, op: str, *args: Any, fds: Sequence[int] = (),
             deadline: Optional[float] = None) -> Any:
        """``op`` on ``target`` in the worker, waiting for its reply."""
        waiter = _Waiter(op, deadline)
        rid = self._register(waiter)
        self._send(rid, op, target, args, fds)
        return waiter.wait()

    async def call_async(self, target: Any, op: str, *args: Any) -> Any:
        """``op`` on ``target``, awaited: sent on the control channel, whose
        replies this loop reads (``_read_control``)."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(op, loop=loop)
        rid = self._register(waiter)
        if self._control_loop is not loop:
            self._watch_control(loop)
        try:
            self.control.send((rid, op, target, args))
        except ChannelClosed:
            self.die(f"worker {self.index} (pid {self.pid}) closed its control channel")
        return await waiter.future

    def _watch_control(self, loop: asyncio.AbstractEventLoop) -> None:
        old, self._control_loop = self._control_loop, loop
        if old is not None and not old.is_closed():  # another loop read it before
            with contextlib.suppress(RuntimeError, OSError):
                old.call_soon_threadsafe(old.remove_reader, self._control_fd)
        loop.add_reader(self._control_fd, self._read_control)

    def _read_control(self) -> None:
        """On the loop: the control channel's replies that arrived."""
        try:
            messages = self.control.poll()
        except ChannelClosed:  # the worker is gone: the channel's reader says why
            self._unwatch_control()
            return
        for rid, ok, value in messages:
            with self._lock:
                waiter = self._pending.pop(rid, None)
            if waiter is not None:
                waiter.resolve_here(value if ok else None, None if ok else error_from(value))

    def _unwatch_control(self) -> None:
        """Stop reading the control channel (on its loop) and close it."""
        loop, self._control_loop = self._control_loop, None
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError, OSError, ValueError):
                loop.remove_reader(self._control_fd)
        self.control.close()

    def _close_control(self) -> None:
        """From any thread: the control channel ends (on its loop if it has one)."""
        loop = self._control_loop
        if loop is None or loop.is_closed():
            self.control.close()
            return
        try:
            running: Optional[asyncio.AbstractEventLoop] = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:  # a server stopping on its own loop
            self._unwatch_control()
            return
        try:
            loop.call_soon_threadsafe(self._unwatch_control)
        except RuntimeError:  # the loop closed meanwhile
            self.control.close()

    def post(self, target: Any, op: str, *args: Any) -> None:
        """``op`` without waiting (kick, preempt, interrupt: asynchronous in
        KVM too); its reply is dropped."""
        if self.dead is not None:
            raise self.dead
        self._send(next(self._ids), op, target, args, ())

    def ping(self, timeout: float) -> bool:
        waiter = _Waiter("ping")
        try:
            rid = self._register(waiter)
        except KvmError:
            return True  # dead already: nothing to detect
        self._send(rid, "ping", None, (), ())
        return waiter.wait_for(timeout)

    def overrun(self, now: float, grace: float) -> bool:
        """Whether a run slice is ``grace`` seconds past its wall-time bound."""
        with self._lock:
            return any(w.deadline is not None and now > w.deadline + grace
                       for w in self._pending.values())

    # -- the reader thread ----------------------------------------------

    def _read(self) -> None:
        while True:
            try:
                message, fds = self.channel.recv()
            except ChannelClosed:
                self.die(None)
                return
            for fd in fds:
                os.close(fd)
            rid = message[0]
            if rid == EVENT:
                self._event(message[1], message[2])
                continue
            with self._lock:
                waiter = self._pending.pop(rid, None)
            if waiter is not None:
                ok, value = message[1], message[2]
                waiter.resolve(value if ok else None, None if ok else error_from(value))

    def _event(self, name: str, payload: Any) -> None:
        if name == WAKE:
            vcpu = self.vcpus.get(tuple(payload))  # type: ignore[arg-type]
            if vcpu is not None:
                vcpu.woke()
        elif name == LOG:
            level, text = payload
            getattr(self._log, level, self._log.error)("worker", worker=self.index,
                                                       pid=self.pid, message=text)

    # -- death ----------------------------------------------------------

    @property
    def gone(self) -> bool:
        """Dead or dying: no new VMs go here, the watchdog leaves it alone."""
        return self.dead is not None or self._dying

    def die(self, why: Optional[str]) -> None:
        """Mark the worker dead (``why`` None: its channel ended), kill it,
        fail every waiting call and wake every vCPU's Run."""
        with self._lock:
            if self.dead is not None or self._dying:
                return
            self._dying = True
        if self.process.poll() is None:
            with _suppress_oserror():
                os.kill(self.pid, signal.SIGKILL)
        try:
            status = self.process.wait(10)
        except subprocess.TimeoutExpired:
            status = None
        reason = why or f"worker {self.index} (pid {self.pid}) died: {_describe(status)}"
        if why is not None:
            reason = f"{why}; killed (pid {self.pid})"
        with self._lock:
            self.dead = lost_vm(reason)
            pending, self._pending = list(self._pending.values()), {}
        self._log.error("worker lost", worker=self.index, pid=self.pid, reason=reason,
                        vms=len(self.vms))
        for waiter in pending:
            waiter.resolve(None, self.dead)
        for vcpu in list(self.vcpus.values()):
            vcpu.woke()
        self.channel.close()
        self._close_control()
        self._on_death(self)

    def close(self) -> None:
        """Stop the worker (server shutdown): it exits when its channel closes."""
        with self._lock:
            if self.dead is None:
                self.dead = KvmError(errno.ESHUTDOWN, "the server is shutting down")
            pending, self._pending = list(self._pending.values()), {}
        for waiter in pending:
            waiter.resolve(None, self.dead)
        with _suppress_oserror():
            self.channel.sock.shutdown(socket.SHUT_RDWR)
        self._close_control()
        try:
            self.process.wait(2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    # -- load -------------------------------------------------------------

    def busy_vcpus(self, now: float) -> int:
        return sum(1 for v in list(self.vcpus.values()) if v.busy(now))


def _describe(status: Optional[int]) -> str:
    if status is None:
        return "no exit status"
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"killed by signal {-status} ({name})"
    return f"exited with status {status}"


class _suppress_oserror:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, tb: Any) -> bool:
        return kind is not None and issubclass(kind, OSError)


class _Remote:
    """A method forwarded to the worker: ``obj.m(*args)`` waits in this
    thread, ``obj.m.aio(*args)`` is awaited on the event loop."""

    def __init__(self, op: str) -> None:
        self.op = op

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        return _Bound(obj, self.op)


class _Bound:
    __slots__ = ("obj", "op")

    def __init__(self, obj: Any, op: str) -> None:
        self.obj, self.op = obj, op

    def __call__(self, *args: Any) -> Any:
        return self.obj._call(self.op, *args)

    async def aio(self, *args: Any) -> Any:
        return await self.obj._call_async(self.op, *args)


class CoalescedBuffer:
    """``vm.coalesced_mmio`` as the session sees it: ``drain`` returns the
    VM's coalesced-MMIO entries at the moment of an exit. A slice that ends
    on a guest event or a kick drains the worker's ring right after it, as
    the in-process session does when it records such an exit, and the
    reply carries them; any other slice's reply says whether the ring was
    empty when it ended (``[]``; None: it was not). Recording such an exit
    drains the ring in the worker then, unless it was empty: no second round
    trip for the Runs of a VM without coalesced writes."""

    def __init__(self, vm: VmProxy) -> None:
        self._vm = vm
        self._entries: Optional[List[CoalescedMmio]] = None  # drained with the last exit
        self._ring_empty = False  # as of the last slice's end
        self._lock = threading.Lock()

    def put(self, entries: Optional[List[CoalescedMmio]]) -> None:
        with self._lock:
            self._ring_empty = entries is not None
            if entries:
                self._entries = (self._entries or []) + list(entries)

    def take(self) -> Optional[List[CoalescedMmio]]:
        with self._lock:
            entries, self._entries = self._entries, None
        return entries

    def drain(self) -> List[CoalescedMmio]:
        with self._lock:
            entries, self._entries = self._entries, None
            if entries is not None or self._ring_empty:
                return entries or []
        return list(self._vm._call("drain_coalesced_mmio"))


@dataclass
class SharedSlot:
    """A memory slot as the front end sees it: its place and its RAM (the
    memfd both processes map)."""

    slot: int
    flags: int
    guest_phys_addr: int
    memory_size: int
    buf: mmap.mmap

    @property
    def npages(self) -> int:
        return self.memory_size // PAGE_SIZE

    @property
    def end(self) -> int:
        return self.guest_phys_addr + self.memory_size


class VmProxy:
    """A VM in a worker, with the methods of ``Vm`` the server calls."""

    in_worker = True

    def __init__(self, worker: WorkerClient, handle: int) -> None:
        self.worker = worker
        self.handle = handle
        self.coalesced_mmio = CoalescedBuffer(self)
        self._slots: Dict[int, SharedSlot] = {}
        self._vcpus: Dict[int, VcpuProxy] = {}
        self._lock = threading.RLock()
        self._destroyed = False
        worker.vms[handle] = self

    def _call(self, op: str, *args: Any, fds: Sequence[int] = ()) -> Any:
        self._check_alive()
        return self.worker.call(self.handle, op, *args, fds=fds)

    async def _call_async(self, op: str, *args: Any) -> Any:
        self._check_alive()
        return await self.worker.call_async(self.handle, op, *args)

    def _check_alive(self) -> None:
        if self._destroyed:
            raise KvmError(errno.EBADF, "VM destroyed")
        if self.worker.dead is not None:
            raise self.worker.dead

    check_extension = _Remote("check_extension")
    get_dirty_log = _Remote("get_dirty_log")
    stats = _Remote("stats")
    register_coalesced_mmio = _Remote("register_coalesced_mmio")
    unregister_coalesced_mmio = _Remote("unregister_coalesced_mmio")

    def enable_cap(self, cap: int, flags: int = 0, args: Tuple[int, ...] = ()) -> None:
        self._call("enable_cap", cap, flags, tuple(args))

    def drain_coalesced_mmio(self) -> List[CoalescedMmio]:
        earlier = self.coalesced_mmio.take() or []
        return earlier + list(self._call("drain_coalesced_mmio"))

    # -- memory -----------------------------------------------------------

    def set_user_memory_region(self, slot: int, flags: int, guest_phys_addr: int,
                               memory_size: int, userspace_addr: int = 0) -> None:
        """KVM_SET_USER_MEMORY_REGION in the worker; a slot it creates maps
        the memfd made here (sparse: pages cost only once touched)."""
        self._check_alive()
        fd = -1
        sid = slot & 0xFFFF
        if (0 < memory_size < 1 << 63 and not memory_size % PAGE_SIZE
                and sid not in self._slots):
            try:
                fd = os.memfd_create(f"rvkvm-slot{sid}", os.MFD_CLOEXEC)
                os.ftruncate(fd, memory_size)
            except (OSError, OverflowError, ValueError):
                if fd >= 0:
                    os.close(fd)
                fd = -1  # the worker answers ENOMEM, as an mmap that fails would
        try:
            with self._lock:
                slots = self._call("set_user_memory_region", slot, flags, guest_phys_addr,
                                   memory_size, userspace_addr, fds=[fd] if fd >= 0 else [])
                self._mirror(slots, fd)
        finally:
            if fd >= 0:
                os.close(fd)

    def _mirror(self, slots: List[Tuple[int, int, int, int]], fd: int) -> None:
        now: Dict[int, SharedSlot] = {}
        for sid, flags, gpa, size in slots:
            known = self._slots.get(sid)
            if known is None:
                if fd < 0:
                    raise KvmError(errno.ENOMEM, f"slot {sid} has no shared memory here")
                known = SharedSlot(sid, flags, gpa, size, mmap.mmap(fd, size))
            known.flags, known.guest_phys_addr = flags, gpa
            now[sid] = known
        # A deleted slot's mapping goes with its last reader.
        self._slots = now

    def slots(self) -> List[SharedSlot]:
        with self._lock:
            return sorted(self._slots.values(), key=lambda s: s.slot)

    def _spans(self, gpa: int, size: int) -> Iterator[Tuple[SharedSlot, int, int]]:
        return slot_spans(list(self._slots.values()), gpa, size)

    def check_range(self, gpa: int, size: int) -> None:
        self._check_alive()
        for _ in self._spans(gpa, size):
            pass

    def read_memory(self, gpa: int, size: int) -> bytes:
        """Guest memory, read here from the shared mapping."""
        self._check_alive()
        with self._lock:
            return b"".join(s.buf[a - s.guest_phys_addr:a - s.guest_phys_addr + n]
                            for s, a, n in self._spans(gpa, size))

    def write_memory(self, gpa: int, data: bytes) -> None:
        """Guest memory, written here into the shared mapping; the worker
        then drops translated code of the written code pages and logs dirty
        pages (``Vm.host_wrote``)."""
        self._check_alive()
        view = memoryview(bytes(data))
        with self._lock:
            pos = 0
            for s, a, n in list(self._spans(gpa, len(view))):
                off = a - s.guest_phys_addr
                s.buf[off:off + n] = view[pos:pos + n]
                pos += n
            if len(view):
                self._call("host_wrote", gpa, len(view))

    # -- vCPUs ------------------------------------------------------------

    def create_vcpu(self, vcpu_id: int) -> VcpuProxy:
        mp_state = self._call("create_vcpu", vcpu_id)
        vcpu = VcpuProxy(self, vcpu_id, mp_state)
        with self._lock:
            self._vcpus[vcpu_id] = vcpu
        self.worker.vcpus[(self.handle, vcpu_id)] = vcpu
        return vcpu

    @property
    def vcpus(self) -> List[VcpuProxy]:
        return list(self._vcpus.values())

    def find_vcpu(self, vcpu_id: int) -> Optional[VcpuProxy]:
        return self._vcpus.get(vcpu_id)

    def destroy(self) -> None:
        """Close the VM here at once (further calls: EBADF) and in the worker."""
        with self._lock:
            if self._destroyed:
                return
            self._destroyed = True
            self._slots = {}
            vcpus = list(self._vcpus.values())
        self.worker.vms.pop(self.handle, None)
        for vcpu in vcpus:
            self.worker.vcpus.pop((self.handle, vcpu.id), None)
            vcpu.woke()
        if self.worker.dead is None:
            with _suppress_kvm():
                self.worker.post(self.handle, "destroy_vm")

    @property
    def destroyed(self) -> bool:
        return self._destroyed


class _suppress_kvm:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, tb: Any) -> bool:
        return kind is not None and issubclass(kind, KvmError)


class _HartMirror:
    """What the servicer reads of a hart: instret, as of the last slice."""

    __slots__ = ("instret",)

    def __init__(self) -> None:
        self.instret = 0


class VcpuProxy:
    """A vCPU in a worker, with the methods of ``Vcpu`` the server calls."""

    in_worker = True

    def __init__(self, vm: VmProxy, vcpu_id: int, mp_state: int) -> None:
        self.vm = vm
        self.id = vcpu_id
        self.hart = _HartMirror()
        self.last_run_insns = 0
        self.wake_listener: Optional[Callable[[], None]] = None
        self._target = (vm.handle, vcpu_id)
        self._last_exit: Optional[X.Exit] = None
        self._running = False
        self._last_ran = 0.0

    def _call(self, op: str, *args: Any) -> Any:
        self.vm._check_alive()
        return self.vm.worker.call(self._target, op, *args)

    async def _call_async(self, op: str, *args: Any) -> Any:
        self.vm._check_alive()
        return await self.vm.worker.call_async(self._target, op, *args)

    get_one_reg = _Remote("get_one_reg")
    set_one_reg = _Remote("set_one_reg")
    get_reg_list = _Remote("get_reg_list")
    get_mp_state = _Remote("get_mp_state")
    stats = _Remote("stats")
    set_mp_state = _Remote("set_mp_state")
    set_guest_debug = _Remote("set_guest_debug")

    def get_value(self, reg_id: int) -> int:
        return int.from_bytes(self.get_one_reg(reg_id), "little")

    def set_value(self, reg_id: int, value: int) -> None:
        size = 1 << ((reg_id >> 52) & 0xF)
        self.set_one_reg(reg_id, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))

    def batch_one_reg(self, ops: List[Tuple[int, Optional[bytes]]],
                      stop_on_error: bool) -> List[Tuple[int, Any]]:
        """ONE_REG gets (None) and sets of this vCPU in one round trip."""
        results = self._call("batch_one_reg", ops, stop_on_error)
        return [(code, error_from(v) if code else v) for code, v in results]

    def interrupt(self, irq: int) -> None:
        self.vm._check_alive()
        self.vm.worker.post(self._target, "interrupt", irq)

    def kick(self) -> None:
        self.vm._check_alive()
        self.vm.worker.post(self._target, "kick")

    def preempt(self) -> None:
        if self.vm.worker.dead is None and not self.vm.destroyed:
            with _suppress_kvm():
                self.vm.worker.post(self._target, "preempt")

    def woke(self) -> None:
        listener = self.wake_listener
        if listener is not None:
            listener()

    def busy(self, now: float) -> bool:
        return self._running or now - self._last_ran < BUSY_WINDOW

    def run(self, budget: int, idle_timeout: Optional[float] = 0.0,
            deadline: Optional[float] = None) -> X.Exit:
        """A ``Vcpu.run`` slice in the worker (``deadline``: monotonic time,
        the same clock in both processes)."""
        self.vm._check_alive()
        self._running = True
        # The worker bounds the slice from when it starts: it may wait there
        # behind the slice before it (the scheduler keeps one queued).
        slice_time = None if deadline is None else max(0.0, deadline - time.monotonic())
        overdue = None if deadline is None else deadline + 2 * (slice_time or 0.0)
        try:
            result = self.vm.worker.call(self._target, "run", budget, idle_timeout, slice_time,
                                         answer_of(self._last_exit), deadline=overdue)
        finally:
            self._running = False
            self._last_ran = time.monotonic()
        return self._ran(result)

    def try_run(self, budget: int, deadline: Optional[float] = None) -> Optional[X.Exit]:
        return self._ran(self._call("try_run", budget, deadline, answer_of(self._last_exit)))

    async def try_run_aio(self, budget: int, deadline: Optional[float] = None
                          ) -> Optional[X.Exit]:
        result = await self._call_async("try_run", budget, deadline,
                                        answer_of(self._last_exit))
        return self._ran(result)

    def _ran(self, result: Any) -> Any:
        if result is None:
            return None
        exit_, self.last_run_insns, self.hart.instret, coalesced = result
        self.vm.coalesced_mmio.put(coalesced)
        self._last_exit = exit_
        return exit_


class WorkerPool:
    """N workers, the VMs' placement and a scheduler per worker; a monitor
    thread sends heartbeats and replaces dead or hung workers."""

    def __init__(self, count: int, python: str = "", host: Optional[HostProfile] = None,
                 engine: str = "fast", clock: Optional[GuestClock] = None,
                 heartbeat: float = 1.0,
                 timeout: float = 30.0) -> None:
        self.python = python or default_worker_python()
        raise_fd_limit()  # the mapping of each memory slot keeps a descriptor of its memfd
        self._spawn_args = (host, engine, clock)
        self.heartbeat = heartbeat
        self.timeout = timeout
        self._lock = threading.Lock()
        self._closed = False
        self.schedulers = [FairScheduler(SLICES_IN_FLIGHT, name=f"rvkvm-run-w{i}")
                           for i in range(count)]
        self.workers: List[WorkerClient] = []
        for i in range(count):
            self.workers.append(self._spawn(i))
        self.restarts = [0] * count
        self._stop = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name="rvkvm-worker-monitor",
                                         daemon=True)
        self._monitor.start()

    def _spawn(self, index: int) -> WorkerClient:
        return WorkerClient(index, self.python, *self._spawn_args, on_death=self._died)

    def create_vm(self, machine_type: int, profile: str, clock: Optional[GuestClock] = None
                  ) -> Tuple[VmProxy, FairScheduler]:
        """A VM on the least loaded live worker, and that worker's scheduler."""
        now = time.monotonic()
        with self._lock:
            live = [w for w in self.workers if not w.gone]
        if not live:
            raise KvmError(errno.EHOSTDOWN, "no worker process is running")
        worker = min(live, key=lambda w: (w.busy_vcpus(now), len(w.vms), w.index))
        handle = worker.call(None, "create_vm", machine_type, profile, clock)
        return VmProxy(worker, handle), self.schedulers[worker.index]

    def _died(self, worker: WorkerClient) -> None:
        """Start a replacement in the dead worker's place (its VMs stay lost)."""
        if self._closed:
            return

        def replace() -> None:
            try:
                fresh = self._spawn(worker.index)
            except Exception as exc:  # noqa: BLE001 (say it; the next death retries)
                structlog.get_logger("rvkvm.worker").error(
                    "worker restart failed", worker=worker.index, error=str(exc))
                return
            with self._lock:
                if self._closed:
                    fresh.close()
                    return
                self.workers[worker.index] = fresh
                self.restarts[worker.index] += 1
            structlog.get_logger("rvkvm.worker").info(
                "worker restarted", worker=worker.index, pid=fresh.pid)

        threading.Thread(target=replace, name=f"rvkvm-worker-restart-{worker.index}",
                         daemon=True).start()

    def _watch(self) -> None:
        while not self._stop.wait(self.heartbeat):
            with self._lock:
                workers = list(self.workers)
            for worker in workers:
                if worker.gone:
                    continue
                if worker.overrun(time.monotonic(), self.timeout):
                    worker.die(f"worker {worker.index} overran a run slice's wall-time bound "
                               f"by more than {self.timeout:g} s")
                elif not worker.ping(self.timeout):
                    if not self._stop.is_set():
                        worker.die(f"worker {worker.index} did not answer a heartbeat for "
                                   f"{self.timeout:g} s")

    def stats(self) -> List[Tuple[int, int, int, int]]:
        """(index, VMs, busy vCPUs, restarts) per worker."""
        now = time.monotonic()
        with self._lock:
            return [(w.index, len(w.vms), w.busy_vcpus(now), self.restarts[w.index])
                    for w in self.workers]

    def pids(self) -> List[int]:
        with self._lock:
            return [w.pid for w in self.workers]

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self.workers)
        self._stop.set()
        for scheduler in self.schedulers:
            scheduler.shutdown()
        for worker in workers:
            worker.close()


class WorkerCollector:
    """Prometheus gauges per worker: VMs, busy vCPUs, restarts."""

    def __init__(self, pool: WorkerPool) -> None:
        self._pool = pool

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        vms = GaugeMetricFamily("rvkvm_worker_vms", "VMs placed on each worker", labels=["worker"])
        busy = GaugeMetricFamily("rvkvm_worker_busy_vcpus",
                                 "vCPUs of each worker that ran a slice in the last second",
                                 labels=["worker"])
        restarts = GaugeMetricFamily("rvkvm_worker_restarts",
                                     "times each worker was replaced after it died or hung",
                                     labels=["worker"])
        for index, n_vms, n_busy, n_restarts in self._pool.stats():
            vms.add_metric([str(index)], n_vms)
            busy.add_metric([str(index)], n_busy)
            restarts.add_metric([str(index)], n_restarts)
        yield vms
        yield busy
        yield restarts
