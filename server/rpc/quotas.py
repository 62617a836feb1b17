"""Quotas: what each tenant uses (VMs, vCPUs, mapped guest memory, runs in
progress) against its limits, and the server-wide memory ceiling.

A refused charge is a ``QuotaError``: a ``KvmError`` (ENOSPC for counts,
ENOMEM for memory, both RESOURCE_EXHAUSTED) that carries the
``google.rpc.QuotaFailure`` violations ``errors.to_status`` adds to the
status details. Charges are kept per VM, so destroying a VM (DestroyVm, a
lease running out, shutdown) gives back exactly what it held.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, TypeVar

from google.rpc import error_details_pb2

from rvkvm.server.kvm import KvmError

from .tenants import Tenant

T = TypeVar("T")


class QuotaError(KvmError):
    """RESOURCE_EXHAUSTED with a ``google.rpc.QuotaFailure`` detail."""

    def __init__(self, err: int, message: str,
                 violations: List[error_details_pb2.QuotaFailure.Violation]) -> None:
        super().__init__(err, message)
        self.violations = violations

    def quota_failure(self) -> error_details_pb2.QuotaFailure:
        return error_details_pb2.QuotaFailure(violations=self.violations)


def host_memory() -> int:
    """Physical memory of this host, bytes (0 when it cannot be told)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


@dataclass
class Usage:
    vms: int = 0
    vcpus: int = 0
    memory: int = 0
    runs: int = 0


@dataclass
class _VmCharge:
    tenant: str
    vcpus: int = 0
    memory: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)  # memory-slot changes


_METRIC = {"vms": "max_vms", "vcpus": "max_vcpus", "memory": "max_memory", "runs": "max_runs"}


