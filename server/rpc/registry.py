"""The VMs a server hosts, by handle, and the per-vCPU run sessions.

A ``VcpuSession`` is the adapter-side state of a vCPU: it runs ``Vcpu.run``
in bounded slices (so a long Run notices cancellation, the vCPU mutex is
released between slices and a few threads serve many vCPUs), and it keeps
an exit that a cancelled Run produced but could not deliver, so the next
Run returns it instead of losing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import threading
import time
import uuid
from concurrent.futures import Executor, Future
from typing import Dict, Optional

from rvkvm_proto.rvkvm.v1 import kvm_pb2 as pb
from server.kvm import DEFAULT_KERNEL, KvmError, KvmSystem, Vcpu, Vm
from server.kvm import exits as X

from .convert import fill_completion


class VcpuSession:
    def __init__(self, vcpu: Vcpu, run_slice: int, idle_slice: float) -> None:
        self.vcpu = vcpu
        self._run_slice = run_slice
        self._idle_slice = idle_slice
        self._lock = asyncio.Lock()  # one Run at a time, as KVM_RUN holds vcpu->mutex
        self._inflight: Optional[Future] = None  # a slice a cancelled Run left running
        self._undelivered: Optional[X.Exit] = None

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
            idle_deadline: Optional[float] = None
            while True:
                step = self._run_slice if remaining is None else min(self._run_slice, remaining)
                exit_ = await self._slice(pool, step)
                if not isinstance(exit_, X.IntrExit) or exit_.why == X.INTR_KICK:
                    return exit_
                if exit_.why == X.INTR_BUDGET:
                    idle_deadline = None
                    if remaining is not None:
                        remaining -= step
                        if remaining <= 0:
                            return exit_
                elif idle_timeout:  # INTR_IDLE
                    now = time.monotonic()
                    if idle_deadline is None:
                        idle_deadline = now + idle_timeout - self._idle_slice
                    if now >= idle_deadline:
                        return exit_

    async def _slice(self, pool: Executor, budget: int) -> X.Exit:
        future = pool.submit(self.vcpu.run, budget, self._idle_slice)
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
        exit_ = future.result()
        if not isinstance(exit_, X.IntrExit):
            self._undelivered = exit_


class VmEntry:
    """A hosted VM and the sessions of its vCPUs."""

    def __init__(self, vm_id: str, vm: Vm, run_slice: int, idle_slice: float) -> None:
        self.vm_id = vm_id
        self.vm = vm
        self._run_slice = run_slice
        self._idle_slice = idle_slice
        self._sessions: Dict[int, VcpuSession] = {}
        self._lock = threading.Lock()

    def create_vcpu(self, vcpu_id: int) -> VcpuSession:
        with self._lock:
            session = VcpuSession(self.vm.create_vcpu(vcpu_id), self._run_slice,
                                  self._idle_slice)
            self._sessions[vcpu_id] = session
            return session

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

    def __init__(self, system: KvmSystem, max_vms: int, run_slice: int,
                 idle_slice: float) -> None:
        self.system = system
        self._max_vms = max_vms
        self._run_slice = run_slice
        self._idle_slice = idle_slice
        self._vms: Dict[str, VmEntry] = {}
        self._lock = threading.Lock()

    def create(self, machine_type: int, profile: str) -> VmEntry:
        """A new VM; ``profile`` "" is the default kernel ABI."""
        with self._lock:
            if self._max_vms and len(self._vms) >= self._max_vms:
                raise KvmError(errno.ENOSPC, f"this server hosts at most {self._max_vms} VMs")
            try:
                vm = self.system.create_vm(machine_type, profile or DEFAULT_KERNEL)
            except ValueError as exc:  # unknown ABI profile
                raise KvmError(errno.EINVAL, str(exc)) from None
            vm_id = "vm-" + uuid.uuid4().hex
            entry = VmEntry(vm_id, vm, self._run_slice, self._idle_slice)
            self._vms[vm_id] = entry
            return entry

    def get(self, vm_id: str) -> VmEntry:
        entry = self._vms.get(vm_id)
        if entry is None:
            raise KvmError(errno.EBADF, f"no VM {vm_id!r}")
        return entry

    def destroy(self, vm_id: str) -> None:
        with self._lock:
            entry = self._vms.pop(vm_id, None)
        if entry is None:
            raise KvmError(errno.EBADF, f"no VM {vm_id!r}")
        entry.vm.destroy()

    def destroy_all(self) -> None:
        with self._lock:
            entries, self._vms = list(self._vms.values()), {}
        for entry in entries:
            entry.vm.destroy()
