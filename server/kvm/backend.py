"""Where a vCPU's register values live, seen from the ONE_REG layer.

``OneRegMap`` applies KVM's rules (which registers exist, sizes, errnos,
value adjustments) and keeps KVM's configuration in ``VcpuConfig``; the
values themselves come from a ``VcpuRegisterBackend``. The server's vCPU
implements it on top of an emulator hart; ``InMemoryVcpuBackend`` is the
plain implementation used by tests and by tools that need no hart.

All values are unsigned Python ints of the register's width, except vector
registers, which are ``vlenb`` bytes.
"""

from __future__ import annotations

from typing import Dict, List, Protocol

U64_MASK = (1 << 64) - 1

KVM_RISCV_MODE_S = 1
KVM_RISCV_MODE_U = 0

# Exceptions delegated to the guest at vCPU creation (6.18+): instruction
# misaligned, illegal instruction, breakpoint, ecall from U, page faults.
HEDELEG_DEFAULT = 0xB10D


class VcpuRegisterBackend(Protocol):
    """Register storage of one vCPU, in KVM's terms."""

    # CORE: pc is the guest resume address; x1..x31; the privilege the
    # guest runs at (KVM_RISCV_MODE_S / KVM_RISCV_MODE_U).
    def get_pc(self) -> int: ...
    def set_pc(self, value: int) -> None: ...
    def get_gpr(self, index: int) -> int: ...
    def set_gpr(self, index: int, value: int) -> None: ...
    def get_privilege(self) -> int: ...
    def set_privilege(self, mode: int) -> None: ...

    # Guest supervisor CSRs by name: sstatus sie stvec sscratch sepc scause
    # stval sip satp scounteren senvcfg, the AIA ones, sstateen0. ``sip``
    # holds the guest-visible pending bits.
    def get_csr(self, name: str) -> int: ...
    def set_csr(self, name: str, value: int) -> None: ...

    # Per-vCPU hypervisor configuration words KVM keeps: "henvcfg", "hedeleg".
    def get_hyp(self, name: str) -> int: ...
    def set_hyp(self, name: str, value: int) -> None: ...

    # Floating point: raw 64-bit f registers, fcsr; ``fp_reset`` sets the
    # saved sstatus.FS to Initial (F or D present) or Off, as KVM does after
    # every ISA change.
    def get_fpr(self, index: int) -> int: ...
    def set_fpr(self, index: int, value: int) -> None: ...
    def get_fcsr(self) -> int: ...
    def set_fcsr(self, value: int) -> None: ...
    def fp_reset(self, has_fp: bool) -> None: ...

    # Vector: vstart vl vtype vcsr, and v0..v31 as vlenb bytes.
    def get_vector_csr(self, name: str) -> int: ...
    def set_vector_csr(self, name: str, value: int) -> None: ...
    def get_vreg(self, index: int) -> bytes: ...
    def set_vreg(self, index: int, value: bytes) -> None: ...

    # Timer: guest time (VM-wide), the compare value, and whether a timer
    # event is armed.
    def get_time(self) -> int: ...
    def set_time(self, value: int) -> None: ...
    def get_timer_compare(self) -> int: ...
    def set_timer_compare(self, value: int) -> None: ...
    def timer_armed(self) -> bool: ...
    def timer_arm(self, compare: int) -> None: ...
    def timer_cancel(self) -> None: ...

    # SBI STA shared-memory GPA (all-ones: disabled).
    def get_sta_shmem(self) -> int: ...
    def set_sta_shmem(self, value: int) -> None: ...


class InMemoryVcpuBackend:
    """Plain storage implementing ``VcpuRegisterBackend`` (reset state of a new vCPU)."""

    def __init__(self, vlenb: int = 16) -> None:
        self.pc = 0
        self.gprs: List[int] = [0] * 32
        self.privilege = KVM_RISCV_MODE_S
        self.csrs: Dict[str, int] = {}
        self.hyp: Dict[str, int] = {"henvcfg": 0, "hedeleg": HEDELEG_DEFAULT}
        self.fprs: List[int] = [0] * 32
        self.fcsr = 0
        self.fp_on = False
        self.vector_csrs: Dict[str, int] = {}
        self.vregs: List[bytes] = [bytes(vlenb)] * 32
        self.time = 0
        self.timer_compare = U64_MASK
        self.armed = False
        self.sta_shmem = U64_MASK

    def get_pc(self) -> int:
        return self.pc

    def set_pc(self, value: int) -> None:
        self.pc = value

    def get_gpr(self, index: int) -> int:
        return self.gprs[index]

    def set_gpr(self, index: int, value: int) -> None:
        self.gprs[index] = value

    def get_privilege(self) -> int:
        return self.privilege

    def set_privilege(self, mode: int) -> None:
        self.privilege = mode

    def get_csr(self, name: str) -> int:
        return self.csrs.get(name, 0)

    def set_csr(self, name: str, value: int) -> None:
        self.csrs[name] = value

    def get_hyp(self, name: str) -> int:
        return self.hyp[name]

    def set_hyp(self, name: str, value: int) -> None:
        self.hyp[name] = value

    def get_fpr(self, index: int) -> int:
        return self.fprs[index]

    def set_fpr(self, index: int, value: int) -> None:
        self.fprs[index] = value

    def get_fcsr(self) -> int:
        return self.fcsr

    def set_fcsr(self, value: int) -> None:
        self.fcsr = value

    def fp_reset(self, has_fp: bool) -> None:
        self.fp_on = has_fp

    def get_vector_csr(self, name: str) -> int:
        return self.vector_csrs.get(name, 0)

    def set_vector_csr(self, name: str, value: int) -> None:
        self.vector_csrs[name] = value

    def get_vreg(self, index: int) -> bytes:
        return self.vregs[index]

    def set_vreg(self, index: int, value: bytes) -> None:
        self.vregs[index] = bytes(value)

    def get_time(self) -> int:
        return self.time

    def set_time(self, value: int) -> None:
        self.time = value

    def get_timer_compare(self) -> int:
        return self.timer_compare

    def set_timer_compare(self, value: int) -> None:
        self.timer_compare = value

    def timer_armed(self) -> bool:
        return self.armed

    def timer_arm(self, compare: int) -> None:
        self.timer_compare = compare
        self.armed = True

    def timer_cancel(self) -> None:
        self.armed = False

    def get_sta_shmem(self) -> int:
        return self.sta_shmem

    def set_sta_shmem(self, value: int) -> None:
        self.sta_shmem = value