class Ledger:
    """Usage per tenant and of the whole server. Thread-safe."""

    def __init__(self, max_memory: int = 0) -> None:
        self.max_memory = max_memory  # server-wide ceiling of mapped guest memory; 0: none
        self._lock = threading.Lock()
        self._usage: Dict[str, Usage] = {}
        self._vms: Dict[str, _VmCharge] = {}
        self._memory = 0

    # -- reading -----------------------------------------------------------

    def usage(self, tenant: str) -> Usage:
        with self._lock:
            u = self._usage.get(tenant, Usage())
            return Usage(u.vms, u.vcpus, u.memory, u.runs)

    def usage_by_tenant(self) -> Dict[str, Usage]:
        with self._lock:
            return {name: Usage(u.vms, u.vcpus, u.memory, u.runs)
                    for name, u in self._usage.items()}

    @property
    def memory(self) -> int:
        return self._memory

    def vm_memory(self, vm_id: str) -> int:
        charge = self._vms.get(vm_id)
        return charge.memory if charge else 0

    # -- charging ----------------------------------------------------------

    def _refuse(self, tenant: Tenant, what: str, limit: int, wanted: int, err: int) -> QuotaError:
        metric = _METRIC[what]
        violation = error_details_pb2.QuotaFailure.Violation(
            subject=f"tenant:{tenant.name}",
            description=f"{metric} is {limit}; this call needs {wanted}",
            quota_metric=f"rvkvm.v1/{what}", quota_id=metric,
            quota_dimensions={"tenant": tenant.name}, quota_value=limit)
        return QuotaError(err, f"quota exceeded: tenant {tenant.name} {metric} is {limit}",
                          [violation])

    def _check(self, tenant: Tenant, what: str, add: int) -> None:
        """Under ``_lock``: refuse ``add`` more of ``what`` beyond the quota."""
        limit = getattr(tenant.quota, _METRIC[what])
        if add <= 0 or not limit:
            return
        used = getattr(self._usage.setdefault(tenant.name, Usage()), what)
        if used + add > limit:
            raise self._refuse(tenant, what, limit, used + add,
                               errno.ENOMEM if what == "memory" else errno.ENOSPC)

    def _add(self, tenant: str, what: str, n: int) -> None:
        usage = self._usage.setdefault(tenant, Usage())
        setattr(usage, what, getattr(usage, what) + n)

    def create_vm(self, tenant: Tenant, create: Callable[[], T], vm_id: Callable[[T], str]) -> T:
        """``create()`` a VM if the tenant may have one more, and charge it.
        The charge is taken first and given back if ``create`` fails, so
        the lock is never held while the model works (the event loop takes
        it too, for runs)."""
        with self._lock:
            self._check(tenant, "vms", 1)
            self._add(tenant.name, "vms", 1)
        try:
            result = create()
        except BaseException:
            with self._lock:
                self._add(tenant.name, "vms", -1)
            raise
        with self._lock:
            self._vms[vm_id(result)] = _VmCharge(tenant.name)
        return result

    def release_vm(self, vm_id: str) -> None:
        """Give back what a destroyed VM held (once; later calls do nothing)."""
        with self._lock:
            charge = self._vms.pop(vm_id, None)
            if charge is None:
                return
            self._add(charge.tenant, "vms", -1)
            self._add(charge.tenant, "vcpus", -charge.vcpus)
            self._add(charge.tenant, "memory", -charge.memory)
            self._memory -= charge.memory

    def create_vcpu(self, tenant: Tenant, vm_id: str, create: Callable[[], T]) -> T:
        """``create()`` a vCPU of ``vm_id`` within the tenant's quota (taken
        first, given back if ``create`` fails or the VM went meanwhile)."""
        with self._lock:
            self._check(tenant, "vcpus", 1)
            self._add(tenant.name, "vcpus", 1)
        kept = False
        try:
            result = create()
            with self._lock:
                charge = self._vms.get(vm_id)
                if charge is not None:
                    charge.vcpus += 1
                    kept = True
            return result
        finally:
            if not kept:
                with self._lock:
                    self._add(tenant.name, "vcpus", -1)

    def change_memory(self, tenant: Tenant, vm_id: str, old_size: Callable[[], int],
                      new_size: int, change: Callable[[], None]) -> None:
        """Resize one memory slot from ``old_size()`` to ``new_size`` bytes
        through ``change()``: more memory is charged first (and refused
        beyond the tenant's quota or the server's ceiling), less is given
        back after. Slot changes of one VM are serialised, so the slot's
        old size is the one ``change`` replaces."""
        charge = self._vms.get(vm_id)
        if charge is None:
            change()  # a destroyed VM: the model answers
            return
        with charge.lock:
            delta = new_size - old_size()
            if delta > 0:
                with self._lock:
                    self._check(tenant, "memory", delta)
                    if self.max_memory and self._memory + delta > self.max_memory:
                        raise self._ceiling(delta)
                    self._memory += delta
                    charge.memory += delta
                    self._add(tenant.name, "memory", delta)
            try:
                change()
            except BaseException:
                if delta > 0:
                    self._give_back(charge, vm_id, delta)
                raise
            if delta < 0:
                self._give_back(charge, vm_id, -delta)

    def _give_back(self, charge: _VmCharge, vm_id: str, amount: int) -> None:
        with self._lock:
            if self._vms.get(vm_id) is not charge:
                return  # released with its VM already
            charge.memory -= amount
            self._memory -= amount
            self._add(charge.tenant, "memory", -amount)

    def _ceiling(self, delta: int) -> QuotaError:
        violation = error_details_pb2.QuotaFailure.Violation(
            subject="server",
            description=f"guest memory of all tenants is limited to {self.max_memory} "
                        f"bytes; {self._memory} are mapped, this call adds {delta}",
            quota_metric="rvkvm.v1/memory", quota_id="server_max_memory",
            quota_value=self.max_memory)
        return QuotaError(errno.ENOMEM, f"server memory ceiling {self.max_memory} bytes "
                          "reached", [violation])

    @contextlib.contextmanager
    def runs(self, tenant: Tenant, n: int = 1) -> Iterator[None]:
        """``n`` runs in progress for the duration of the block."""
        with self._lock:
            self._check(tenant, "runs", n)
            self._add(tenant.name, "runs", n)
        try:
            yield
        finally:
            with self._lock:
                self._add(tenant.name, "runs", -n)
