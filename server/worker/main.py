"""A worker process: the VMs the front end placed here, on the KVM model.

The front end starts ``python -c <bootstrap> ...`` (``launch_code``) with
one end of a socketpair as fd ``argv[1]`` (the channel: run slices, calls
from the front end's threads, events) and one of another as ``argv[2]``
(the control channel: the calls its event loop awaits, which it reads
itself, so that their replies need no thread there). The worker calls exactly the
methods of ``KvmSystem``/``Vm``/``Vcpu`` the in-process server calls; this
module only routes requests to them, on the threads the in-process server
would use:

- the reader threads (the main thread for the channel, another for the
  control channel) take requests off their channel and run what the
  event loop runs today at once: interrupt, kick, preempt,
  MP state reads, VM calls (none waits for a vCPU), and a short
  ``try_run`` (bounded by its own wall-time deadline);
- a call that takes the vCPU mutex (ONE_REG, reg list, MP state writes,
  guest debug, batches) runs at once too when no slice of that vCPU is in
  flight, else on an ops thread, so that it waits for the slice without
  holding up the reader;
- run slices (``Vcpu.run``) run on a run thread.

Every vCPU's wake listener sends a ``WAKE`` event, so the front end's Run
waiting for an idle vCPU looks again, as the in-process listener does.
Guest RAM comes from the front end: ``set_user_memory_region`` carries a
memfd the new slot maps (``Vm.ram_backing``); the front end writes guest
memory itself and sends ``host_wrote`` so that written code is dropped and
dirty pages are logged here.

Python 3.9, no gRPC: Debian's PyPy runs this.
"""

from __future__ import annotations

import errno
import mmap
import os
import resource
import signal
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from rvkvm.emulator.pypy import tune_pypy_jit
from rvkvm.server.kvm import KvmError, KvmSystem, Vcpu, Vm
from rvkvm.server.kvm import exits as X
from rvkvm.server.kvm.vm import anonymous_ram

from .protocol import EVENT, LOG, WAKE, Channel, ChannelClosed, error_tuple

# What a completion fills into an exit (convert.fill_completion), by kind:
# the front end fills its copy, the worker's copy is the one the vCPU's
# completion reads, so these fields travel with the next run.
ANSWER_FIELDS: Dict[type, str] = {X.MmioExit: "data", X.SbiExit: "ret",
                                  X.CsrExit: "ret_value"}

NOW, MUTEX, RUN = "now", "mutex", "run"
RUN_THREADS = 1
OPS_THREADS = 4
# How long the run thread may hold the interpreter lock while the reader
# waits for it with a control call (ONE_REG, MP state, a kick): 1 ms, not
# the default 5, as the front end's own (``ServerConfig.switch_interval``).
SWITCH_INTERVAL = 0.001

VcpuKey = Tuple[int, int]


def answer_of(exit_: Optional[X.Exit]) -> Optional[Any]:
    """The answer slot of an exit (what a completion fills), None if it has none."""
    field = ANSWER_FIELDS.get(type(exit_))
    return None if field is None else getattr(exit_, field)


def apply_answer(vcpu: Vcpu, answer: Any) -> None:
    """Copy the front end's answer into the exit the vCPU's completion reads."""
    pending = vcpu.pending_exit
    field = ANSWER_FIELDS.get(type(pending))
    if answer is None or field is None or not vcpu.has_completion():
        return
    if field == "data":
        pending.data[:] = answer  # type: ignore[union-attr]
    else:
        setattr(pending, field, answer)


RunResult = Tuple[X.Exit, int, int, Optional[List[Any]]]


