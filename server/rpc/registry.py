"""The VMs a server hosts, by handle, and the per-vCPU run sessions.

A ``VcpuSession`` is the adapter-side state of a vCPU: it runs ``Vcpu.run``
in bounded slices (so a long Run notices cancellation and the vCPU mutex is
released between slices), several slices in a row on a pool thread for at
most one quantum (so the event loop is not woken per slice, yet a few
threads serve many vCPUs and an idle vCPU holds none), and it keeps an exit
that a cancelled Run produced but could not deliver, so the next Run
returns it instead of losing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import threading
import time
import uuid
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from rvkvm.server.kvm import DEFAULT_KERNEL, KvmError, KvmSystem, Vcpu, Vm
from rvkvm.server.kvm import exits as X
from rvkvm.v1 import kvm_pb2 as pb

from .convert import fill_completion
from .leases import Lease
from .tenants import OPEN_TENANT


@dataclass(frozen=True)
class Pacing:
    """How a Run is cut up: ``run_slice`` instructions per ``Vcpu.run``
    call, slices back to back on one pool thread for up to ``quantum``
    seconds, and ``idle_slice`` seconds of sleep per slice while idle.
    ``inline_slice``: instructions tried first on the event loop's thread
    (``Vcpu.try_run``) when the last exit was a guest event, so that a
    device-bound guest's next exit costs no hop to a pool thread and back."""

    run_slice: int = 200_000
    idle_slice: float = 0.05
    quantum: float = 0.05
    inline_slice: int = 4096


class VcpuSession:
    def __init__(self, vcpu: Vcpu, pacing: Pacing = Pacing()) -> None:
        self.vcpu = vcpu
        self._run_slice = pacing.run_slice
        self._idle_slice = pacing.idle_slice
        self._quantum = pacing.quantum
        self._inline_slice = pacing.inline_slice
        self._exit_bound = False  # the last Run ended in a guest event, not an INTR
        self._lock = asyncio.Lock()  # one Run at a time, as KVM_RUN holds vcpu->mutex
        self._inflight: Optional[Future] = None  # a slice a cancelled Run left running
        self._undelivered: Optional[X.Exit] = None
        self.slices = 0  # Vcpu.run calls made (the run_slices metric)

    async def run(self, completion: pb.Completion, budget: int, idle_timeout: float,
                  pool: Executor) -> X.Exit:
        """One Run: slices of ``Vcpu.run`` in ``pool``, each a separate task,
        so idle vCPUs do not hold threads. ``budget`` 0: none;
        ``idle_timeout`` 0: wait while idle until woken or cancelled.
        Cancellation kicks the vCPU; an exit its last slice still produces
        is kept for the next Run."""
        async with self._lock:
            if self._inflight is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wrap_future(self._inflight)
                self._inflight = None
            if self._undelivered is not None:
                exit_, self._undelivered = self._undelivered, None
                return exit_
            fill_completion(self.vcpu.pending_exit, completion)
            remaining = budget or None
            if self._exit_bound and self._inline_slice:
                step = self._inline_slice if remaining is None else min(self._inline_slice,
                                                                         remaining)
                tried = self.vcpu.try_run(step)
                if tried is not None:
                    self.slices += 1
                    why = self._continues(tried)
                    if why is None:
                        return tried
                    if why == X.INTR_BUDGET and remaining is not None:
                        remaining -= step
                        if remaining <= 0:
                            return tried
            idle_deadline: Optional[float] = None
            while True:
                exit_, used = await self._slice(pool, remaining)
                why = self._continues(exit_)
                if why is None:
                    return exit_
                if why == X.INTR_BUDGET:
                    idle_deadline = None
                    if remaining is not None:
                        remaining -= used
                        if remaining <= 0:
                            return exit_
                elif idle_timeout:  # INTR_IDLE
                    now = time.monotonic()
                    if idle_deadline is None:
                        idle_deadline = now + idle_timeout - self._idle_slice
                    if now >= idle_deadline:
                        return exit_

    def _continues(self, exit_: X.Exit) -> Optional[str]:
        """None if ``exit_`` ends the Run (a guest event or a kick), else why
        the slice ended (INTR_BUDGET or INTR_IDLE); notes whether the next
        Run starts inline (after a guest event)."""
        if isinstance(exit_, X.IntrExit):
            self._exit_bound = False
            return None if exit_.why == X.INTR_KICK else exit_.why
        self._exit_bound = True
        return None

    def _run_quantum(self, remaining: Optional[int]) -> Tuple[X.Exit, int]:
        """On a pool thread: slices until an exit other than a used-up
        slice budget, until ``remaining`` instructions ran, or until the
        quantum is over. Returns the last exit and the budget used."""
        deadline = time.monotonic() + self._quantum
        used = 0
        while True:
            step = self._run_slice if remaining is None else min(self._run_slice,
                                                                 remaining - used)
            exit_ = self.vcpu.run(step, self._idle_slice)
            self.slices += 1
            if not isinstance(exit_, X.IntrExit) or exit_.why != X.INTR_BUDGET:
                return exit_, used
            used += step
            if (remaining is not None and used >= remaining) or time.monotonic() >= deadline:
                return exit_, used

    async def _slice(self, pool: Executor, remaining: Optional[int]) -> Tuple[X.Exit, int]:
        future = pool.submit(self._run_quantum, remaining)
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            if future.cancel():  # never started: nothing happened
                raise
            self.vcpu.kick()
            self._inflight = future
            future.add_done_callback(self._keep_undelivered)
            raise

    def _keep_undelivered(self, future: Future) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        exit_, _ = future.result()
        if not isinstance(exit_, X.IntrExit):
            self._undelivered = exit_


