"""Helpers for the KVM runtime tests: a VM with RAM, hand-encoded guests.

Guests end with ``ebreak``; with guest debug enabled that is a DEBUG exit,
so ``run_to_end`` runs a vCPU until the guest says it is done.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from rvkvm.server.kvm import HostProfile, parse_name
from rvkvm.server.kvm.exits import DebugExit, Exit
from rvkvm.server.kvm.system import KvmSystem
from rvkvm.server.kvm.vcpu import Vcpu
from rvkvm.server.kvm.vm import Vm
from rvkvm.uapi.kvm import KVM_GUESTDBG_ENABLE
from tests.emulator import rvasm as A

RAM_BASE = 0x8000_0000
RAM_SIZE = 0x1_0000
DATA = RAM_BASE + 0x8000  # scratch data page inside RAM
MMIO = 0x1000_0000  # no slot there

PC = parse_name("core pc")
A0 = parse_name("core a0")
A1 = parse_name("core a1")
MODE = parse_name("core mode")

# x-register numbers
ZERO, RA, SP, T0, T1, T2 = 0, 1, 2, 5, 6, 7
REG_A0, REG_A1, REG_A2, REG_A3, REG_A6, REG_A7 = 10, 11, 12, 13, 16, 17

EBREAK = A.EBREAK
ECALL = A.ECALL
WFI = A.WFI


def new_vm(profile: str = "latest", host: Optional[HostProfile] = None,
           vcpus: int = 1) -> Tuple[Vm, List[Vcpu]]:
    vm = KvmSystem().create_vm(profile=profile, host=host)
    vm.set_user_memory_region(0, 0, RAM_BASE, RAM_SIZE)
    return vm, [vm.create_vcpu(i) for i in range(vcpus)]


def load(vm: Vm, vcpu: Vcpu, program: Sequence[int], at: int = RAM_BASE) -> None:
    """Write the program, point the vCPU at it and make ebreak end the run."""
    vm.write_memory(at, A.words(program))
    vcpu.set_value(PC, at)
    vcpu.set_guest_debug(KVM_GUESTDBG_ENABLE)


def run_to_end(vcpu: Vcpu, budget: int = 100_000) -> Exit:
    exit_ = vcpu.run(budget=budget, idle_timeout=0.0)
    assert isinstance(exit_, DebugExit), exit_
    return exit_


def li(rd: int, value: int) -> List[int]:
    """Load any 64-bit constant (up to 8 instructions)."""
    value &= (1 << 64) - 1
    signed = value - (1 << 64) if value >> 63 else value
    if -(1 << 31) <= signed < (1 << 31):
        return A.li32(rd, value)
    if value < 1 << 32:  # zero-extended 32-bit value
        return A.li32(rd, value) + [slli(rd, rd, 32), srli(rd, rd, 32)]
    hi, lo = value >> 32, value & 0xFFFF_FFFF
    return (li(rd, hi) + [slli(rd, rd, 32)] + li(T2, lo)
            + [A.r(0x33, 0, 0, rd, rd, T2)])  # add rd, rd, t2


def slli(rd: int, rs1: int, sh: int) -> int:
    return A.i(0x13, 1, rd, rs1, sh)


def srli(rd: int, rs1: int, sh: int) -> int:
    return A.i(0x13, 5, rd, rs1, sh)


def ld(rd: int, rs1: int, off: int = 0) -> int:
    return A.i(0x03, 3, rd, rs1, off)


def lw(rd: int, rs1: int, off: int = 0) -> int:
    return A.i(0x03, 2, rd, rs1, off)


def sd(rs2: int, rs1: int, off: int = 0) -> int:
    return A.s(0x23, 3, rs1, rs2, off)


def sw(rs2: int, rs1: int, off: int = 0) -> int:
    return A.s(0x23, 2, rs1, rs2, off)


def csrrw(rd: int, csr: int, rs1: int) -> int:
    return A.csrrw(rd, csr, rs1)


def csrrs(rd: int, csr: int, rs1: int) -> int:
    return A.csrrs(rd, csr, rs1)


def jump_self() -> int:
    return A.j(0, 0)


def sbi_call(eid: int, fid: int, *args: int) -> List[int]:
    """a7 = eid, a6 = fid, a0.. = args, ecall."""
    code = li(REG_A7, eid) + li(REG_A6, fid)
    for n, value in enumerate(args):
        code += li(REG_A0 + n, value)
    return code + [ECALL]
