"""Batch RPCs: BatchOneReg (many ONE_REG accesses, per-item status) and
RunMany (several vCPUs, each with its own budget and completion)."""

from __future__ import annotations

import errno

from rvkvm.client import KvmError
from rvkvm.client.exits import INTR_BUDGET, DebugExit, IntrExit, MmioExit
from tests.emulator import rvasm as A

from .guest import MMIO, RAM_BASE, jump_self, load, mmio_loads, new_vm


def test_batch_one_reg_across_vcpus(kvm):
    vm, vcpus = new_vm(kvm, vcpus=2)
    results = vm.batch_one_reg([
        (0, "core a0", (1).to_bytes(8, "little")),
        (1, "core a0", (2).to_bytes(8, "little")),
        (0, "core a0", None),
        (1, "core a0", None),
        (1, "core pc", b"\0" * 3),  # wrong size
        (7, "core pc", None),  # no such vCPU
        (0, 0x8030_0000_7F00_0000, None),  # no such register
        (1, "csr sscratch", None),
    ])
    assert results[:4] == [None, None, (1).to_bytes(8, "little"), (2).to_bytes(8, "little")]
    assert [r.errno for r in results[4:7]] == [errno.EFAULT, errno.EBADF, errno.ENOENT]
    assert all(isinstance(r, KvmError) for r in results[4:7])
    assert results[7] == bytes(8)
    assert vcpus[1].get_reg("core a0") == 2
    vm.destroy()


def test_batch_stop_on_error(kvm):
    vm, _ = new_vm(kvm)
    results = vm.batch_one_reg([(0, "core pc", None), (0, 0x1, None), (0, "core a0", None)],
                               stop_on_error=True)
    assert len(results) == 2 and results[1].errno == errno.ENOENT
    vm.destroy()


def test_run_many(kvm):
    vm, (v0, v1) = new_vm(kvm, vcpus=2)
    load(vm, v0, mmio_loads())
    load(vm, v1, [jump_self()], at=RAM_BASE + 0x1000)
    v1.set_mp_state(0)  # later vCPUs start STOPPED
    first, second = vm.run_many([v0, v1], budget=30_000)
    assert isinstance(first, MmioExit) and first.phys_addr == MMIO + 8
    assert second == IntrExit(INTR_BUDGET)
    first.value = 3
    results = vm.run_many([v0], budget=30_000)
    assert isinstance(results[0], MmioExit)
    results[0].value = 4
    assert isinstance(vm.run_many([v0])[0], DebugExit)
    assert v0.get_reg("core a1") == 3
    vm.destroy()


def test_run_many_reports_per_vcpu_errors(kvm):
    vm, (v0, v1) = new_vm(kvm, vcpus=2)
    load(vm, v0, [jump_self()])
    vm.write_memory(RAM_BASE + 0x2000, A.words([0]))  # illegal instruction, stvec 0: no RAM
    v1.set_reg("core pc", RAM_BASE + 0x2000)
    v1.set_mp_state(0)
    ok, failed = vm.run_many([v0, v1], budget=1000)
    assert ok == IntrExit(INTR_BUDGET)
    assert isinstance(failed, KvmError) and failed.errno == errno.EOPNOTSUPP
    vm.destroy()
