"""The VMs a server hosts, by handle, the per-vCPU run sessions, and the
server's lifecycle (serving, draining, stopped).

A ``VcpuSession`` is the adapter-side state of a vCPU. It runs ``Vcpu.run``
in slices bounded by instructions and by wall time, each a job of the
``FairScheduler`` (so a slow guest holds a thread for one slice at most and
busy vCPUs take turns by owner); an idle vCPU has no job: the session waits
for the vCPU's wake listener. Exits are numbered per vCPU (``Exit.seq``)
and kept until answered: the exit a Run produced is recorded in the worker
thread the moment the slice ends, so a Run whose caller has gone (deadline,
cancel, disconnect) leaves it for the next Run, and a completion names the
exit it answers (``Completion.exit_seq``, rules in ``_begin``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    Hashable,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
)

from rvkvm.server.kvm import DEFAULT_KERNEL, KvmError, KvmSystem, Vcpu, Vm
from rvkvm.server.kvm import exits as X
from rvkvm.server.kvm.clock import GuestClock
from rvkvm.server.kvm.coalesced_mmio import CoalescedMmio
from rvkvm.server.kvm.profiles import KERNEL_PROFILES
from rvkvm.v1 import kvm_pb2 as pb

from .convert import fill_completion
from .leases import Lease
from .limits import ID_SHOWN, MAX_ID_BYTES
from .scheduler import Account, FairScheduler
from .tenants import OPEN_TENANT


def shown_id(vm_id: str) -> str:
    """``vm_id`` as error messages show it: never more than ID_SHOWN characters."""
    if len(vm_id) <= ID_SHOWN:
        return repr(vm_id)
    return repr(vm_id[:ID_SHOWN]) + f"... ({len(vm_id)} characters)"


def shutting_down() -> KvmError:
    return KvmError(errno.ESHUTDOWN, "the server is shutting down")


@dataclass(frozen=True)
class Pacing:
    """How a Run is cut up: at most ``run_slice`` instructions and
    ``slice_time`` seconds of wall time per ``Vcpu.run`` call on a worker.
    ``inline_slice`` instructions (and at most ``inline_time`` seconds) are
    tried first on the event loop's thread (``Vcpu.try_run``) when the last
    exit was a guest event, so that a device-bound guest's next exit costs
    no hop to a worker and back."""

    run_slice: int = 200_000
    slice_time: float = 0.02
    inline_slice: int = 4096
    inline_time: float = 0.002


class Lifecycle:
    """Serving, then draining (after SIGTERM: no new VMs or Runs, running
    Runs end with an INTR SHUTDOWN exit at their next slice boundary), then
    stopped. The one place that says which calls a stopping server takes."""

    def __init__(self) -> None:
        self.draining = False
        self.stopped = False

    def check_serving(self) -> None:
        """For CreateVm and Run: ESHUTDOWN (UNAVAILABLE) once draining."""
        if self.draining:
            raise shutting_down()

    def check_open(self) -> None:
        """For every other call: ESHUTDOWN once the VMs are gone."""
        if self.stopped:
            raise shutting_down()


class Delivery(NamedTuple):
    """An exit as Run returns it: its number, and the coalesced-MMIO ring
    entries drained when it happened (they precede it; a retried Run gets
    the same ones again)."""

    exit: X.Exit
    seq: int
    coalesced: Sequence[CoalescedMmio]


class VcpuSession:
    def __init__(self, vcpu: Vcpu, scheduler: FairScheduler, lifecycle: Lifecycle,
                 pacing: Pacing = Pacing()) -> None:
        self.vcpu = vcpu
        self._scheduler = scheduler
        self._lifecycle = lifecycle
        self._pacing = pacing
        self._lock = asyncio.Lock()  # one Run at a time, as KVM_RUN holds vcpu->mutex
        self._inflight: Optional[Future] = None  # a slice a cancelled Run left running
        self._inflight_try: Optional[asyncio.Future] = None  # its inline try, in a worker
        self._abandoned = False  # its Run was cancelled: the slices stop
        self._state = threading.Lock()  # guards the exit record below
        self._last = Delivery(X.IntrExit(X.INTR_KICK), 0, ())  # the exit the vCPU is at
        self._answered = False  # its completion is applied: the vCPU runs on from it
        self._delivered = True  # a Run returned it (for completions without exit_seq)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._woken: Optional[asyncio.Event] = None
        self.slices = 0  # Vcpu.run and try_run calls that ran (the run_slices metric)
        self._account = Account()  # its slices' run time, as the scheduler orders them
        vcpu.wake_listener = self.wake

    def wake(self) -> None:
        """Something woke the vCPU (or the server drains): a waiting Run
        looks again. Any thread."""
        loop, woken = self._loop, self._woken
        if loop is not None and woken is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                loop.call_soon_threadsafe(woken.set)

    async def run(self, completion: pb.Completion, budget: int, idle_timeout: float,
                  owner: Hashable) -> Delivery:
        """One Run: ``budget`` 0: none; ``idle_timeout`` 0: wait while idle
        until woken or cancelled."""
        async with self._lock:
            if self._inflight is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wrap_future(self._inflight)
                self._inflight = None
            if self._inflight_try is not None:
                with contextlib.suppress(Exception):
                    await self._inflight_try
                self._inflight_try = None
            self._lifecycle.check_serving()
            replay = self._begin(completion)
            if replay is not None:
                return replay
            if self._woken is None:
                self._loop, self._woken = asyncio.get_running_loop(), asyncio.Event()
            result = await self._run(budget or None, idle_timeout, owner)
            self._delivered = True
            return result

    def _begin(self, completion: pb.Completion) -> Optional[Delivery]:
        """Match the completion to the exit the vCPU is stopped at (number
        k): exit_seq k answers it (applied once); k - 1 is a retry of the
        Run that produced k, which gets k again without running; after k
        was answered, exit_seq k runs on without applying anything twice.
        Anything else is EPROTO. Without exit_seq (older clients): an exit
        no Run returned is returned, else the completion answers k."""
        seq = completion.exit_seq if completion.HasField("exit_seq") else None
        with self._state:
            last = self._last
            if self._answered:
                if seq is not None and seq != last.seq:
                    raise self._mismatch(seq)
                return None
            if (seq is None and not self._delivered) or (seq is not None and seq + 1 == last.seq):
                self._delivered = True
                return last
            if seq is not None and seq != last.seq:
                raise self._mismatch(seq)
            fill_completion(last.exit if last.seq else None, completion)
            self._answered = True
            return None

    def _mismatch(self, seq: int) -> KvmError:
        state = "answered" if self._answered else "waiting for its completion"
        return KvmError(errno.EPROTO, f"completion for exit {seq}, but the vCPU is at exit "
                        f"{self._last.seq} ({state})", exit_seq=self._last.seq)

    def _record(self, exit_: X.Exit) -> Delivery:
        coalesced = self.vcpu.vm.coalesced_mmio.drain()
        with self._state:
            self._last = Delivery(exit_, self._last.seq + 1, coalesced)
            self._answered = False
            self._delivered = False
            return self._last

    def _final(self, exit_: X.Exit, step: int, left: Optional[int]) -> bool:
        """Whether a slice's exit ends the Run: a guest event, a kick, or
        the Run's own budget used up (not a slice's, nor idle)."""
        if not isinstance(exit_, X.IntrExit):
            return True
        return exit_.why == X.INTR_KICK or (exit_.why == X.INTR_BUDGET and step == left)

    async def _run(self, remaining: Optional[int], idle_timeout: float,
                   owner: Hashable) -> Delivery:
        assert self._woken is not None
        if (self._pacing.inline_slice and self._answered_guest_event()
                and not self._lifecycle.draining):
            step = min(self._pacing.inline_slice, remaining or self._pacing.inline_slice)
            deadline = time.monotonic() + self._pacing.inline_time
            try_aio = getattr(self.vcpu, "try_run_aio", None)  # a vCPU in a worker process
            if try_aio is None:
                recorded, remaining = self._tried(self.vcpu.try_run(step, deadline), step,
                                                  remaining)
            else:
                # one round trip that a cancelled Run must not cut short: the
                # exit it brings is recorded all the same (for the next Run)
                tried = asyncio.ensure_future(self._try_remote(try_aio, step, deadline,
                                                               remaining))
                try:
                    recorded, remaining = await asyncio.shield(tried)
                except asyncio.CancelledError:
                    self._inflight_try = tried
                    raise
            if recorded is not None:
                return recorded
        idle_deadline: Optional[float] = None
        while True:
            if self._lifecycle.draining:
                return self._record(X.IntrExit(X.INTR_SHUTDOWN))
            if remaining is not None and remaining <= 0:
                return self._record(X.IntrExit(X.INTR_BUDGET))
            self._woken.clear()
            exit_, used, recorded = await self._slice(owner, remaining)
            if recorded is not None:
                return recorded
            if remaining is not None:
                remaining -= used
                if remaining <= 0:
                    continue
            if exit_.why != X.INTR_IDLE:  # type: ignore[attr-defined]
                idle_deadline = None
                continue
            wait: Optional[float] = None
            if idle_timeout:
                now = time.monotonic()
                if idle_deadline is None:
                    idle_deadline = now + idle_timeout
                wait = idle_deadline - now
                if wait <= 0:
                    return self._record(exit_)
            try:
                await asyncio.wait_for(self._woken.wait(), wait)
            except asyncio.TimeoutError:
                return self._record(exit_)

    def _tried(self, tried: Optional[X.Exit], step: int,
               remaining: Optional[int]) -> Tuple[Optional[Delivery], Optional[int]]:
        """After an inline try: the recorded exit if it ends the Run, and the budget left."""
        if tried is not None:
            self.slices += 1
            if self._final(tried, step, remaining):
                return self._record(tried), remaining
            if remaining is not None:
                remaining -= self.vcpu.last_run_insns
        return None, remaining

    async def _try_remote(self, try_aio: Callable[[int, float], Awaitable[Optional[X.Exit]]],
                          step: int, deadline: float, remaining: Optional[int]
                          ) -> Tuple[Optional[Delivery], Optional[int]]:
        return self._tried(await try_aio(step, deadline), step, remaining)

    def _answered_guest_event(self) -> bool:
        """The Run answers a guest event (MMIO, SBI, ...): its next exit is
        likely near, so it is tried inline first."""
        return self._last.seq > 0 and not isinstance(self._last.exit, X.IntrExit)

    def _run_slices(self, remaining: Optional[int]) -> Tuple[X.Exit, int, Optional[Delivery]]:
        """On a worker: a slice, and more while no other job waits for the
        thread (one hand-off to the event loop per turn, not per slice). A
        final exit is recorded here, in this thread, so that no cancellation
        of the Run can lose it. Returns the last exit, the budget used and
        the recorded delivery."""
        used = 0
        while True:
            left = None if remaining is None else remaining - used
            step = self._pacing.run_slice if left is None else min(self._pacing.run_slice, left)
            exit_ = self.vcpu.run(step, 0, time.monotonic() + self._pacing.slice_time)
            self.slices += 1
            used += self.vcpu.last_run_insns
            if self._final(exit_, step, left):
                return exit_, used, self._record(exit_)
            if (exit_.why == X.INTR_IDLE  # type: ignore[attr-defined]
                    or (remaining is not None and used >= remaining)
                    or self._abandoned or self._lifecycle.draining
                    or self._scheduler.waiting()):
                return exit_, used, None
            self._scheduler.give_way()

    async def _slice(self, owner: Hashable,
                     remaining: Optional[int]) -> Tuple[X.Exit, int, Optional[Delivery]]:
        self._abandoned = False
        future = self._scheduler.submit(owner, self._run_slices, remaining,
                                        account=self._account)
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            if not future.cancel():  # running: end it at the next block boundary
                self._abandoned = True
                self.vcpu.preempt()
                self._inflight = future
            raise


class VmEntry:
    """A hosted VM, the tenant that owns it (``owner``, also the key of its
    share of run time), its lease and the sessions of its vCPUs."""

    def __init__(self, vm_id: str, vm: Vm, scheduler: FairScheduler, lifecycle: Lifecycle,
                 pacing: Pacing = Pacing(), owner: str = OPEN_TENANT) -> None:
        self.vm_id = vm_id
        self.vm = vm
        self.owner = owner
        self.created = time.time()
        self.lease = Lease()
        self._scheduler = scheduler
        self._lifecycle = lifecycle
        self._pacing = pacing
        self._sessions: Dict[int, VcpuSession] = {}
        self._lock = threading.Lock()

    def create_vcpu(self, vcpu_id: int) -> VcpuSession:
        with self._lock:
            session = VcpuSession(self.vm.create_vcpu(vcpu_id), self._scheduler,
                                  self._lifecycle, self._pacing)
            self._sessions[vcpu_id] = session
            return session

    def vcpu_ids(self) -> List[int]:
        with self._lock:
            return sorted(self._sessions)

    def session(self, vcpu_id: int) -> VcpuSession:
        self.vm_alive()
        session = self._sessions.get(vcpu_id)
        if session is None:
            raise KvmError(errno.EBADF, f"VM {shown_id(self.vm_id)} has no vCPU {vcpu_id}")
        return session

    def sessions(self) -> List[VcpuSession]:
        with self._lock:
            return list(self._sessions.values())

    def vm_alive(self) -> Vm:
        if self.vm.destroyed:
            self._lifecycle.check_open()
            raise KvmError(errno.EBADF, f"VM {shown_id(self.vm_id)} destroyed")
        return self.vm


# (machine type, kernel profile, clock or None for the default) -> a VM in a
# worker process and the scheduler of its slices
Placement = Callable[[int, str, Optional[GuestClock]], Tuple[Any, FairScheduler]]


class VmRegistry:
    """VM handles -> VMs of one ``KvmSystem``, and the server's lifecycle."""

    def __init__(self, system: KvmSystem, max_vms: int, scheduler: FairScheduler,
                 pacing: Pacing = Pacing(), placement: Optional[Placement] = None) -> None:
        self.system = system
        self.scheduler = scheduler
        # With worker processes: creates each VM in one (workers.WorkerPool.create_vm).
        self.placement = placement
        self.lifecycle = Lifecycle()
        self._max_vms = max_vms
        self._pacing = pacing
        self._vms: Dict[str, VmEntry] = {}
        self._lock = threading.Lock()
        # Called with each VM this registry destroys (DestroyVm, lease, shutdown).
        self.on_destroy: List[Callable[[VmEntry], None]] = []

    def create(self, machine_type: int, profile: str, owner: str = OPEN_TENANT,
               clock: Optional[GuestClock] = None) -> VmEntry:
        """A new VM of tenant ``owner``; ``profile`` "" is the default kernel
        ABI, ``clock`` None the system's default clock."""
        self.lifecycle.check_serving()
        with self._lock:
            if self._max_vms and len(self._vms) >= self._max_vms:
                raise KvmError(errno.ENOSPC, f"this server hosts at most {self._max_vms} VMs")
            scheduler = self.scheduler
            try:
                if self.placement is not None:
                    vm, scheduler = self.placement(machine_type, profile or DEFAULT_KERNEL,
                                                   clock)
                else:
                    vm = self.system.create_vm(machine_type, profile or DEFAULT_KERNEL,
                                               clock=clock)
            except ValueError:  # unknown ABI profile
                raise KvmError(errno.EINVAL, f"unknown kernel profile {shown_id(profile)} "
                               f"(known: {', '.join(KERNEL_PROFILES)})") from None
            vm_id = "vm-" + uuid.uuid4().hex
            entry = VmEntry(vm_id, vm, scheduler, self.lifecycle, self._pacing, owner)
            self._vms[vm_id] = entry
            return entry

    def get(self, vm_id: str, owner: Optional[str] = None) -> VmEntry:
        """The VM ``vm_id``; with ``owner``, only if that tenant owns it:
        another tenant's VM fails exactly as one that does not exist."""
        check_id(vm_id)
        self.lifecycle.check_open()
        entry = self._vms.get(vm_id)
        if entry is None or (owner is not None and entry.owner != owner):
            raise KvmError(errno.EBADF, f"no VM {shown_id(vm_id)}")
        return entry

    def list(self, owner: Optional[str] = None) -> List[VmEntry]:
        """The VMs (of ``owner``), oldest first."""
        with self._lock:
            entries = list(self._vms.values())
        return [e for e in entries if owner is None or e.owner == owner]

    def destroy(self, vm_id: str, owner: Optional[str] = None,
                only_if: Optional[Callable[[VmEntry], bool]] = None) -> bool:
        """Destroy ``vm_id`` (of ``owner``). With ``only_if``, only when it
        holds (checked under the registry lock); returns whether it did."""
        check_id(vm_id)
        self.lifecycle.check_open()
        with self._lock:
            entry = self._vms.get(vm_id)
            if entry is None or (owner is not None and entry.owner != owner):
                raise KvmError(errno.EBADF, f"no VM {shown_id(vm_id)}")
            if only_if is not None and not only_if(entry):
                return False
            del self._vms[vm_id]
        self._destroyed(entry)
        return True

    def begin_drain(self) -> None:
        """Refuse new VMs and Runs; running Runs end at their next slice
        boundary (waiting ones are woken for it). State stays readable."""
        self.lifecycle.draining = True
        with self._lock:
            entries = list(self._vms.values())
        for entry in entries:
            for session in entry.sessions():
                session.wake()
                session.vcpu.preempt()

    def destroy_all(self) -> None:
        """The end of a drain (or of a server): every VM goes; calls after
        this answer ESHUTDOWN."""
        self.lifecycle.draining = self.lifecycle.stopped = True
        with self._lock:
            entries, self._vms = list(self._vms.values()), {}
        for entry in entries:
            self._destroyed(entry)

    def _destroyed(self, entry: VmEntry) -> None:
        entry.vm.destroy()
        for callback in self.on_destroy:
            callback(entry)


def check_id(vm_id: str) -> None:
    """EINVAL for an id longer than MAX_ID_BYTES, before any lookup."""
    if len(vm_id) > MAX_ID_BYTES or len(vm_id.encode()) > MAX_ID_BYTES:
        raise KvmError(errno.EINVAL, f"vm_id of {len(vm_id.encode())} bytes: ids have at "
                       f"most {MAX_ID_BYTES}")
