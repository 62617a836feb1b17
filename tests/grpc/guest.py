"""Hand-encoded guest programs for the gRPC tests, written through the
client (WriteMemory, ONE_REG), as a remote VMM would."""

from __future__ import annotations

from typing import List, Sequence, Tuple

from rvkvm.client import Kvm, Vcpu, Vm
from rvkvm.client.kvm import KVM_GUESTDBG_ENABLE
from tests.emulator import rvasm as A
from tests.server.kvm_runtime_guest import (  # noqa: F401 (re-exported encoders)
    EBREAK,
    REG_A0,
    REG_A1,
    REG_A2,
    WFI,
    jump_self,
    ld,
    li,
    lw,
    sbi_call,
    sd,
    sw,
)

RAM_BASE = 0x8000_0000
RAM_SIZE = 0x1_0000
MMIO = 0x1000_0000  # no memory slot there


def new_vm(kvm: Kvm, vcpus: int = 1) -> Tuple[Vm, List[Vcpu]]:
    vm = kvm.create_vm()
    vm.set_user_memory_region(0, RAM_BASE, RAM_SIZE)
    return vm, [vm.create_vcpu(i) for i in range(vcpus)]


def load(vm: Vm, vcpu: Vcpu, program: Sequence[int], at: int = RAM_BASE) -> None:
    """Write the program, point the vCPU at it; ebreak ends the run (DEBUG exit)."""
    vm.write_memory(at, A.words(program))
    vcpu.set_reg("core pc", at)
    vcpu.set_guest_debug(KVM_GUESTDBG_ENABLE)


def mmio_loads() -> List[int]:
    """a1 = *(u64 *)(MMIO + 8); a2 = *(s32 *)MMIO; ebreak."""
    return li(REG_A0, MMIO) + [ld(REG_A1, REG_A0, 8), lw(REG_A2, REG_A0, 0), EBREAK]
