"""``VcpuRegisterBackend`` on an emulator hart: where ONE_REG values live.

The vCPU is an emulator ``Hart`` running in S-mode with every M-mode trap
intercepted, so the hart's S-level CSRs are the guest's (V)S CSRs and its
M-level words stand in for the hypervisor's per-vCPU configuration:

=================  =====================================================
KVM (H extension)  this hart
=================  =====================================================
vsstatus, vsie...  sstatus, sie, stvec, ... (guest-visible S CSRs)
hvip (VS bits)     mip SSIP/STIP + the SEIP interrupt line
hedeleg, hideleg   medeleg, mideleg (S bits stand for the VS bits)
henvcfg            menvcfg (PMM = guest Smnpm, STCE, PBMTE, ADUE, CB*)
vstimecmp (Sstc)   stimecmp;  KVM's hrtimer without Sstc: sbi_timecmp
htimedelta         the VM clock (``Vm.set_time``)
=================  =====================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict

from rvkvm.emulator import csr as C
from rvkvm.emulator.hart import NO_DEADLINE, PRV_S, PRV_U

from .backend import KVM_RISCV_MODE_S, KVM_RISCV_MODE_U, U64_MASK
from .profiles import ISA_BY_NAME_ID
from .sbi_ext import STA_SHMEM_DISABLED

if TYPE_CHECKING:
    from rvkvm.emulator.hart import Hart

    from .vcpu import Vcpu

# sip bits the host can set for the guest: SSIP and STIP are pending bits,
# SEIP is the external line (KVM_INTERRUPT).
SEIP_BIT = 9
_SOFT_PENDING = C.SSIP | C.STIP
_FS_INITIAL = 1 << C.MS_FS_SHIFT


class HartBackend:
    """Register storage of one vCPU, backed by its hart (``VcpuRegisterBackend``)."""

    def __init__(self, vcpu: Vcpu) -> None:
        self.vcpu = vcpu
        self.hart: Hart = vcpu.hart
        # Registers of extensions the emulator does not implement (AIA,
        # Smstateen, V): kept so that a host profile offering them works.
        self.extra_csrs: Dict[str, int] = {}
        self.vector_csrs: Dict[str, int] = {}
        self.vregs: Dict[int, bytes] = {}
        self.timer_compare = U64_MASK
        self.armed = False
        self.sta_shmem = STA_SHMEM_DISABLED

    def reset(self) -> None:
        """Timer disarmed (compare all-ones), extra registers zero (STA has its
        own reset hook, run by the vCPU)."""
        self.extra_csrs.clear()
        self.vector_csrs.clear()
        self.vregs.clear()
        self.timer_compare = U64_MASK
        self.armed = False
        self.hart.sbi_timecmp = NO_DEADLINE

    # -- CORE -------------------------------------------------------------
    def get_pc(self) -> int:
        return self.hart.pc

    def set_pc(self, value: int) -> None:
        self.hart.pc = value

    def get_gpr(self, index: int) -> int:
        return self.hart.x[index]

    def set_gpr(self, index: int, value: int) -> None:
        if index:
            self.hart.x[index] = value & U64_MASK

    def get_privilege(self) -> int:
        return KVM_RISCV_MODE_S if self.hart.priv == PRV_S else KVM_RISCV_MODE_U

    def set_privilege(self, mode: int) -> None:
        self.hart.priv = PRV_S if mode == KVM_RISCV_MODE_S else PRV_U
        self.hart.update_ctx()

    # -- CSR --------------------------------------------------------------
    def get_csr(self, name: str) -> int:
        hart = self.hart
        if name == "sip":
            return hart.read_mip() & hart.mideleg
        if name in _HART_CSRS:
            return hart.get_reg(name)
        return self.extra_csrs.get(name, 0)

    def set_csr(self, name: str, value: int) -> None:
        hart = self.hart
        if name == "sip":
            hart.mip = (hart.mip & ~_SOFT_PENDING) | (value & _SOFT_PENDING)
            hart.set_irq_line(SEIP_BIT, bool(value & C.SEIP))
        elif name in _HART_CSRS:
            hart.set_reg(name, value)
        else:
            self.extra_csrs[name] = value
        hart.irq_dirty = True

    # -- hypervisor words -------------------------------------------------
    def get_hyp(self, name: str) -> int:
        return int(self.hart.menvcfg if name == "henvcfg" else self.hart.medeleg)

    def set_hyp(self, name: str, value: int) -> None:
        if name == "henvcfg":
            self.hart.menvcfg = value & C.MENVCFG_WMASK
        else:
            self.hart.medeleg = value & C.MEDELEG_WMASK
        self.hart.update_ctx()

    # -- FP ---------------------------------------------------------------
    def get_fpr(self, index: int) -> int:
        return self.hart.f[index]

    def set_fpr(self, index: int, value: int) -> None:
        self.hart.f[index] = value & U64_MASK

    def get_fcsr(self) -> int:
        return self.hart.fflags | (self.hart.frm << 5)

    def set_fcsr(self, value: int) -> None:
        self.hart.fflags = value & 0x1F
        self.hart.frm = (value >> 5) & 7

    def fp_reset(self, has_fp: bool) -> None:
        hart = self.hart
        hart.mstatus = (hart.mstatus & ~(C.MS_FS | C.MS_SD)) | (_FS_INITIAL if has_fp else 0)
        hart.update_ctx()

    # -- vector (not emulated: plain storage) ------------------------------
    def get_vector_csr(self, name: str) -> int:
        return self.vector_csrs.get(name, 0)

    def set_vector_csr(self, name: str, value: int) -> None:
        self.vector_csrs[name] = value

    def get_vreg(self, index: int) -> bytes:
        return self.vregs.get(index, bytes(self.vcpu.vm.platform.host.vlenb))

    def set_vreg(self, index: int, value: bytes) -> None:
        self.vregs[index] = bytes(value)

    # -- timer ------------------------------------------------------------
    def _sstc(self) -> bool:
        # With Sstc the guest's own stimecmp is the timer (KVM: vstimecmp).
        return ISA_BY_NAME_ID["SSTC"] in self.vcpu.config.isa

    def get_time(self) -> int:
        return self.hart.time() & U64_MASK

    def set_time(self, value: int) -> None:
        self.vcpu.vm.set_time(value)

    def get_timer_compare(self) -> int:
        return self.hart.stimecmp if self._sstc() else self.timer_compare

    def set_timer_compare(self, value: int) -> None:
        if self._sstc():
            self.hart.stimecmp = value
        self.timer_compare = value
        self.hart.irq_dirty = True

    def timer_armed(self) -> bool:
        return self.armed

    def timer_arm(self, compare: int) -> None:
        """KVM's timer_next_event: program the compare, clear STIP."""
        hart = self.hart
        self.timer_compare = compare
        self.armed = True
        if self._sstc():
            hart.stimecmp = compare
            hart.sbi_timecmp = NO_DEADLINE
        else:
            hart.sbi_timecmp = compare
        hart.mip &= ~C.STIP
        hart.irq_dirty = True

    def timer_cancel(self) -> None:
        self.armed = False
        self.hart.sbi_timecmp = NO_DEADLINE
        self.hart.irq_dirty = True

    # -- SBI STA ----------------------------------------------------------
    def get_sta_shmem(self) -> int:
        return self.sta_shmem

    def set_sta_shmem(self, value: int) -> None:
        self.sta_shmem = value


# Guest CSRs the hart implements (the ONE_REG CSR GENERAL block minus sip).
_HART_CSRS = frozenset({
    "sstatus", "sie", "stvec", "sscratch", "sepc", "scause", "stval",
    "satp", "scounteren", "senvcfg",
})