class VmEntry:
    """A hosted VM, the tenant that owns it (``owner``, also the key of its
    share of run time), its lease and the sessions of its vCPUs."""

    def __init__(self, vm_id: str, vm: Vm, pacing: Pacing = Pacing(),
                 owner: str = OPEN_TENANT) -> None:
        self.vm_id = vm_id
        self.vm = vm
        self.owner = owner
        self.created = time.time()
        self.lease = Lease()
        self._pacing = pacing
        self._sessions: Dict[int, VcpuSession] = {}
        self._lock = threading.Lock()

    def create_vcpu(self, vcpu_id: int) -> VcpuSession:
        with self._lock:
            session = VcpuSession(self.vm.create_vcpu(vcpu_id), self._pacing)
            self._sessions[vcpu_id] = session
            return session

    def vcpu_ids(self) -> List[int]:
        with self._lock:
            return sorted(self._sessions)

    def session(self, vcpu_id: int) -> VcpuSession:
        self.vm_alive()
        session = self._sessions.get(vcpu_id)
        if session is None:
            raise KvmError(errno.EBADF, f"VM {self.vm_id} has no vCPU {vcpu_id}")
        return session

    def vm_alive(self) -> Vm:
        if self.vm.destroyed:
            raise KvmError(errno.EBADF, f"VM {self.vm_id} destroyed")
        return self.vm


class VmRegistry:
    """VM handles -> VMs of one ``KvmSystem``."""

    def __init__(self, system: KvmSystem, max_vms: int, pacing: Pacing = Pacing()) -> None:
        self.system = system
        self._max_vms = max_vms
        self._pacing = pacing
        self._vms: Dict[str, VmEntry] = {}
        self._lock = threading.Lock()
        # Called with each VM this registry destroys (DestroyVm, lease, shutdown).
        self.on_destroy: List[Callable[[VmEntry], None]] = []

    def create(self, machine_type: int, profile: str, owner: str = OPEN_TENANT) -> VmEntry:
        """A new VM of tenant ``owner``; ``profile`` "" is the default kernel ABI."""
        with self._lock:
            if self._max_vms and len(self._vms) >= self._max_vms:
                raise KvmError(errno.ENOSPC, f"this server hosts at most {self._max_vms} VMs")
            try:
                vm = self.system.create_vm(machine_type, profile or DEFAULT_KERNEL)
            except ValueError as exc:  # unknown ABI profile
                raise KvmError(errno.EINVAL, str(exc)) from None
            vm_id = "vm-" + uuid.uuid4().hex
            entry = VmEntry(vm_id, vm, self._pacing, owner)
            self._vms[vm_id] = entry
            return entry

    def get(self, vm_id: str, owner: Optional[str] = None) -> VmEntry:
        """The VM ``vm_id``; with ``owner``, only if that tenant owns it:
        another tenant's VM fails exactly as one that does not exist."""
        entry = self._vms.get(vm_id)
        if entry is None or (owner is not None and entry.owner != owner):
            raise KvmError(errno.EBADF, f"no VM {vm_id!r}")
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
        with self._lock:
            entry = self._vms.get(vm_id)
            if entry is None or (owner is not None and entry.owner != owner):
                raise KvmError(errno.EBADF, f"no VM {vm_id!r}")
            if only_if is not None and not only_if(entry):
                return False
            del self._vms[vm_id]
        self._destroyed(entry)
        return True

    def destroy_all(self) -> None:
        with self._lock:
            entries, self._vms = list(self._vms.values()), {}
        for entry in entries:
            self._destroyed(entry)

    def _destroyed(self, entry: VmEntry) -> None:
        entry.vm.destroy()
        for callback in self.on_destroy:
            callback(entry)