class Worker:
    def __init__(self, channel: Channel, control: Optional[Channel] = None) -> None:
        self.channel = channel
        self.control = control
        self.system = KvmSystem()
        self.vms: Dict[int, Vm] = {}
        self._next = 1
        self._running: Set[VcpuKey] = set()  # vCPUs with a slice in flight
        self._lock = threading.Lock()
        self._run_pool = ThreadPoolExecutor(RUN_THREADS, thread_name_prefix="rvkvm-w-run")
        self._ops_pool = ThreadPoolExecutor(OPS_THREADS, thread_name_prefix="rvkvm-w-ops")
        self._ops: Dict[str, Tuple[str, Callable[..., Any]]] = {
            "init": (NOW, self.init),
            "ping": (NOW, lambda _t, _fds: os.getpid()),
            "create_vm": (NOW, self.create_vm),
            "destroy_vm": (NOW, self.destroy_vm),
            "check_extension": (NOW, lambda vm, _fds, cap: vm.check_extension(cap)),
            "enable_cap": (NOW, lambda vm, _fds, *a: vm.enable_cap(*a)),
            "set_user_memory_region": (NOW, self.set_user_memory_region),
            "get_dirty_log": (NOW, lambda vm, _fds, slot: vm.get_dirty_log(slot)),
            "host_wrote": (NOW, lambda vm, _fds, gpa, n: vm.host_wrote(gpa, n)),
            "create_vcpu": (NOW, self.create_vcpu),
            "register_coalesced_mmio": (NOW, lambda vm, _f, *a: vm.register_coalesced_mmio(*a)),
            "unregister_coalesced_mmio": (NOW,
                                          lambda vm, _f, *a: vm.unregister_coalesced_mmio(*a)),
            "drain_coalesced_mmio": (NOW, lambda vm, _fds: vm.drain_coalesced_mmio()),
            "interrupt": (NOW, lambda v, _fds, irq: v.interrupt(irq)),
            "kick": (NOW, lambda v, _fds: v.kick()),
            "preempt": (NOW, lambda v, _fds: v.preempt()),
            "get_mp_state": (NOW, lambda v, _fds: v.get_mp_state()),
            "stats": (NOW, lambda obj, _fds: obj.stats()),
            "try_run": (NOW, self.try_run),
            "get_one_reg": (MUTEX, lambda v, _fds, reg: v.get_one_reg(reg)),
            "set_one_reg": (MUTEX, lambda v, _fds, reg, data: v.set_one_reg(reg, data)),
            "get_reg_list": (MUTEX, lambda v, _fds: v.get_reg_list()),
            "set_mp_state": (MUTEX, lambda v, _fds, state: v.set_mp_state(state)),
            "set_guest_debug": (MUTEX, lambda v, _fds, control: v.set_guest_debug(control)),
            "batch_one_reg": (MUTEX, self.batch_one_reg),
            "run": (RUN, self.run),
        }

    # -- the reader -------------------------------------------------------

    def serve(self) -> None:
        """Requests of the channel (this thread) and of the control channel
        (a thread of its own), until the channel ends."""
        if self.control is not None:
            threading.Thread(target=self._serve, args=(self.control,), daemon=True,
                             name="rvkvm-w-control").start()
        self._serve(self.channel)

    def _serve(self, channel: Channel) -> None:
        while True:
            try:
                message, fds = channel.recv()
            except ChannelClosed:
                return
            rid, op, target, args = message
            try:
                where, handler = self._ops[op]
                obj = self._target(target)
                if where == MUTEX and target in self._running:
                    self._ops_pool.submit(self._answer, channel, rid, handler, obj, fds, args)
                elif where == RUN:
                    with self._lock:
                        self._running.add(target)
                    self._run_pool.submit(self._answer, channel, rid, handler, obj, fds, args,
                                          target)
                else:
                    self._answer(channel, rid, handler, obj, fds, args)
            except Exception as exc:  # an unknown op or target
                self._close_fds(fds)
                self._reply(channel, rid, False, error_tuple(exc))

    def _target(self, target: Any) -> Any:
        if target is None:
            return None
        if isinstance(target, int):
            return self._vm(target)
        vm = self._vm(target[0])
        vcpu = vm.find_vcpu(target[1])
        if vcpu is None:
            raise KvmError(errno.EBADF, f"no vCPU {target[1]}")
        return vcpu

    def _vm(self, handle: int) -> Vm:
        vm = self.vms.get(handle)
        if vm is None:
            raise KvmError(errno.EBADF, "VM destroyed")
        return vm

    def _answer(self, channel: Channel, rid: int, handler: Callable[..., Any], obj: Any,
                fds: List[int], args: Tuple[Any, ...],
                running: Optional[VcpuKey] = None) -> None:
        try:
            value = handler(obj, fds, *args)
        except Exception as exc:
            self._reply(channel, rid, False, error_tuple(exc))
        else:
            self._reply(channel, rid, True, value)
        finally:
            self._close_fds(fds)
            if running is not None:
                with self._lock:
                    self._running.discard(running)

    @staticmethod
    def _reply(channel: Channel, rid: int, ok: bool, value: Any) -> None:
        try:
            channel.send((rid, ok, value))
        except ChannelClosed:
            pass  # the front end is gone; the reader sees it too
        except Exception as exc:  # a value that does not pickle: a bug, said as such
            channel.send((rid, False, error_tuple(exc)))

    def event(self, name: str, payload: Any) -> None:
        try:
            self.channel.send((EVENT, name, payload))
        except ChannelClosed:
            pass

    @staticmethod
    def _close_fds(fds: List[int]) -> None:
        while fds:
            os.close(fds.pop())

    # -- requests ---------------------------------------------------------

    def init(self, _target: None, _fds: List[int], host: Any, engine: str,
             clock: Any) -> int:
        self.system = KvmSystem(host, engine=engine, clock=clock)
        return os.getpid()

    def create_vm(self, _target: None, _fds: List[int], machine_type: int, profile: str,
                  clock: Any = None) -> int:
        vm = self.system.create_vm(machine_type, profile, clock=clock)
        handle = self._next
        self._next += 1
        self.vms[handle] = vm
        return handle

    def destroy_vm(self, vm: Vm, _fds: List[int]) -> None:
        for handle, known in list(self.vms.items()):
            if known is vm:
                del self.vms[handle]
        vm.destroy()

    def set_user_memory_region(self, vm: Vm, fds: List[int], *args: Any
                               ) -> List[Tuple[int, int, int, int]]:
        """The slot change; a new slot maps the memfd that came with it."""
        fd = fds[0] if fds else None

        def shared(slot: int, size: int) -> mmap.mmap:
            if fd is None:
                raise OSError(errno.ENOMEM, "no shared memory for the slot")
            return mmap.mmap(fd, size)

        vm.ram_backing = shared
        try:
            vm.set_user_memory_region(*args)
        finally:
            vm.ram_backing = anonymous_ram
        return [(s.slot, s.flags, s.guest_phys_addr, s.memory_size) for s in vm.slots()]

    def create_vcpu(self, vm: Vm, _fds: List[int], vcpu_id: int) -> int:
        vcpu = vm.create_vcpu(vcpu_id)
        handle = next(h for h, v in self.vms.items() if v is vm)
        key = (handle, vcpu_id)
        vcpu.wake_listener = lambda: self.event(WAKE, key)
        return vcpu.mp_state

    def run(self, vcpu: Vcpu, _fds: List[int], budget: int, idle_timeout: Optional[float],
            slice_time: Optional[float], answer: Any) -> RunResult:
        """A slice of at most ``slice_time`` seconds from when it starts (not
        from when it was sent: the front end keeps the next slice queued
        here behind the running one, so that no round trip idles the run
        thread between slices)."""
        apply_answer(vcpu, answer)
        deadline = None if slice_time is None else time.monotonic() + slice_time
        exit_ = vcpu.run(budget, idle_timeout, deadline)
        return self._ran(vcpu, exit_)

    def try_run(self, vcpu: Vcpu, _fds: List[int], budget: int, deadline: Optional[float],
                answer: Any) -> Optional[RunResult]:
        apply_answer(vcpu, answer)
        exit_ = vcpu.try_run(budget, deadline)
        return None if exit_ is None else self._ran(vcpu, exit_)

    @staticmethod
    def _ran(vcpu: Vcpu, exit_: X.Exit) -> RunResult:
        """The exit, what the run used of its budget, instret, and the
        coalesced-MMIO entries: for a guest event or a kick (exits a session
        always records) those drained right after it, as the in-process
        session drains them when it records the exit; for any other exit
        none (``[]``) when the ring is empty, so that recording it costs the
        front end no second round trip, else None (the session drains the
        ring only if it records the exit)."""
        ring = vcpu.vm.coalesced_mmio
        if not isinstance(exit_, X.IntrExit) or exit_.why == X.INTR_KICK:
            drained: Optional[List[Any]] = ring.drain()
        else:
            drained = None if len(ring) else []
        return exit_, vcpu.last_run_insns, vcpu.hart.instret, drained

    def batch_one_reg(self, vcpu: Vcpu, _fds: List[int],
                      ops: List[Tuple[int, Optional[bytes]]], stop_on_error: bool
                      ) -> List[Tuple[int, Any]]:
        """ONE_REG gets (value None) and sets of one vCPU: (0, value or None)
        or (errno, error tuple) each, up to the first error with ``stop_on_error``."""
        results: List[Tuple[int, Any]] = []
        for reg_id, value in ops:
            try:
                if value is None:
                    results.append((0, vcpu.get_one_reg(reg_id)))
                else:
                    vcpu.set_one_reg(reg_id, value)
                    results.append((0, None))
            except KvmError as err:
                results.append((err.errno, error_tuple(err)))
                if stop_on_error:
                    break
        return results


def launch_code() -> str:
    """The ``python -c`` code (after the bootstrap finder) that runs a worker."""
    return "from rvkvm.server.worker.main import main; main()"


def raise_fd_limit() -> None:
    """Each memory slot's mmap keeps a descriptor of its memfd: allow as
    many as the hard limit does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    fd = int(argv[0])
    control = Channel(socket.socket(fileno=int(argv[1]))) if len(argv) > 1 else None
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the front end's to handle
    raise_fd_limit()
    sys.setswitchinterval(SWITCH_INTERVAL)
    tune_pypy_jit()  # guest code's JIT parameters (nothing on CPython)
    sock = socket.socket(fileno=fd)
    worker = Worker(Channel(sock), control)
    try:
        worker.serve()
    except BaseException:
        worker.event(LOG, ("error", traceback.format_exc()))
        raise
    finally:
        os._exit(0)  # the front end is gone: no vCPU thread outlives it
